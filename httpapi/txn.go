package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/cairn-kv/cairn/store"
)

// txnJSON is the body of POST /v1/txn.
type txnJSON struct {
	Compare []compareJSON `json:"compare"`
	Success []opJSON      `json:"success"`
	Failure []opJSON      `json:"failure"`
}

type compareJSON struct {
	Key         string          `json:"key"`
	Target      string          `json:"target"`
	Op          string          `json:"op"`
	Value       json.RawMessage `json:"value"`
	ValueBase64 *string         `json:"value_base64"`
}

type opJSON struct {
	Op          string  `json:"op"`
	Key         string  `json:"key"`
	Value       *string `json:"value"`
	ValueBase64 *string `json:"value_base64"`
	Prefix      bool    `json:"prefix"`
	TTL         string  `json:"ttl"`
	Limit       int64   `json:"limit"`
}

type opResultJSON struct {
	Op       string   `json:"op"`
	KVs      []kvJSON `json:"kvs,omitempty"`
	Revision int64    `json:"revision,omitempty"`
	Deleted  *int64   `json:"deleted,omitempty"`
}

type txnResultJSON struct {
	Succeeded bool           `json:"succeeded"`
	Revision  int64          `json:"revision"`
	Results   []opResultJSON `json:"results"`
}

var (
	targets = map[string]store.Target{"value": store.TargetValue, "mod_revision": store.TargetModRevision,
		"create_revision": store.TargetCreateRevision, "version": store.TargetVersion, "exists": store.TargetExists}
	cmpOps  = map[string]store.CmpOp{"==": store.CmpEqual, "!=": store.CmpNotEqual, "<": store.CmpLess, ">": store.CmpGreater}
	opTypes = map[string]store.OpType{"get": store.OpGet, "put": store.OpPut, "delete": store.OpDelete}
	opNames = map[store.OpType]string{store.OpGet: "get", store.OpPut: "put", store.OpDelete: "delete"}
)

// parseTxn turns the JSON body into a transaction, validating everything
// the state machine would refuse. TTLs are turned into expiry times at
// apply time (on the leader) by expiries.
func parseTxn(t *txnJSON, maxValue int64) (store.Txn, []time.Duration, error) {
	var out store.Txn
	if len(t.Compare) > store.MaxTxnOps || len(t.Success) > store.MaxTxnOps || len(t.Failure) > store.MaxTxnOps {
		return out, nil, badArg(fmt.Sprintf("a transaction takes at most %d compares and %d operations per branch", store.MaxTxnOps, store.MaxTxnOps))
	}
	for i, c := range t.Compare {
		cmp, err := parseCompare(&c)
		if err != nil {
			return out, nil, fmt.Errorf("compare[%d]: %w", i, err)
		}
		out.Compare = append(out.Compare, cmp)
	}
	var ttls []time.Duration
	parseOps := func(name string, ops []opJSON) ([]store.TxnOp, error) {
		var res []store.TxnOp
		for i, o := range ops {
			op, ttl, err := parseOp(&o, maxValue)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", name, i, err)
			}
			res = append(res, op)
			ttls = append(ttls, ttl)
		}
		return res, nil
	}
	var err error
	if out.Success, err = parseOps("success", t.Success); err != nil {
		return out, nil, err
	}
	if out.Failure, err = parseOps("failure", t.Failure); err != nil {
		return out, nil, err
	}
	return out, ttls, nil
}

func parseCompare(c *compareJSON) (store.Compare, error) {
	out := store.Compare{Key: c.Key}
	if err := store.ValidateKey(c.Key); err != nil {
		return out, err
	}
	var ok bool
	if out.Target, ok = targets[c.Target]; !ok {
		return out, badArg(fmt.Sprintf("target must be value, mod_revision, create_revision, version or exists, not %q", c.Target))
	}
	if out.Op, ok = cmpOps[c.Op]; !ok {
		return out, badArg(fmt.Sprintf("op must be ==, !=, < or >, not %q", c.Op))
	}
	switch out.Target {
	case store.TargetValue:
		if c.ValueBase64 != nil {
			b, err := base64.StdEncoding.DecodeString(*c.ValueBase64)
			if err != nil {
				return out, badArg("value_base64 is not base64")
			}
			out.Value = b
			return out, nil
		}
		var s string
		if err := json.Unmarshal(c.Value, &s); err != nil {
			return out, badArg("a value compare needs a string value (or value_base64)")
		}
		out.Value = []byte(s)
	case store.TargetExists:
		var b bool
		if err := json.Unmarshal(c.Value, &b); err != nil {
			return out, badArg("an exists compare needs value true or false")
		}
		if b {
			out.Num = 1
		}
	default:
		if err := json.Unmarshal(c.Value, &out.Num); err != nil {
			return out, badArg(fmt.Sprintf("a %s compare needs an integer value", c.Target))
		}
	}
	return out, nil
}

