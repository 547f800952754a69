//go:build linux

package chaos

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/cluster"
)

// TestPause stops the leader with SIGSTOP for longer than the election
// timeout, then lets it go on with SIGCONT: it must step down and follow.
func TestPause(t *testing.T) {
	RequireFull(t)
	m, c, w := start(t, Options{}, WorkloadOptions{})
	w.Phase("before")
	Hold(m.Phase)
	l := c.Leader(t)
	must(t, c.Pause(l))
	paused := time.Now()
	logf(t, w, "paused leader %s (SIGSTOP)", l.ID)
	w.Phase("leader paused")
	nl := c.WaitNewLeader(t, l, nil)
	logf(t, w, "new leader %s after %v", nl.ID, time.Since(paused).Round(time.Millisecond))
	Hold(m.Phase)
	must(t, c.Resume(l))
	logf(t, w, "resumed %s (SIGCONT) after %v", l.ID, time.Since(paused).Round(time.Millisecond))
	w.Phase("old leader resumed")
	c.WaitHealthy(t)
	Hold(m.Phase)
	if w.PhaseWritesOK("leader paused") == 0 {
		t.Errorf("no write acknowledged while the leader was paused")
	}
	Verify(t, c, w, m)
}

// TestSlowNetwork delays every link, then also makes every link lossy.
func TestSlowNetwork(t *testing.T) {
	RequireFull(t)
	m, c, w := start(t, Options{}, WorkloadOptions{})
	w.Phase("before")
	Hold(m.Phase)
	c.Net.SetAll(Link{Delay: 5 * time.Millisecond, Jitter: 30 * time.Millisecond})
	logf(t, w, "every link: %s", c.Net.link(1, 2))
	w.Phase("delay 5-35ms")
	Hold(m.Phase)
	c.Net.SetAll(Link{Delay: 5 * time.Millisecond, Jitter: 30 * time.Millisecond, Loss: 0.02})
	logf(t, w, "every link: %s", c.Net.link(1, 2))
	w.Phase("delay + 2% loss")
	Hold(m.Phase)
	c.Net.SetAll(Link{Delay: 50 * time.Millisecond, Jitter: 150 * time.Millisecond, Loss: 0.05})
	logf(t, w, "every link: %s", c.Net.link(1, 2))
	w.Phase("delay 50-200ms + 5% loss")
	Hold(m.Phase)
	c.Net.Heal()
	logf(t, w, "healed")
	w.Phase("healed")
	c.WaitHealthy(t)
	Hold(m.Phase)
	Verify(t, c, w, m)
}

// newestSnapshot returns the index of the newest Raft snapshot in a
// node's data directory and its directory.
func newestSnapshot(n *Node) (uint64, string) {
	dirs, _ := filepath.Glob(filepath.Join(n.DataDir, "raft", "snapshots", "*", "meta.json"))
	var best uint64
	var bestDir string
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var meta struct{ Index uint64 }
		if json.Unmarshal(b, &meta) == nil && meta.Index > best {
			best, bestDir = meta.Index, filepath.Dir(p)
		}
	}
	return best, bestDir
}

// TestSnapshotInstall cuts a follower off until the leader has compacted
// its log past the follower's last entry, so that after healing the
// follower must install a snapshot.
func TestSnapshotInstall(t *testing.T) {
	RequireFull(t)
	const trailing = 32
	m, c, w := start(t, Options{Flags: []string{
		"--snapshot-threshold", "64", "--trailing-logs", fmt.Sprint(trailing), "--snapshot-interval", "200ms",
	}}, WorkloadOptions{})
	w.Phase("before")
	Hold(m.Phase)
	f := c.Followers(t)[0]
	c.Net.Isolate(Link{Cut: true}, f.Slot)
	w.Phase("follower cut off")
	st, err := c.Status(f, false)
	must(t, err)
	logf(t, w, "cut off follower %s at last log index %d", f.ID, st.LastLogIndex)
	l := c.LeaderAmong(t, c.Others(f))
	var snap uint64
	if !poll(2*c.opts.WaitTimeout, func() bool {
		snap, _ = newestSnapshot(l)
		return snap > st.LastLogIndex+trailing+1
	}) {
		t.Fatalf("leader %s did not compact past index %d (newest snapshot %d)", l.ID, st.LastLogIndex, snap)
	}
	logf(t, w, "leader %s has a snapshot at %d, its log starts after %d: past the follower", l.ID, snap, snap-trailing)
	Hold(m.Phase)
	c.Net.Heal()
	healed := time.Now()
	w.Phase("healed")
	target, err := c.Status(l, false)
	must(t, err)
	if !poll(c.opts.WaitTimeout, func() bool {
		s, err := c.Status(f, false)
		return err == nil && s.AppliedIndex >= target.AppliedIndex
	}) {
		t.Errorf("follower %s did not catch up to %d", f.ID, target.AppliedIndex)
	}
	logf(t, w, "follower %s caught up in %v", f.ID, time.Since(healed).Round(time.Millisecond))
	if line, ok := f.LogMatches(regexp.MustCompile(`restored from snapshot|Installed remote snapshot`)); ok {
		logf(t, w, "follower log: %s", line)
	} else {
		t.Errorf("follower %s caught up without installing a snapshot (no 'restored from snapshot' in its log)", f.ID)
	}
	Hold(m.Phase)
	Verify(t, c, w, m)
}

