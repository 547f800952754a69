package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/raftnode/batch"
	"github.com/cairn-kv/cairn/store"
)

// Node is what the API needs from the consensus layer.
type Node interface {
	ID() string
	IsLeader() bool
	// WaitForLeader waits (at most wait) for a leader whose HTTP address
	// is known and returns it; at once, without a timer, when one is.
	WaitForLeader(ctx context.Context, wait time.Duration) (id, httpAddr string, err error)
	Apply(ctx context.Context, cmd *store.Command) (*store.Result, error)
	// ApplyAll applies each command as Apply would, queued together.
	ApplyAll(ctx context.Context, cmds []*store.Command) ([]*store.Result, []error)
	ReadIndex(ctx context.Context) (uint64, error)
	LeaderRead(ctx context.Context) error
	WaitApplied(ctx context.Context, index uint64) error
	Status() raftnode.Status
	Ready() bool
	Members() ([]raftnode.Member, error)
	AddMember(ctx context.Context, m store.Member) error
	RemoveMember(ctx context.Context, id string) error
}

// Store is what the API reads from the state machine.
type Store interface {
	Get(key string) (store.KV, int64, error)
	List(opts store.ListOptions) ([]store.KV, bool, int64, error)
	Revision() int64
	WaitRevision(ctx context.Context, rev int64) error
	Watch(key string, prefix bool, from int64) (*store.Watcher, error)
	Hash() (sum uint64, appliedIndex uint64, err error)
	Snapshot() (*store.Snapshot, error)
}

// Config configures a Handler.
type Config struct {
	// MaxValueSize is the largest value (and request body) accepted, in
	// bytes. Zero means 1 MiB.
	MaxValueSize int64
	// RequestTimeout bounds each request, forwarding included (not
	// watches). Zero means 10s.
	RequestTimeout time.Duration
	// LeaderWait is how long a request waits for a leader to be known
	// before failing with no_leader. Zero means 3s.
	LeaderWait time.Duration
	// ForwardClient carries requests forwarded to the leader. Nil means a
	// client with kept-alive connections and no overall timeout.
	ForwardClient *http.Client
	// Logger receives the API's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every field set.
func DefaultConfig() Config {
	return Config{MaxValueSize: 1 << 20, RequestTimeout: 10 * time.Second, LeaderWait: 3 * time.Second}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.MaxValueSize < 0 {
		return fmt.Errorf("httpapi: MaxValueSize must not be negative, got %d", c.MaxValueSize)
	}
	if c.RequestTimeout < 0 || c.LeaderWait < 0 {
		return errors.New("httpapi: timeouts must not be negative")
	}
	return nil
}

// NewForwardClient returns the HTTP client nodes use to talk to each other:
// persistent connections, many per peer, no overall timeout (each request
// carries its own context).
func NewForwardClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	return &http.Client{Transport: t}
}

// Handler serves the v1 API.
type Handler struct {
	cfg   Config
	log   *slog.Logger
	node  Node
	store Store
	fwd   *http.Client
	ri    readIndexClient
	fwdw  *batch.Batcher[[]byte, forwarded]
	// streams and riStreams are this node's idle connections carrying
	// forwarded writes, and read index requests, to the leader (see
	// fwdstream.go).
	streams   fwdStreams
	riStreams fwdStreams

	closeOnce sync.Once
	closing   chan struct{}
	// streamMu orders Close against streamFrames, the frames of forwarded
	// writes and read index requests being served on streams.
	streamMu     sync.Mutex
	streamFrames sync.WaitGroup
	// drained is cancelled a moment after Close, ending requests still
	// waiting (for a leader, say) so that shutdown stays prompt.
	drained     context.Context
	stopDrained context.CancelFunc
	// deadlines gives requests their timeout (see timed).
	deadlines *deadlines
}

// BaseContext is for http.Server.BaseContext. Every request served from
// it ends when the handler drains (a moment after Close), also those that
// run without the request timeout (snapshots and other answers relayed
// from the leader). On a server without it, only the timed requests end
// at drain.
func (h *Handler) BaseContext(net.Listener) context.Context { return h.drained }

// closeGrace is how long requests in flight at Close may still run.
const closeGrace = 2 * time.Second

