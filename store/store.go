package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-kv/cairn/internal/mapped"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketKV      = []byte("kv")
	bucketTTL     = []byte("ttl")
	bucketMeta    = []byte("meta")
	bucketMembers = []byte("members")
	bucketIdem    = []byte("idem")
	bucketIdemAge = []byte("idem_age")

	metaApplied   = []byte("applied_index")
	metaRevision  = []byte("revision")
	metaIdemCount = []byte("idempotency_keys")
)

// MaxIdempotencyKeys caps how many idempotency keys the store remembers;
// past it the oldest are forgotten first.
const MaxIdempotencyKeys = 100000

// Config configures a Store.
type Config struct {
	// Path is the bbolt file. Required.
	Path string
	// NoSync, when true, skips the fsync of each bbolt commit. The Raft log
	// is the durable record, so this is safe against a process crash but
	// not against the machine losing power; see DESIGN.md. Zero (false)
	// fsyncs every commit.
	NoSync bool
	// CommitInterval is how long applied entries may wait in the open bbolt
	// write transaction before it is committed. Committing a batch of
	// Raft batches at once rewrites each touched page once instead of once
	// per batch; readers see applied writes at once either way (through an
	// in-memory overlay), and the Raft log holds everything not yet
	// committed. Zero means DefaultCommitInterval; negative commits after
	// every Apply.
	CommitInterval time.Duration
	// IdempotencyWindow is how long a write's Idempotency-Key is
	// remembered, measured on the leaders' clocks. Zero means 10 minutes.
	// It decides what Apply forgets, so it must be the same on every node.
	IdempotencyWindow time.Duration
	// Logger receives the store's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// DefaultCommitInterval is the default Config.CommitInterval.
const DefaultCommitInterval = 3 * time.Second

// maxPendingEntries and maxPendingBytes bound what an open write
// transaction holds before it is committed early.
const (
	maxPendingEntries = 8192
	maxPendingBytes   = 16 << 20
)

// DefaultConfig returns the configuration for a store at path.
func DefaultConfig(path string) Config {
	return Config{Path: path, IdempotencyWindow: 10 * time.Minute}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.Path == "" {
		return errors.New("store: Path is required")
	}
	if c.IdempotencyWindow < 0 {
		return fmt.Errorf("store: IdempotencyWindow must not be negative, got %v", c.IdempotencyWindow)
	}
	return nil
}

// KV is a key with its value and revisions.
type KV struct {
	// Key is the key.
	Key string
	// Value is the value; nil in keys-only listings.
	Value []byte
	// CreateRevision is the revision that created the key.
	CreateRevision int64
	// ModRevision is the revision of the key's last write.
	ModRevision int64
	// Version counts the writes since the key was created, starting at 1.
	Version int64
	// ExpiresAt is when the key expires, in Unix nanoseconds; 0 means never.
	ExpiresAt int64
}

// live reports whether kv has not expired at now (Unix nanoseconds).
func (kv *KV) live(now int64) bool { return kv.ExpiresAt == 0 || kv.ExpiresAt > now }

// Result is what applying one command produced.
type Result struct {
	// Revision is the store revision after the command.
	Revision int64
	// Succeeded says whether a transaction's compares all held.
	Succeeded bool
	// Deleted counts the keys the command deleted.
	Deleted int64
	// Ops holds one result per operation of the branch that ran.
	Ops []OpResult
	// Conflict, when a transaction failed, names the first compare that
	// did not hold and the key's current mod revision.
	Conflict *ConflictError
	// Err is set when the command could not be applied at all.
	Err error
	// Batch holds one result per command of an OpBatch.
	Batch []*Result
}

// OpResult is the result of one transaction operation.
type OpResult struct {
	// Type is the operation's type.
	Type OpType
	// KVs are the keys a get found.
	KVs []KV
	// Deleted counts the keys a delete removed.
	Deleted int64
}

// Entry is one committed Raft log entry handed to Apply.
type Entry struct {
	// Index is the entry's Raft index.
	Index uint64
	// Data is the encoded Command; nil for entries that only move the
	// applied index (configuration changes).
	Data []byte
}

// Event is one change to a key, as watches see it.
type Event struct {
	// Type is OpPut or OpDelete.
	Type OpType
	// KV is the key after a put, or the key and its deletion revision
	// (as ModRevision) after a delete.
	KV KV
}

// Store is the bbolt-backed state machine. Its methods are safe for
// concurrent use; Apply and Restore must only be called by the FSM.
type Store struct {
	cfg Config
	log *slog.Logger

	mu sync.RWMutex // guards db against Restore swapping it
	db *bolt.DB

	// applyMu serializes Apply, commits, Restore and Close. Applied
	// entries go into wtx, which is committed every CommitInterval (see
	// commitLocked); pending keeps them so a failed commit can be redone.
	applyMu      sync.Mutex
	wtx          *bolt.Tx
	pending      []Entry
	pendingBytes int
	pendingSince time.Time
	stopOnce     sync.Once
	stopFlush    chan struct{}
	flushDone    chan struct{}

	// ov holds the records of keys changed in wtx (nil for a deleted
	// key): readers look there first, then in the last commit. ovMu also
	// makes the overlay, revision and applied index move together.
	ovMu sync.RWMutex
	ov   map[string][]byte
	// ovTTL holds the overlay's records (as in ov) of the keys whose
	// change since the last commit set, moved or dropped a TTL, so that
	// the reaper (Expired) need not look through the whole overlay.
	ovTTL map[string][]byte

	// recent holds what writes need of the records of keys wtx read or
	// wrote lately (not the values), so a write need not search bbolt for
	// the record it replaces; the keys in dirty have their whole latest
	// record there too, not yet put into wtx (see flushKV). recent and
	// wtx together must always be the applied state: both are dropped
	// together (rollback, a failed commit, Restore), and a commit first
	// flushes the dirty records. Only the holder of applyMu touches them.
	recent map[string]*recentKey
	dirty  []string

	applied  atomic.Uint64
	revision atomic.Int64
	members  atomic.Pointer[map[string]Member]

	notifyMu sync.Mutex
	notifyCh chan struct{}

	watchers watchHub

	failOnce sync.Once
	failed   chan struct{}
	failErr  error
}

// Open opens (or creates) the store at cfg.Path.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.IdempotencyWindow == 0 {
		cfg.IdempotencyWindow = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CommitInterval == 0 {
		cfg.CommitInterval = DefaultCommitInterval
	}
	s := &Store{cfg: cfg, log: cfg.Logger.With("component", "store"), notifyCh: make(chan struct{}), failed: make(chan struct{}),
		ov: map[string][]byte{}, ovTTL: map[string][]byte{}, recent: map[string]*recentKey{}, stopFlush: make(chan struct{}), flushDone: make(chan struct{})}
	s.watchers.init()
	if err := markDirty(cfg.Path, cfg.NoSync); err != nil {
		return nil, err
	}
	db, err := s.open(cfg.Path)
	if err != nil {
		return nil, err
	}
	s.db = db
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	s.watchers.reset(s.revision.Load())
	go s.flushLoop()
	return s, nil
}

