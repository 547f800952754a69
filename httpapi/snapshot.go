package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
)

// snapshot streams a consistent backup of the whole store: the framed,
// checksummed bbolt file that Raft snapshots also use. The read fence is
// the same as a read's (?consistency, default linearizable), so the backup
// holds every write acknowledged before the request. The stream itself is
// not bounded by the request timeout.
func (h *Handler) snapshot(w http.ResponseWriter, r *http.Request) {
	c, err := parseConsistency(r.URL.Query().Get("consistency"))
	if err != nil {
		h.writeError(w, err)
		return
	}
	fctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	fwd, err := h.readFence(r.WithContext(fctx), c)
	cancel()
	if fwd {
		h.forward(w, r, nil)
		return
	}
	if err != nil {
		h.writeError(w, err)
		return
	}
	sn, err := h.store.Snapshot()
	if err != nil {
		h.writeError(w, err)
		return
	}
	defer sn.Release()
	rev := sn.Revision()
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="cairn-%d.snap"`, rev))
	hd.Set(headerRevision, strconv.FormatInt(rev, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := sn.WriteTo(w); err != nil {
		// Headers are gone; the client sees a short body, which the
		// snapshot's length and checksum make detectable.
		h.log.Warn("snapshot stream ended early", "err", err)
	}
}
