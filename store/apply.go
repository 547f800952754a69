package store

import (
	"bytes"
	"encoding/binary"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// applier applies commands inside one bbolt write transaction.
type applier struct {
	tx      *bolt.Tx
	s       *Store
	rev     int64
	events  []Event
	changes []kvChange
}

// apply runs one command. A returned error is an I/O failure that aborts
// the batch; a failure of the command itself is reported in the Result.
func (a *applier) apply(cmd *Command) (*Result, error) {
	if cmd.IdempotencyKey != "" {
		if r := a.idemLookup(cmd.IdempotencyKey); r != nil {
			return r, nil
		}
	}
	var r *Result
	var err error
	switch cmd.Op {
	case OpTxn:
		r, err = a.txn(cmd)
	case OpSetMember:
		e := encoder{}
		e.str(cmd.Member.RaftAddr)
		e.str(cmd.Member.HTTPAddr)
		err = a.tx.Bucket(bucketMembers).Put([]byte(cmd.Member.ID), e.buf)
		r = &Result{Revision: a.rev, Succeeded: true}
	case OpRemoveMember:
		err = a.tx.Bucket(bucketMembers).Delete([]byte(cmd.Member.ID))
		r = &Result{Revision: a.rev, Succeeded: true}
	case OpExpire:
		r, err = a.expire(cmd)
	case OpBatch:
		r = &Result{Succeeded: true, Batch: make([]*Result, len(cmd.Batch))}
		for i, sub := range cmd.Batch {
			if r.Batch[i], err = a.apply(sub); err != nil {
				return nil, err
			}
		}
		r.Revision = a.rev
	}
	if err != nil {
		return nil, err
	}
	if cmd.IdempotencyKey != "" {
		if err := a.idemStore(cmd, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// get reads a live key at the command's time.
func (a *applier) get(key string, now int64, withValue bool) (KV, bool, error) {
	if !withValue {
		kv, ok, err := a.lookup(key)
		return kv, ok && kv.live(now), err
	}
	var v []byte
	if e, ok := a.s.recent[key]; ok && e.dirty {
		v = e.rec
	} else {
		v = a.tx.Bucket(bucketKV).Get([]byte(key))
	}
	if v == nil {
		return KV{}, false, nil
	}
	kv, err := decodeRecord(key, v, withValue)
	if err != nil {
		return KV{}, false, err
	}
	return kv, kv.live(now), nil
}

func (a *applier) txn(cmd *Command) (*Result, error) {
	now := cmd.Now
	res := &Result{Succeeded: true}
	for _, c := range cmd.Txn.Compare {
		cur, exists, err := a.get(c.Key, now, c.Target == TargetValue)
		if err != nil {
			return nil, err
		}
		if !compare(&cur, exists, &c) {
			res.Succeeded = false
			mod := int64(0)
			if exists {
				mod = cur.ModRevision
			}
			res.Conflict = &ConflictError{Key: c.Key, ModRevision: mod}
			break
		}
	}
	ops := cmd.Txn.Success
	if !res.Succeeded {
		ops = cmd.Txn.Failure
	}
	newRev := a.rev + 1
	wrote := false
	res.Ops = make([]OpResult, len(ops))
	for i := range ops {
		op := &ops[i]
		or := &res.Ops[i]
		or.Type = op.Type
		switch op.Type {
		case OpGet:
			if op.Prefix {
				if err := a.s.flushKV(a.tx); err != nil {
					return nil, err
				}
				kvs, _, err := scan(a.tx.Bucket(bucketKV), ListOptions{Prefix: op.Key, Limit: int(op.Limit)}, now)
				if err != nil {
					return nil, err
				}
				or.KVs = kvs
			} else {
				kv, ok, err := a.get(op.Key, now, true)
				if err != nil {
					return nil, err
				}
				if ok {
					or.KVs = []KV{kv}
				}
			}
		case OpPut:
			if err := a.put(op, newRev, now); err != nil {
				return nil, err
			}
			wrote = true
		case OpDelete:
			n, err := a.delete(op, newRev, now)
			if err != nil {
				return nil, err
			}
			or.Deleted = n
			res.Deleted += n
			wrote = wrote || n > 0
		}
	}
	if wrote {
		a.rev = newRev
	}
	res.Revision = a.rev
	return res, nil
}

func compare(cur *KV, exists bool, c *Compare) bool {
	if c.Target == TargetValue {
		if !exists {
			return false
		}
		return cmpOrder(bytes.Compare(cur.Value, c.Value), c.Op)
	}
	var v int64
	if exists {
		switch c.Target {
		case TargetModRevision:
			v = cur.ModRevision
		case TargetCreateRevision:
			v = cur.CreateRevision
		case TargetVersion:
			v = cur.Version
		case TargetExists:
			v = 1
		}
	}
	switch {
	case v < c.Num:
		return cmpOrder(-1, c.Op)
	case v > c.Num:
		return cmpOrder(1, c.Op)
	}
	return cmpOrder(0, c.Op)
}

func cmpOrder(order int, op CmpOp) bool {
	switch op {
	case CmpEqual:
		return order == 0
	case CmpNotEqual:
		return order != 0
	case CmpLess:
		return order < 0
	case CmpGreater:
		return order > 0
	}
	return false
}

func ttlKey(expiresAt int64, key string) []byte {
	b := make([]byte, 8, 8+len(key))
	binary.BigEndian.PutUint64(b, uint64(expiresAt))
	return append(b, key...)
}

func (a *applier) put(op *TxnOp, rev, now int64) error {
	kv := KV{Key: op.Key, Value: op.Value, ModRevision: rev, CreateRevision: rev, Version: 1, ExpiresAt: op.ExpiresAt}
	e, err := a.entry(op.Key)
	if err != nil {
		return err
	}
	old, exists := e.kv(op.Key), e.present
	if exists {
		if old.ExpiresAt != 0 {
			if err := a.tx.Bucket(bucketTTL).Delete(ttlKey(old.ExpiresAt, op.Key)); err != nil {
				return err
			}
		}
		if old.live(now) {
			kv.CreateRevision = old.CreateRevision
			kv.Version = old.Version + 1
		}
	}
	rec := encodeRecord(op.Key, &kv)
	a.s.write(op.Key, e, &kv, rec)
	a.changes = append(a.changes, kvChange{key: op.Key, rec: rec, ttl: kv.ExpiresAt != 0 || (exists && old.ExpiresAt != 0)})
	if kv.ExpiresAt != 0 {
		if err := a.tx.Bucket(bucketTTL).Put(ttlKey(kv.ExpiresAt, op.Key), nil); err != nil {
			return err
		}
	}
	if op.Value != nil {
		// The event shares the record's copy of the value (records are
		// never changed), capped so an append cannot write into it.
		kv.Value = rec[len(rec)-len(op.Value) : len(rec) : len(rec)]
	}
	a.events = append(a.events, Event{Type: OpPut, KV: kv})
	return nil
}

func (a *applier) delete(op *TxnOp, rev, now int64) (int64, error) {
	if !op.Prefix {
		return a.deleteKey(op.Key, rev, now, -1)
	}
	if err := a.s.flushKV(a.tx); err != nil {
		return 0, err
	}
	var keys []string
	c := a.tx.Bucket(bucketKV).Cursor()
	prefix := []byte(op.Key)
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, string(k))
	}
	var n int64
	for _, k := range keys {
		d, err := a.deleteKey(k, rev, now, -1)
		if err != nil {
			return 0, err
		}
		n += d
	}
	return n, nil
}

// deleteKey removes key, if present and (when mod >= 0) at mod revision
// mod, and returns 1 if a live key was deleted.
func (a *applier) deleteKey(key string, rev, now, mod int64) (int64, error) {
	e, err := a.entry(key)
	if err != nil || !e.present {
		return 0, err
	}
	old := e.kv(key)
	if mod >= 0 && old.ModRevision != mod {
		return 0, nil
	}
	if mod < 0 && !old.live(now) {
		// Expired but not yet reaped: leave it to the leader's OpExpire,
		// which deletes it with an event watchers see.
		return 0, nil
	}
	if old.ExpiresAt != 0 {
		if err := a.tx.Bucket(bucketTTL).Delete(ttlKey(old.ExpiresAt, key)); err != nil {
			return 0, err
		}
	}
	a.s.write(key, e, nil, nil)
	a.changes = append(a.changes, kvChange{key: key, ttl: old.ExpiresAt != 0})
	a.events = append(a.events, Event{Type: OpDelete, KV: KV{Key: key, ModRevision: rev, CreateRevision: old.CreateRevision}})
	return 1, nil
}

func (a *applier) expire(cmd *Command) (*Result, error) {
	newRev := a.rev + 1
	res := &Result{Succeeded: true}
	for _, x := range cmd.Expire {
		n, err := a.deleteKey(x.Key, newRev, cmd.Now, x.ModRevision)
		if err != nil {
			return nil, err
		}
		res.Deleted += n
	}
	if res.Deleted > 0 {
		a.rev = newRev
	}
	res.Revision = a.rev
	return res, nil
}

// idemLookup returns the remembered result of an idempotency key, or nil.
func (a *applier) idemLookup(key string) *Result {
	v := a.tx.Bucket(bucketIdem).Get([]byte(key))
	if v == nil {
		return nil
	}
	d := decoder{buf: v}
	d.varint() // recorded at
	return decodeResult(&d)
}

// maxIdemResult caps the bytes of get results kept with an idempotency
// key; a retry of a transaction whose gets read more answers them empty.
const maxIdemResult = 64 << 10

// idemStore remembers r under the command's idempotency key and forgets
// keys older than the window, measured on the command's clock so that
// every node forgets the same keys.
func (a *applier) idemStore(cmd *Command, r *Result) error {
	e := encoder{}
	e.varint(cmd.Now)
	appendResult(&e, r, maxIdemResult)
	idem, age, meta := a.tx.Bucket(bucketIdem), a.tx.Bucket(bucketIdemAge), a.tx.Bucket(bucketMeta)
	if err := idem.Put([]byte(cmd.IdempotencyKey), e.buf); err != nil {
		return err
	}
	if err := age.Put(ttlKey(cmd.Now, cmd.IdempotencyKey), nil); err != nil {
		return err
	}
	count := getU64(meta.Get(metaIdemCount)) + 1
	// Forget keys older than the window, and the oldest beyond the cap, a
	// bounded number per command so that no apply takes long.
	cutoff := cmd.Now - int64(a.s.cfg.IdempotencyWindow)
	var old [][]byte
	c := age.Cursor()
	for k, _ := c.First(); k != nil && len(old) < 256; k, _ = c.Next() {
		if len(k) < 8 {
			break
		}
		if int64(binary.BigEndian.Uint64(k)) >= cutoff && count-uint64(len(old)) <= MaxIdempotencyKeys {
			break
		}
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := age.Delete(k); err != nil {
			return err
		}
		count--
		// The key may have been recorded again later; keep that record.
		if v := idem.Get(k[8:]); v != nil {
			d := decoder{buf: v}
			if d.varint() == int64(binary.BigEndian.Uint64(k)) {
				if err := idem.Delete(k[8:]); err != nil {
					return err
				}
			}
		}
	}
	return meta.Put(metaIdemCount, putU64(count))
}

// maxRecent bounds Store.recent; when it is full its dirty records are
// written to the transaction and it starts over empty.
const maxRecent = 1 << 16

// recentKey is what a write needs of a key's record (all but the value).
// While dirty, the record itself (nil: deleted) is not yet in the write
// transaction: writes keep a key's latest record here and put it into
// bbolt once, in key order, when the transaction commits (flushKV), so
// that a key written many times between commits costs one bbolt Put.
type recentKey struct {
	create, mod, version, expires int64
	present, dirty                bool
	rec                           []byte
}

func (e *recentKey) kv(key string) KV {
	return KV{Key: key, CreateRevision: e.create, ModRevision: e.mod, Version: e.version, ExpiresAt: e.expires}
}

// set makes e describe kv's record (nil: no record).
func (e *recentKey) set(kv *KV) {
	if kv == nil {
		e.create, e.mod, e.version, e.expires, e.present = 0, 0, 0, 0, false
		return
	}
	e.create, e.mod, e.version, e.expires, e.present = kv.CreateRevision, kv.ModRevision, kv.Version, kv.ExpiresAt, true
}

// entry returns key's entry in Store.recent, reading its record from the
// write transaction when the key is not there. A write needs the old
// record's revisions and expiry; this spares it a bbolt search for keys
// written often.
func (a *applier) entry(key string) (*recentKey, error) {
	if e, ok := a.s.recent[key]; ok {
		return e, nil
	}
	e := &recentKey{}
	if raw := a.tx.Bucket(bucketKV).Get([]byte(key)); raw != nil {
		kv, err := decodeRecord(key, raw, false)
		if err != nil {
			return nil, err
		}
		e.set(&kv)
	}
	if len(a.s.recent) >= maxRecent {
		if err := a.s.flushKV(a.tx); err != nil {
			return nil, err
		}
		clear(a.s.recent)
	}
	a.s.recent[key] = e
	return e, nil
}

// lookup returns key's record without its value, whether or not it has
// expired.
func (a *applier) lookup(key string) (KV, bool, error) {
	e, err := a.entry(key)
	if err != nil || !e.present {
		return KV{}, false, err
	}
	return e.kv(key), true, nil
}

// write makes kv, encoded as rec, key's record (nil: deleted) in its
// entry e, to be put into the write transaction by flushKV. applyMu is
// held.
func (s *Store) write(key string, e *recentKey, kv *KV, rec []byte) {
	e.set(kv)
	e.rec = rec
	if !e.dirty {
		e.dirty = true
		s.dirty = append(s.dirty, key)
	}
}

// flushKV puts the dirty records of Store.recent into tx, in key order.
// applyMu is held. On an error tx must be dropped (and recent with it).
func (s *Store) flushKV(tx *bolt.Tx) error {
	if len(s.dirty) == 0 {
		return nil
	}
	slices.Sort(s.dirty)
	b := tx.Bucket(bucketKV)
	for _, key := range s.dirty {
		e := s.recent[key]
		var err error
		if e.present {
			err = b.Put([]byte(key), e.rec)
		} else {
			err = b.Delete([]byte(key))
		}
		if err != nil {
			return err
		}
		e.dirty, e.rec = false, nil
	}
	s.dirty = s.dirty[:0]
	return nil
}

// forgetRecent empties Store.recent, dirty records included: for when the
// write transaction is dropped uncommitted. applyMu is held.
func (s *Store) forgetRecent() {
	clear(s.recent)
	s.dirty = s.dirty[:0]
}