func (s *Store) open(path string) (*bolt.DB, error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		if err := verifyFile(path, false); err != nil {
			return nil, fmt.Errorf("store: %s: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         2 * time.Second,
		NoSync:          s.cfg.NoSync,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 1 << 30,
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store: %s is locked by another process", path)
		}
		return nil, fmt.Errorf("store: open %s: %w: %v", path, ErrCorrupt, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketKV, bucketTTL, bucketMeta, bucketMembers, bucketIdem, bucketIdemAge} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	// Opening walked every page (verification, bbolt's free-list
	// rebuild); give those pages back, reads map in what they need.
	if _, err := mapped.Release(path); err != nil {
		s.log.Debug("release mapped pages", "err", err)
	}
	return db, nil
}

// ReleasePages drops this process's resident pages of the state
// machine's file mapping: bbolt reads through the mapping, and every page
// a commit rewrote and a later one read back stays resident (counted in
// the process's RSS) although most are never read again. The pages stay
// in the kernel's page cache; reads map back what they need. A read
// transaction is held meanwhile, so bbolt cannot remap the file under
// the call. It is safe at any time, and does nothing on a closed store.
func (s *Store) ReleasePages() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return
	}
	defer tx.Rollback()
	if _, err := mapped.Release(s.db.Path()); err != nil {
		s.log.Debug("release mapped pages", "err", err)
	}
}

// load reads the cached meta values from the current db.
func (s *Store) load() error {
	return s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		s.applied.Store(getU64(meta.Get(metaApplied)))
		s.revision.Store(int64(getU64(meta.Get(metaRevision))))
		return s.loadMembers(tx)
	})
}

// loadMembers caches the members recorded in tx.
func (s *Store) loadMembers(tx *bolt.Tx) error {
	m := map[string]Member{}
	err := tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
		var mem Member
		d := decoder{buf: v}
		mem.ID = string(k)
		mem.RaftAddr = d.str()
		mem.HTTPAddr = d.str()
		if d.err != nil {
			return fmt.Errorf("store: member %q: %w", k, ErrCorrupt)
		}
		m[mem.ID] = mem
		return nil
	})
	s.members.Store(&m)
	return err
}