// Close ends open watch streams at once (each gets a final error line
// telling the client to resume elsewhere) and requests still running
// after a short grace period, so that a server shutdown need not wait
// for them. It returns once the batches of forwarded writes being applied
// for followers are done (at most the grace period); later ones are
// refused, and the followers send them on to the next leader.
func (h *Handler) Close() {
	h.closeOnce.Do(func() {
		h.streamMu.Lock()
		close(h.closing)
		h.streamMu.Unlock()
		time.AfterFunc(closeGrace, func() {
			h.stopDrained()
			h.streams.closeAll()
			h.riStreams.closeAll()
		})
		// Frames being served on streams finish first (within the grace
		// period): the server's Shutdown does not wait for them.
		done := make(chan struct{})
		go func() {
			h.streamFrames.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(closeGrace):
		}
	})
}

// New returns the API handler for node and its store.
func New(cfg Config, node Node, st Store) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := DefaultConfig()
	if cfg.MaxValueSize == 0 {
		cfg.MaxValueSize = d.MaxValueSize
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = d.RequestTimeout
	}
	if cfg.LeaderWait == 0 {
		cfg.LeaderWait = d.LeaderWait
	}
	if cfg.ForwardClient == nil {
		cfg.ForwardClient = NewForwardClient()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "httpapi"), node: node, store: st, fwd: cfg.ForwardClient, closing: make(chan struct{})}
	h.drained, h.stopDrained = context.WithCancel(context.Background())
	h.deadlines = newDeadlines(h.drained, cfg.RequestTimeout)
	h.fwdw = batch.New(batch.Config[[]byte, forwarded]{
		MaxInflight: forwardInflight,
		MaxItems:    store.MaxBatch,
		MaxSize:     1 << 20,
		Size:        func(b []byte) int { return len(b) },
		Run:         h.sendWrites,
	})
	h.ri.h = h
	h.streams = fwdStreams{proto: streamProtocol, max: forwardInflight}
	h.riStreams = fwdStreams{proto: readIndexProtocol, max: 1}
	return h, nil
}

const (
	headerRevision       = "X-Cairn-Revision"
	headerModRevision    = "X-Cairn-Mod-Revision"
	headerCreateRevision = "X-Cairn-Create-Revision"
	headerVersion        = "X-Cairn-Version"
	headerNode           = "X-Cairn-Node"
	headerHops           = "X-Cairn-Hops"
	headerIdempotency    = "Idempotency-Key"
	maxHops              = 3
)

// ServeHTTP routes a request. Routing is by hand, not http.ServeMux, so
// that keys keep every byte (the mux would clean "a//b" and redirect) and
// unknown paths and wrong methods get JSON errors.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(headerNode, h.node.ID())
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			h.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", p)
			h.writeError(w, fmt.Errorf("internal error"))
		}
	}()
	// A query that does not parse must not silently lose its conditions
	// (url.Values drops the bad pairs: ?cas=%zz would become unconditional).
	if r.URL.RawQuery != "" {
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			h.writeError(w, badArg("malformed query string: "+err.Error()))
			return
		}
	}
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/v1/kv/"):
		key := path[len("/v1/kv/"):]
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			if key == "" {
				h.withTimeout(h.list)(w, r, key)
			} else {
				h.get(w, r, key) // sets its own deadline if it waits
			}
		case http.MethodPut:
			h.withTimeout(h.put)(w, r, key)
		case http.MethodDelete:
			h.withTimeout(h.delete)(w, r, key)
		default:
			h.methodNotAllowed(w, "GET, PUT, DELETE")
		}
	case strings.HasPrefix(path, "/v1/watch/"):
		if r.Method != http.MethodGet {
			h.methodNotAllowed(w, "GET")
			return
		}
		h.watch(w, r, path[len("/v1/watch/"):])
	case path == "/v1/txn":
		if r.Method != http.MethodPost {
			h.methodNotAllowed(w, "POST")
			return
		}
		h.withTimeout(h.txn)(w, r, "")
	case path == "/v1/snapshot":
		if r.Method != http.MethodGet {
			h.methodNotAllowed(w, "GET")
			return
		}
		h.snapshot(w, r)
	case path == "/v1/status":
		if r.Method != http.MethodGet {
			h.methodNotAllowed(w, "GET")
			return
		}
		h.withTimeout(h.status)(w, r, "")
	case path == "/v1/cluster/members":
		switch r.Method {
		case http.MethodGet:
			h.members(w, r)
		case http.MethodPost:
			h.withTimeout(h.addMember)(w, r, "")
		default:
			h.methodNotAllowed(w, "GET, POST")
		}
	case strings.HasPrefix(path, "/v1/cluster/members/"):
		if r.Method != http.MethodDelete {
			h.methodNotAllowed(w, "DELETE")
			return
		}
		h.withTimeout(h.removeMember)(w, r, path[len("/v1/cluster/members/"):])
	case path == streamPath:
		if r.Method != http.MethodGet {
			h.methodNotAllowed(w, "GET")
			return
		}
		h.applyStream(w, r)
	case path == applyPath:
		if r.Method != http.MethodPost {
			h.methodNotAllowed(w, "POST")
			return
		}
		h.withTimeout(h.internalApply)(w, r, "")
	case path == readIndexPath:
		if r.Method != http.MethodGet {
			h.methodNotAllowed(w, "GET")
			return
		}
		h.withTimeout(h.readIndex)(w, r, "")
	case path == "/healthz":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.methodNotAllowed(w, "GET")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	case path == "/readyz":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.methodNotAllowed(w, "GET")
			return
		}
		if !h.node.Ready() {
			h.writeError(w, fmt.Errorf("%w: no leader known or still catching up", ErrNotReady))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	default:
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no such endpoint: " + r.Method + " " + path, Code: "not_found"})
	}
}

