package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"
)

// CmpTarget is what a comparison of a transaction looks at.
type CmpTarget string

// Comparison targets, for Cmp.Target.
const (
	// TargetValue compares the key's value (as bytes).
	TargetValue CmpTarget = "value"
	// TargetModRevision compares the revision of the key's last change
	// (0 when the key does not exist).
	TargetModRevision CmpTarget = "mod_revision"
	// TargetCreateRevision compares the revision at which the key was
	// created (0 when it does not exist).
	TargetCreateRevision CmpTarget = "create_revision"
	// TargetVersion compares the number of writes since the key was
	// created (0 when it does not exist).
	TargetVersion CmpTarget = "version"
	// TargetExists compares whether the key exists.
	TargetExists CmpTarget = "exists"
)

// Comparison operators, for Cmp.Op.
const (
	Equal    = "=="
	NotEqual = "!="
	Less     = "<"
	Greater  = ">"
)

// Cmp is one comparison of a transaction. Build it with Compare, as in
// client.Compare("a").ModRevision("==", 5), or fill it in directly.
type Cmp struct {
	// Key is the key compared.
	Key string
	// Target is what is compared.
	Target CmpTarget
	// Op is "==", "!=", "<" or ">" (Equal, NotEqual, Less, Greater).
	Op string
	// Value is the operand of a TargetValue comparison.
	Value []byte
	// Number is the operand of a TargetModRevision, TargetCreateRevision
	// or TargetVersion comparison.
	Number int64
	// Exists is the operand of a TargetExists comparison.
	Exists bool
}

// CmpKey starts a comparison on a key; see Compare.
type CmpKey struct{ key string }

// Compare starts a comparison on key; finish it with one of CmpKey's
// methods, e.g. client.Compare("a").ModRevision("==", 5) or
// client.Compare("lock").NotExists().
func Compare(key string) CmpKey { return CmpKey{key: key} }

// Value compares the key's value with v using op ("==", "!=", "<", ">";
// byte-wise). A missing key compares as not equal to anything.
func (k CmpKey) Value(op string, v []byte) Cmp {
	return Cmp{Key: k.key, Target: TargetValue, Op: op, Value: v}
}

// ModRevision compares the key's mod revision (0 if absent) with rev.
func (k CmpKey) ModRevision(op string, rev int64) Cmp {
	return Cmp{Key: k.key, Target: TargetModRevision, Op: op, Number: rev}
}

// CreateRevision compares the key's create revision (0 if absent) with rev.
func (k CmpKey) CreateRevision(op string, rev int64) Cmp {
	return Cmp{Key: k.key, Target: TargetCreateRevision, Op: op, Number: rev}
}

// Version compares the key's version (0 if absent) with v.
func (k CmpKey) Version(op string, v int64) Cmp {
	return Cmp{Key: k.key, Target: TargetVersion, Op: op, Number: v}
}

// Exists holds when the key exists.
func (k CmpKey) Exists() Cmp {
	return Cmp{Key: k.key, Target: TargetExists, Op: Equal, Exists: true}
}

// NotExists holds when the key does not exist.
func (k CmpKey) NotExists() Cmp {
	return Cmp{Key: k.key, Target: TargetExists, Op: Equal, Exists: false}
}

// OpType is the kind of an operation in a transaction.
type OpType string

// Operation types, for Op.Type and OpResult.Type.
const (
	OpTypeGet    OpType = "get"
	OpTypePut    OpType = "put"
	OpTypeDelete OpType = "delete"
)

// Op is one operation of a transaction. Build it with OpGet, OpPut or
// OpDelete, or fill it in directly.
type Op struct {
	// Type is the kind of operation.
	Type OpType
	// Key is the key read, written or deleted; with Prefix, the prefix.
	Key string
	// Value is the value a put writes; nil writes an empty value.
	Value []byte
	// TTL makes the key a put writes expire after this long (at least 1s
	// on the server); 0 means never.
	TTL time.Duration
	// Prefix makes a get read, or a delete remove, every key starting
	// with Key.
	Prefix bool
	// Limit caps how many keys a get returns; 0 means no limit.
	Limit int64

	err error // from the builder's options
}

// Options the operation builders accept.
const (
	opGetOpts    = optPrefix | optLimit
	opPutOpts    = optTTL
	opDeleteOpts = optPrefix
)

