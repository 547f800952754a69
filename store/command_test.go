package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// sampleCommands returns one valid command of every shape the log carries.
func sampleCommands() map[string]*Command {
	return map[string]*Command{
		"put": NewPut("a", []byte("v"), -1, 0),
		"put cas absent with ttl": func() *Command {
			c := NewPut("dir/key", []byte("value"), 0, 1_700_000_000_000_000_000)
			c.Now = 1_699_999_999_000_000_000
			return c
		}(),
		"put cas rev": NewPut("k", []byte{0, 1, 2, 0xff}, 42, 0),
		"delete":      NewDelete("k", false, -1),
		"delete cas":  NewDelete("k", false, 7),
		"delete prefix": func() *Command {
			c := NewDelete("dir/", true, 7)
			c.IdempotencyKey = "idem-1"
			return c
		}(),
		"delete everything": NewDelete("", true, -1),
		"empty txn":         {Op: OpTxn},
		"full txn": {
			Op:             OpTxn,
			Now:            -12345,
			IdempotencyKey: "retry-\u00e9-key",
			Txn: Txn{
				Compare: []Compare{
					{Key: "a", Target: TargetValue, Op: CmpEqual, Value: []byte("x")},
					{Key: "b", Target: TargetModRevision, Op: CmpNotEqual, Num: 3},
					{Key: "c", Target: TargetCreateRevision, Op: CmpLess, Num: 1 << 40},
					{Key: "d", Target: TargetVersion, Op: CmpGreater, Num: -1},
					{Key: "e", Target: TargetExists, Op: CmpEqual, Num: 1},
				},
				Success: []TxnOp{
					{Type: OpGet, Key: "a"},
					{Type: OpGet, Key: "dir/", Prefix: true, Limit: 10},
					{Type: OpGet, Key: "", Prefix: true},
					{Type: OpPut, Key: "a", Value: []byte("y"), ExpiresAt: 99},
					{Type: OpDelete, Key: "b"},
					{Type: OpDelete, Key: "dir/", Prefix: true},
				},
				Failure: []TxnOp{
					{Type: OpGet, Key: "a"},
					{Type: OpPut, Key: "f", Value: bytes.Repeat([]byte("z"), 300)},
				},
			},
		},
		"set member":          {Op: OpSetMember, Now: 5, Member: Member{ID: "n1", RaftAddr: "10.0.0.1:7000", HTTPAddr: "10.0.0.1:8000"}},
		"set member no addrs": {Op: OpSetMember, Member: Member{ID: "n2"}},
		"remove member":       {Op: OpRemoveMember, IdempotencyKey: "rm", Member: Member{ID: "n1"}},
		"expire": {Op: OpExpire, Now: 1 << 62, Expire: []ExpireKey{
			{Key: "a", ModRevision: 1}, {Key: "b/c", ModRevision: 1 << 50},
		}},
		"expire none": {Op: OpExpire},
		"max ops": func() *Command {
			c := &Command{Op: OpTxn}
			for i := 0; i < MaxTxnOps; i++ {
				k := fmt.Sprintf("k%d", i)
				c.Txn.Compare = append(c.Txn.Compare, Compare{Key: k, Target: TargetExists, Op: CmpEqual})
				c.Txn.Success = append(c.Txn.Success, TxnOp{Type: OpPut, Key: k, Value: []byte("v")})
				c.Txn.Failure = append(c.Txn.Failure, TxnOp{Type: OpGet, Key: k})
			}
			return c
		}(),
		"max key": NewPut(strings.Repeat("é", MaxKeyLen/2), []byte("v"), -1, 0),
		"max idempotency key": func() *Command {
			c := NewPut("k", []byte("v"), -1, 0)
			c.IdempotencyKey = strings.Repeat("i", MaxIdempotencyKeyLen)
			return c
		}(),
		"max member fields": {Op: OpSetMember, Member: Member{
			ID:       strings.Repeat("n", MaxMemberFieldLen),
			RaftAddr: strings.Repeat("r", MaxMemberFieldLen),
			HTTPAddr: strings.Repeat("h", MaxMemberFieldLen),
		}},
	}
}

