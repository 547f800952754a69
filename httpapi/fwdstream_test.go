package httpapi_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/store"
	"github.com/cairn-kv/cairn/tests/inproc"
)

// openStream upgrades a connection to tn's forwarded-write stream and
// returns it with the answer to the upgrade.
func openStream(t *testing.T, tn *inproc.Node, proto ...string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", tn.HTTPAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, "http://"+tn.HTTPAddr+"/v1/internal/apply-stream", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "cairn-apply/1")
	if len(proto) > 0 {
		req.Header.Set("Upgrade", proto[0])
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

// packOf frames commands as a pack of forwarded writes.
func packOf(cmds ...[]byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(cmds)))
	for _, c := range cmds {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	return b
}

// exchange sends one frame and returns the answer frame.
func exchange(t *testing.T, conn net.Conn, br *bufio.Reader, payload []byte) []byte {
	t.Helper()
	frame := binary.AppendUvarint(nil, uint64(len(payload)))
	if _, err := conn.Write(append(frame, payload...)); err != nil {
		t.Fatal(err)
	}
	n, err := binary.ReadUvarint(br)
	if err != nil {
		t.Fatalf("reading the answer frame: %v", err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestApplyStream: the leader takes a stream over, applies each pack sent
// on it and answers in order; a pack it cannot take is refused whole and
// the stream goes on.
func TestApplyStream(t *testing.T) {
	c := inproc.Start(t, 1, inproc.Options{})
	l := c.Leader(t)
	conn, br, resp := openStream(t, l)
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Cairn-Node") != l.ID {
		t.Fatalf("upgrade answered %s, node %q", resp.Status, resp.Header.Get("X-Cairn-Node"))
	}
	for i := 0; i < 3; i++ {
		ans := exchange(t, conn, br, packOf(
			store.NewPut(fmt.Sprintf("s/%d/a", i), []byte("1"), -1, 0).Encode(),
			store.NewPut(fmt.Sprintf("s/%d/b", i), []byte("2"), -1, 0).Encode()))
		if len(ans) == 0 || ans[0] != 0 {
			t.Fatalf("pack %d: answer %v, want status 0 and answers", i, ans)
		}
		// Two answers, each a result (kind 0).
		rest := ans[1:]
		for j := 0; j < 2; j++ {
			if len(rest) == 0 || rest[0] != 0 {
				t.Fatalf("pack %d answer %d: %v", i, j, rest)
			}
			n, k := binary.Uvarint(rest[1:])
			if k <= 0 || int(n) > len(rest)-1-k {
				t.Fatalf("pack %d answer %d: bad length", i, j)
			}
			if _, err := store.DecodeResult(rest[1+k : 1+k+int(n)]); err != nil {
				t.Fatalf("pack %d answer %d: %v", i, j, err)
			}
			rest = rest[1+k+int(n):]
		}
	}
	rev := l.Store.Revision()
	if rev != 6 {
		t.Fatalf("revision %d after three packs of two writes, want 6", rev)
	}
	// A bad pack is refused whole (status 1 and a message), and the
	// stream still serves the next one.
	member := (&store.Command{Op: store.OpSetMember, Member: store.Member{ID: "x", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"}}).Encode()
	for _, bad := range [][]byte{[]byte("hello"), packOf(member), packOf([]byte{1, 99})} {
		ans := exchange(t, conn, br, bad)
		if len(ans) == 0 || ans[0] != 1 {
			t.Fatalf("bad pack %q: answer %q, want a refusal", bad, ans)
		}
	}
	if ans := exchange(t, conn, br, packOf(store.NewPut("s/after", []byte("x"), -1, 0).Encode())); ans[0] != 0 {
		t.Fatalf("pack after refusals: %v", ans)
	}
	if got := l.Store.Revision(); got != rev+1 {
		t.Fatalf("revision %d, want %d: a refused pack must apply nothing", got, rev+1)
	}
	// A zero-length frame ends the stream.
	conn.Write([]byte{0})
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after an empty frame: %v, want EOF", err)
	}
}

// TestApplyStreamRefusals: without the Upgrade header, on a follower, or
// with another method, the stream endpoint answers a plain JSON error.
func TestApplyStreamRefusals(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	f := c.Followers(l)[0]
	call(t, l, "GET", "/v1/internal/apply-stream", nil).wantError(t, http.StatusBadRequest, "invalid_argument")
	call(t, l, "POST", "/v1/internal/apply-stream", nil).wantError(t, http.StatusMethodNotAllowed, "method_not_allowed")
	_, _, resp := openStream(t, f)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade on a follower: %s, want 503", resp.Status)
	}
}

// TestForwardingFollowsANewLeader: a follower's streams go to the leader of
// the moment; after the leader stops, writes through the follower reach
// the new one.
func TestForwardingFollowsANewLeader(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	f := c.Followers(l)[0]
	for i := 0; i < 5; i++ {
		call(t, f, "PUT", kvPath(fmt.Sprintf("lead/%d", i)), []byte("x")).wantOK(t)
	}
	c.Stop(l)
	nl := c.LeaderAmong(t, 20*time.Second, c.Running()...)
	inproc.WaitFor(t, 20*time.Second, "writes through the follower", func() error {
		r := call(t, f, "PUT", kvPath("lead/after"), []byte("y"))
		if r.Status != http.StatusOK {
			return fmt.Errorf("PUT through %s: %d %s", f.ID, r.Status, r.Body)
		}
		return nil
	})
	if f == nl {
		return // the follower itself took over: nothing was forwarded
	}
	r := call(t, f, "PUT", kvPath("lead/last"), []byte("z")).wantOK(t)
	if got := r.Header.Get("X-Cairn-Node"); got != nl.ID {
		t.Fatalf("write answered by %q, want the new leader %q", got, nl.ID)
	}
}

// TestReadIndexStream: on a read index stream the leader answers each 'r'
// with an index at least as high as every write it acknowledged, and
// refuses anything else without ending the stream.
func TestReadIndexStream(t *testing.T) {
	c := inproc.Start(t, 1, inproc.Options{})
	l := c.Leader(t)
	conn, br, resp := openStream(t, l, "cairn-read-index/1")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	var last uint64
	for i := 0; i < 3; i++ {
		call(t, l, "PUT", kvPath(fmt.Sprintf("ri/%d", i)), []byte("x")).wantOK(t)
		applied := l.Store.AppliedIndex()
		ans := exchange(t, conn, br, []byte{'r'})
		if len(ans) < 2 || ans[0] != 0 {
			t.Fatalf("read index answer %v", ans)
		}
		idx, n := binary.Uvarint(ans[1:])
		if n <= 0 || idx < applied || idx < last {
			t.Fatalf("read index %d after applied %d (previous %d)", idx, applied, last)
		}
		last = idx
	}
	if ans := exchange(t, conn, br, []byte("rr")); ans[0] != 1 {
		t.Fatalf("a malformed request: %v, want a refusal", ans)
	}
	if ans := exchange(t, conn, br, []byte{'r'}); ans[0] != 0 {
		t.Fatalf("after a refusal: %v", ans)
	}
}

// TestFollowerLinearizableReads: reads through a follower (which asks the
// leader for read indexes over a stream) see every write acknowledged
// before them, with many at once.
func TestFollowerLinearizableReads(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	f := c.Followers(l)[0]
	for i := 0; i < 20; i++ {
		key := kvPath(fmt.Sprintf("lin/%d", i%4))
		call(t, l, "PUT", key, []byte(fmt.Sprint(i))).wantOK(t)
		errs := make(chan error, 8)
		for j := 0; j < 8; j++ {
			go func() {
				r := call(t, f, "GET", key, nil)
				if r.Status != http.StatusOK || string(r.Body) != fmt.Sprint(i) {
					errs <- fmt.Errorf("read %d: %d %q, want %q", i, r.Status, r.Body, fmt.Sprint(i))
					return
				}
				errs <- nil
			}()
		}
		for j := 0; j < 8; j++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
}