func (h *Handler) methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method not allowed; use " + allow, Code: "method_not_allowed"})
}

type keyHandler func(w http.ResponseWriter, r *http.Request, key string)

func (h *Handler) withTimeout(fn keyHandler) keyHandler {
	return func(w http.ResponseWriter, r *http.Request, key string) {
		fn(w, h.timed(r), key)
	}
}

// consistency is a read's consistency level.
type consistency int

const (
	linearizable consistency = iota
	leaderOnly
	stale
)

func parseConsistency(s string) (consistency, error) {
	switch s {
	case "", "linearizable":
		return linearizable, nil
	case "leader":
		return leaderOnly, nil
	case "stale":
		return stale, nil
	}
	return 0, badArg(fmt.Sprintf("consistency must be linearizable, leader or stale, not %q", s))
}

func parseInt(q map[string][]string, name string, min int64) (int64, bool, error) {
	vs, ok := q[name]
	if !ok || len(vs) == 0 {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(vs[0], 10, 64)
	if err != nil || v < min {
		return 0, false, badArg(fmt.Sprintf("%s must be an integer of at least %d, not %q", name, min, vs[0]))
	}
	return v, true, nil
}

func parseBool(q map[string][]string, name string) (bool, error) {
	vs, ok := q[name]
	if !ok || len(vs) == 0 {
		return false, nil
	}
	if vs[0] == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(vs[0])
	if err != nil {
		return false, badArg(fmt.Sprintf("%s must be true or false, not %q", name, vs[0]))
	}
	return b, nil
}

// readFence makes the local store fit to serve a read of the given
// consistency. It reports forward=true when the read must go to the leader.
func (h *Handler) readFence(r *http.Request, c consistency) (forward bool, err error) {
	ctx := r.Context()
	switch c {
	case linearizable:
		if !h.node.IsLeader() {
			// Ask the leader only for the index to wait for, then serve
			// the read from this node's store; fall back to forwarding
			// the whole read if the leader cannot be asked.
			idx, err := h.ri.get(ctx)
			if errors.Is(err, raftnode.ErrNoLeader) || errors.Is(err, raftnode.ErrTimeout) {
				return false, err
			}
			if err != nil {
				return true, nil
			}
			return false, h.node.WaitApplied(ctx, idx)
		}
		idx, err := h.node.ReadIndex(ctx)
		if errors.Is(err, raftnode.ErrNotLeader) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		return false, h.node.WaitApplied(ctx, idx)
	case leaderOnly:
		if !h.node.IsLeader() {
			return true, nil
		}
		err := h.node.LeaderRead(ctx)
		if errors.Is(err, raftnode.ErrNotLeader) {
			return true, nil
		}
		return false, err
	}
	return false, nil
}

// readyToRead applies a read's ?consistency and ?min_revision: it makes
// the local store fit to serve the read, or forwards the request to the
// leader, or writes the error. It reports whether the caller should now
// serve the read from the local store.
func (h *Handler) readyToRead(w http.ResponseWriter, r *http.Request, q url.Values) bool {
	c, err := parseConsistency(q.Get("consistency"))
	if err != nil {
		h.writeError(w, err)
		return false
	}
	if _, _, err := parseInt(q, "min_revision", 0); err != nil {
		h.writeError(w, err)
		return false
	}
	fwd, err := h.readFence(r, c)
	if fwd {
		h.forward(w, r, nil)
		return false
	}
	if err == nil {
		err = h.waitMinRevision(r, q)
	}
	if err != nil {
		h.writeError(w, err)
		return false
	}
	return true
}

// keyOrPrefix reads ?prefix=true and validates key as a key, or as a
// prefix (which may be empty) when it is set.
func keyOrPrefix(q url.Values, key string) (bool, error) {
	prefix, err := parseBool(q, "prefix")
	if err != nil {
		return false, err
	}
	if prefix {
		return true, store.ValidatePrefix(key)
	}
	return false, store.ValidateKey(key)
}

// waitMinRevision applies ?min_revision=N: wait until this node has
// applied revision N, bounded by the request's deadline. The wait also
// ends when the client goes away: unlike a write, it has nothing under
// way to see through, and a client retrying short waits would otherwise
// leave one waiting request per attempt until the server's timeout.
func (h *Handler) waitMinRevision(r *http.Request, q map[string][]string) error {
	rev, ok, err := parseInt(q, "min_revision", 0)
	if err != nil || !ok || rev == 0 {
		return err
	}
	ctx := r.Context()
	if tc, ok := ctx.(*timedCtx); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(tc)
		defer cancel()
		defer context.AfterFunc(tc.req, cancel)()
	}
	if err := h.store.WaitRevision(ctx, rev); err != nil {
		return fmt.Errorf("%w: revision %d not reached (at %d)", raftnode.ErrTimeout, rev, h.store.Revision())
	}
	return nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, key string) {
	if err := store.ValidateKey(key); err != nil {
		h.writeError(w, err)
		return
	}
	q := r.URL.Query()
	// A stale read without min_revision never waits: it needs no deadline.
	if q.Get("consistency") != "stale" || q.Has("min_revision") {
		r = h.timed(r)
	}
	if !h.readyToRead(w, r, q) {
		return
	}
	kv, rev, err := h.store.Get(key)
	w.Header().Set(headerRevision, itoa(rev))
	if err != nil {
		h.writeError(w, err)
		return
	}
	hd := w.Header()
	hd.Set(headerModRevision, itoa(kv.ModRevision))
	hd.Set(headerCreateRevision, itoa(kv.CreateRevision))
	hd.Set(headerVersion, itoa(kv.Version))
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Length", strconv.Itoa(len(kv.Value)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(kv.Value)
	}
}

