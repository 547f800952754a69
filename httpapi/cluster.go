package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/cairn-kv/cairn/store"
)

type statusJSON struct {
	ID           string     `json:"id"`
	State        string     `json:"state"`
	Leader       leaderJSON `json:"leader"`
	Term         uint64     `json:"term"`
	CommitIndex  uint64     `json:"commit_index"`
	AppliedIndex uint64     `json:"applied_index"`
	LastLogIndex uint64     `json:"last_log_index"`
	Revision     int64      `json:"revision"`
	Hash         string     `json:"hash,omitempty"`
	HashIndex    uint64     `json:"hash_index,omitempty"`
}

type leaderJSON struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
}

// status reports this node's state; ?hash=true adds a checksum of the
// whole store (and the applied index it reflects), which reads every key.
func (h *Handler) status(w http.ResponseWriter, r *http.Request, _ string) {
	withHash, err := parseBool(r.URL.Query(), "hash")
	if err != nil {
		h.writeError(w, err)
		return
	}
	s := h.node.Status()
	out := statusJSON{
		ID: s.ID, State: s.State, Leader: leaderJSON{ID: s.LeaderID, HTTPAddr: s.LeaderHTTPAddr},
		Term: s.Term, CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex,
		LastLogIndex: s.LastLogIndex, Revision: s.Revision,
	}
	if withHash {
		sum, idx, err := h.store.Hash()
		if err != nil {
			h.writeError(w, err)
			return
		}
		out.Hash, out.HashIndex = fmt.Sprintf("%016x", sum), idx
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) members(w http.ResponseWriter, _ *http.Request) {
	ms, err := h.node.Members()
	if err != nil {
		h.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": ms})
}

// decodeJSON parses body strictly into v.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformedJSON, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrMalformedJSON)
	}
	return nil
}

func (h *Handler) addMember(w http.ResponseWriter, r *http.Request, _ string) {
	body, err := h.readBody(w, r)
	if err != nil {
		h.writeError(w, err)
		return
	}
	var m store.Member
	if err := decodeJSON(body, &m); err != nil {
		h.writeError(w, err)
		return
	}
	if m.ID == "" || m.RaftAddr == "" || m.HTTPAddr == "" {
		h.writeError(w, badArg("a member needs id, raft_addr and http_addr"))
		return
	}
	if len(m.ID) > 128 || len(m.RaftAddr) > store.MaxMemberFieldLen || len(m.HTTPAddr) > store.MaxMemberFieldLen {
		h.writeError(w, badArg("member id is limited to 128 bytes and addresses to 256"))
		return
	}
	if !h.node.IsLeader() {
		h.forward(w, r, body)
		return
	}
	if err := h.node.AddMember(r.Context(), m); err != nil {
		h.writeError(w, err)
		return
	}
	h.members(w, r)
}

func (h *Handler) removeMember(w http.ResponseWriter, r *http.Request, id string) {
	if id == "" {
		h.writeError(w, badArg("member id missing"))
		return
	}
	if !h.node.IsLeader() {
		h.forward(w, r, nil)
		return
	}
	if err := h.node.RemoveMember(r.Context(), id); err != nil {
		h.writeError(w, err)
		return
	}
	h.members(w, r)
}
