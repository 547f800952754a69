package httpapi

import (
	"encoding/base64"
	"net/http"
	"unicode/utf8"

	"github.com/cairn-kv/cairn/store"
)

// maxListLimit caps one page of a listing.
const maxListLimit = 1000

// kvJSON is a key in listings, transaction results and watch events.
// Values that are valid UTF-8 travel in Value, others in ValueBase64.
type kvJSON struct {
	Key            string  `json:"key"`
	Value          *string `json:"value,omitempty"`
	ValueBase64    string  `json:"value_base64,omitempty"`
	CreateRevision int64   `json:"create_revision"`
	ModRevision    int64   `json:"mod_revision"`
	Version        int64   `json:"version"`
}

func toJSON(kv *store.KV) kvJSON {
	j := kvJSON{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version}
	if kv.Value != nil {
		if utf8.Valid(kv.Value) {
			s := string(kv.Value)
			j.Value = &s
		} else {
			j.ValueBase64 = base64.StdEncoding.EncodeToString(kv.Value)
		}
	}
	return j
}

type listJSON struct {
	Revision int64    `json:"revision"`
	KVs      []kvJSON `json:"kvs"`
	More     bool     `json:"more"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	prefix := q.Get("prefix")
	if err := store.ValidatePrefix(prefix); err != nil {
		h.writeError(w, err)
		return
	}
	after := q.Get("after")
	if after != "" {
		if err := store.ValidateKey(after); err != nil {
			h.writeError(w, err)
			return
		}
	}
	limit, ok, err := parseInt(q, "limit", 0)
	if err != nil {
		h.writeError(w, err)
		return
	}
	if !ok || limit == 0 || limit > maxListLimit {
		limit = maxListLimit
	}
	keysOnly, err := parseBool(q, "keys")
	if err != nil {
		h.writeError(w, err)
		return
	}
	if !h.readyToRead(w, r, q) {
		return
	}
	kvs, more, rev, err := h.store.List(store.ListOptions{Prefix: prefix, After: after, Limit: int(limit), KeysOnly: keysOnly})
	if err != nil {
		h.writeError(w, err)
		return
	}
	out := listJSON{Revision: rev, KVs: make([]kvJSON, len(kvs)), More: more}
	for i := range kvs {
		out.KVs[i] = toJSON(&kvs[i])
	}
	w.Header().Set(headerRevision, itoa(rev))
	writeJSON(w, http.StatusOK, out)
}
