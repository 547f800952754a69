package store

import (
	"encoding/binary"
	"fmt"
	"math"
)

// CommandVersion is the first byte of every encoded command. A node refuses
// commands of a version it does not know instead of guessing.
const CommandVersion byte = 1

// Limits that Decode enforces so that no log entry can make Apply allocate
// without bound.
const (
	// MaxTxnOps is the most compares, or operations in one branch, a
	// transaction may hold.
	MaxTxnOps = 128
	// MaxIdempotencyKeyLen is the longest idempotency key in bytes.
	MaxIdempotencyKeyLen = 256
	// MaxMemberFieldLen is the longest member ID or address in bytes.
	MaxMemberFieldLen = 256
	// maxField caps any one encoded string or byte field (64 MiB).
	maxField = 64 << 20
)

// Op is the kind of a Command.
type Op uint8

// The commands the state machine applies.
const (
	// OpTxn applies a transaction; single puts and deletes are
	// transactions of one operation.
	OpTxn Op = 1
	// OpSetMember records a member's Raft and HTTP addresses.
	OpSetMember Op = 2
	// OpRemoveMember forgets a member's addresses.
	OpRemoveMember Op = 3
	// OpExpire deletes keys whose TTL the leader found expired, each only if
	// it still has the mod revision the leader saw.
	OpExpire Op = 4
	// OpBatch carries several commands proposed together (group commit);
	// each is applied as if it had its own log entry.
	OpBatch Op = 5
)

// MaxBatch is the most commands one OpBatch may carry.
const MaxBatch = 4096

// OpType is the kind of one operation inside a transaction.
type OpType uint8

// Transaction operations.
const (
	// OpGet reads a key (or a prefix) at the transaction's revision.
	OpGet OpType = 1
	// OpPut writes a key.
	OpPut OpType = 2
	// OpDelete deletes a key (or every key under a prefix).
	OpDelete OpType = 3
)

// Target is what a Compare looks at.
type Target uint8

// Compare targets.
const (
	// TargetValue compares the value bytes.
	TargetValue Target = 1
	// TargetModRevision compares the revision of the key's last change.
	TargetModRevision Target = 2
	// TargetCreateRevision compares the revision that created the key.
	TargetCreateRevision Target = 3
	// TargetVersion compares how many times the key was written since it
	// was created.
	TargetVersion Target = 4
	// TargetExists compares existence: Num 1 if present, 0 if absent.
	TargetExists Target = 5
)

// CmpOp is a comparison operator.
type CmpOp uint8

// Comparison operators.
const (
	// CmpEqual is ==.
	CmpEqual CmpOp = 1
	// CmpNotEqual is !=.
	CmpNotEqual CmpOp = 2
	// CmpLess is <.
	CmpLess CmpOp = 3
	// CmpGreater is >.
	CmpGreater CmpOp = 4
)

// Command is one entry of the replicated log.
type Command struct {
	// Op says which of the fields below apply.
	Op Op
	// Now is the proposing leader's wall clock in Unix nanoseconds. Apply
	// uses it, never its own clock, to decide whether a TTL has passed.
	Now int64
	// IdempotencyKey, if not empty, makes a retried command answer the
	// first result instead of applying again.
	IdempotencyKey string
	// Txn is the transaction of OpTxn.
	Txn Txn
	// Member is the member of OpSetMember and OpRemoveMember (ID only).
	Member Member
	// Expire lists the keys of OpExpire.
	Expire []ExpireKey
	// Batch holds the commands of OpBatch (none of them a batch).
	Batch []*Command
}

// EncodeBatch returns the encoding of an OpBatch holding the already
// encoded commands subs.
func EncodeBatch(subs [][]byte) []byte {
	n := 16
	for _, b := range subs {
		n += len(b) + binary.MaxVarintLen32
	}
	e := encoder{buf: make([]byte, 0, n)}
	e.byte(CommandVersion)
	e.byte(byte(OpBatch))
	e.varint(0)
	e.str("")
	e.uvarint(uint64(len(subs)))
	for _, b := range subs {
		e.bytes(b)
	}
	return e.buf
}

// Txn is a transaction: if every Compare holds, Success runs, else Failure.
type Txn struct {
	// Compare lists conditions that must all hold.
	Compare []Compare
	// Success runs when every compare holds.
	Success []TxnOp
	// Failure runs otherwise.
	Failure []TxnOp
}

// Compare is one condition of a transaction.
type Compare struct {
	// Key is the key compared.
	Key string
	// Target is what is compared.
	Target Target
	// Op is the operator.
	Op CmpOp
	// Num is the right-hand side for revision, version and exists targets.
	Num int64
	// Value is the right-hand side for TargetValue.
	Value []byte
}

// TxnOp is one operation of a transaction.
type TxnOp struct {
	// Type is get, put or delete.
	Type OpType
	// Key is the key, or the prefix when Prefix is set.
	Key string
	// Prefix makes get and delete act on every key starting with Key.
	Prefix bool
	// Value is the value a put writes.
	Value []byte
	// ExpiresAt, for a put, is when the key expires in Unix nanoseconds;
	// 0 means never.
	ExpiresAt int64
	// Limit caps how many keys a prefix get returns; 0 means no cap.
	Limit int64
}

