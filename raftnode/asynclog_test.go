package raftnode

import (
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

func openAsyncLog(t *testing.T) (*asyncLog, *raftboltdb.BoltStore, *atomic.Bool) {
	t.Helper()
	bs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(t.TempDir(), "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	leader := new(atomic.Bool)
	a, err := newAsyncLog(bs, leader.Load, func() {}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.close(); bs.Close() })
	return a, bs, leader
}

func cmds(from, to uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
	}
	return out
}

func innerLast(t *testing.T, bs *raftboltdb.BoltStore) uint64 {
	t.Helper()
	last, err := bs.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// A leader's entries are readable as soon as they are queued, and become
// durable, in order, behind it.
func TestAsyncLogLeaderQueues(t *testing.T) {
	a, bs, leader := openAsyncLog(t)
	leader.Store(true)
	for i := uint64(1); i <= 50; i++ {
		if err := a.StoreLogs(cmds(i, i)); err != nil {
			t.Fatal(err)
		}
		var l raft.Log
		if err := a.GetLog(i, &l); err != nil || l.Index != i || l.Data[0] != byte(i) {
			t.Fatalf("GetLog(%d) right after StoreLogs: %+v, %v", i, l, err)
		}
		if last, _ := a.LastIndex(); last != i {
			t.Fatalf("LastIndex %d after storing %d", last, i)
		}
	}
	if !a.waitDurable(50) {
		t.Fatal("entry 50 never became durable")
	}
	if got := innerLast(t, bs); got != 50 {
		t.Fatalf("the file's last index is %d once 50 is durable", got)
	}
	for i := uint64(1); i <= 50; i++ {
		var l raft.Log
		if err := bs.GetLog(i, &l); err != nil || l.Data[0] != byte(i) {
			t.Fatalf("entry %d in the file: %+v, %v", i, l, err)
		}
	}
}

// A follower's append, and a leader's append of anything but commands,
// are on disk (with everything queued before them) when StoreLogs returns.
func TestAsyncLogSynchronousAppends(t *testing.T) {
	a, bs, leader := openAsyncLog(t)
	leader.Store(true)
	if err := a.StoreLogs(cmds(1, 20)); err != nil {
		t.Fatal(err)
	}
	conf := &raft.Log{Index: 21, Term: 1, Type: raft.LogConfiguration}
	if err := a.StoreLogs([]*raft.Log{conf}); err != nil {
		t.Fatal(err)
	}
	if got, d := innerLast(t, bs), a.durable.Load(); got != 21 || d != 21 {
		t.Fatalf("after a leader's configuration entry: file at %d, durable %d; want 21", got, d)
	}
	if err := a.StoreLogs(cmds(22, 30)); err != nil {
		t.Fatal(err)
	}
	leader.Store(false)
	if err := a.StoreLogs(cmds(31, 31)); err != nil {
		t.Fatal(err)
	}
	if got, d := innerLast(t, bs), a.durable.Load(); got != 31 || d != 31 {
		t.Fatalf("after a follower's append: file at %d, durable %d; want 31", got, d)
	}
}

// Deleting the newest entries (a follower's conflict) lowers the durable
// index; deleting the oldest (compaction) does not.
func TestAsyncLogDeleteRange(t *testing.T) {
	a, _, leader := openAsyncLog(t)
	leader.Store(true)
	if err := a.StoreLogs(cmds(1, 40)); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteRange(1, 10); err != nil {
		t.Fatal(err)
	}
	if d := a.durable.Load(); d != 40 {
		t.Fatalf("durable %d after compacting 1-10, want 40", d)
	}
	if first, _ := a.FirstIndex(); first != 11 {
		t.Fatalf("FirstIndex %d after compacting 1-10", first)
	}
	leader.Store(false)
	if err := a.DeleteRange(35, 40); err != nil {
		t.Fatal(err)
	}
	if d := a.durable.Load(); d != 34 {
		t.Fatalf("durable %d after dropping 35-40, want 34", d)
	}
	if err := a.StoreLogs([]*raft.Log{{Index: 35, Term: 2, Type: raft.LogCommand}}); err != nil {
		t.Fatal(err)
	}
	if !a.waitDurable(35) {
		t.Fatal("the new entry 35 is not durable")
	}
}

// While the log cannot be written a leader's new entries are refused, so
// that Raft steps down; waits for queued entries end at close.
func TestAsyncLogWriteFailure(t *testing.T) {
	a, bs, leader := openAsyncLog(t)
	leader.Store(true)
	if err := a.StoreLogs(cmds(1, 5)); err != nil {
		t.Fatal(err)
	}
	if !a.waitDurable(5) {
		t.Fatal("entry 5 never became durable")
	}
	bs.Close() // every write fails from now on
	if err := a.StoreLogs(cmds(6, 6)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := a.StoreLogs(cmds(7, 7))
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the leader's appends were still taken after the log failed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	leader.Store(false)
	if err := a.StoreLogs(cmds(8, 8)); err == nil {
		t.Fatal("a follower's append succeeded with earlier entries unwritten")
	}
	waited := make(chan bool)
	go func() { waited <- a.waitDurable(6) }()
	select {
	case <-waited:
		t.Fatal("waitDurable(6) returned while entry 6 was not written")
	case <-time.After(100 * time.Millisecond):
	}
	a.close()
	select {
	case ok := <-waited:
		if ok {
			t.Fatal("waitDurable(6) reported an unwritten entry durable")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitDurable went on after close")
	}
	// A refusal holds for every later entry, and the state machine takes
	// no snapshot after one.
	if a.waitDurable(7) {
		t.Fatal("an entry after a refused one was let through")
	}
	if _, err := (&gatedFSM{log: a}).Snapshot(); err == nil {
		t.Fatal("a snapshot was taken after an entry was refused")
	}
	if err := a.DeleteRange(1, 2); err == nil {
		t.Fatal("DeleteRange succeeded on a closed log")
	}
}

// Under steady appends a call that must wait for the queue (here
// DeleteRange, as log compaction does) waits only for what was queued
// when it was called.
func TestAsyncLogDrainUnderLoad(t *testing.T) {
	a, _, leader := openAsyncLog(t)
	leader.Store(true)
	if err := a.StoreLogs(cmds(1, 100)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	fed := make(chan uint64)
	go func() {
		next := uint64(101)
		defer func() { fed <- next }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := a.StoreLogs(cmds(next, next)); err != nil {
				t.Error(err)
				return
			}
			// Keep a few entries queued, as a busy leader does, not
			// an ever longer backlog.
			a.waitDurable(next - 2)
			next++
		}
	}()
	done := make(chan error)
	go func() { done <- a.DeleteRange(1, 50) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("DeleteRange starved by steady appends")
	}
	close(stop)
	last := <-fed
	if !a.waitDurable(last - 1) {
		t.Fatalf("entry %d never became durable", last-1)
	}
	if first, _ := a.FirstIndex(); first != 51 {
		t.Fatalf("FirstIndex %d after deleting 1-50", first)
	}
}

func TestClampCommitIndex(t *testing.T) {
	var durable atomic.Uint64
	durable.Store(7)
	ct := &clampTransport{durable: durable.Load}
	for _, c := range []struct{ in, want uint64 }{{5, 5}, {7, 7}, {9, 7}} {
		args := &raft.AppendEntriesRequest{LeaderCommitIndex: c.in}
		ct.clamp(args)
		if args.LeaderCommitIndex != c.want {
			t.Errorf("commit index %d clamped to %d with 7 durable, want %d", c.in, args.LeaderCommitIndex, c.want)
		}
	}
}
