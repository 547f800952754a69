package client

import (
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Consistency selects how fresh a read must be.
type Consistency string

// Read consistency levels, for WithConsistency.
const (
	// Linearizable reads reflect every write acknowledged before the read
	// started (the server's default). The leader confirms its leadership
	// with a quorum first.
	Linearizable Consistency = "linearizable"
	// Leader reads are served by the leader without a quorum round: fast,
	// and stale only in the rare case of a deposed leader that does not
	// know it yet.
	Leader Consistency = "leader"
	// Stale reads are served locally by whichever node answers and may lag
	// behind the leader; they keep working without a leader.
	Stale Consistency = "stale"
)

// Option changes one call. Each option applies to some calls only; passing
// one to a call it does not apply to makes the call fail with
// ErrInvalidArgument before anything is sent.
type Option func(*op)

// optBit records which options a call received.
type optBit uint

const (
	optConsistency optBit = 1 << iota
	optPrefix
	optLimit
	optAfter
	optKeysOnly
	optCAS
	optTTL
	optMinRevision
	optIdempotencyKey
	optRevision
	optProgressNotify
)

var optNames = map[optBit]string{
	optConsistency:    "WithConsistency",
	optPrefix:         "WithPrefix",
	optLimit:          "WithLimit",
	optAfter:          "WithAfter",
	optKeysOnly:       "WithKeysOnly",
	optCAS:            "WithCAS",
	optTTL:            "WithTTL",
	optMinRevision:    "WithMinRevision",
	optIdempotencyKey: "WithIdempotencyKey",
	optRevision:       "WithRevision",
	optProgressNotify: "WithProgressNotify",
}

// op is the set of options given to one call.
type op struct {
	set            optBit
	consistency    Consistency
	limit          int
	after          string
	cas            int64
	ttl            time.Duration
	minRevision    int64
	idempotencyKey string
	revision       int64
}

// WithConsistency sets the read consistency of Get and List; without it the
// server uses Linearizable.
func WithConsistency(c Consistency) Option {
	return func(o *op) { o.set |= optConsistency; o.consistency = c }
}

// WithPrefix makes Delete (and OpDelete) remove every key that starts with
// the given key, OpGet read every such key, and Watch report changes to
// every such key; without it each of them is about exactly one key.
func WithPrefix() Option {
	return func(o *op) { o.set |= optPrefix }
}

// WithLimit caps the number of keys one List call (or one OpGet with
// WithPrefix in a transaction) returns; without it (or with 0) List returns
// at most 1000 and OpGet every key.
func WithLimit(n int) Option {
	return func(o *op) { o.set |= optLimit; o.limit = n }
}

// WithAfter makes List start after key (exclusive), typically the last key
// of the previous page; without it List starts at the prefix itself.
func WithAfter(key string) Option {
	return func(o *op) { o.set |= optAfter; o.after = key }
}

// WithKeysOnly makes List return keys and revisions without values; without
// it values are included.
func WithKeysOnly() Option {
	return func(o *op) { o.set |= optKeysOnly }
}

// WithCAS makes Put or Delete succeed only if the key's mod revision is rev
// (rev 0: only if the key does not exist), else fail with a *ConflictError;
// without it the write is unconditional.
func WithCAS(rev int64) Option {
	return func(o *op) { o.set |= optCAS; o.cas = rev }
}

// WithTTL makes the key written by Put (or OpPut) expire d after the write;
// the server takes whole durations of at least one second. Without it the
// key never expires.
func WithTTL(d time.Duration) Option {
	return func(o *op) { o.set |= optTTL; o.ttl = d }
}

// WithMinRevision makes Get or List wait (bounded, on the server) until the
// serving node has applied revision rev; without it (or with 0) there is no
// wait beyond what the consistency level implies. Pass the Revision of a
// write's response, or the highest Meta.Revision seen so far, to read your
// own writes and never go back in time, even with Stale reads on any node.
func WithMinRevision(rev int64) Option {
	return func(o *op) { o.set |= optMinRevision; o.minRevision = rev }
}

// MaxIdempotencyKeyLen is the longest key WithIdempotencyKey accepts, in
// bytes, as the server limits it.
const MaxIdempotencyKeyLen = 256

// WithIdempotencyKey sends key (1 to MaxIdempotencyKeyLen bytes) as the
// Idempotency-Key header of a Put, Delete or Txn, so that the server applies the
// write at most once however often it is sent, and lets the client retry the
// write after any transport error; without it the client sends a random key
// of its own but retries only writes that provably never reached a server.
func WithIdempotencyKey(key string) Option {
	return func(o *op) { o.set |= optIdempotencyKey; o.idempotencyKey = key }
}

// WithRevision makes Watch start at revision rev: every change from rev on
// is reported, including past ones the server still holds (a watch from
// an older revision fails with ErrCompacted). Without it (or with 0) the
// watch reports changes after the revision current when it starts.
func WithRevision(rev int64) Option {
	return func(o *op) { o.set |= optRevision; o.revision = rev }
}

// WithProgressNotify makes Watch also deliver the server's progress
// notices: a WatchResponse without events whose ProgressRevision says that
// every change up to it has been delivered. Without it they are used
// internally (to resume without gaps) and not delivered.
func WithProgressNotify() Option {
	return func(o *op) { o.set |= optProgressNotify }
}

// buildOp applies opts and checks that each is allowed for the call named
// call and has a sensible value.
func buildOp(call string, allowed optBit, opts []Option) (*op, error) {
	o := &op{}
	for _, f := range opts {
		if f != nil {
			f(o)
		}
	}
	if extra := o.set &^ allowed; extra != 0 {
		for bit := optBit(1); bit <= extra; bit <<= 1 {
			if extra&bit != 0 {
				return nil, fmt.Errorf("client: %w: %s does not apply to %s", ErrInvalidArgument, optNames[bit], call)
			}
		}
	}
	switch {
	case o.set&optConsistency != 0 && o.consistency != Linearizable && o.consistency != Leader && o.consistency != Stale:
		return nil, fmt.Errorf("client: %w: unknown consistency %q (want %q, %q or %q)",
			ErrInvalidArgument, o.consistency, Linearizable, Leader, Stale)
	case o.limit < 0:
		return nil, fmt.Errorf("client: %w: negative limit %d", ErrInvalidArgument, o.limit)
	case o.cas < 0:
		return nil, fmt.Errorf("client: %w: negative CAS revision %d", ErrInvalidArgument, o.cas)
	case o.set&optTTL != 0 && o.ttl <= 0:
		return nil, fmt.Errorf("client: %w: TTL must be positive, not %v", ErrInvalidArgument, o.ttl)
	case o.minRevision < 0:
		return nil, fmt.Errorf("client: %w: negative minimum revision %d", ErrInvalidArgument, o.minRevision)
	case o.revision < 0:
		return nil, fmt.Errorf("client: %w: negative revision %d", ErrInvalidArgument, o.revision)
	case o.set&optIdempotencyKey != 0 && o.idempotencyKey == "":
		return nil, fmt.Errorf("client: %w: empty idempotency key", ErrInvalidArgument)
	case len(o.idempotencyKey) > MaxIdempotencyKeyLen:
		return nil, fmt.Errorf("client: %w: idempotency key is %d bytes; the limit is %d",
			ErrInvalidArgument, len(o.idempotencyKey), MaxIdempotencyKeyLen)
	}
	return o, nil
}

// query encodes the options as URL query parameters.
func (o *op) query() url.Values {
	q := url.Values{}
	if o.set&optConsistency != 0 {
		q.Set("consistency", string(o.consistency))
	}
	if o.set&optPrefix != 0 {
		q.Set("prefix", "true")
	}
	if o.limit > 0 {
		q.Set("limit", strconv.Itoa(o.limit))
	}
	if o.set&optAfter != 0 && o.after != "" {
		q.Set("after", o.after)
	}
	if o.set&optKeysOnly != 0 {
		q.Set("keys", "true")
	}
	if o.set&optCAS != 0 {
		q.Set("cas", strconv.FormatInt(o.cas, 10))
	}
	if o.set&optTTL != 0 {
		q.Set("ttl", o.ttl.String())
	}
	if o.minRevision > 0 {
		q.Set("min_revision", strconv.FormatInt(o.minRevision, 10))
	}
	return q
}
