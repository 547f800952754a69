package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// KV is a key with its value and revisions.
type KV struct {
	// Key is the full key.
	Key string
	// Value is the value; nil when listed with WithKeysOnly.
	Value []byte
	// CreateRevision is the store revision at which the key was created.
	CreateRevision int64
	// ModRevision is the store revision of the key's last change; pass it
	// to WithCAS to update the key only if nobody changed it since.
	ModRevision int64
	// Version counts the writes to the key since it was created (1 after
	// the first).
	Version int64
}

// kvJSON is the API's JSON form of a KV: the value as a UTF-8 string in
// "value", or as base64 in "value_base64" when it is not valid UTF-8.
type kvJSON struct {
	Key            string  `json:"key"`
	Value          *string `json:"value,omitempty"`
	ValueBase64    *string `json:"value_base64,omitempty"`
	CreateRevision int64   `json:"create_revision"`
	ModRevision    int64   `json:"mod_revision"`
	Version        int64   `json:"version"`
}

// MarshalJSON encodes kv the way the API does: {"key", "value" or
// "value_base64", "create_revision", "mod_revision", "version"}. A nil
// Value is left out.
func (kv KV) MarshalJSON() ([]byte, error) {
	return json.Marshal(kv.toJSON())
}

// UnmarshalJSON decodes the API's JSON form of a key, as MarshalJSON writes
// it.
func (kv *KV) UnmarshalJSON(b []byte) error {
	var j kvJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	v, err := j.toKV()
	if err != nil {
		return err
	}
	*kv = v
	return nil
}

// toJSON returns kv in the API's JSON form.
func (kv KV) toJSON() kvJSON {
	j := kvJSON{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version}
	if kv.Value != nil {
		j.Value, j.ValueBase64 = encodeValue(kv.Value)
	}
	return j
}

// toKV decodes the API's JSON form of a key.
func (j kvJSON) toKV() (KV, error) {
	kv := KV{Key: j.Key, CreateRevision: j.CreateRevision, ModRevision: j.ModRevision, Version: j.Version}
	switch {
	case j.ValueBase64 != nil:
		v, err := base64.StdEncoding.DecodeString(*j.ValueBase64)
		if err != nil {
			return kv, fmt.Errorf("value_base64 of %q: %w", j.Key, err)
		}
		kv.Value = v
	case j.Value != nil:
		kv.Value = []byte(*j.Value)
	}
	return kv, nil
}

// GetResponse is the answer to Get: the key (so resp.Value and
// resp.ModRevision work directly) and how it was served.
type GetResponse struct {
	KV
	Meta
}

// PutResponse is the answer to Put; Revision is the store revision the
// write created.
type PutResponse struct {
	Meta
}

// DeleteResponse is the answer to Delete; Revision is the store revision
// after the delete.
type DeleteResponse struct {
	Meta
	// Deleted is how many keys were removed (0 if the key was absent).
	Deleted int64
}

// ListResponse is one page of keys from List.
type ListResponse struct {
	Meta
	// KVs are the keys under the prefix, in key order.
	KVs []KV
	// More says whether keys remain after the last one in KVs; fetch
	// them with WithAfter(KVs[len(KVs)-1].Key).
	More bool
}

// Options each call accepts.
const (
	getOpts    = optConsistency | optMinRevision
	listOpts   = optConsistency | optMinRevision | optLimit | optAfter | optKeysOnly
	putOpts    = optCAS | optTTL | optIdempotencyKey
	deleteOpts = optCAS | optPrefix | optIdempotencyKey
)