// TestMemberReplace removes a follower under load, wipes its data, and
// starts it again under a new ID that joins the cluster (same address).
func TestMemberReplace(t *testing.T) {
	RequireFull(t)
	m, c, w := start(t, Options{}, WorkloadOptions{})
	w.Phase("before")
	Hold(m.Phase)
	f := c.Followers(t)[0]
	c.RemoveMember(t, f)
	logf(t, w, "removed member %s", f.ID)
	w.Phase("member removed")
	must(t, c.Kill(f))
	Hold(m.Phase)
	nn := c.ReplaceNode(t, f, "n9")
	logf(t, w, "%s joined in %s's place (raft %s)", nn.ID, f.ID, nn.AdvertiseAddr)
	w.Phase("replacement joined")
	ms, err := c.MemberList(c.Leader(t))
	must(t, err)
	var got []string
	for _, mb := range ms {
		got = append(got, mb.ID)
		if !mb.Voter {
			t.Errorf("member %s is not a voter", mb.ID)
		}
	}
	want := ids(c.Members())
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("members %v, want %v", got, want)
	}
	Hold(m.Phase)
	Verify(t, c, w, m)
}

// TestLeadershipTransfer stops the leader with SIGTERM under load (cairn
// hands leadership over on shutdown) and restarts it, twice.
func TestLeadershipTransfer(t *testing.T) {
	RequireFull(t)
	m, c, w := start(t, Options{}, WorkloadOptions{})
	w.Phase("before")
	Hold(m.Phase)
	for round := 1; round <= 2; round++ {
		l := c.Leader(t)
		t0 := time.Now()
		if err := c.Stop(l, 20*time.Second); err != nil {
			t.Errorf("SIGTERM of leader %s: %v", l.ID, err)
		}
		took := time.Since(t0)
		nl := c.WaitNewLeader(t, l, nil)
		logf(t, w, "leader %s stopped in %v; %s leads %v after SIGTERM", l.ID, took.Round(time.Millisecond), nl.ID, time.Since(t0).Round(time.Millisecond))
		w.Phase(fmt.Sprintf("leader %s stopped", l.ID))
		if line, ok := l.LogMatches(regexp.MustCompile(`transferring leadership`)); !ok {
			t.Errorf("%s's log does not say it transferred leadership", l.ID)
		} else {
			logf(t, w, "%s", line)
		}
		if line, ok := l.LogMatches(regexp.MustCompile(`leadership transfer failed`)); ok {
			t.Errorf("leadership transfer failed: %s", line)
		}
		Hold(m.Phase)
		must(t, c.Restart(l))
		w.Phase(fmt.Sprintf("%s restarted", l.ID))
		c.WaitHealthy(t)
		Hold(m.Phase)
	}
	Verify(t, c, w, m)
}