// Member is a cluster member's addresses as the state machine records them.
type Member struct {
	// ID is the member's Raft server ID.
	ID string `json:"id"`
	// RaftAddr is the address other members reach its Raft transport at.
	RaftAddr string `json:"raft_addr"`
	// HTTPAddr is the address its HTTP API is served at.
	HTTPAddr string `json:"http_addr"`
}

// ExpireKey names a key to expire and the mod revision it must still have.
type ExpireKey struct {
	// Key is the key to delete.
	Key string
	// ModRevision is the revision the leader saw expire.
	ModRevision int64
}

// NewPut returns the command that writes value at key. cas < 0 means
// unconditional; cas == 0 means only if absent; cas > 0 means only if the
// key's mod revision is cas. expiresAt is a Unix time in nanoseconds, 0 for
// no TTL.
func NewPut(key string, value []byte, cas int64, expiresAt int64) *Command {
	c := &Command{Op: OpTxn}
	c.Txn.Success = []TxnOp{{Type: OpPut, Key: key, Value: value, ExpiresAt: expiresAt}}
	if cas >= 0 {
		c.Txn.Compare = []Compare{{Key: key, Target: TargetModRevision, Op: CmpEqual, Num: cas}}
	}
	return c
}

// NewDelete returns the command that deletes key, or every key under it
// when prefix is set, with cas as in NewPut (ignored for prefixes).
func NewDelete(key string, prefix bool, cas int64) *Command {
	c := &Command{Op: OpTxn}
	c.Txn.Success = []TxnOp{{Type: OpDelete, Key: key, Prefix: prefix}}
	if cas >= 0 && !prefix {
		c.Txn.Compare = []Compare{{Key: key, Target: TargetModRevision, Op: CmpEqual, Num: cas}}
	}
	return c
}

// Encode returns the command's binary form.
func (c *Command) Encode() []byte {
	e := encoder{buf: make([]byte, 0, 64+c.size())}
	e.byte(CommandVersion)
	e.byte(byte(c.Op))
	e.varint(c.Now)
	e.str(c.IdempotencyKey)
	switch c.Op {
	case OpTxn:
		e.uvarint(uint64(len(c.Txn.Compare)))
		for _, cmp := range c.Txn.Compare {
			e.str(cmp.Key)
			e.byte(byte(cmp.Target))
			e.byte(byte(cmp.Op))
			e.varint(cmp.Num)
			e.bytes(cmp.Value)
		}
		e.ops(c.Txn.Success)
		e.ops(c.Txn.Failure)
	case OpSetMember, OpRemoveMember:
		e.str(c.Member.ID)
		e.str(c.Member.RaftAddr)
		e.str(c.Member.HTTPAddr)
	case OpExpire:
		e.uvarint(uint64(len(c.Expire)))
		for _, x := range c.Expire {
			e.str(x.Key)
			e.varint(x.ModRevision)
		}
	case OpBatch:
		e.uvarint(uint64(len(c.Batch)))
		for _, sub := range c.Batch {
			e.bytes(sub.Encode())
		}
	}
	return e.buf
}

func (c *Command) size() int {
	n := len(c.IdempotencyKey)
	for _, op := range c.Txn.Success {
		n += len(op.Key) + len(op.Value) + 8
	}
	return n
}

