package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// snapshotBytes takes a snapshot of s and streams it into memory.
func snapshotBytes(t testing.TB, s *testStore) []byte {
	t.Helper()
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer sn.Release()
	var buf bytes.Buffer
	n, err := sn.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

// fillStore writes a recognisable state: keys, a TTL, members and an
// idempotency key.
func fillStore(t testing.TB, s *testStore, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		s.put(fmt.Sprintf("%s%03d", prefix, i), strings.Repeat(prefix, 50))
	}
	c := withNow(NewPut(prefix+"ttl", []byte("t"), -1, time.Now().Add(time.Hour).UnixNano()))
	c.IdempotencyKey = prefix + "idem"
	s.apply(c)
	s.apply(&Command{Op: OpSetMember, Member: Member{ID: prefix + "node", RaftAddr: prefix + ":1", HTTPAddr: prefix + ":2"}})
}

type storeState struct {
	KVs      []KV
	Index    uint64
	Revision int64
	Members  []Member
}

func stateOf(t testing.TB, s *testStore) storeState {
	t.Helper()
	return storeState{KVs: s.dump(), Index: s.AppliedIndex(), Revision: s.Revision(), Members: s.Members()}
}

// TestSnapshotWhileWriting: the snapshot holds exactly the state at the
// moment Snapshot returned, however much is written before WriteTo.
func TestSnapshotWhileWriting(t *testing.T) {
	src := mustOpenStore(t)
	fillStore(t, src, "a", 50)
	want := stateOf(t, src)

	sn, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if sn.AppliedIndex() != want.Index {
		t.Fatalf("snapshot AppliedIndex %d, want %d", sn.AppliedIndex(), want.Index)
	}
	// Writes go on: overwrite, delete, add, membership, enough to grow
	// the file.
	src.put("a000", "changed")
	src.apply(withNow(NewDelete("a001", false, -1)))
	fillStore(t, src, "b", 300)
	src.apply(&Command{Op: OpRemoveMember, Member: Member{ID: "anode"}})

	// And more writes run while the snapshot is being streamed.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			idx := src.AppliedIndex() + 1
			src.Apply([]Entry{{Index: idx, Data: withNow(NewPut(fmt.Sprint("c", i), []byte("x"), -1, 0)).Encode()}})
		}
	}()
	var buf bytes.Buffer
	_, err = sn.WriteTo(&buf)
	sn.Release()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}

	dst := mustOpenStore(t)
	fillStore(t, dst, "z", 10) // state that must vanish
	if err := dst.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	mustEqual(t, "restored state", stateOf(t, dst), want)
	if _, ok := dst.Member("znode"); ok {
		t.Fatal("member of the target survived Restore")
	}
	dst.mustMissing("z000")
	if err := dst.Check(); err != nil {
		t.Fatalf("Check after Restore: %v", err)
	}

	// The idempotency memory came along: a retry answers, does not apply.
	c := withNow(NewPut("ttl-retry", nil, -1, 0))
	c.IdempotencyKey = "aidem"
	if r := dst.apply(c); r.Revision != dst.mustGet("attl").ModRevision {
		t.Fatalf("retry after Restore answered %+v", r)
	}
	dst.mustMissing("ttl-retry")
	// TTL index came along.
	if exp, _ := dst.Expired(time.Now().Add(2*time.Hour).UnixNano(), 10); len(exp) != 1 || exp[0].Key != "attl" {
		t.Fatalf("Expired after Restore = %+v", exp)
	}
	// The restored store continues from the snapshot's index and revision.
	if rev := dst.put("next", "1"); rev != want.Revision+1 {
		t.Fatalf("next write at revision %d, want %d", rev, want.Revision+1)
	}
	if dst.AppliedIndex() != want.Index+2 { // the retry and the put
		t.Fatalf("applied index %d", dst.AppliedIndex())
	}

	// Restore survives a reopen.
	dst.Close()
	re := mustOpenStoreAt(t, dst.path)
	if re.Revision() != want.Revision+1 || len(re.dump()) != len(want.KVs)+1 {
		t.Fatalf("reopened restored store: rev %d, %d keys", re.Revision(), len(re.dump()))
	}
	if _, err := os.Stat(dst.path + ".restore"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("restore temp file left behind: %v", err)
	}
}