// TestDiskFull puts every node's data directory on its own small tmpfs
// and fills the leader's: errors must be clean, nothing acknowledged may
// be lost, and the node must recover once space is freed.
func TestDiskFull(t *testing.T) {
	m := RequireFull(t)
	if os.Geteuid() != 0 {
		t.Skip("chaos: the disk-full test mounts a tmpfs and needs root")
	}
	root, err := os.MkdirTemp("", "cairn-chaos-mnt-*")
	must(t, err)
	var mu sync.Mutex
	var mounts []string
	// Registered before Start, so it runs after the processes are gone.
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, mp := range mounts {
			if out, err := exec.Command("umount", "-l", mp).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v %s", mp, err, out)
			}
		}
		os.RemoveAll(root)
	})
	mount := func(dir, size string) error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
		if err != nil {
			return fmt.Errorf("mount -t tmpfs -o size=%s tmpfs %s: %v %s", size, dir, err, bytes.TrimSpace(out))
		}
		mu.Lock()
		mounts = append(mounts, dir)
		mu.Unlock()
		return nil
	}
	if err := mount(filepath.Join(root, "probe"), "1m"); err != nil {
		t.Skipf("chaos: cannot mount a tmpfs here (%v); skipping the disk-full test", err)
	}
	const size = 48 << 20
	c := Start(t, Options{BeforeStart: func(n *Node) error {
		mp := filepath.Join(root, n.ID)
		if err := mount(mp, fmt.Sprint(size)); err != nil {
			return err
		}
		if err := os.RemoveAll(n.DataDir); err != nil {
			return err
		}
		return os.Symlink(mp, n.DataDir)
	}})
	w := c.StartWorkload(t, WorkloadOptions{})
	w.Phase("before")
	Hold(m.Phase)

	l := c.Leader(t)
	var fs syscall.Statfs_t
	must(t, syscall.Statfs(filepath.Join(root, l.ID), &fs))
	free := int64(fs.Bavail) * int64(fs.Bsize)
	ballast := filepath.Join(root, l.ID, "ballast")
	must(t, os.WriteFile(ballast, make([]byte, free-4<<20), 0o644))
	logf(t, w, "leader %s: ballast of %d MiB leaves 4 MiB free", l.ID, (free-4<<20)>>20)
	w.Phase("filling the leader's disk")

	// Big values, outside the checked keys, fill the disk; every
	// acknowledged one must be readable at the end.
	var (
		fillMu   sync.Mutex
		filled   = map[string]string{}
		stopFill = make(chan struct{})
		fillWG   sync.WaitGroup
		fillErrs atomic.Int64
		unclean  []string
	)
	fillWG.Go(func() {
		// At most 300 values of 32 KiB: about 10 MiB in each node's log
		// and as much in its store, well within the other nodes' space.
		for i := 0; i < 300; i++ {
			select {
			case <-stopFill:
				return
			default:
			}
			live := c.Live()
			n := live[i%len(live)]
			key := fmt.Sprintf("fill/%05d", i)
			val := key + ":" + strings.Repeat(string(rune('a'+i%26)), 32<<10)
			r, err := c.do(n, http.MethodPut, "/v1/kv/"+key, []byte(val), 3*time.Second)
			if err == nil && r.Status == http.StatusOK {
				fillMu.Lock()
				filled[key] = val
				fillMu.Unlock()
				continue
			}
			if err == nil {
				if _, clean := r.Error(); !clean {
					fillMu.Lock()
					unclean = append(unclean, fmt.Sprintf("PUT %s via %s: %s", key, n.ID, r))
					fillMu.Unlock()
				}
			}
			fillErrs.Add(1)
			time.Sleep(50 * time.Millisecond)
		}
	})
	full := regexp.MustCompile(`(?i)no space left on device`)
	var line string
	if !poll(2*time.Minute, func() bool {
		var ok bool
		line, ok = l.LogMatches(full)
		return ok || !l.Running()
	}) {
		t.Fatalf("%s never ran out of space", l.ID)
	}
	logf(t, w, "%s ran out of space: %s", l.ID, line)
	w.Phase("leader's disk full")
	Hold(m.Phase)
	if !l.Running() {
		t.Errorf("%s exited when its disk filled up (%v); it should report errors and wait for space:\n%s", l.ID, l.ExitErr(), cluster.Tail(l.LastStartLog(), 30))
	}
	must(t, os.Remove(ballast))
	logf(t, w, "freed the ballast")
	w.Phase("space freed")
	close(stopFill)
	fillWG.Wait()
	if !l.Running() {
		// Recovery then means a restart; report the crash above and
		// carry on with the checks.
		must(t, c.Restart(l))
	}
	c.WaitHealthy(t)
	Hold(m.Phase)
	if line, ok := l.LogMatches(regexp.MustCompile(`^panic:|fatal error:`)); ok {
		t.Errorf("%s panicked: %s", l.ID, line)
	}
	Verify(t, c, w, m)

	fillMu.Lock()
	defer fillMu.Unlock()
	logf(t, w, "%d big writes acknowledged, %d failed", len(filled), fillErrs.Load())
	for _, u := range unclean {
		t.Errorf("unclean error answer to a big write: %s", u)
	}
	lost := 0
	for key, val := range filled {
		r, err := c.do(c.Leader(t), http.MethodGet, "/v1/kv/"+key, nil, 5*time.Second)
		if err != nil || r.Status != http.StatusOK || string(r.Body) != val {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged write of %s lost: %v %v", key, err, r)
			}
		}
	}
}