func TestCommandRoundTrip(t *testing.T) {
	for name, c := range sampleCommands() {
		t.Run(name, func(t *testing.T) {
			enc := c.Encode()
			if enc[0] != CommandVersion {
				t.Fatalf("first byte = %d, want CommandVersion %d", enc[0], CommandVersion)
			}
			got, err := DecodeCommand(enc)
			if err != nil {
				t.Fatalf("DecodeCommand: %v", err)
			}
			mustEqual(t, "decoded command", got, c)
			if re := got.Encode(); !bytes.Equal(re, enc) {
				t.Fatalf("re-encoding differs:\n got  %x\n want %x", re, enc)
			}
		})
	}
}

func TestNewPutNewDelete(t *testing.T) {
	tests := []struct {
		name string
		cmd  *Command
		want []Compare
	}{
		{"put unconditional", NewPut("k", nil, -1, 0), nil},
		{"put if absent", NewPut("k", nil, 0, 0), []Compare{{Key: "k", Target: TargetModRevision, Op: CmpEqual, Num: 0}}},
		{"put cas", NewPut("k", nil, 9, 0), []Compare{{Key: "k", Target: TargetModRevision, Op: CmpEqual, Num: 9}}},
		{"delete unconditional", NewDelete("k", false, -1), nil},
		{"delete cas", NewDelete("k", false, 3), []Compare{{Key: "k", Target: TargetModRevision, Op: CmpEqual, Num: 3}}},
		{"delete prefix ignores cas", NewDelete("k", true, 3), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cmd.Op != OpTxn {
				t.Fatalf("Op = %d, want OpTxn", tc.cmd.Op)
			}
			mustEqual(t, "compares", tc.cmd.Txn.Compare, tc.want)
			if len(tc.cmd.Txn.Success) != 1 || len(tc.cmd.Txn.Failure) != 0 {
				t.Fatalf("branches = %+v", tc.cmd.Txn)
			}
		})
	}
	p := NewPut("k", []byte("v"), -1, 77).Txn.Success[0]
	mustEqual(t, "put op", p, TxnOp{Type: OpPut, Key: "k", Value: []byte("v"), ExpiresAt: 77})
	d := NewDelete("p/", true, -1).Txn.Success[0]
	mustEqual(t, "delete op", d, TxnOp{Type: OpDelete, Key: "p/", Prefix: true})
}

// TestDecodeTruncated cuts every valid encoding at every length.
func TestDecodeTruncated(t *testing.T) {
	for name, c := range sampleCommands() {
		t.Run(name, func(t *testing.T) {
			enc := c.Encode()
			for n := 0; n < len(enc); n++ {
				if got, err := DecodeCommand(enc[:n]); err == nil || !errors.Is(err, ErrInvalidCommand) || got != nil {
					t.Fatalf("DecodeCommand(first %d of %d bytes) = %+v, %v; want nil, ErrInvalidCommand", n, len(enc), got, err)
				}
			}
		})
	}
}

func TestDecodeTrailingBytes(t *testing.T) {
	for name, c := range sampleCommands() {
		t.Run(name, func(t *testing.T) {
			for _, extra := range [][]byte{{0}, {1}, {0xff, 0xff}} {
				b := append(c.Encode(), extra...)
				if _, err := DecodeCommand(b); !errors.Is(err, ErrInvalidCommand) {
					t.Fatalf("DecodeCommand with trailing %x: err = %v, want ErrInvalidCommand", extra, err)
				}
			}
		})
	}
}

// rawTxn hand-assembles an OpTxn encoding so that tests can write counts
// and lengths Encode would never produce.
type rawEnc struct{ encoder }

func newRaw(op Op) *rawEnc {
	r := &rawEnc{}
	r.byte(CommandVersion)
	r.byte(byte(op))
	r.varint(0)
	r.str("")
	return r
}

