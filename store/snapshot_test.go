package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
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

// isolated runs test t in a child process of its own and reports the
// child's outcome. It returns true only inside that child, where the
// caller goes on to run the test's body.
func isolated(t *testing.T, timeout time.Duration) bool {
	t.Helper()
	switch os.Getenv(childEnv) {
	case t.Name():
		return true
	case "":
		runChild(t, timeout)
		return false
	default:
		t.Skip("another test's child process")
		return false
	}
}

// runChild reruns test t alone in a child process and fails t if the child
// fails, crashes or does not finish within timeout.
func runChild(t *testing.T, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var pattern []string
	for _, part := range strings.Split(t.Name(), "/") {
		pattern = append(pattern, "^"+regexp.QuoteMeta(part)+"$")
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+strings.Join(pattern, "/"), "-test.v", "-test.count=1")
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
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) && !strings.Contains(string(out), "--- PASS: "+strings.Split(t.Name(), "/")[0]) {
		t.Errorf("child process ran nothing; output:\n%s", summarize(out))
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
	if !isolated(t, 60*time.Second) {
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
	if !isolated(t, 60*time.Second) {
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

// reframe unwraps a snapshot stream (magic, version, size, bbolt file,
// CRC-64), lets mutate change the bbolt file, and wraps it again with a
// correct size and checksum, so that the damage reaches the bbolt checks.
func reframe(t testing.TB, snap []byte, mutate func(file []byte) []byte) []byte {
	t.Helper()
	hl := len(snapshotMagic) + 1 + 8
	if len(snap) < hl+8 || string(snap[:len(snapshotMagic)]) != snapshotMagic {
		t.Fatalf("snapshot framing changed; update reframe (starts %q)", snap[:min(len(snap), 16)])
	}
	size := binary.BigEndian.Uint64(snap[len(snapshotMagic)+1 : hl])
	if uint64(len(snap)) != uint64(hl)+size+8 {
		t.Fatalf("snapshot framing changed: %d bytes for a %d byte file", len(snap), size)
	}
	file := mutate(bytes.Clone(snap[hl : hl+int(size)]))
	out := append([]byte{}, snap[:len(snapshotMagic)+1]...)
	out = binary.BigEndian.AppendUint64(out, uint64(len(file)))
	out = append(out, file...)
	return binary.BigEndian.AppendUint64(out, crc64.Checksum(file, crcTable))
}

// TestRestoreFraming: damage to the frame itself is refused.
func TestRestoreFraming(t *testing.T) {
	s := mustOpenStore(t)
	fillStore(t, s, "a", 20)
	want := stateOf(t, s)
	good := snapshotBytes(t, s)
	hl := len(snapshotMagic) + 1 + 8
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x01; return b }
	tests := map[string][]byte{
		"bad magic":        flip(0),
		"bad version":      flip(len(snapshotMagic)),
		"size too big":     flip(hl - 8),
		"size one less":    append(append(append([]byte{}, good[:hl-8]...), binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(good[hl-8:hl])-1)...), good[hl:]...),
		"file bit flipped": flip(hl + 5000),
		"checksum flipped": flip(len(good) - 1),
		"no checksum":      good[:len(good)-8],
		"half checksum":    good[:len(good)-4],
		"header only":      good[:hl],
		"bare bbolt file":  good[hl : len(good)-8],
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			err := s.Restore(bytes.NewReader(b))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Restore = %v, want ErrCorrupt", err)
			}
			mustEqual(t, "state", stateOf(t, s), want)
		})
	}
	if err := s.Restore(bytes.NewReader(reframe(t, good, func(f []byte) []byte { return f }))); err != nil {
		t.Fatalf("reframed intact snapshot: %v", err)
	}
	mustEqual(t, "state after reframed restore", stateOf(t, s), want)
}

// TestRestoreFramedForeignFile: a well-framed bbolt file without cairn's
// buckets is refused.
func TestRestoreFramedForeignFile(t *testing.T) {
	s := mustOpenStore(t)
	fillStore(t, s, "a", 5)
	want := stateOf(t, s)
	foreign := reframe(t, snapshotBytes(t, mustOpenStore(t)), func(f []byte) []byte {
		i := bytes.Index(f, []byte("kv"))
		if i < 0 {
			t.Fatal("no kv bucket name in the file")
		}
		copy(f[i:], "kw") // same length, still sorts before "members"
		return f
	})
	if err := s.Restore(bytes.NewReader(foreign)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Restore = %v, want ErrCorrupt", err)
	}
	mustEqual(t, "state", stateOf(t, s), want)
}