// Close closes the bbolt file. Later calls fail with ErrClosed.
func (s *Store) Close() error {
	s.stopOnce.Do(func() {
		close(s.stopFlush)
		select {
		case <-s.flushDone:
		case <-s.failed: // the flush loop may be stuck in fail
		}
	})
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.RLock()
	open := s.db != nil
	s.mu.RUnlock()
	if open {
		s.commitLocked()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchers.closeAll()
	if s.db == nil {
		return nil
	}
	var err error
	if s.cfg.NoSync {
		err = s.db.Sync()
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	s.db = nil
	if s.cfg.NoSync && err == nil {
		err = os.Remove(s.cfg.Path + dirtySuffix)
	}
	return err
}

// dirtySuffix names the marker a store without fsync keeps beside its file
// while open. It holds the kernel's boot ID: a marker left by a process
// crash has the current boot ID, and the file is intact (the kernel still
// had every write); a marker from an earlier boot means the machine went
// down with unsynced writes.
const dirtySuffix = ".dirty"

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

// markDirty refuses a file left unsynced by an earlier boot, then (when
// the store will not fsync) records the current boot as having it open.
func markDirty(path string, noSync bool) error {
	marker := path + dirtySuffix
	boot := bootID()
	if prev, err := os.ReadFile(marker); err == nil {
		if _, statErr := os.Stat(path); statErr == nil && (boot == "" || string(prev) != boot) {
			return fmt.Errorf("store: %s: %w", path, ErrUnclean)
		}
	}
	if !noSync {
		if err := os.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: %w", err)
		}
		return nil
	}
	if err := writeFileSync(marker, bytes.NewReader([]byte(boot)), -1); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// Remove deletes the store files at path (the bbolt file and its marker),
// so that it can be rebuilt from the Raft log.
func Remove(path string) error {
	for _, p := range []string{path, path + dirtySuffix} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Failed is closed when the store found its file corrupt while applying;
// FailErr then says why. The node must stop: it can neither apply nor skip
// the entry.
func (s *Store) Failed() <-chan struct{} { return s.failed }

// FailErr is the error that closed Failed.
func (s *Store) FailErr() error {
	select {
	case <-s.failed:
		return s.failErr
	default:
		return nil
	}
}

// AppliedIndex is the Raft index of the last entry applied.
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// Revision is the current store revision.
func (s *Store) Revision() int64 { return s.revision.Load() }

// Members returns the recorded members, sorted by ID.
func (s *Store) Members() []Member {
	m := *s.members.Load()
	out := make([]Member, 0, len(m))
	for _, mem := range m {
		out = append(out, mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Member returns the recorded addresses of member id.
func (s *Store) Member(id string) (Member, bool) {
	m, ok := (*s.members.Load())[id]
	return m, ok
}

// WaitApplied blocks until the store has applied index or ctx ends.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	for {
		ch := s.Changed()
		if s.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitRevision blocks until the store has reached revision rev or ctx ends.
func (s *Store) WaitRevision(ctx context.Context, rev int64) error {
	for {
		ch := s.Changed()
		if s.revision.Load() >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Changed returns a channel closed at the next commit.
func (s *Store) Changed() <-chan struct{} {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	return s.notifyCh
}

func (s *Store) notify() {
	s.notifyMu.Lock()
	close(s.notifyCh)
	s.notifyCh = make(chan struct{})
	s.notifyMu.Unlock()
}

func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	return s.db.View(fn)
}

// read begins a read transaction of the last commit and, at the same
// moment, lets pick copy what it needs from the overlay of applied,
// uncommitted records and the revision they make: together they are the
// applied state. pick runs under the overlay's read lock, so it must be
// quick; fn then reads the transaction without holding up Apply.
func (s *Store) read(pick func(ov map[string][]byte, rev int64), fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	// The overlay lock first: a commit empties the overlay only after the
	// file has everything, so a transaction begun under it is never older
	// than the overlay it is paired with.
	s.ovMu.RLock()
	tx, err := s.db.Begin(false)
	if err != nil {
		s.ovMu.RUnlock()
		return err
	}
	pick(s.ov, s.revision.Load())
	s.ovMu.RUnlock()
	defer tx.Rollback()
	return fn(tx)
}

// Get returns key's current value as of the latest applied revision, and
// that revision. A key whose TTL has passed on this node's clock is
// reported missing even before its delete is applied.
func (s *Store) Get(key string) (KV, int64, error) {
	var kv KV
	var rev int64
	var v []byte
	var inOverlay bool
	err := s.read(func(ov map[string][]byte, r int64) {
		rev = r
		v, inOverlay = ov[key]
	}, func(tx *bolt.Tx) error {
		if !inOverlay {
			v = tx.Bucket(bucketKV).Get([]byte(key))
		}
		if v == nil {
			return ErrNotFound
		}
		var err error
		kv, err = decodeRecord(key, v, true)
		if err != nil {
			return err
		}
		if !kv.live(time.Now().UnixNano()) {
			return ErrNotFound
		}
		return nil
	})
	return kv, rev, err
}

// ListOptions selects a page of keys.
type ListOptions struct {
	// Prefix limits the listing to keys starting with it; empty means all.
	Prefix string
	// After starts the listing after this key (exclusive); empty means at
	// the first key.
	After string
	// Limit caps the number of keys; 0 means no cap.
	Limit int
	// KeysOnly leaves values out.
	KeysOnly bool
}

// start is the first key a listing may return.
func (opts *ListOptions) start() string {
	if opts.After != "" && opts.After >= opts.Prefix {
		return opts.After + "\x00"
	}
	return opts.Prefix
}

// List returns the keys selected by opts in key order, whether more follow,
// and the revision the listing reflects.
func (s *Store) List(opts ListOptions) ([]KV, bool, int64, error) {
	var out []KV
	var more bool
	var rev int64
	var changed []kvChange
	now := time.Now().UnixNano()
	start := opts.start()
	err := s.read(func(ov map[string][]byte, r int64) {
		rev = r
		for k, rec := range ov {
			if k >= start && strings.HasPrefix(k, opts.Prefix) {
				changed = append(changed, kvChange{key: k, rec: rec})
			}
		}
	}, func(tx *bolt.Tx) error {
		sort.Slice(changed, func(i, j int) bool { return changed[i].key < changed[j].key })
		var err error
		out, more, err = scanOverlay(tx.Bucket(bucketKV), changed, opts, now)
		return err
	})
	return out, more, rev, err
}

// scan lists the keys opts selects from b.
func scan(b *bolt.Bucket, opts ListOptions, now int64) ([]KV, bool, error) {
	return scanOverlay(b, nil, opts, now)
}

// scanOverlay lists the keys opts selects from b with changed (sorted by
// key, within the listing's range) laid over it: a changed key has its new
// record there, or none if deleted.
func scanOverlay(b *bolt.Bucket, changed []kvChange, opts ListOptions, now int64) ([]KV, bool, error) {
	var out []KV
	c := b.Cursor()
	prefix := []byte(opts.Prefix)
	k, v := c.Seek([]byte(opts.start()))
	for {
		if k != nil && !bytes.HasPrefix(k, prefix) {
			k = nil
		}
		var key string
		var rec []byte
		switch {
		case k == nil && len(changed) == 0:
			return out, false, nil
		case len(changed) > 0 && (k == nil || changed[0].key <= string(k)):
			key, rec = changed[0].key, changed[0].rec
			if k != nil && changed[0].key == string(k) {
				k, v = c.Next()
			}
			changed = changed[1:]
			if rec == nil {
				continue
			}
		default:
			key, rec = string(k), v
			k, v = c.Next()
		}
		kv, err := decodeRecord(key, rec, !opts.KeysOnly)
		if err != nil {
			return nil, false, err
		}
		if !kv.live(now) {
			continue
		}
		if opts.Limit > 0 && len(out) == opts.Limit {
			return out, true, nil
		}
		out = append(out, kv)
	}
}

// Expired returns up to limit keys whose TTL passed before now, oldest
// expiry first, with the mod revisions they had, for the leader to expire.
func (s *Store) Expired(now int64, limit int) ([]ExpireKey, error) {
	if limit <= 0 {
		return nil, nil
	}
	type expired struct {
		at int64
		ExpireKey
	}
	var found []expired
	var ov map[string][]byte
	err := s.read(func(map[string][]byte, int64) {
		if len(s.ovTTL) > 0 {
			ov = maps.Clone(s.ovTTL) // the records themselves are never changed
		}
	}, func(tx *bolt.Tx) error {
		// Keys whose TTL changed since the last commit: their records are
		// in ov. Every key with a TTL in the file that changed since is
		// among them (the record it replaced had a TTL).
		for key, v := range ov {
			if v == nil {
				continue
			}
			kv, err := decodeRecord(key, v, false)
			if err != nil {
				return err
			}
			if kv.ExpiresAt != 0 && kv.ExpiresAt <= now {
				found = append(found, expired{kv.ExpiresAt, ExpireKey{Key: key, ModRevision: kv.ModRevision}})
			}
		}
		n := 0
		c := tx.Bucket(bucketTTL).Cursor()
		for k, _ := c.First(); k != nil && n < limit; k, _ = c.Next() {
			if len(k) < 8 {
				break
			}
			at := int64(binary.BigEndian.Uint64(k))
			if at > now {
				break
			}
			key := string(k[8:])
			if _, ok := ov[key]; ok {
				continue // changed since the commit: judged above
			}
			v := tx.Bucket(bucketKV).Get(k[8:])
			if v == nil {
				continue
			}
			kv, err := decodeRecord(key, v, false)
			if err != nil {
				return err
			}
			found = append(found, expired{at, ExpireKey{Key: key, ModRevision: kv.ModRevision}})
			n++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].at != found[j].at {
			return found[i].at < found[j].at
		}
		return found[i].Key < found[j].Key
	})
	var out []ExpireKey
	for _, f := range found[:min(len(found), limit)] {
		out = append(out, f.ExpireKey)
	}
	return out, nil
}

// Apply applies committed entries and returns one result per entry.
// Entries at or below the applied index are skipped (their result is nil):
// a restarted node replays its log from the last snapshot and must not
// apply twice. The entries go into the open write transaction, which is
// committed once CommitInterval has passed since its first entry (or it
// grew past its caps); readers see them at once. Only the FSM calls Apply.
func (s *Store) Apply(entries []Entry) []*Result {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	results := make([]*Result, len(entries))
	var st applyState
	for attempt := 0; ; attempt++ {
		err := s.begin()
		if err == nil {
			st, err = s.applyTx(s.wtx, entries, results)
		}
		if err == nil {
			break
		}
		if errors.Is(err, ErrClosed) {
			return results
		}
		s.rollback()
		if errors.Is(err, ErrCorrupt) {
			s.fail(err)
		}
		// A failed apply (an I/O error reading the file) must not skip
		// entries: every node has to apply the same log. Retry until it
		// works.
		delay := backoff(attempt)
		s.log.Error("apply failed; retrying", "err", err, "first_index", entries[0].Index, "retry_in", delay)
		time.Sleep(delay)
	}
	if len(s.pending) == 0 {
		s.pendingSince = time.Now()
	}
	s.pending = append(s.pending, entries...)
	for _, e := range entries {
		s.pendingBytes += len(e.Data)
	}
	if st.membersChanged {
		if err := s.loadMembers(s.wtx); err != nil {
			s.log.Error("reload members", "err", err)
		}
	}
	// The overlay, the revision and the applied index move together, so
	// a reader sees all of this batch or none of it.
	s.ovMu.Lock()
	for _, c := range st.changes {
		s.ov[c.key] = c.rec
		if c.ttl {
			s.ovTTL[c.key] = c.rec
		} else if len(s.ovTTL) > 0 {
			if _, ok := s.ovTTL[c.key]; ok {
				s.ovTTL[c.key] = c.rec
			}
		}
	}
	s.applied.Store(st.applied)
	s.revision.Store(st.rev)
	s.ovMu.Unlock()
	s.watchers.publish(st.events, st.rev)
	s.notify()
	if s.cfg.CommitInterval < 0 || len(s.pending) >= maxPendingEntries || s.pendingBytes >= maxPendingBytes ||
		time.Since(s.pendingSince) >= s.cfg.CommitInterval {
		s.commitLocked()
	}
	return results
}

// applyState is what applying a batch of entries changed.
type applyState struct {
	events         []Event
	changes        []kvChange
	applied        uint64
	rev            int64
	membersChanged bool
}

// kvChange is one key's new record (nil: deleted), for the overlay; ttl
// is set when the new record or the one it replaces has a TTL.
type kvChange struct {
	key string
	rec []byte
	ttl bool
}

// applyTx applies entries inside tx; results (when not nil) receives one
// result per entry.
func (s *Store) applyTx(tx *bolt.Tx, entries []Entry, results []*Result) (applyState, error) {
	meta := tx.Bucket(bucketMeta)
	a := applier{tx: tx, s: s, rev: int64(getU64(meta.Get(metaRevision)))}
	applied := getU64(meta.Get(metaApplied))
	var st applyState
	for i, e := range entries {
		if results != nil {
			results[i] = nil
		}
		if e.Index <= applied {
			continue
		}
		applied = e.Index
		if e.Data == nil {
			continue
		}
		cmd, err := DecodeCommand(e.Data)
		if err != nil {
			if results != nil {
				results[i] = &Result{Revision: a.rev, Err: err}
			}
			continue
		}
		r, err := a.apply(cmd)
		if err != nil {
			return st, err
		}
		if results != nil {
			results[i] = r
		}
		st.membersChanged = st.membersChanged || changesMembers(cmd)
	}
	if err := meta.Put(metaApplied, putU64(applied)); err != nil {
		return st, err
	}
	if err := meta.Put(metaRevision, putU64(uint64(a.rev))); err != nil {
		return st, err
	}
	st.events, st.changes, st.applied, st.rev = a.events, a.changes, applied, a.rev
	return st, nil
}

// begin makes sure a write transaction is open, redoing the pending
// entries if an earlier one was lost to a failed commit. applyMu is held.
func (s *Store) begin() error {
	if s.wtx != nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	if len(s.pending) > 0 {
		// recent was emptied when the last transaction was lost; the
		// redo fills it again from the committed file.
		if _, err := s.applyTx(tx, s.pending, nil); err != nil {
			_ = tx.Rollback()
			s.forgetRecent()
			return err
		}
	}
	s.wtx = tx
	return nil
}

// rollback drops the open write transaction; the pending entries stay
// and are redone by the next begin. applyMu is held.
func (s *Store) rollback() {
	if s.wtx != nil {
		_ = s.wtx.Rollback()
		s.wtx = nil
	}
	s.forgetRecent()
}

// commitLocked commits the open write transaction, retrying (and redoing
// the pending entries) until it works, then empties the overlay: the file
// now has everything. applyMu is held.
func (s *Store) commitLocked() {
	if (s.wtx == nil && len(s.pending) == 0) || s.hasFailed() {
		return
	}
	for attempt := 0; ; attempt++ {
		err := s.begin()
		if err == nil {
			if err = s.flushKV(s.wtx); err == nil {
				err = s.wtx.Commit()
				s.wtx = nil
			}
			if err != nil {
				// The transaction is gone (bbolt rolled it back, or
				// rollback drops it): so is what recent holds of it.
				s.rollback()
			}
		}
		if err == nil || errors.Is(err, ErrClosed) {
			break
		}
		if errors.Is(err, ErrCorrupt) {
			s.fail(err)
		}
		delay := backoff(attempt)
		s.log.Error("commit failed; retrying", "err", err, "entries", len(s.pending), "retry_in", delay)
		time.Sleep(delay)
	}
	s.pending, s.pendingBytes = nil, 0
	s.clearOverlay()
}

// clearOverlay empties the overlay, once the file has everything in it
// or the state it describes is gone.
func (s *Store) clearOverlay() {
	s.ovMu.Lock()
	clear(s.ov)
	clear(s.ovTTL)
	s.ovMu.Unlock()
}

// Flush commits every applied entry to the file now.
func (s *Store) Flush() {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.commitLocked()
}

// flushLoop commits applied entries that have waited CommitInterval while
// no Apply came to do it.
func (s *Store) flushLoop() {
	defer close(s.flushDone)
	every := s.cfg.CommitInterval
	if every <= 0 {
		return
	}
	t := time.NewTicker(max(every/2, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stopFlush:
			return
		case <-t.C:
		}
		s.applyMu.Lock()
		if len(s.pending) > 0 && time.Since(s.pendingSince) >= every {
			s.commitLocked()
		}
		s.applyMu.Unlock()
	}
}

// fail stops the store for good after finding the file damaged: applying
// on would diverge from the other nodes, and skipping would too. The
// process owner sees Failed and stops the node. fail is called with
// applyMu held; it lets go of it (so Close still works: nothing is
// committed after a failure) and never returns.
func (s *Store) fail(err error) {
	s.failOnce.Do(func() {
		s.failErr = err
		s.log.Error("state machine file is corrupt; this node must stop", "err", err)
		close(s.failed)
	})
	s.applyMu.Unlock()
	select {}
}

// hasFailed reports whether fail was called.
func (s *Store) hasFailed() bool {
	select {
	case <-s.failed:
		return true
	default:
		return false
	}
}

func backoff(attempt int) time.Duration {
	return time.Duration(min(1<<min(attempt, 10), 1000)) * time.Millisecond
}

func changesMembers(cmd *Command) bool {
	for _, sub := range cmd.Batch {
		if changesMembers(sub) {
			return true
		}
	}
	return cmd.Op == OpSetMember || cmd.Op == OpRemoveMember
}

// Snapshot is a consistent read-only view of the store that can be
// streamed while writes go on.
type Snapshot struct {
	tx *bolt.Tx
}

// Snapshot commits what was applied and starts a consistent view of the
// whole store; call Release when done with it. The copy happens in WriteTo.
func (s *Store) Snapshot() (*Snapshot, error) {
	s.Flush()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, err
	}
	return &Snapshot{tx: tx}, nil
}

// snapshotMagic starts every snapshot stream. The stream is the magic, a
// format version byte, the bbolt file's size (8 bytes, big-endian), the
// file, and a CRC-64 (ECMA) of the file, so a truncated or damaged snapshot
// is refused before bbolt ever reads it.
const snapshotMagic = "CAIRNSNP"

const snapshotVersion byte = 1

var crcTable = crc64.MakeTable(crc64.ECMA)

// WriteTo streams the snapshot (a framed, checksummed bbolt file) to w.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	size := sn.tx.Size()
	hdr := make([]byte, 0, len(snapshotMagic)+9)
	hdr = append(hdr, snapshotMagic...)
	hdr = append(hdr, snapshotVersion)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(size))
	if _, err := w.Write(hdr); err != nil {
		return 0, err
	}
	h := crc64.New(crcTable)
	n, err := sn.tx.WriteTo(io.MultiWriter(w, h))
	if err != nil {
		return int64(len(hdr)) + n, err
	}
	if n != size {
		return int64(len(hdr)) + n, fmt.Errorf("store: snapshot wrote %d bytes, expected %d", n, size)
	}
	if _, err := w.Write(binary.BigEndian.AppendUint64(nil, h.Sum64())); err != nil {
		return int64(len(hdr)) + n, err
	}
	return int64(len(hdr)) + n + 8, nil
}

// readSnapshot copies a framed snapshot from r to path, checking its
// length and checksum.
func readSnapshot(path string, r io.Reader) error {
	hdr := make([]byte, len(snapshotMagic)+9)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return fmt.Errorf("%w: snapshot header: %v", ErrCorrupt, err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return fmt.Errorf("%w: not a cairn snapshot", ErrCorrupt)
	}
	if v := hdr[len(snapshotMagic)]; v != snapshotVersion {
		return fmt.Errorf("%w: unknown snapshot version %d", ErrCorrupt, v)
	}
	size := int64(binary.BigEndian.Uint64(hdr[len(snapshotMagic)+1:]))
	if size <= 0 || size > 1<<40 {
		return fmt.Errorf("%w: snapshot size %d", ErrCorrupt, size)
	}
	h := crc64.New(crcTable)
	if err := writeFileSync(path, io.TeeReader(io.LimitReader(r, size), h), size); err != nil {
		return err
	}
	var sum [8]byte
	if _, err := io.ReadFull(r, sum[:]); err != nil {
		return fmt.Errorf("%w: snapshot checksum missing: %v", ErrCorrupt, err)
	}
	if binary.BigEndian.Uint64(sum[:]) != h.Sum64() {
		return fmt.Errorf("%w: snapshot checksum mismatch", ErrCorrupt)
	}
	return nil
}

// AppliedIndex is the Raft index the snapshot reflects.
func (sn *Snapshot) AppliedIndex() uint64 {
	return getU64(sn.tx.Bucket(bucketMeta).Get(metaApplied))
}

// Revision is the store revision the snapshot reflects.
func (sn *Snapshot) Revision() int64 {
	return int64(getU64(sn.tx.Bucket(bucketMeta).Get(metaRevision)))
}

// Release ends the snapshot's read transaction.
func (sn *Snapshot) Release() { _ = sn.tx.Rollback() }

// Restore replaces the whole store with the snapshot read from r. The new
// file is written and checked beside the current one, then swapped in
// under the lock, so a failed restore leaves the store as it was.
func (s *Store) Restore(r io.Reader) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	tmp := s.cfg.Path + ".restore"
	if err := readSnapshot(tmp, r); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: restore: %w", err)
	}
	if err := verifyFile(tmp, true); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: restore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return ErrClosed
	}
	// What was applied but not committed is replaced too.
	s.rollback()
	s.pending, s.pendingBytes = nil, 0
	s.clearOverlay()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: restore: close: %w", err)
	}
	s.db = nil
	if err := os.Rename(tmp, s.cfg.Path); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	if err := syncDir(filepath.Dir(s.cfg.Path)); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	db, err := s.open(s.cfg.Path)
	if err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	s.db = db
	if err := s.load(); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	s.watchers.reset(s.revision.Load())
	s.log.Info("restored from snapshot", "applied_index", s.applied.Load(), "revision", s.revision.Load())
	go s.notify()
	return nil
}