// readBody reads a request body up to the configured limit.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > h.cfg.MaxValueSize {
		return nil, fmt.Errorf("%w: body of %d bytes is over the limit of %d", ErrTooLarge, r.ContentLength, h.cfg.MaxValueSize)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxValueSize))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, fmt.Errorf("%w: body is over the limit of %d bytes", ErrTooLarge, h.cfg.MaxValueSize)
	}
	if err != nil {
		return nil, badArg("cannot read request body: " + err.Error())
	}
	return body, nil
}

// parseCAS reads ?cas=R: -1 when absent.
func parseCAS(q map[string][]string) (int64, error) {
	v, ok, err := parseInt(q, "cas", 0)
	if err != nil || !ok {
		return -1, err
	}
	return v, nil
}

func (h *Handler) put(w http.ResponseWriter, r *http.Request, key string) {
	if err := store.ValidateKey(key); err != nil {
		h.writeError(w, err)
		return
	}
	q := r.URL.Query()
	cas, err := parseCAS(q)
	if err != nil {
		h.writeError(w, err)
		return
	}
	var ttl time.Duration
	if s := q.Get("ttl"); s != "" {
		ttl, err = time.ParseDuration(s)
		if err != nil || ttl < time.Second || ttl > 365*24*time.Hour {
			h.writeError(w, badArg(fmt.Sprintf("ttl must be a duration from 1s to 8760h such as 30s, not %q", s)))
			return
		}
	}
	body, err := h.readBody(w, r)
	if err != nil {
		h.writeError(w, err)
		return
	}
	h.write(w, r, body, func() *store.Command {
		var exp int64
		if ttl > 0 {
			exp = time.Now().Add(ttl).UnixNano()
		}
		return store.NewPut(key, body, cas, exp)
	}, func(b []byte, res *store.Result) []byte {
		b = append(b, `{"revision":`...)
		b = strconv.AppendInt(b, res.Revision, 10)
		return append(b, "}\n"...)
	})
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request, key string) {
	q := r.URL.Query()
	prefix, err := keyOrPrefix(q, key)
	if err != nil {
		h.writeError(w, err)
		return
	}
	cas, err := parseCAS(q)
	if err != nil {
		h.writeError(w, err)
		return
	}
	if prefix && cas >= 0 {
		h.writeError(w, badArg("cas cannot be combined with prefix"))
		return
	}
	h.write(w, r, nil, func() *store.Command {
		return store.NewDelete(key, prefix, cas)
	}, func(b []byte, res *store.Result) []byte {
		b = append(b, `{"deleted":`...)
		b = strconv.AppendInt(b, res.Deleted, 10)
		b = append(b, `,"revision":`...)
		b = strconv.AppendInt(b, res.Revision, 10)
		return append(b, "}\n"...)
	})
}

