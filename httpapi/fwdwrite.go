package httpapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/raftnode/batch"
	"github.com/cairn-kv/cairn/store"
)

// applyPath is the internal endpoint followers send writes to, many in one
// request. Only the leader answers it; it is never forwarded.
const applyPath = "/v1/internal/apply"

// forwardInflight is how many requests of forwarded writes a follower
// keeps in flight to the leader before packing further writes together.
const forwardInflight = 4

// forwarded is the leader's answer to one forwarded write.
type forwarded struct {
	res      *store.Result // the write's result, when it was applied
	status   int           // else the HTTP status of the leader's error
	body     []byte        // and its JSON body
	node     string        // the leader's ID
	err      error         // a failure on the way (unknown outcome, no leader)
	fallback bool          // nothing was sent: proxy the request instead
}

// forwardWrite sends a write to the leader, packed with the other writes
// this follower is forwarding at the time, in the compact binary form of
// the log. It returns the result to answer as if the write were local, or
// an error to write, or (nil, nil) once it has answered itself. When the
// leader cannot be reached before anything is sent, it falls back to
// proxying the request, which waits for a new leader.
func (h *Handler) forwardWrite(w http.ResponseWriter, r *http.Request, body []byte, mk func() *store.Command) (*store.Result, error) {
	hops := r.Header.Get(headerHops)
	if hops != "" {
		// Already forwarded once (by an older node, or a proxy loop):
		// keep to the plain path and its hop limit.
		h.forward(w, r, body)
		return nil, nil
	}
	cmd := mk()
	// Expiry times travel relative to now, so the leader's clock decides
	// them, as for a write it receives itself.
	now := time.Now().UnixNano()
	for _, ops := range [][]store.TxnOp{cmd.Txn.Success, cmd.Txn.Failure} {
		for i := range ops {
			if ops[i].ExpiresAt > 0 {
				ops[i].ExpiresAt = max(1, ops[i].ExpiresAt-now)
			}
		}
	}
	out, err := h.fwdw.Do(r.Context(), cmd.Encode())
	switch {
	case errors.Is(err, batch.ErrNotSent):
		return nil, fmt.Errorf("%w: the write was not sent to the leader", raftnode.ErrTimeout)
	case err != nil:
		return nil, raftnode.ErrUnknownOutcome
	case out.fallback:
		h.forward(w, r, body)
		return nil, nil
	}
	if out.node != "" {
		w.Header().Set(headerNode, out.node)
	}
	if out.err != nil {
		return nil, out.err
	}
	if out.res == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(out.status)
		w.Write(out.body)
		return nil, nil
	}
	return out.res, nil
}

// sendWrites sends one batch of forwarded writes to the leader.
func (h *Handler) sendWrites(cmds [][]byte) []forwarded {
	out := make([]forwarded, len(cmds))
	all := func(f forwarded) []forwarded {
		for i := range out {
			out[i] = f
		}
		return out
	}
	ctx := h.deadlines.at(time.Now())
	addr, err := h.leaderAddr(ctx)
	if err != nil || addr == "" {
		// No leader yet, or this node leads now: the plain path knows how
		// to wait for one, or to serve the write here.
		return all(forwarded{fallback: true})
	}
	size := binary.MaxVarintLen64
	for _, c := range cmds {
		size += binary.MaxVarintLen64 + len(c)
	}
	pack := binary.AppendUvarint(make([]byte, 0, size), uint64(len(cmds)))
	for _, c := range cmds {
		pack = binary.AppendUvarint(pack, uint64(len(c)))
		pack = append(pack, c...)
	}
	if out, ok := h.sendPackStream(ctx, addr, pack, len(cmds)); ok {
		return out
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+applyPath, bytes.NewReader(pack))
	if err != nil {
		return all(forwarded{err: err})
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(headerHops, "1")
	resp, err := h.fwd.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return all(forwarded{fallback: true})
		}
		return all(forwarded{err: fmt.Errorf("%w: %v", raftnode.ErrUnknownOutcome, err)})
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The node was not (or no longer) the leader, or refused the batch
		// before applying any of it.
		io.Copy(io.Discard, resp.Body)
		return all(forwarded{fallback: true})
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return all(forwarded{err: fmt.Errorf("%w: %v", raftnode.ErrUnknownOutcome, err)})
	}
	node := resp.Header.Get(headerNode)
	rd := bytes.NewReader(data)
	for i := range out {
		out[i] = readForwarded(rd)
		out[i].node = node
	}
	return out
}

// The answer to an apply request is, per write, a kind byte and then
// either an encoded store.Result or an HTTP status and a JSON error body.
const (
	answerResult byte = 0
	answerError  byte = 1
	// answerNotLeader: the node stopped leading before applying the write;
	// nothing was applied, and the follower sends it on the plain path.
	answerNotLeader byte = 2
)

// errBadAnswer is a forwarded write's outcome when the leader's answer
// cannot be read.
var errBadAnswer = fmt.Errorf("%w: malformed answer from the leader", raftnode.ErrUnknownOutcome)