// TestRestoreIntoSelf rolls a store back to its own earlier snapshot.
func TestRestoreIntoSelf(t *testing.T) {
	s := mustOpenStore(t)
	fillStore(t, s, "a", 5)
	want := stateOf(t, s)
	snap := snapshotBytes(t, s)
	fillStore(t, s, "b", 5)
	if err := s.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "state", stateOf(t, s), want)
}

// TestRestoreEmptySnapshot: restoring a fresh store's snapshot empties a
// full one.
func TestRestoreEmptySnapshot(t *testing.T) {
	empty := mustOpenStore(t)
	snap := snapshotBytes(t, empty)
	s := mustOpenStore(t)
	fillStore(t, s, "a", 5)
	if err := s.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "state", stateOf(t, s), storeState{KVs: nil, Members: []Member{}})
}

type failingReader struct {
	r     io.Reader
	after int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("connection reset")
	}
	if len(p) > f.after {
		p = p[:f.after]
	}
	n, err := f.r.Read(p)
	f.after -= n
	return n, err
}

// TestRestoreRejectsGarbage: input that is not a cairn snapshot fails and
// leaves the store readable, writable and unchanged.
func TestRestoreRejectsGarbage(t *testing.T) {
	s := mustOpenStore(t)
	fillStore(t, s, "a", 20)
	want := stateOf(t, s)
	good := snapshotBytes(t, s)

	// A valid bbolt file that is not a cairn store.
	foreign := func() []byte {
		path := filepath.Join(t.TempDir(), "foreign.db")
		other := mustOpenStoreAt(t, path)
		snap := snapshotBytes(t, other)
		other.Close()
		// Rename the kv bucket's name inside the file: same size, so the
		// page stays valid, but there is no "kv" bucket any more.
		i := bytes.Index(snap, []byte("kv"))
		if i < 0 {
			t.Fatal("no kv bucket name in the snapshot")
		}
		snap = bytes.Clone(snap)
		copy(snap[i:], "kw") // still sorts before "members"
		return snap
	}()

	tests := map[string]io.Reader{
		"empty":          bytes.NewReader(nil),
		"text":           strings.NewReader("this is not a snapshot"),
		"zeros":          bytes.NewReader(make([]byte, 64<<10)),
		"ff":             bytes.NewReader(bytes.Repeat([]byte{0xff}, 64<<10)),
		"json":           strings.NewReader(`{"kvs": []}`),
		"first page":     bytes.NewReader(good[:4096]),
		"failing reader": &failingReader{r: bytes.NewReader(good), after: len(good) / 2},
		"not cairn":      bytes.NewReader(foreign),
	}
	for name, r := range tests {
		t.Run(name, func(t *testing.T) {
			if err := s.Restore(r); err == nil {
				t.Fatal("Restore succeeded")
			}
			mustEqual(t, "state after failed restore", stateOf(t, s), want)
			if _, err := os.Stat(s.path + ".restore"); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("temp file left behind: %v", err)
			}
		})
	}
	// Still writable, and a good snapshot still restores.
	s.put("after", "1")
	if err := s.Restore(bytes.NewReader(good)); err != nil {
		t.Fatalf("good snapshot after failures: %v", err)
	}
	mustEqual(t, "state after good restore", stateOf(t, s), want)
}

// The tests below feed Restore damaged snapshots. bbolt can crash the
// whole process on such files (SIGBUS, or a panic on its own goroutine),
// so each runs in a child process and the parent reports the outcome.

const childEnv = "CAIRN_STORE_TEST_CHILD"