func TestDecodeRejects(t *testing.T) {
	long := strings.Repeat("k", MaxKeyLen+1)
	keyCases := map[string]string{
		"empty key":        "",
		"NUL in key":       "a\x00b",
		"invalid UTF-8":    "a\xffb",
		"truncated UTF-8":  "\xe2\x82",
		"key over 1024":    long,
		"surrogate in key": "\xed\xa0\x80",
	}
	tests := map[string][]byte{
		"nil":                   nil,
		"empty":                 {},
		"version 0":             append([]byte{0}, NewPut("a", nil, -1, 0).Encode()[1:]...),
		"version 2":             append([]byte{2}, NewPut("a", nil, -1, 0).Encode()[1:]...),
		"version 255 only":      {255},
		"version only":          {CommandVersion},
		"unknown op 0":          newRaw(0).buf,
		"unknown op 5":          append(newRaw(5).buf, 0, 0, 0),
		"unknown op 255":        append(newRaw(255).buf, 0, 0, 0),
		"bad now varint":        {CommandVersion, byte(OpTxn), 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
		"huge field length":     binary.AppendUvarint([]byte{CommandVersion, byte(OpTxn), 0}, 1<<40),
		"field past the end":    binary.AppendUvarint([]byte{CommandVersion, byte(OpTxn), 0}, 5),
		"field over int32":      binary.AppendUvarint([]byte{CommandVersion, byte(OpTxn), 0}, 1<<33),
		"huge compare count":    binary.AppendUvarint(newRaw(OpTxn).buf, 1<<62),
		"compare count 129":     binary.AppendUvarint(newRaw(OpTxn).buf, MaxTxnOps+1),
		"success count 129":     binary.AppendUvarint(append(newRaw(OpTxn).buf, 0), MaxTxnOps+1),
		"failure count 129":     binary.AppendUvarint(append(newRaw(OpTxn).buf, 0, 0), MaxTxnOps+1),
		"expire count 129":      binary.AppendUvarint(newRaw(OpExpire).buf, MaxTxnOps+1),
		"count without entries": binary.AppendUvarint(newRaw(OpTxn).buf, 3),
		"bad prefix flag": func() []byte {
			r := newRaw(OpTxn)
			r.uvarint(0) // compares
			r.uvarint(1) // success
			r.byte(byte(OpGet))
			r.str("a")
			r.byte(2) // flag neither 0 nor 1
			r.bytes(nil)
			r.varint(0)
			r.varint(0)
			r.uvarint(0) // failure
			return r.buf
		}(),
		"member without id": (&Command{Op: OpSetMember, Member: Member{RaftAddr: "x"}}).Encode(),
		"remove without id": (&Command{Op: OpRemoveMember}).Encode(),
		"put with prefix": (&Command{Op: OpTxn, Txn: Txn{Success: []TxnOp{
			{Type: OpPut, Key: "a", Prefix: true},
		}}}).Encode(),
		"put with empty prefix": (&Command{Op: OpTxn, Txn: Txn{Failure: []TxnOp{
			{Type: OpPut, Key: "", Prefix: true},
		}}}).Encode(),
		"op type 0":          (&Command{Op: OpTxn, Txn: Txn{Success: []TxnOp{{Type: 0, Key: "a"}}}}).Encode(),
		"op type 4":          (&Command{Op: OpTxn, Txn: Txn{Failure: []TxnOp{{Type: 4, Key: "a"}}}}).Encode(),
		"compare target 0":   (&Command{Op: OpTxn, Txn: Txn{Compare: []Compare{{Key: "a", Target: 0, Op: CmpEqual}}}}).Encode(),
		"compare target 6":   (&Command{Op: OpTxn, Txn: Txn{Compare: []Compare{{Key: "a", Target: 6, Op: CmpEqual}}}}).Encode(),
		"compare operator 0": (&Command{Op: OpTxn, Txn: Txn{Compare: []Compare{{Key: "a", Target: TargetValue, Op: 0}}}}).Encode(),
		"compare operator 5": (&Command{Op: OpTxn, Txn: Txn{Compare: []Compare{{Key: "a", Target: TargetValue, Op: 5}}}}).Encode(),
		"negative expiry":    NewPut("a", nil, -1, -1).Encode(),
		"negative limit": (&Command{Op: OpTxn, Txn: Txn{Success: []TxnOp{
			{Type: OpGet, Key: "a", Prefix: true, Limit: -1},
		}}}).Encode(),
		"long idempotency key": (&Command{Op: OpExpire, IdempotencyKey: strings.Repeat("i", MaxIdempotencyKeyLen+1)}).Encode(),
		"long member id":       (&Command{Op: OpSetMember, Member: Member{ID: strings.Repeat("n", MaxMemberFieldLen+1)}}).Encode(),
		"long raft addr":       (&Command{Op: OpSetMember, Member: Member{ID: "n", RaftAddr: strings.Repeat("r", MaxMemberFieldLen+1)}}).Encode(),
		"long http addr":       (&Command{Op: OpRemoveMember, Member: Member{ID: "n", HTTPAddr: strings.Repeat("h", MaxMemberFieldLen+1)}}).Encode(),
	}
	over := func(c *Command) []byte { return c.Encode() }
	many := func(n int) *Command {
		c := &Command{Op: OpTxn}
		for i := 0; i < n; i++ {
			c.Txn.Success = append(c.Txn.Success, TxnOp{Type: OpGet, Key: "a"})
		}
		return c
	}
	tests["encoded 129 success ops"] = over(many(MaxTxnOps + 1))
	manyFail := many(0)
	manyFail.Txn.Failure = many(MaxTxnOps + 1).Txn.Success
	tests["encoded 129 failure ops"] = over(manyFail)
	manyCmp := &Command{Op: OpTxn}
	manyExp := &Command{Op: OpExpire}
	for i := 0; i <= MaxTxnOps; i++ {
		manyCmp.Txn.Compare = append(manyCmp.Txn.Compare, Compare{Key: "a", Target: TargetExists, Op: CmpEqual})
		manyExp.Expire = append(manyExp.Expire, ExpireKey{Key: "a"})
	}
	tests["encoded 129 compares"] = over(manyCmp)
	tests["encoded 129 expires"] = over(manyExp)
	for name, key := range keyCases {
		tests["compare "+name] = (&Command{Op: OpTxn, Txn: Txn{Compare: []Compare{{Key: key, Target: TargetExists, Op: CmpEqual}}}}).Encode()
		tests["put "+name] = NewPut(key, []byte("v"), -1, 0).Encode()
		tests["get "+name] = (&Command{Op: OpTxn, Txn: Txn{Failure: []TxnOp{{Type: OpGet, Key: key}}}}).Encode()
		tests["delete "+name] = NewDelete(key, false, -1).Encode()
		tests["expire "+name] = (&Command{Op: OpExpire, Expire: []ExpireKey{{Key: "ok"}, {Key: key}}}).Encode()
		if key != "" {
			tests["prefix get "+name] = (&Command{Op: OpTxn, Txn: Txn{Success: []TxnOp{{Type: OpGet, Key: key, Prefix: true}}}}).Encode()
			tests["prefix delete "+name] = NewDelete(key, true, -1).Encode()
		}
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := DecodeCommand(b)
			if err == nil {
				t.Fatalf("DecodeCommand(%x) = %+v, want an error", b, c)
			}
			if !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("DecodeCommand error %v does not wrap ErrInvalidCommand", err)
			}
			if c != nil {
				t.Fatalf("DecodeCommand returned %+v with its error", c)
			}
		})
	}
}