// verifyFile opens a bbolt file read-only and reads every page of it and
// every record's checksum, in this goroutine, with faults turned into
// panics and recovered: bbolt panics (or faults on a truncated mmap) on
// some kinds of damage, and a damaged file must be refused, not crash the
// node. A file shorter than its metadata says is refused before any page
// is read. requireCairn also insists the cairn buckets exist.
func verifyFile(path string, requireCairn bool) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, p)
		}
	}()
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return fmt.Errorf("%s is locked by another process", path)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		if fi.Size() < tx.Size() {
			return fmt.Errorf("%w: file is %d bytes but its metadata needs %d (truncated)", ErrCorrupt, fi.Size(), tx.Size())
		}
		return walk(tx, requireCairn)
	})
}

// walk reads every key of every bucket and checks every record.
func walk(tx *bolt.Tx, requireCairn bool) error {
	if requireCairn && (tx.Bucket(bucketMeta) == nil || tx.Bucket(bucketKV) == nil) {
		return fmt.Errorf("%w: not a cairn store", ErrCorrupt)
	}
	return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		isKV := bytes.Equal(name, bucketKV)
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if isKV {
				if _, err := decodeRecord(string(k), v, false); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Check commits what was applied, then reads every page and record of the
// open store.
func (s *Store) Check() error {
	s.Flush()
	return s.view(func(tx *bolt.Tx) (err error) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("%w: %v", ErrCorrupt, p)
			}
		}()
		return walk(tx, true)
	})
}