// write runs a write on the leader, or forwards it there. A failed compare
// of a single-key CAS is a 409. answer appends the JSON answer of a
// success to its argument (by hand: this is the hot path of every write).
func (h *Handler) write(w http.ResponseWriter, r *http.Request, body []byte, mk func() *store.Command, answer func([]byte, *store.Result) []byte) {
	idem, err := idempotencyKey(r)
	if err != nil {
		h.writeError(w, err)
		return
	}
	res, err := h.applyOrForward(w, r, body, func() *store.Command {
		cmd := mk()
		cmd.IdempotencyKey = idem
		return cmd
	})
	if res == nil && err == nil {
		return // forwarded
	}
	if err != nil {
		h.writeError(w, err)
		return
	}
	w.Header().Set(headerRevision, itoa(res.Revision))
	if !res.Succeeded && res.Conflict != nil {
		h.writeError(w, res.Conflict)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	var buf [96]byte // the longest answer, a DELETE's, is 65 bytes
	w.Write(answer(buf[:0], res))
}

// applyOrForward applies a write here if this node leads, or sends it to
// the leader (forwardWrite). It returns the result to answer, or an error
// to write, or (nil, nil) when the request was already answered.
func (h *Handler) applyOrForward(w http.ResponseWriter, r *http.Request, body []byte, mk func() *store.Command) (*store.Result, error) {
	if !h.node.IsLeader() {
		return h.forwardWrite(w, r, body, mk)
	}
	res, err := h.applyHere(r.Context(), mk)
	if errors.Is(err, raftnode.ErrNotLeader) {
		return h.forwardWrite(w, r, body, mk)
	}
	return res, err
}

// applyHere applies a write on this node, the leader. A leader that is
// handing leadership over refuses new writes for a moment: the write waits
// (up to LeaderWait) until this node either takes it or is no longer the
// leader (ErrNotLeader).
func (h *Handler) applyHere(ctx context.Context, mk func() *store.Command) (*store.Result, error) {
	deadline := time.Now().Add(h.cfg.LeaderWait)
	for {
		res, err := h.node.Apply(ctx, mk())
		if !errors.Is(err, raftnode.ErrNotLeader) || !h.node.IsLeader() || time.Now().After(deadline) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return nil, raftnode.ErrTimeout
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// idempotencyKey reads the Idempotency-Key header.
func idempotencyKey(r *http.Request) (string, error) {
	k := r.Header.Get(headerIdempotency)
	if len(k) > store.MaxIdempotencyKeyLen {
		return "", badArg(fmt.Sprintf("Idempotency-Key is %d bytes; the limit is %d", len(k), store.MaxIdempotencyKeyLen))
	}
	return k, nil
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