// OpGet reads key, or with WithPrefix every key under it (WithLimit caps
// how many), inside a transaction.
func OpGet(key string, opts ...Option) Op {
	o, err := buildOp("OpGet", opGetOpts, opts)
	if err != nil {
		return Op{Type: OpTypeGet, Key: key, err: err}
	}
	return Op{Type: OpTypeGet, Key: key, Prefix: o.set&optPrefix != 0, Limit: int64(o.limit)}
}

// OpPut writes value under key inside a transaction; WithTTL makes it
// expire.
func OpPut(key string, value []byte, opts ...Option) Op {
	o, err := buildOp("OpPut", opPutOpts, opts)
	if err != nil {
		return Op{Type: OpTypePut, Key: key, err: err}
	}
	return Op{Type: OpTypePut, Key: key, Value: value, TTL: o.ttl}
}

// OpDelete deletes key, or with WithPrefix every key under it, inside a
// transaction.
func OpDelete(key string, opts ...Option) Op {
	o, err := buildOp("OpDelete", opDeleteOpts, opts)
	if err != nil {
		return Op{Type: OpTypeDelete, Key: key, err: err}
	}
	return Op{Type: OpTypeDelete, Key: key, Prefix: o.set&optPrefix != 0}
}

// TxnRequest is an atomic transaction: if every comparison in Compare
// holds, the Success operations run, else the Failure ones, all at one
// revision. The server takes at most 128 comparisons and 128 operations
// per branch.
//
// Its JSON form is the body of POST /v1/txn (see MarshalJSON).
type TxnRequest struct {
	// Compare lists the conditions; all must hold (an empty list holds).
	Compare []Cmp
	// Success lists the operations run when every comparison holds.
	Success []Op
	// Failure lists the operations run otherwise.
	Failure []Op
}

// writes reports whether the transaction may change anything.
func (r *TxnRequest) writes() bool {
	for _, ops := range [][]Op{r.Success, r.Failure} {
		for _, o := range ops {
			if o.Type != OpTypeGet {
				return true
			}
		}
	}
	return false
}

// Wire forms of a transaction (docs/http-api.md, httpapi/txn.go).
type (
	txnJSON struct {
		Compare []cmpJSON `json:"compare"`
		Success []opJSON  `json:"success"`
		Failure []opJSON  `json:"failure"`
	}
	cmpJSON struct {
		Key         string          `json:"key"`
		Target      string          `json:"target"`
		Op          string          `json:"op"`
		Value       json.RawMessage `json:"value,omitempty"`
		ValueBase64 *string         `json:"value_base64,omitempty"`
	}
	opJSON struct {
		Op          string  `json:"op"`
		Key         string  `json:"key"`
		Value       *string `json:"value,omitempty"`
		ValueBase64 *string `json:"value_base64,omitempty"`
		Prefix      bool    `json:"prefix,omitempty"`
		TTL         string  `json:"ttl,omitempty"`
		Limit       int64   `json:"limit,omitempty"`
	}
	opResultJSON struct {
		Op       OpType `json:"op"`
		KVs      []KV   `json:"kvs,omitempty"`
		Revision int64  `json:"revision,omitempty"`
		Deleted  *int64 `json:"deleted,omitempty"`
	}
	txnResultJSON struct {
		Succeeded bool           `json:"succeeded"`
		Revision  int64          `json:"revision"`
		Results   []opResultJSON `json:"results"`
	}
)

// encodeValue puts b in the API's JSON form: a string when it is UTF-8,
// else base64.
func encodeValue(b []byte) (str, b64 *string) {
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return nil, &s
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("client: %w: %s", ErrInvalidArgument, fmt.Sprintf(format, args...))
}

func (c Cmp) toJSON() (cmpJSON, error) {
	j := cmpJSON{Key: c.Key, Target: string(c.Target), Op: c.Op}
	if c.Key == "" {
		return j, invalid("empty key")
	}
	switch c.Op {
	case Equal, NotEqual, Less, Greater:
	default:
		return j, invalid("comparison operator must be ==, !=, < or >, not %q", c.Op)
	}
	var err error
	switch c.Target {
	case TargetValue:
		var s *string
		s, j.ValueBase64 = encodeValue(c.Value)
		if s != nil {
			j.Value, err = json.Marshal(*s)
		}
	case TargetModRevision, TargetCreateRevision, TargetVersion:
		j.Value, err = json.Marshal(c.Number)
	case TargetExists:
		j.Value, err = json.Marshal(c.Exists)
	default:
		return j, invalid("comparison target must be value, mod_revision, create_revision, version or exists, not %q", c.Target)
	}
	return j, err
}