// Get reads one key. It fails with ErrNotFound if the key does not exist.
// Options: WithConsistency, WithMinRevision.
func (c *Client) Get(ctx context.Context, key string, opts ...Option) (*GetResponse, error) {
	o, err := buildOp("Get", getOpts, opts)
	if err != nil {
		return nil, err
	}
	p, err := keyPath(key)
	if err != nil {
		return nil, err
	}
	out := &GetResponse{}
	m, err := c.do(ctx, &request{method: http.MethodGet, path: p, query: o.query(), key: key},
		func(resp *http.Response, _ *Meta) error {
			v, err := io.ReadAll(resp.Body)
			if err != nil {
				return fmt.Errorf("reading value: %w", err)
			}
			out.KV = KV{
				Key:            key,
				Value:          v,
				CreateRevision: headerInt(resp.Header, headerCreateRevision),
				ModRevision:    headerInt(resp.Header, headerModRevision),
				Version:        headerInt(resp.Header, headerVersion),
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	out.Meta = *m
	return out, nil
}

// Put stores value under key. Options: WithCAS, WithTTL,
// WithIdempotencyKey.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...Option) (*PutResponse, error) {
	o, err := buildOp("Put", putOpts, opts)
	if err != nil {
		return nil, err
	}
	p, err := keyPath(key)
	if err != nil {
		return nil, err
	}
	if value == nil {
		value = []byte{}
	}
	m, err := c.do(ctx, &request{
		method: http.MethodPut, path: p, query: o.query(), body: value,
		contentType: "application/octet-stream", write: true, key: key, idemKey: o.idempotencyKey,
	}, func(resp *http.Response, m *Meta) error {
		var body struct {
			Revision int64 `json:"revision"`
		}
		if err := decodeJSON(resp, &body); err != nil {
			return err
		}
		if body.Revision != 0 {
			m.Revision = body.Revision
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &PutResponse{Meta: *m}, nil
}

// Delete removes key, or with WithPrefix every key that starts with it.
// Deleting a missing key is not an error: Deleted is then 0. Options:
// WithPrefix, WithCAS, WithIdempotencyKey.
func (c *Client) Delete(ctx context.Context, key string, opts ...Option) (*DeleteResponse, error) {
	o, err := buildOp("Delete", deleteOpts, opts)
	if err != nil {
		return nil, err
	}
	p, err := keyPath(key)
	if err != nil {
		return nil, err
	}
	out := &DeleteResponse{}
	m, err := c.do(ctx, &request{
		method: http.MethodDelete, path: p, query: o.query(),
		write: true, key: key, idemKey: o.idempotencyKey,
	}, func(resp *http.Response, m *Meta) error {
		var body struct {
			Revision int64 `json:"revision"`
			Deleted  int64 `json:"deleted"`
		}
		if err := decodeJSON(resp, &body); err != nil {
			return err
		}
		if body.Revision != 0 {
			m.Revision = body.Revision
		}
		out.Deleted = body.Deleted
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.Meta = *m
	return out, nil
}

// List returns one page of the keys that start with prefix (every key when
// prefix is empty), in key order. Options: WithLimit, WithAfter,
// WithKeysOnly, WithConsistency, WithMinRevision.
func (c *Client) List(ctx context.Context, prefix string, opts ...Option) (*ListResponse, error) {
	o, err := buildOp("List", listOpts, opts)
	if err != nil {
		return nil, err
	}
	q := o.query()
	q.Set("prefix", prefix)
	out := &ListResponse{}
	m, err := c.do(ctx, &request{method: http.MethodGet, path: "/v1/kv/", query: q, key: prefix},
		func(resp *http.Response, m *Meta) error {
			var body struct {
				Revision int64 `json:"revision"`
				KVs      []KV  `json:"kvs"`
				More     bool  `json:"more"`
			}
			if err := decodeJSON(resp, &body); err != nil {
				return err
			}
			if body.Revision != 0 {
				m.Revision = body.Revision
			}
			out.KVs, out.More = body.KVs, body.More
			return nil
		})
	if err != nil {
		return nil, err
	}
	out.Meta = *m
	return out, nil
}

// keyPath returns the escaped request path for key: each "/"-separated
// segment is escaped on its own and the slashes are kept.
func keyPath(key string) (string, error) {
	if key == "" {
		return "", fmt.Errorf("client: %w: empty key", ErrInvalidArgument)
	}
	return "/v1/kv/" + escapeKey(key), nil
}

// escapeKey escapes key for a request path: each "/"-separated segment on
// its own, keeping the slashes, and "." and ".." segments escaped so that
// nothing cleans them away.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		switch s {
		case ".":
			segs[i] = "%2E"
		case "..":
			segs[i] = "%2E%2E"
		default:
			segs[i] = url.PathEscape(s)
		}
	}
	return strings.Join(segs, "/")
}
