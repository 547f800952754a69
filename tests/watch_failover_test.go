package tests

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/client"
	"github.com/cairn-kv/cairn/tests/cluster"
)

// TestWatchFailover watches a prefix from revision 1 through the Go client,
// starting on a follower, while a writer makes 300 sequential puts through
// the client. The leader is killed after about 100 puts; after about 200,
// it is restarted and the node the watch is connected to is killed. The
// watcher must see every put exactly once, in revision order, with no gap:
// each acknowledged put at its revision, a put whose outcome the writer
// could not know at most once.
func TestWatchFailover(t *testing.T) {
	const total = 300
	c := cluster.Start(t, 3)
	leader := c.Leader(t)
	followers := c.Followers(t)
	watched := followers[0]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The watch tries the follower first, then the leader (which will be
	// a restarted node with a short history by the time it is needed).
	wc := newClient(t, watched, leader, followers[1])
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	type seen struct {
		ev   client.Event
		node string
	}
	var (
		mu       sync.Mutex
		got      []seen
		watchErr error
		lastRev  atomic.Int64
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		for resp := range wc.Watch(wctx, "watch/", client.WithPrefix(), client.WithRevision(1)) {
			mu.Lock()
			if resp.Err != nil {
				watchErr = resp.Err
			}
			for _, ev := range resp.Events {
				got = append(got, seen{ev, resp.Node})
				lastRev.Store(ev.Revision())
			}
			mu.Unlock()
		}
	}()

	// The writer: sequential puts through a client of all three nodes.
	wcl := newClient(t, c.Nodes()...)
	var (
		acked     = map[string]int64{} // key -> revision
		unknown   = map[string]error{}
		ackCount  atomic.Int64
		secondHit = make(chan struct{}) // closed after the second kill
		wdone     = make(chan struct{})
	)
	go func() {
		defer close(wdone)
		for i := range total {
			if ctx.Err() != nil {
				return
			}
			if i == 250 {
				// Leave the last puts until after the second kill, so it
				// happens mid-way.
				select {
				case <-secondHit:
				case <-ctx.Done():
					return
				}
			}
			key := fmt.Sprintf("watch/%03d", i)
			pctx, pcancel := context.WithTimeout(ctx, 15*time.Second)
			put, err := wcl.Put(pctx, key, []byte(valueOf(key)))
			pcancel()
			mu.Lock()
			if err != nil {
				unknown[key] = err
			} else {
				acked[key] = put.Revision
			}
			mu.Unlock()
			if err == nil {
				ackCount.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	waitCount := func(what string, n int64) {
		t.Helper()
		for ackCount.Load() < n {
			if ctx.Err() != nil {
				t.Fatalf("waiting for %d acknowledged puts (%s): only %d", n, what, ackCount.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	waitCount("first kill", 100)
	must(t, c.Kill(leader.ID))
	t.Logf("killed leader %s after %d acknowledged puts; watch on %s at revision %d", leader.ID, ackCount.Load(), watched.ID, lastRev.Load())
	c.WaitForNewLeader(t, leader.ID)

	waitCount("second kill", 200)
	must(t, c.Restart(leader.ID))
	c.Leader(t)
	mu.Lock()
	before := len(got)
	mu.Unlock()
	must(t, c.Kill(watched.ID))
	t.Logf("killed %s, the watched node, after %d acknowledged puts and %d events", watched.ID, ackCount.Load(), before)
	close(secondHit)
	c.Leader(t)

	select {
	case <-wdone:
	case <-ctx.Done():
		t.Fatalf("the writer did not finish in time: %d acknowledged", ackCount.Load())
	}
	final := revisionEverywhere(t, c)
	for lastRev.Load() < final && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	// A moment for anything extra (a duplicate) to arrive, then stop.
	time.Sleep(200 * time.Millisecond)
	stopWatch()
	<-done

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d puts acknowledged, %d of unknown outcome; %d events, last revision %d, store at %d",
		len(acked), len(unknown), len(got), lastRev.Load(), final)
	for k, err := range unknown {
		t.Logf("unknown outcome of %s: %v", k, err)
	}
	if watchErr != nil {
		t.Errorf("the watch ended with %v", watchErr)
	}
	if len(unknown) > 10 {
		t.Errorf("%d puts failed, want only the few in flight at the kills", len(unknown))
	}
	// The writer is the only one writing under watch/, one put per
	// revision: the events must be revisions 1, 2, ..., final, in order.
	byKey := map[string]int64{}
	var problems []string
	for i, s := range got {
		ev := s.ev
		switch {
		case ev.Revision() != int64(i+1):
			problems = append(problems, fmt.Sprintf("event %d (%s) at revision %d, want %d", i, ev.KV.Key, ev.Revision(), i+1))
		case ev.Type != client.EventPut || string(ev.KV.Value) != valueOf(ev.KV.Key):
			problems = append(problems, fmt.Sprintf("event %d: %s %s = %q", i, ev.Type, ev.KV.Key, ev.KV.Value))
		}
		if prev, dup := byKey[ev.KV.Key]; dup {
			problems = append(problems, fmt.Sprintf("%s seen twice, at revisions %d and %d", ev.KV.Key, prev, ev.Revision()))
		}
		byKey[ev.KV.Key] = ev.Revision()
		if _, ok := acked[ev.KV.Key]; !ok {
			if _, maybe := unknown[ev.KV.Key]; !maybe {
				problems = append(problems, fmt.Sprintf("event for %s, which was never written", ev.KV.Key))
			}
		}
		if len(problems) > 10 {
			break
		}
	}
	if int64(len(got)) != final {
		problems = append(problems, fmt.Sprintf("%d events, want %d (one per revision)", len(got), final))
	}
	for key, rev := range acked {
		if byKey[key] != rev {
			problems = append(problems, fmt.Sprintf("acknowledged put of %s at revision %d seen at %d (0: never)", key, rev, byKey[key]))
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
	// The events came from the watched follower first, and from another
	// node after it died.
	if len(got) > 0 && got[0].node != watched.ID {
		t.Errorf("first event served by %q, want the follower %s", got[0].node, watched.ID)
	}
	nodes := map[string]int{}
	for _, s := range got[min(before, len(got)):] {
		nodes[s.node]++
	}
	if nodes[watched.ID] == len(got)-before {
		t.Errorf("every event after the kill of %s came from it: %v", watched.ID, nodes)
	}
	var parts []string
	for n, k := range nodes {
		parts = append(parts, fmt.Sprintf("%s: %d", n, k))
	}
	t.Logf("events after the second kill served by %s", strings.Join(parts, ", "))
}