// TestDecodeDoesNotAliasAcrossFields checks that decoding a command whose
// value is later changed in the source buffer is documented aliasing, and
// that keys (strings) are copies.
func TestDecodeKeysAreCopies(t *testing.T) {
	enc := NewPut("key", []byte("val"), -1, 0).Encode()
	c, err := DecodeCommand(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		enc[i] = 'X'
	}
	if c.Txn.Success[0].Key != "key" {
		t.Fatalf("decoded key changed with its buffer: %q", c.Txn.Success[0].Key)
	}
}

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"dir/sub/key", true},
		{"héllo 世界 🙂", true},
		{strings.Repeat("x", MaxKeyLen), true},
		{strings.Repeat("é", MaxKeyLen/2), true},
		{"", false},
		{strings.Repeat("x", MaxKeyLen+1), false},
		{strings.Repeat("é", MaxKeyLen/2) + "x", false},
		{"\x00", false},
		{"a\x00", false},
		{"\xff", false},
		{"a\xc3", false},
		{"\xed\xa0\x80", false}, // UTF-16 surrogate
		{"\xc0\xaf", false},     // overlong encoding
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%.20q", tc.key), func(t *testing.T) {
			err := ValidateKey(tc.key)
			if tc.ok != (err == nil) {
				t.Fatalf("ValidateKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ValidateKey error %v does not wrap ErrInvalidKey", err)
			}
			perr := ValidatePrefix(tc.key)
			if (tc.ok || tc.key == "") != (perr == nil) {
				t.Fatalf("ValidatePrefix(%q) = %v", tc.key, perr)
			}
		})
	}
}