func (o Op) toJSON() (opJSON, error) {
	j := opJSON{Op: string(o.Type), Key: o.Key, Prefix: o.Prefix, Limit: o.Limit}
	switch {
	case o.err != nil:
		return j, o.err
	case o.Key == "" && !(o.Prefix && o.Type != OpTypePut):
		return j, invalid("empty key")
	case o.Limit < 0:
		return j, invalid("negative limit %d", o.Limit)
	case o.TTL < 0:
		return j, invalid("negative TTL %v", o.TTL)
	}
	switch o.Type {
	case OpTypePut:
		if o.Prefix {
			return j, invalid("a put cannot take a prefix")
		}
		j.Value, j.ValueBase64 = encodeValue(o.Value)
		if o.TTL > 0 {
			j.TTL = o.TTL.String()
		}
	case OpTypeGet, OpTypeDelete:
		if o.Value != nil || o.TTL != 0 {
			return j, invalid("a %s takes no value or TTL", o.Type)
		}
	default:
		return j, invalid("operation must be get, put or delete, not %q", o.Type)
	}
	return j, nil
}

// MarshalJSON encodes r as the body of POST /v1/txn:
//
//	{"compare": [{"key": "a", "target": "mod_revision", "op": "==", "value": 5}],
//	 "success": [{"op": "put", "key": "a", "value": "text", "ttl": "30s"}],
//	 "failure": [{"op": "get", "key": "a"}]}
//
// Values that are not UTF-8 go in "value_base64". It fails with
// ErrInvalidArgument for a comparison or operation the server would
// refuse for its shape (an unknown target or operator, an empty key...).
func (r TxnRequest) MarshalJSON() ([]byte, error) {
	t := txnJSON{Compare: []cmpJSON{}, Success: []opJSON{}, Failure: []opJSON{}}
	for i, c := range r.Compare {
		j, err := c.toJSON()
		if err != nil {
			return nil, fmt.Errorf("compare[%d]: %w", i, err)
		}
		t.Compare = append(t.Compare, j)
	}
	for _, br := range []struct {
		name string
		ops  []Op
		out  *[]opJSON
	}{{"success", r.Success, &t.Success}, {"failure", r.Failure, &t.Failure}} {
		for i, o := range br.ops {
			j, err := o.toJSON()
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", br.name, i, err)
			}
			*br.out = append(*br.out, j)
		}
	}
	return json.Marshal(t)
}

// UnmarshalJSON decodes the body of POST /v1/txn into r, strictly: unknown
// fields, values of the wrong type and unparsable TTLs are errors (that
// match ErrInvalidArgument).
func (r *TxnRequest) UnmarshalJSON(b []byte) error {
	var t txnJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return fmt.Errorf("client: %w: transaction JSON: %v", ErrInvalidArgument, err)
	}
	if dec.More() {
		return invalid("transaction JSON: data after the object")
	}
	out := TxnRequest{}
	for i, j := range t.Compare {
		c, err := j.decode()
		if err != nil {
			return fmt.Errorf("compare[%d]: %w", i, err)
		}
		out.Compare = append(out.Compare, c)
	}
	for _, br := range []struct {
		name string
		ops  []opJSON
		out  *[]Op
	}{{"success", t.Success, &out.Success}, {"failure", t.Failure, &out.Failure}} {
		for i, j := range br.ops {
			o, err := j.decode()
			if err != nil {
				return fmt.Errorf("%s[%d]: %w", br.name, i, err)
			}
			*br.out = append(*br.out, o)
		}
	}
	*r = out
	return nil
}

func decodeValue(s, b64 *string) ([]byte, error) {
	switch {
	case b64 != nil:
		v, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, invalid("value_base64 is not base64: %v", err)
		}
		return v, nil
	case s != nil:
		return []byte(*s), nil
	}
	return nil, nil
}

func (j cmpJSON) decode() (Cmp, error) {
	c := Cmp{Key: j.Key, Target: CmpTarget(j.Target), Op: j.Op}
	switch c.Target {
	case TargetValue:
		var s *string
		if j.ValueBase64 == nil {
			s = new(string)
			if err := json.Unmarshal(j.Value, s); err != nil {
				return c, invalid("a value comparison needs a string value (or value_base64)")
			}
		}
		v, err := decodeValue(s, j.ValueBase64)
		if err != nil {
			return c, err
		}
		c.Value = v
		return c, nil
	case TargetExists:
		if err := json.Unmarshal(j.Value, &c.Exists); err != nil {
			return c, invalid("an exists comparison needs value true or false")
		}
	case TargetModRevision, TargetCreateRevision, TargetVersion:
		if err := json.Unmarshal(j.Value, &c.Number); err != nil {
			return c, invalid("a %s comparison needs an integer value", j.Target)
		}
	default:
		return c, invalid("comparison target must be value, mod_revision, create_revision, version or exists, not %q", j.Target)
	}
	if j.ValueBase64 != nil {
		return c, invalid("value_base64 only goes with target value")
	}
	return c, nil
}