func parseOp(o *opJSON, maxValue int64) (store.TxnOp, time.Duration, error) {
	out := store.TxnOp{Key: o.Key, Prefix: o.Prefix, Limit: o.Limit}
	var ok bool
	if out.Type, ok = opTypes[o.Op]; !ok {
		return out, 0, badArg(fmt.Sprintf("op must be get, put or delete, not %q", o.Op))
	}
	check := store.ValidateKey
	if o.Prefix {
		if out.Type == store.OpPut {
			return out, 0, badArg("put cannot take prefix")
		}
		check = store.ValidatePrefix
	}
	if err := check(o.Key); err != nil {
		return out, 0, err
	}
	if o.Limit < 0 {
		return out, 0, badArg("limit must not be negative")
	}
	var ttl time.Duration
	if out.Type == store.OpPut {
		switch {
		case o.ValueBase64 != nil:
			b, err := base64.StdEncoding.DecodeString(*o.ValueBase64)
			if err != nil {
				return out, 0, badArg("value_base64 is not base64")
			}
			out.Value = b
		case o.Value != nil:
			out.Value = []byte(*o.Value)
		}
		if int64(len(out.Value)) > maxValue {
			return out, 0, fmt.Errorf("%w: value of %d bytes is over the limit of %d", ErrTooLarge, len(out.Value), maxValue)
		}
		if o.TTL != "" {
			d, err := time.ParseDuration(o.TTL)
			if err != nil || d < time.Second {
				return out, 0, badArg(fmt.Sprintf("ttl must be a duration of at least 1s, not %q", o.TTL))
			}
			ttl = d
		}
	} else if o.Value != nil || o.ValueBase64 != nil || o.TTL != "" {
		return out, 0, badArg(o.Op + " takes no value or ttl")
	}
	return out, ttl, nil
}

func (h *Handler) txn(w http.ResponseWriter, r *http.Request, _ string) {
	body, err := h.readBody(w, r)
	if err != nil {
		h.writeError(w, err)
		return
	}
	var t txnJSON
	if err := decodeJSON(body, &t); err != nil {
		h.writeError(w, err)
		return
	}
	txn, ttls, err := parseTxn(&t, h.cfg.MaxValueSize)
	if err != nil {
		h.writeError(w, err)
		return
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		h.writeError(w, err)
		return
	}
	res, err := h.applyOrForward(w, r, body, func() *store.Command {
		cmd := &store.Command{Op: store.OpTxn, Txn: txn, IdempotencyKey: idem}
		now := time.Now()
		ops := append(append([]*store.TxnOp{}, ptrs(cmd.Txn.Success)...), ptrs(cmd.Txn.Failure)...)
		for i, op := range ops {
			if ttls[i] > 0 {
				op.ExpiresAt = now.Add(ttls[i]).UnixNano()
			}
		}
		return cmd
	})
	if res == nil && err == nil {
		return // forwarded
	}
	if err != nil {
		h.writeError(w, err)
		return
	}
	out := txnResultJSON{Succeeded: res.Succeeded, Revision: res.Revision, Results: make([]opResultJSON, len(res.Ops))}
	for i, or := range res.Ops {
		j := opResultJSON{Op: opNames[or.Type]}
		switch or.Type {
		case store.OpGet:
			j.KVs = make([]kvJSON, len(or.KVs))
			for k := range or.KVs {
				j.KVs[k] = toJSON(&or.KVs[k])
			}
		case store.OpPut:
			j.Revision = res.Revision
		case store.OpDelete:
			d := or.Deleted
			j.Deleted = &d
		}
		out.Results[i] = j
	}
	w.Header().Set(headerRevision, itoa(res.Revision))
	writeJSON(w, http.StatusOK, out)
}

func ptrs(ops []store.TxnOp) []*store.TxnOp {
	out := make([]*store.TxnOp, len(ops))
	for i := range ops {
		out[i] = &ops[i]
	}
	return out
}