// TestCorruption damages a stopped follower's files; started again, the
// node must refuse with a clear message and a non-zero exit, or else
// serve exactly the cluster's data. It must never serve wrong data.
func TestCorruption(t *testing.T) {
	RequireFull(t)
	t.Run("truncated fsm.db", func(t *testing.T) {
		corruption(t, false, func(t *testing.T, n *Node, _ string) {
			p := filepath.Join(n.DataDir, "fsm.db")
			st, err := os.Stat(p)
			must(t, err)
			// Cut the file in the middle of the pages its metadata
			// uses, not just in the preallocated tail.
			end := boltDataEnd(t, p)
			size := max(end/2&^4095, 2*4096)
			must(t, os.Truncate(p, size))
			t.Logf("truncated %s from %d bytes (%d in use) to %d", p, st.Size(), end, size)
		})
	})
	t.Run("bit flip in a value in fsm.db", func(t *testing.T) {
		corruption(t, false, func(t *testing.T, n *Node, canary string) {
			p := filepath.Join(n.DataDir, "fsm.db")
			flips := flipAll(t, p, []byte(canary))
			t.Logf("flipped one bit in each of the %d copies of the canary value in %s", flips, p)
		})
	})
	t.Run("bit flip in the newest snapshot, fsm.db lost", func(t *testing.T) {
		corruption(t, false, func(t *testing.T, n *Node, _ string) {
			idx, dir := newestSnapshot(n)
			if dir == "" {
				t.Fatalf("%s has no snapshot", n.ID)
			}
			p := filepath.Join(dir, "state.bin")
			b, err := os.ReadFile(p)
			must(t, err)
			b[len(b)/2] ^= 0x10
			must(t, os.WriteFile(p, b, 0o600))
			removeFSM(t, n)
			t.Logf("flipped a bit in %s (snapshot at index %d) and removed fsm.db", p, idx)
		})
	})
	t.Run("control: lost fsm.db is rebuilt", func(t *testing.T) {
		corruption(t, true, func(t *testing.T, n *Node, _ string) {
			removeFSM(t, n)
			t.Logf("removed %s's fsm.db; it must rebuild from its snapshot and log", n.ID)
		})
	})
}

// boltDataEnd reads a bbolt file's two meta pages and returns where the
// pages in use end (high-water page id times page size, from the meta
// page with the higher transaction id).
func boltDataEnd(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	// A page starts with a 16-byte header; a meta page then holds magic,
	// version, page size and flags (4 bytes each), the root bucket (16),
	// the freelist page id, the high-water page id and the txid (8 each).
	const metaOff = 16
	le := func(off int) uint64 {
		var v uint64
		for i := 7; i >= 0; i-- {
			v = v<<8 | uint64(b[off+i])
		}
		return v
	}
	if len(b) < 2*4096 {
		t.Fatalf("%s: too short for a bbolt file", path)
	}
	pageSize := int(uint32(le(metaOff + 8)))
	var end int64
	var txid uint64
	for _, at := range []int{0, pageSize} {
		hwm, tx := le(at+metaOff+40), le(at+metaOff+48)
		if tx >= txid {
			txid, end = tx, int64(hwm)*int64(pageSize)
		}
	}
	if end <= 0 || end > int64(len(b)) {
		t.Fatalf("%s: unexpected high-water mark %d (file %d bytes)", path, end, len(b))
	}
	return end
}

func removeFSM(t *testing.T, n *Node) {
	t.Helper()
	ps, _ := filepath.Glob(filepath.Join(n.DataDir, "fsm.db*"))
	if len(ps) == 0 {
		t.Fatalf("%s has no fsm.db", n.ID)
	}
	for _, p := range ps {
		must(t, os.Remove(p))
	}
}