func (j opJSON) decode() (Op, error) {
	o := Op{Type: OpType(j.Op), Key: j.Key, Prefix: j.Prefix, Limit: j.Limit}
	v, err := decodeValue(j.Value, j.ValueBase64)
	if err != nil {
		return o, err
	}
	o.Value = v
	if o.Type == OpTypePut && o.Value == nil {
		o.Value = []byte{}
	}
	if j.TTL != "" {
		d, err := time.ParseDuration(j.TTL)
		if err != nil {
			return o, invalid("ttl %q is not a duration such as 30s", j.TTL)
		}
		o.TTL = d
	}
	return o, nil
}

// TxnResponse is the answer to Txn.
type TxnResponse struct {
	// Meta.Revision is the store revision after the transaction: the
	// revision its writes created, if it wrote anything.
	Meta
	// Succeeded says whether every comparison held, so that the Success
	// operations ran (else the Failure ones did).
	Succeeded bool
	// Results has one entry per operation of the branch that ran, in
	// order.
	Results []OpResult
}

// OpResult is the result of one operation of a transaction.
type OpResult struct {
	// Type is the kind of operation.
	Type OpType
	// KVs are the keys a get found, in key order (none when absent).
	KVs []KV
	// Revision is the revision a put created.
	Revision int64
	// Deleted is how many keys a delete removed.
	Deleted int64
}

// MarshalJSON encodes r in the API's form: {"succeeded", "revision",
// "results": [{"op", "kvs" | "revision" | "deleted"}]}.
func (r TxnResponse) MarshalJSON() ([]byte, error) {
	out := txnResultJSON{Succeeded: r.Succeeded, Revision: r.Revision, Results: make([]opResultJSON, len(r.Results))}
	for i, res := range r.Results {
		j := opResultJSON{Op: res.Type}
		switch res.Type {
		case OpTypeGet:
			j.KVs = res.KVs
			if j.KVs == nil {
				j.KVs = []KV{}
			}
		case OpTypePut:
			j.Revision = res.Revision
		case OpTypeDelete:
			d := res.Deleted
			j.Deleted = &d
		}
		out.Results[i] = j
	}
	return json.Marshal(out)
}

// Txn runs a transaction atomically: the comparisons are evaluated and
// the operations of the branch they select applied at one revision, with
// no other write in between.
//
//	resp, err := c.Txn(ctx, client.TxnRequest{
//		Compare: []client.Cmp{client.Compare("a").ModRevision("==", rev)},
//		Success: []client.Op{client.OpPut("a", []byte("new")), client.OpGet("b")},
//		Failure: []client.Op{client.OpGet("a")},
//	})
//
// A transaction that writes is retried under the rules for writes (see the
// package documentation); one that only reads is retried like a read.
// Option: WithIdempotencyKey.
func (c *Client) Txn(ctx context.Context, req TxnRequest, opts ...Option) (*TxnResponse, error) {
	o, err := buildOp("Txn", optIdempotencyKey, opts)
	if err != nil {
		return nil, err
	}
	body, err := req.MarshalJSON()
	if err != nil {
		return nil, err
	}
	out := &TxnResponse{}
	m, err := c.do(ctx, &request{
		method: http.MethodPost, path: "/v1/txn", body: body, contentType: "application/json",
		write: req.writes(), idemKey: o.idempotencyKey,
	}, func(resp *http.Response, m *Meta) error {
		var res txnResultJSON
		if err := decodeJSON(resp, &res); err != nil {
			return err
		}
		if res.Revision != 0 {
			m.Revision = res.Revision
		}
		out.Succeeded = res.Succeeded
		out.Results = make([]OpResult, len(res.Results))
		for i, r := range res.Results {
			out.Results[i] = OpResult{Type: r.Op, KVs: r.KVs, Revision: r.Revision}
			if r.Deleted != nil {
				out.Results[i].Deleted = *r.Deleted
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.Meta = *m
	return out, nil
}
