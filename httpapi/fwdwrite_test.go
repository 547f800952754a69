package httpapi_test

import (
	"encoding/binary"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/store"
	"github.com/cairn-kv/cairn/tests/inproc"
)

// TestForwardedWritesPacked: many concurrent writes through one follower
// (sent to the leader packed together) each get their own answer, carrying
// the leader's ID, and all land.
func TestForwardedWritesPacked(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	f := c.Followers(l)[0]
	const n = 64
	revs := make([]int64, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := call(t, f, "PUT", kvPath(fmt.Sprintf("packed/%02d", i)), []byte(fmt.Sprint(i)))
			r.wantOK(t)
			if got := r.Header.Get("X-Cairn-Node"); got != l.ID {
				t.Errorf("write %d answered by %q, want the leader %q", i, got, l.ID)
			}
			revs[i] = r.revisionHeader(t)
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i, rev := range revs {
		if seen[rev] {
			t.Errorf("write %d got revision %d twice", i, rev)
		}
		seen[rev] = true
	}
	// A failed CAS through the follower is still a 409 with the current
	// mod revision, and a conditional write that holds succeeds.
	e := call(t, f, "PUT", kvPath("packed/00")+"?cas=0", []byte("x")).wantError(t, http.StatusConflict, "cas_conflict")
	if e.ModRevision == nil || *e.ModRevision == 0 {
		t.Fatalf("conflict body without the mod revision: %+v", e)
	}
	call(t, f, "PUT", kvPath("packed/00")+fmt.Sprintf("?cas=%d", *e.ModRevision), []byte("y")).wantOK(t)
	var lst listJSON
	call(t, l, "GET", "/v1/kv/?prefix=packed/", nil).wantOK(t).decode(t, &lst)
	if len(lst.KVs) != n {
		t.Fatalf("listed %d keys, want %d", len(lst.KVs), n)
	}
}

// TestForwardedTTLUsesLeaderClock: a TTL written through a follower
// expires about when it says, whatever the follower's clock.
func TestForwardedTTLUsesLeaderClock(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	f := c.Followers(l)[0]
	start := time.Now()
	call(t, f, "PUT", kvPath("ttl/fwd")+"?ttl=2s", []byte("v")).wantOK(t)
	kv, _, err := l.Store.Get("ttl/fwd")
	if err != nil {
		t.Fatalf("leader lacks the key: %v", err)
	}
	exp := time.Unix(0, kv.ExpiresAt)
	if d := exp.Sub(start); d < 1900*time.Millisecond || d > 3*time.Second {
		t.Fatalf("expires %v after the write, want about 2s", d)
	}
}

// TestInternalApplyRefusesBadInput: the internal endpoint answers bad
// bodies with JSON errors, applies nothing, and refuses oversized values
// and anything but transactions.
func TestInternalApplyRefusesBadInput(t *testing.T) {
	c := inproc.Start(t, 1, inproc.Options{})
	l := c.Leader(t)
	rev := l.Store.Revision()
	frame := func(cmds ...[]byte) []byte {
		b := binary.AppendUvarint(nil, uint64(len(cmds)))
		for _, c := range cmds {
			b = binary.AppendUvarint(b, uint64(len(c)))
			b = append(b, c...)
		}
		return b
	}
	big := store.NewPut("k", make([]byte, 2<<20), -1, 0).Encode()
	member := (&store.Command{Op: store.OpSetMember, Member: store.Member{ID: "x", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"}}).Encode()
	cases := []struct {
		name   string
		body   []byte
		status int
		code   string
	}{
		{"empty", nil, 400, "invalid_argument"},
		{"garbage", []byte("hello"), 400, "invalid_argument"},
		{"count without commands", binary.AppendUvarint(nil, 3), 400, "invalid_argument"},
		{"undecodable command", frame([]byte{1, 99}), 400, "invalid_argument"},
		{"not a transaction", frame(member), 400, "invalid_argument"},
		{"oversized value", frame(big), 413, "too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			call(t, l, "POST", "/v1/internal/apply", tc.body).wantError(t, tc.status, tc.code)
		})
	}
	call(t, l, "GET", "/v1/internal/apply", nil).wantError(t, http.StatusMethodNotAllowed, "method_not_allowed")
	if got := l.Store.Revision(); got != rev {
		t.Fatalf("revision moved from %d to %d", rev, got)
	}
}