// writeFileSync writes r to path and fsyncs it; want >= 0 is the number
// of bytes r must yield.
func writeFileSync(path string, r io.Reader, want int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, r)
	if err == nil && want >= 0 && n != want {
		err = fmt.Errorf("%w: snapshot truncated at %d of %d bytes", ErrCorrupt, n, want)
	}
	if err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func putU64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeRecord lays out a stored value: a CRC-32C of the key and the rest,
// revisions, expiry, then the value. The checksum means a flipped bit on
// disk is reported as ErrCorrupt instead of served.
func encodeRecord(key string, kv *KV) []byte {
	b := make([]byte, 4, 4+4*binary.MaxVarintLen64+len(kv.Value))
	b = binary.AppendUvarint(b, uint64(kv.CreateRevision))
	b = binary.AppendUvarint(b, uint64(kv.ModRevision))
	b = binary.AppendUvarint(b, uint64(kv.Version))
	b = binary.AppendVarint(b, kv.ExpiresAt)
	b = append(b, kv.Value...)
	sum := crc32.Update(crc32.Checksum([]byte(key), castagnoli), castagnoli, b[4:])
	binary.BigEndian.PutUint32(b, sum)
	return b
}

func decodeRecord(key string, b []byte, withValue bool) (KV, error) {
	kv := KV{Key: key}
	corrupt := func(what string) (KV, error) {
		return KV{Key: key}, fmt.Errorf("%w: record of %q: %s", ErrCorrupt, key, what)
	}
	if len(b) < 8 {
		return corrupt("too short")
	}
	want := binary.BigEndian.Uint32(b)
	b = b[4:]
	if crc32.Update(crc32.Checksum([]byte(key), castagnoli), castagnoli, b) != want {
		return corrupt("checksum mismatch")
	}
	var vals [3]uint64
	for i := range vals {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return corrupt("bad revision")
		}
		vals[i] = v
		b = b[n:]
	}
	exp, n := binary.Varint(b)
	if n <= 0 {
		return corrupt("bad expiry")
	}
	kv.CreateRevision, kv.ModRevision, kv.Version, kv.ExpiresAt = int64(vals[0]), int64(vals[1]), int64(vals[2]), exp
	if withValue {
		kv.Value = bytes.Clone(b[n:])
		if kv.Value == nil {
			kv.Value = []byte{}
		}
	}
	return kv, nil
}

// Hash returns a CRC-64 of every key, value and revision in the store and
// the applied index it reflects, read in one transaction after committing
// what was applied. Two nodes at the same applied index must have the same
// hash. It reads the whole store.
func (s *Store) Hash() (uint64, uint64, error) {
	s.Flush()
	var sum uint64
	var applied uint64
	err := s.view(func(tx *bolt.Tx) error {
		applied = getU64(tx.Bucket(bucketMeta).Get(metaApplied))
		h := crc64.New(crcTable)
		for _, name := range [][]byte{bucketKV, bucketMeta, bucketIdem} {
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				h.Write(k)
				h.Write([]byte{0})
				h.Write(v)
				h.Write([]byte{0})
				return nil
			})
			if err != nil {
				return err
			}
		}
		sum = h.Sum64()
		return nil
	})
	return sum, applied, err
}