// validKeyModel is ValidateKey written independently.
func validKeyModel(key string) bool {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(key); {
		r, n := utf8.DecodeRuneInString(key[i:])
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if r == 0 {
			return false
		}
		i += n
	}
	return true
}

func FuzzValidateKey(f *testing.F) {
	for _, s := range []string{"", "a", "a/b/c", "\x00", "a\x00", "\xff", "é", "\xed\xa0\x80", strings.Repeat("k", MaxKeyLen), strings.Repeat("k", MaxKeyLen+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := ValidateKey(key)
		if want := validKeyModel(key); want != (err == nil) {
			t.Fatalf("ValidateKey(%q) = %v, model says ok=%v", key, err, want)
		}
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("error %v does not wrap ErrInvalidKey", err)
		}
		if key == "" && ValidatePrefix(key) != nil {
			t.Fatal("ValidatePrefix rejects the empty prefix")
		}
		if key != "" && (ValidatePrefix(key) == nil) != (err == nil) {
			t.Fatalf("ValidatePrefix(%q) disagrees with ValidateKey", key)
		}
		// A valid key must survive a put round trip through the codec.
		if err == nil {
			c, derr := DecodeCommand(NewPut(key, []byte("v"), -1, 0).Encode())
			if derr != nil {
				t.Fatalf("put of valid key %q does not decode: %v", key, derr)
			}
			if c.Txn.Success[0].Key != key {
				t.Fatalf("key changed in round trip: %q", c.Txn.Success[0].Key)
			}
		}
	})
}

// TestCommandRoundTripRandomized round-trips commands built from many
// small variations, comparing with reflect.DeepEqual.
func TestCommandRoundTripVariations(t *testing.T) {
	values := [][]byte{nil, {0}, []byte("v"), bytes.Repeat([]byte{0xab}, 1000)}
	nums := []int64{0, 1, -1, 1 << 62, -1 << 63, 1<<63 - 1}
	for _, v := range values {
		for _, n := range nums {
			pos := max(n, -(n + 1)) // expiry and limit must not be negative
			idem := string(v)
			if len(idem) > MaxIdempotencyKeyLen {
				idem = idem[:MaxIdempotencyKeyLen]
			}
			c := &Command{Op: OpTxn, Now: n, IdempotencyKey: idem, Txn: Txn{
				Compare: []Compare{{Key: "k", Target: TargetValue, Op: CmpLess, Num: n, Value: v}},
				Success: []TxnOp{{Type: OpPut, Key: "k", Value: v, ExpiresAt: pos, Limit: pos}},
				Failure: []TxnOp{{Type: OpGet, Key: "k", Prefix: true, Limit: pos}},
			}}
			got, err := DecodeCommand(c.Encode())
			if err != nil {
				t.Fatalf("decode %+v: %v", c, err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("round trip:\n got  %+v\n want %+v", got, c)
			}
		}
	}
}
