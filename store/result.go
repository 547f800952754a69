package store

import (
	"bytes"
	"fmt"
)

// EncodeResult returns a compact binary form of r (without Err and Batch),
// for a follower relaying a leader's answer.
func EncodeResult(r *Result) []byte {
	e := encoder{}
	appendResult(&e, r, -1)
	return e.buf
}

// DecodeResult parses what EncodeResult made. The error wraps
// ErrInvalidCommand.
func DecodeResult(b []byte) (*Result, error) {
	d := decoder{buf: b}
	r := decodeResult(&d)
	if r == nil || len(d.buf) != 0 {
		return nil, fmt.Errorf("%w: malformed result", ErrInvalidCommand)
	}
	return r, nil
}

// appendResult encodes r. Get results are left out (answered empty) when
// their keys and values exceed maxKV bytes; maxKV < 0 means no limit.
func appendResult(e *encoder, r *Result, maxKV int) {
	e.varint(r.Revision)
	e.flag(r.Succeeded)
	e.varint(r.Deleted)
	if r.Conflict != nil {
		e.str(r.Conflict.Key)
		e.flag(true)
		e.varint(r.Conflict.ModRevision)
	} else {
		e.str("")
		e.flag(false)
	}
	size := 0
	for _, op := range r.Ops {
		for _, kv := range op.KVs {
			size += len(kv.Key) + len(kv.Value)
		}
	}
	e.uvarint(uint64(len(r.Ops)))
	for _, op := range r.Ops {
		e.byte(byte(op.Type))
		e.varint(op.Deleted)
		e.flag(op.KVs != nil)
		if maxKV >= 0 && size > maxKV {
			e.uvarint(0)
			continue
		}
		e.uvarint(uint64(len(op.KVs)))
		for _, kv := range op.KVs {
			e.str(kv.Key)
			e.bytes(kv.Value)
			e.varint(kv.CreateRevision)
			e.varint(kv.ModRevision)
			e.varint(kv.Version)
			e.varint(kv.ExpiresAt)
		}
	}
}

// decodeResult parses appendResult's encoding; nil if malformed.
func decodeResult(d *decoder) *Result {
	r := &Result{Revision: d.varint(), Succeeded: d.flag(), Deleted: d.varint()}
	if ck := d.str(); d.flag() {
		r.Conflict = &ConflictError{Key: ck, ModRevision: d.varint()}
	}
	if n := d.count(); n > 0 {
		r.Ops = make([]OpResult, n)
		for i := range r.Ops {
			op := &r.Ops[i]
			op.Type = OpType(d.byte())
			op.Deleted = d.varint()
			if d.flag() {
				op.KVs = []KV{}
			}
			kvs := d.uvarint()
			for j := uint64(0); j < kvs && d.err == nil; j++ {
				kv := KV{Key: d.str(), Value: bytes.Clone(d.bytes())}
				kv.CreateRevision, kv.ModRevision, kv.Version, kv.ExpiresAt = d.varint(), d.varint(), d.varint(), d.varint()
				if kv.Value == nil {
					kv.Value = []byte{}
				}
				op.KVs = append(op.KVs, kv)
			}
		}
	}
	if d.err != nil {
		return nil
	}
	return r
}
