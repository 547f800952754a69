package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/client"
	"github.com/cairn-kv/cairn/client/clienttest"
)

// evLine is an event line of a watch stream.
func evLine(typ, key string, rev int64) string {
	if typ == "delete" {
		return fmt.Sprintf(`{"type":"delete","key":%q,"create_revision":1,"mod_revision":%d,"version":0}`, key, rev)
	}
	return fmt.Sprintf(`{"type":"put","key":%q,"value":"v%d","create_revision":1,"mod_revision":%d,"version":1}`, key, rev, rev)
}

func progressLine(rev int64) string { return fmt.Sprintf(`{"type":"progress","revision":%d}`, rev) }

// streamHandler answers a watch with the header revision and lines, then
// ends as end says: "cut" drops the connection, "hang" waits for the
// client to go, anything else is sent as a last line.
func streamHandler(headerRev int64, end string, lines ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("X-Cairn-Revision", fmt.Sprint(headerRev))
		w.Header().Set("X-Cairn-Node", "n7")
		w.WriteHeader(http.StatusOK)
		for _, l := range lines {
			_, _ = io.WriteString(w, l+"\n")
		}
		w.(http.Flusher).Flush()
		switch end {
		case "cut":
			panic(http.ErrAbortHandler)
		case "hang":
			<-r.Context().Done()
		default:
			_, _ = io.WriteString(w, end+"\n")
		}
	}
}

// collect receives from ch until it has want events, the channel closes
// or the timeout passes; it returns the events and the error response, if
// any.
func collect(t *testing.T, ch <-chan client.WatchResponse, want int, timeout time.Duration) ([]client.Event, error) {
	t.Helper()
	var evs []client.Event
	deadline := time.After(timeout)
	for len(evs) < want {
		select {
		case r, ok := <-ch:
			if !ok {
				return evs, nil
			}
			if r.Err != nil {
				return evs, r.Err
			}
			evs = append(evs, r.Events...)
		case <-deadline:
			t.Fatalf("only %d of %d events within %v: %v", len(evs), want, timeout, describe(evs))
		}
	}
	return evs, nil
}

func describe(evs []client.Event) string {
	var parts []string
	for _, e := range evs {
		parts = append(parts, fmt.Sprintf("%s %s@%d", e.Type, e.KV.Key, e.Revision()))
	}
	return strings.Join(parts, ", ")
}