// TestRestoreFramedDamagedFile: a snapshot whose frame is intact but whose
// bbolt file is damaged (the leader's own file rotted, say) must be refused
// by checkFile, not crash the process. Runs in a child process.
func TestRestoreFramedDamagedFile(t *testing.T) {
	var src *testStore
	var good []byte
	if os.Getenv(childEnv) != "" {
		src = mustOpenStore(t)
		fillStore(t, src, "a", 300)
		good = snapshotBytes(t, src)
	}
	tests := map[string]func(f []byte) []byte{
		"zeroed leaf page": func(f []byte) []byte {
			i := bytes.Index(f, []byte("a150"))
			pg := i / 4096 * 4096
			clear(f[pg : pg+4096])
			return f
		},
		"swapped keys": func(f []byte) []byte {
			i, j := bytes.Index(f, []byte("a011")), bytes.Index(f, []byte("a015"))
			copy(f[i:], "a015")
			copy(f[j:], "a011")
			return f
		},
		"last page cut": func(f []byte) []byte { return f[:len(f)-4096] },
		"half the file": func(f []byte) []byte { return f[:len(f)/2/4096*4096] },
	}
	for _, name := range []string{"swapped keys", "zeroed leaf page", "last page cut", "half the file"} {
		t.Run(name, func(t *testing.T) {
			if !isolated(t, 60*time.Second) {
				return
			}
			s := mustOpenStore(t)
			fillStore(t, s, "b", 5)
			want := stateOf(t, s)
			t.Logf("restoring a framed snapshot with %s", name)
			err := s.Restore(bytes.NewReader(reframe(t, good, tests[name])))
			if err == nil {
				// Accepting is only harmless if nothing was lost.
				if got := stateOf(t, s); !reflect.DeepEqual(got, stateOf(t, src)) {
					t.Fatalf("Restore accepted a damaged file and lost data")
				}
				t.Logf("accepted: the damage was in unused space")
				return
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("Restore = %v, want ErrCorrupt", err)
			}
			mustEqual(t, "state", stateOf(t, s), want)
		})
	}
}

// TestOpenDamagedFile: Open of a damaged bbolt file should fail with
// ErrCorrupt (as ErrCorrupt's doc says), not crash the process. Runs each
// case in a child process.
func TestOpenDamagedFile(t *testing.T) {
	tests := map[string]func(f []byte) []byte{
		"zeroed leaf page": func(f []byte) []byte {
			pg := bytes.Index(f, []byte("a150")) / 4096 * 4096
			clear(f[pg : pg+4096])
			return f
		},
		"half the file":   func(f []byte) []byte { return f[:len(f)/2/4096*4096] },
		"four pages left": func(f []byte) []byte { return f[:4*4096] },
		"garbage":         func(f []byte) []byte { return bytes.Repeat([]byte("garbage!"), len(f)/8) },
	}
	for _, name := range []string{"garbage", "zeroed leaf page", "half the file", "four pages left"} {
		t.Run(name, func(t *testing.T) {
			if !isolated(t, 60*time.Second) {
				return
			}
			path := filepath.Join(t.TempDir(), "db")
			s := mustOpenStoreAt(t, path)
			fillStore(t, s, "a", 300)
			want := stateOf(t, s)
			s.Close()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tests[name](data), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Logf("opening a store file with %s", name)
			cfg := DefaultConfig(path)
			cfg.Logger = discardLogger()
			s2, err := Open(cfg)
			if err == nil {
				defer s2.Close()
				// Accepting is only harmless if nothing was lost.
				if got := stateOf(t, &testStore{Store: s2, t: t}); !reflect.DeepEqual(got, want) {
					t.Fatalf("Open of a damaged file succeeded and data is lost: %d keys of %d", len(got.KVs), len(want.KVs))
				}
				t.Logf("accepted: the damage was in unused space")
				return
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("Open = %v, want ErrCorrupt", err)
			}
		})
	}
}