func readForwarded(rd *bytes.Reader) forwarded {
	bad := forwarded{err: errBadAnswer}
	kind, err := rd.ReadByte()
	if err != nil {
		return bad
	}
	switch kind {
	case answerResult:
		b, ok := readBytes(rd)
		if !ok {
			return bad
		}
		res, err := store.DecodeResult(b)
		if err != nil {
			return bad
		}
		return forwarded{res: res}
	case answerError:
		status, err := binary.ReadUvarint(rd)
		body, ok := readBytes(rd)
		if err != nil || !ok || status < 400 || status > 599 {
			return bad
		}
		return forwarded{status: int(status), body: body}
	case answerNotLeader:
		return forwarded{fallback: true}
	}
	return bad
}

func readBytes(rd *bytes.Reader) ([]byte, bool) {
	n, err := binary.ReadUvarint(rd)
	if err != nil || n > uint64(rd.Len()) {
		return nil, false
	}
	b := make([]byte, n)
	_, err = io.ReadFull(rd, b)
	return b, err == nil
}

// internalApply applies the writes a follower forwarded, queued for group
// commit together, and answers each.
func (h *Handler) internalApply(w http.ResponseWriter, r *http.Request, _ string) {
	data, err := io.ReadAll(io.LimitReader(r.Body, h.maxPackBytes()))
	if err != nil {
		h.writeError(w, badArg("cannot read request body: "+err.Error()))
		return
	}
	answers, err := h.applyPack(r.Context(), data)
	if err != nil {
		h.writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	for _, a := range answers {
		w.Write(a)
	}
}

// applyPack applies a pack of forwarded writes (the body of a POST to
// applyPath, or a stream frame), queued for group commit together
// (Node.ApplyAll), and returns one encoded answer per write. An error means the pack
// was refused before any of it was applied.
func (h *Handler) applyPack(ctx context.Context, data []byte) ([][]byte, error) {
	if !h.node.IsLeader() {
		return nil, raftnode.ErrNotLeader
	}
	rd := bytes.NewReader(data)
	n, err := binary.ReadUvarint(rd)
	if err != nil || n == 0 || n > store.MaxBatch {
		return nil, badArg("malformed apply request")
	}
	cmds := make([]*store.Command, n)
	for i := range cmds {
		b, ok := readBytes(rd)
		if !ok {
			return nil, badArg("malformed apply request")
		}
		cmd, err := store.DecodeCommand(b)
		if err != nil || cmd.Op != store.OpTxn {
			return nil, badArg("malformed apply request: only transactions may be forwarded")
		}
		for _, ops := range [][]store.TxnOp{cmd.Txn.Success, cmd.Txn.Failure} {
			for _, op := range ops {
				if int64(len(op.Value)) > h.cfg.MaxValueSize {
					return nil, fmt.Errorf("%w: value of %d bytes is over the limit of %d", ErrTooLarge, len(op.Value), h.cfg.MaxValueSize)
				}
			}
		}
		cmds[i] = cmd
	}
	now := time.Now().UnixNano()
	for _, cmd := range cmds {
		for _, ops := range [][]store.TxnOp{cmd.Txn.Success, cmd.Txn.Failure} {
			for j := range ops {
				if ops[j].ExpiresAt > 0 {
					ops[j].ExpiresAt += now
				}
			}
		}
	}
	// All at once into group commit, from this goroutine. A write refused
	// because this node is handing leadership over gets applyHere's wait
	// for the outcome of the handover, as a write sent here alone would.
	answers := make([][]byte, n)
	results, errs := h.node.ApplyAll(ctx, cmds)
	var wg sync.WaitGroup
	for i := range cmds {
		if errors.Is(errs[i], raftnode.ErrNotLeader) && h.node.IsLeader() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := h.applyHere(ctx, func() *store.Command { return cmds[i] })
				answers[i] = h.packAnswer(res, err)
			}()
			continue
		}
		answers[i] = h.packAnswer(results[i], errs[i])
	}
	wg.Wait()
	return answers, nil
}

// packAnswer encodes the outcome of one forwarded write for the follower
// (see readForwarded).
func (h *Handler) packAnswer(res *store.Result, err error) []byte {
	if errors.Is(err, raftnode.ErrNotLeader) {
		return []byte{answerNotLeader}
	}
	if err != nil {
		status, body := classify(err)
		if status == http.StatusInternalServerError {
			h.log.Error("internal error", "err", err)
		}
		jb, _ := jsonBytes(body)
		a := []byte{answerError}
		a = binary.AppendUvarint(a, uint64(status))
		a = binary.AppendUvarint(a, uint64(len(jb)))
		return append(a, jb...)
	}
	enc := store.EncodeResult(res)
	a := make([]byte, 0, 1+binary.MaxVarintLen64+len(enc))
	a = append(a, answerResult)
	a = binary.AppendUvarint(a, uint64(len(enc)))
	return append(a, enc...)
}