func TestWatchFake(t *testing.T) {
	fake := clienttest.NewServer(t)
	c := mustNewClient(t, fake.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, k := range []string{"w/a", "other", "w/b"} {
		if _, err := c.Put(ctx, k, []byte("old "+k)); err != nil {
			t.Fatal(err)
		}
	}
	ch := c.Watch(ctx, "w/", client.WithPrefix(), client.WithRevision(1))
	evs, err := collect(t, ch, 2, 5*time.Second)
	if err != nil || describe(evs) != "put w/a@1, put w/b@3" || string(evs[1].KV.Value) != "old w/b" {
		t.Fatalf("history: %s, %v", describe(evs), err)
	}
	// Live changes, a binary value and a delete.
	if _, err := c.Put(ctx, "w/a", []byte{0xff}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, "w/", client.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	evs, err = collect(t, ch, 3, 5*time.Second)
	if err != nil || describe(evs) != "put w/a@4, delete w/a@5, delete w/b@5" || string(evs[0].KV.Value) != "\xff" {
		t.Fatalf("live: %s, %v", describe(evs), err)
	}
	if evs[1].KV.Value != nil || evs[1].Type != client.EventDelete {
		t.Errorf("delete event %+v", evs[1])
	}
	b, _ := json.Marshal(evs[0])
	if string(b) != `{"type":"put","key":"w/a","value_base64":"/w==","create_revision":1,"mod_revision":4,"version":2}` {
		t.Errorf("event JSON %s", b)
	}
	var back client.Event
	if err := json.Unmarshal(b, &back); err != nil || back.KV.Value[0] != 0xff || back.Revision() != 4 {
		t.Errorf("event JSON round trip %+v, %v", back, err)
	}

	// A single key, from now on.
	ch2 := c.Watch(ctx, "w/a")
	waitWatches(t, fake, 2)
	if _, err := c.Put(ctx, "w/b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "w/a", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if evs, err := collect(t, ch2, 1, 5*time.Second); err != nil || describe(evs) != "put w/a@7" {
		t.Errorf("key watch: %s, %v", describe(evs), err)
	}

	cancel()
	for range ch {
	}
	for range ch2 {
	}
}

// waitWatches waits until the fake has received n watch requests.
func waitWatches(t *testing.T, fake *clienttest.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(fake.WatchRevisions()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d watch requests, want %d", len(fake.WatchRevisions()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatchResumesAfterCut(t *testing.T) {
	fake := clienttest.NewServer(t)
	c := mustNewClient(t, fake.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := c.Watch(ctx, "k/", client.WithPrefix(), client.WithRevision(1))
	var want []string
	for i := range 30 {
		key := fmt.Sprintf("k/%d", i%4)
		if _, err := c.Put(ctx, key, []byte("v")); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("put %s@%d", key, i+1))
		if i%7 == 3 {
			fake.CutWatches()
		}
	}
	evs, err := collect(t, ch, 30, 10*time.Second)
	if err != nil || describe(evs) != strings.Join(want, ", ") {
		t.Fatalf("got %s (%v)\nwant %s", describe(evs), err, strings.Join(want, ", "))
	}
	revs := fake.WatchRevisions()
	if len(revs) < 2 || revs[0] != 1 {
		t.Errorf("watch requests with rev %v, want 1 and then resumes", revs)
	}
	for _, r := range revs[1:] {
		if r < 2 {
			t.Errorf("a resume asked for rev %d: %v", r, revs)
		}
	}
	select {
	case r := <-ch:
		t.Errorf("extra response %+v", r)
	case <-time.After(3 * clienttest.ProgressInterval):
	}
}

// A stream cut in the middle of a revision's events resumes at that
// revision on the next endpoint and skips the events already delivered.
func TestWatchFailsOverMidRevision(t *testing.T) {
	a := newRecorder(t, streamHandler(3, "cut",
		progressLine(1), evLine("put", "a", 2), evLine("put", "a", 3), evLine("put", "b", 3),
		evLine("delete", "a", 4))) // revision 4 also deletes b: not sent yet
	b := newRecorder(t, streamHandler(5, "hang",
		evLine("delete", "a", 4), evLine("delete", "b", 4), evLine("put", "c", 5), progressLine(5)))
	c := mustNewClient(t, a.URL, b.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs, err := collect(t, c.Watch(ctx, "", client.WithPrefix(), client.WithRevision(2)), 6, 5*time.Second)
	if want := "put a@2, put a@3, put b@3, delete a@4, delete b@4, put c@5"; err != nil || describe(evs) != want {
		t.Fatalf("got %s (%v), want %s", describe(evs), err, want)
	}
	if got := a.last().URL.RawQuery; got != "prefix=true&rev=2" {
		t.Errorf("first request query %q", got)
	}
	if got := b.last().URL.RawQuery; got != "prefix=true&rev=4" {
		t.Errorf("resume query %q, want rev=4 (the revision cut in the middle)", got)
	}
	if got := b.last().URL.Path; got != "/v1/watch/" {
		t.Errorf("path %q", got)
	}
}

// After a progress line, a resume starts after the progress revision; an
// "error" line ends a stream like a cut does.
func TestWatchResumesAfterProgress(t *testing.T) {
	a := newRecorder(t, streamHandler(2, `{"type":"error","error":"node shutting down","code":"watch_ended"}`,
		evLine("put", "k", 2), progressLine(9)))
	b := newRecorder(t, streamHandler(9, "hang", evLine("put", "k", 10)))
	c := mustNewClient(t, a.URL, b.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := c.Watch(ctx, "k", client.WithRevision(2), client.WithProgressNotify())
	var got []string
	for len(got) < 3 {
		select {
		case r := <-ch:
			switch {
			case r.Err != nil:
				t.Fatal(r.Err)
			case r.IsProgressNotify():
				got = append(got, fmt.Sprintf("progress %d", r.ProgressRevision))
			default:
				got = append(got, describe(r.Events)+" from "+r.Node)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("got only %q", got)
		}
	}
	if want := []string{"put k@2 from n7", "progress 9", "put k@10 from n7"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if q := b.last().URL.RawQuery; q != "rev=10" {
		t.Errorf("resume query %q, want rev=10", q)
	}
}

// Without WithRevision the watch starts after the revision in the first
// stream's header; a resume goes on from there.
func TestWatchFromNow(t *testing.T) {
	a := newRecorder(t, streamHandler(7, "cut", evLine("put", "k", 7), progressLine(7)))
	b := newRecorder(t, streamHandler(7, "hang", evLine("put", "k", 8)))
	c := mustNewClient(t, deadAddr(t), a.URL, b.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs, err := collect(t, c.Watch(ctx, "k"), 1, 5*time.Second)
	if err != nil || describe(evs) != "put k@8" {
		t.Fatalf("got %s, %v; want put k@8 only", describe(evs), err)
	}
	if q := a.last().URL.RawQuery; q != "" {
		t.Errorf("first query %q, want none", q)
	}
	if q := b.last().URL.RawQuery; q != "rev=8" {
		t.Errorf("resume query %q, want rev=8", q)
	}
}

// A stream that stays silent past the idle timeout is left for another
// endpoint.
func TestWatchIdleTimeout(t *testing.T) {
	a := newRecorder(t, streamHandler(3, "hang", progressLine(3)))
	b := newRecorder(t, streamHandler(3, "hang", evLine("put", "k", 4)))
	c := mustNewClient(t, a.URL, b.URL)
	client.SetWatchIdleTimeout(c, 200*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	evs, err := collect(t, c.Watch(ctx, "k"), 1, 5*time.Second)
	if err != nil || describe(evs) != "put k@4" {
		t.Fatalf("got %s, %v", describe(evs), err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("left the silent stream after %v", d)
	}
	if q := b.last().URL.RawQuery; q != "rev=4" {
		t.Errorf("resume query %q", q)
	}
}

func TestWatchErrors(t *testing.T) {
	fake := clienttest.NewServer(t)
	c := mustNewClient(t, fake.Addr())
	ctx := context.Background()
	for range 6 {
		if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	fake.Compact(4)

	first := func(ch <-chan client.WatchResponse) error {
		t.Helper()
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatal("channel closed without an error")
			}
			if _, ok := <-ch; ok {
				t.Error("channel not closed after the error")
			}
			return r.Err
		case <-time.After(5 * time.Second):
			t.Fatal("no answer")
		}
		return nil
	}

	err := first(c.Watch(ctx, "k", client.WithRevision(2)))
	var ce *client.CompactedError
	if !errors.Is(err, client.ErrCompacted) || !errors.As(err, &ce) || ce.OldestRevision != 4 || ce.Revision != 2 {
		t.Errorf("watch from a compacted revision: %v, want a CompactedError with oldest 4", err)
	}
	var se *client.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusGone {
		t.Errorf("compacted error does not unwrap to a 410 StatusError: %v", err)
	}
	if err := first(c.Watch(ctx, "k", client.WithRevision(100))); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("watch from the future: %v, want ErrInvalidArgument", err)
	}
	if err := first(c.Watch(ctx, "")); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("watch of an empty key: %v", err)
	}
	if err := first(c.Watch(ctx, "k", client.WithCAS(1))); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("watch with WithCAS: %v", err)
	}
	if err := first(c.Watch(ctx, "k", client.WithRevision(-1))); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("watch from -1: %v", err)
	}

	// Compacted on one endpoint, served by the other.
	b := newRecorder(t, streamHandler(6, "hang", evLine("put", "k", 2)))
	c2 := mustNewClient(t, fake.Addr(), b.URL)
	ctx2, cancel := context.WithCancel(ctx)
	defer cancel()
	evs, err := collect(t, c2.Watch(ctx2, "k", client.WithRevision(2)), 1, 5*time.Second)
	if err != nil || describe(evs) != "put k@2" {
		t.Errorf("compacted on one endpoint: %s, %v", describe(evs), err)
	}
	// Compacted on one endpoint, the other down: the error.
	c3 := mustNewClient(t, fake.Addr(), deadAddr(t))
	if err := first(c3.Watch(ctx, "k", client.WithRevision(1))); !errors.Is(err, client.ErrCompacted) {
		t.Errorf("compacted with the other endpoint down: %v", err)
	}

	c.Close()
	if err := first(c.Watch(ctx, "k")); !errors.Is(err, client.ErrClosed) {
		t.Errorf("watch after Close: %v", err)
	}
}

// Ending the context closes the channel, also while the client waits
// between retries and while the caller is not receiving.
func TestWatchContextEnds(t *testing.T) {
	down := mustNewClientConfig(t, client.Config{Endpoints: []string{deadAddr(t)}, RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	for r := range down.Watch(ctx, "k") {
		t.Errorf("response %+v from a dead endpoint", r)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed %v after the start, want about 200ms", d)
	}

	var mu sync.Mutex
	served := 0
	srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		served++
		mu.Unlock()
		streamHandler(1, "hang", evLine("put", "k", 2), evLine("put", "k", 3))(w, r)
	})
	c := mustNewClient(t, srv.URL)
	ctx2, cancel2 := context.WithCancel(context.Background())
	ch := c.Watch(ctx2, "k")
	time.Sleep(100 * time.Millisecond) // the watcher blocks sending to us
	cancel2()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed after cancel")
		}
	}
}