// inChild reports whether this process is the child of runChild for t.
func inChild(t *testing.T) bool { return os.Getenv(childEnv) == t.Name() }

// runChild reruns test t alone in a child process and fails t if the child
// fails, crashes or does not finish within timeout.
func runChild(t *testing.T, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Errorf("child process did not finish within %v (hung); output:\n%s", timeout, summarize(out))
		return
	}
	if err != nil {
		t.Errorf("child process failed: %v; output:\n%s", err, summarize(out))
		return
	}
	t.Logf("child output:\n%s", summarize(out))
}

// summarize keeps the useful part of a child's output: the test's own log
// lines, the panic or fatal error, and the top of the crashing goroutine.
func summarize(b []byte) string {
	var keep []string
	running := 0
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(l, "helpers_test.go"):
			// store logs
		case strings.Contains(l, "_test.go:"), strings.HasPrefix(l, "panic:"), strings.HasPrefix(l, "fatal error"),
			strings.HasPrefix(l, "unexpected fault"), strings.HasPrefix(l, "[signal"), strings.HasPrefix(l, "--- "):
			keep = append(keep, l)
		case strings.HasSuffix(l, "[running]:"):
			running = 12
			keep = append(keep, l)
		case running > 0:
			running--
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestRestoreTruncatedSnapshot cuts a valid snapshot at many lengths;
// every cut must be refused without harm.
func TestRestoreTruncatedSnapshot(t *testing.T) {
	if !inChild(t) {
		runChild(t, 60*time.Second)
		return
	}
	src := mustOpenStore(t)
	fillStore(t, src, "a", 300)
	good := snapshotBytes(t, src)
	srcState := stateOf(t, src)
	s := mustOpenStore(t)
	fillStore(t, s, "b", 5)
	want := stateOf(t, s)
	const page = 4096
	cuts := []int{len(good) - 1, len(good) - 100, len(good) - page, len(good) - page - 1, len(good) / 2, 3 * page, 2 * page, 2*page - 1, page + 1, 100}
	for _, n := range cuts {
		t.Logf("restoring the first %d of %d bytes", n, len(good))
		err := s.Restore(bytes.NewReader(good[:n]))
		if err == nil {
			t.Errorf("BUG: Restore accepted a snapshot truncated to %d of %d bytes", n, len(good))
			if reflect.DeepEqual(stateOf(t, s), srcState) {
				t.Logf("(the restored data happens to be intact: the cut fell in unused space)")
			} else {
				t.Logf("(the restored data differs from the snapshot's)")
			}
			// Put the expected state back for the next cut.
			s.Close()
			s = mustOpenStore(t)
			fillStore(t, s, "b", 5)
			want = stateOf(t, s)
			continue
		}
		mustEqual(t, fmt.Sprintf("state after a restore truncated to %d", n), stateOf(t, s), want)
	}
}

// TestRestoreCorruptSnapshot damages one page of a valid snapshot.
func TestRestoreCorruptSnapshot(t *testing.T) {
	if !inChild(t) {
		runChild(t, 60*time.Second)
		return
	}
	src := mustOpenStore(t)
	fillStore(t, src, "a", 300)
	good := snapshotBytes(t, src)
	s := mustOpenStore(t)
	fillStore(t, s, "b", 5)
	want := stateOf(t, s)
	// Overwrite the page holding key a150 with zeros.
	i := bytes.Index(good, []byte("a150"))
	if i < 0 {
		t.Fatal("key not found in snapshot")
	}
	bad := bytes.Clone(good)
	pg := i / 4096 * 4096
	clear(bad[pg : pg+4096])
	t.Logf("zeroed page %d of %d", pg/4096, len(good)/4096)
	if err := s.Restore(bytes.NewReader(bad)); err == nil {
		t.Fatal("Restore accepted a snapshot with a zeroed page")
	}
	mustEqual(t, "state after a corrupt restore", stateOf(t, s), want)
}