// DecodeCommand parses b. It never panics; any malformed input gives an
// error wrapping ErrInvalidCommand. The command may alias b.
func DecodeCommand(b []byte) (*Command, error) {
	d := decoder{buf: b}
	if v := d.byte(); v != CommandVersion {
		if d.err != nil {
			return nil, d.fail()
		}
		return nil, fmt.Errorf("%w: unknown command version %d", ErrInvalidCommand, v)
	}
	c := &Command{Op: Op(d.byte())}
	c.Now = d.varint()
	c.IdempotencyKey = d.str()
	switch c.Op {
	case OpTxn:
		n := d.count()
		if n > 0 {
			c.Txn.Compare = make([]Compare, n)
		}
		for i := 0; i < n && d.err == nil; i++ {
			cmp := &c.Txn.Compare[i]
			cmp.Key = d.str()
			cmp.Target = Target(d.byte())
			cmp.Op = CmpOp(d.byte())
			cmp.Num = d.varint()
			cmp.Value = d.bytes()
		}
		c.Txn.Success = d.ops()
		c.Txn.Failure = d.ops()
	case OpSetMember, OpRemoveMember:
		c.Member.ID = d.str()
		c.Member.RaftAddr = d.str()
		c.Member.HTTPAddr = d.str()
	case OpExpire:
		n := d.count()
		if n > 0 {
			c.Expire = make([]ExpireKey, n)
		}
		for i := 0; i < n && d.err == nil; i++ {
			c.Expire[i].Key = d.str()
			c.Expire[i].ModRevision = d.varint()
		}
	case OpBatch:
		n := d.uvarint()
		if n > MaxBatch {
			return nil, fmt.Errorf("%w: batch of %d commands, over %d", ErrInvalidCommand, n, MaxBatch)
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			b := d.bytes()
			if d.err != nil {
				break
			}
			if len(b) > 1 && Op(b[1]) == OpBatch {
				return nil, fmt.Errorf("%w: nested batch", ErrInvalidCommand)
			}
			sub, err := DecodeCommand(b)
			if err != nil {
				return nil, err
			}
			c.Batch = append(c.Batch, sub)
		}
	default:
		return nil, fmt.Errorf("%w: unknown op %d", ErrInvalidCommand, c.Op)
	}
	if d.err == nil && len(d.buf) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.buf))
	}
	if d.err != nil {
		return nil, d.fail()
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// validate checks the rules the HTTP layer enforces, again, so that a bad
// entry in the log is refused the same way on every node.
func (c *Command) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidCommand}, args...)...)
	}
	if len(c.IdempotencyKey) > MaxIdempotencyKeyLen {
		return bad("idempotency key over %d bytes", MaxIdempotencyKeyLen)
	}
	switch c.Op {
	case OpTxn:
		t := &c.Txn
		if len(t.Compare) > MaxTxnOps || len(t.Success) > MaxTxnOps || len(t.Failure) > MaxTxnOps {
			return bad("more than %d operations", MaxTxnOps)
		}
		for _, cmp := range t.Compare {
			if err := ValidateKey(cmp.Key); err != nil {
				return bad("%v", err)
			}
			if cmp.Target < TargetValue || cmp.Target > TargetExists {
				return bad("unknown compare target %d", cmp.Target)
			}
			if cmp.Op < CmpEqual || cmp.Op > CmpGreater {
				return bad("unknown compare operator %d", cmp.Op)
			}
		}
		for _, ops := range [][]TxnOp{t.Success, t.Failure} {
			for _, op := range ops {
				if op.Type < OpGet || op.Type > OpDelete {
					return bad("unknown operation %d", op.Type)
				}
				check := ValidateKey
				if op.Prefix {
					check = ValidatePrefix
				}
				if err := check(op.Key); err != nil {
					return bad("%v", err)
				}
				if op.Type == OpPut && op.Prefix {
					return bad("put cannot take a prefix")
				}
				if op.ExpiresAt < 0 || op.Limit < 0 {
					return bad("negative expiry or limit")
				}
			}
		}
	case OpSetMember, OpRemoveMember:
		m := c.Member
		if m.ID == "" {
			return bad("member without an ID")
		}
		if len(m.ID) > MaxMemberFieldLen || len(m.RaftAddr) > MaxMemberFieldLen || len(m.HTTPAddr) > MaxMemberFieldLen {
			return bad("member ID or address over %d bytes", MaxMemberFieldLen)
		}
	case OpExpire:
		for _, x := range c.Expire {
			if err := ValidateKey(x.Key); err != nil {
				return bad("%v", err)
			}
		}
	}
	return nil
}

type encoder struct{ buf []byte }

func (e *encoder) byte(b byte)      { e.buf = append(e.buf, b) }
func (e *encoder) varint(v int64)   { e.buf = binary.AppendVarint(e.buf, v) }
func (e *encoder) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.buf = append(e.buf, s...) }
func (e *encoder) bytes(b []byte)   { e.uvarint(uint64(len(b))); e.buf = append(e.buf, b...) }
func (e *encoder) flag(f bool) {
	if f {
		e.byte(1)
	} else {
		e.byte(0)
	}
}
func (e *encoder) ops(ops []TxnOp) {
	e.uvarint(uint64(len(ops)))
	for _, op := range ops {
		e.byte(byte(op.Type))
		e.str(op.Key)
		e.flag(op.Prefix)
		e.bytes(op.Value)
		e.varint(op.ExpiresAt)
		e.varint(op.Limit)
	}
}

type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail() error { return fmt.Errorf("%w: %v", ErrInvalidCommand, d.err) }

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) == 0 {
		d.err = fmt.Errorf("truncated")
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.err = fmt.Errorf("bad varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.err = fmt.Errorf("bad uvarint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) count() int {
	n := d.uvarint()
	if n > MaxTxnOps {
		if d.err == nil {
			d.err = fmt.Errorf("count %d over %d", n, MaxTxnOps)
		}
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > maxField || n > uint64(len(d.buf)) || n > math.MaxInt32 {
		d.err = fmt.Errorf("field of %d bytes overruns the command", n)
		return nil
	}
	if n == 0 {
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) flag() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	if d.err == nil {
		d.err = fmt.Errorf("bad flag")
	}
	return false
}

func (d *decoder) ops() []TxnOp {
	n := d.count()
	if n == 0 || d.err != nil {
		return nil
	}
	ops := make([]TxnOp, n)
	for i := range ops {
		op := &ops[i]
		op.Type = OpType(d.byte())
		op.Key = d.str()
		op.Prefix = d.flag()
		op.Value = d.bytes()
		op.ExpiresAt = d.varint()
		op.Limit = d.varint()
	}
	return ops
}