// flipAll flips one bit in the middle of every copy of pat in the file.
func flipAll(t *testing.T, path string, pat []byte) int {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	count := 0
	for i := 0; ; {
		j := bytes.Index(b[i:], pat)
		if j < 0 {
			break
		}
		b[i+j+len(pat)/2] ^= 0x01
		count++
		i += j + len(pat)
	}
	if count == 0 {
		t.Fatalf("%s holds no copy of %q", path, pat)
	}
	must(t, os.WriteFile(path, b, 0o600))
	return count
}

func firstMatch(log string, re *regexp.Regexp) (string, bool) {
	for _, l := range strings.Split(log, "\n") {
		if re.MatchString(l) {
			return l, true
		}
	}
	return "", false
}

var damageMessage = regexp.MustCompile(`(?i)corrupt|truncat|checksum|crc|mismatch|damaged|invalid`)

// corruption damages a stopped follower's files with damage and starts
// it again. With mustStart, the node must come up (and serve the
// cluster's data); otherwise it may refuse (non-zero exit, clear
// message) or come up and serve the cluster's data.
func corruption(t *testing.T, mustStart bool, damage func(t *testing.T, n *Node, canary string)) {
	m, c, w := start(t, Options{Flags: []string{
		"--snapshot-threshold", "64", "--trailing-logs", "32", "--snapshot-interval", "200ms",
	}}, WorkloadOptions{})
	ctl := w.Client(w.opts.Clients)
	rb := make([]byte, 16)
	rand.Read(rb)
	canary := mustWrite(t, ctl, c.Leader(t), Input{Kind: Put, Key: "canary", Value: "canary-" + hex.EncodeToString(rb)})
	w.Phase("load")
	Hold(m.Phase)
	w.Stop()
	c.WaitConverged(t)

	f := c.Followers(t)[0]
	if err := c.Stop(f, 20*time.Second); err != nil {
		t.Errorf("stop %s: %v", f.ID, err)
	}
	damage(t, f, canary)
	exitErr, log, err := c.StartExpectingExit(f, 10*time.Second)
	if err == nil {
		// It refused to start.
		if mustStart {
			t.Errorf("%s did not start (%v):\n%s", f.ID, exitErr, cluster.Tail(log, 20))
		}
		if exitErr == nil {
			t.Errorf("%s exited with status 0 on damaged data; want a non-zero status", f.ID)
		}
		line := ""
		for _, l := range strings.Split(log, "\n") {
			if damageMessage.MatchString(l) && !strings.HasPrefix(l, "=== chaos:") {
				line = l
				break
			}
		}
		if line == "" {
			t.Errorf("%s exited (%v) without a clear message about the damage; log:\n%s", f.ID, exitErr, cluster.Tail(log, 20))
		} else {
			t.Logf("%s refused to start (%v): %s", f.ID, exitErr, line)
		}
		if p, ok := firstMatch(log, regexp.MustCompile(`^(panic:|fatal error:|goroutine \d+ \[)`)); ok {
			t.Errorf("%s crashed instead of refusing cleanly: %s\n%s", f.ID, p, cluster.Tail(log, 40))
		}
	} else {
		// It runs: it must serve exactly the cluster's data.
		t.Logf("%s started on the damaged files; checking that it serves the cluster's data", f.ID)
		keys := append(w.Keys(), "canary")
		var diff []string
		ok := poll(c.opts.WaitTimeout, func() bool {
			diff = nil
			for _, k := range keys {
				want, err1 := c.do(c.Leader(t), http.MethodGet, "/v1/kv/"+k, nil, 5*time.Second)
				got, err2 := c.do(f, http.MethodGet, "/v1/kv/"+k+"?consistency=stale", nil, 5*time.Second)
				if err1 != nil || err2 != nil {
					diff = append(diff, fmt.Sprintf("%s: %v %v", k, err1, err2))
					continue
				}
				if want.Status != got.Status || !bytes.Equal(want.Body, got.Body) {
					diff = append(diff, fmt.Sprintf("%s: cluster has %s, %s serves %s", k, want, f.ID, got))
				}
			}
			return len(diff) == 0
		})
		if !ok {
			t.Errorf("%s SERVES WRONG DATA after starting on damaged files:\n%s", f.ID, strings.Join(diff, "\n"))
		}
	}
	Verify(t, c, w, m)
}
