package batch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestLoneRequestGoesAlone: with nothing in flight a request is sent at
// once, in a batch of its own.
func TestLoneRequestGoesAlone(t *testing.T) {
	var sizes []int
	b := New(Config[int, int]{MaxInflight: 1, Run: func(vs []int) []int {
		sizes = append(sizes, len(vs))
		out := make([]int, len(vs))
		for i, v := range vs {
			out[i] = v * 2
		}
		return out
	}})
	for i := 1; i <= 3; i++ {
		r, err := b.Do(context.Background(), i)
		if err != nil || r != 2*i {
			t.Fatalf("Do(%d) = %d, %v", i, r, err)
		}
	}
	if len(sizes) != 3 || sizes[0] != 1 || sizes[1] != 1 || sizes[2] != 1 {
		t.Fatalf("batch sizes %v, want three batches of 1", sizes)
	}
}

// TestQueuedRequestsShareABatch: requests that arrive while a batch is in
// flight go out together in the next one, each with its own result.
func TestQueuedRequestsShareABatch(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	b := New(Config[int, int]{MaxInflight: 1, MaxItems: 100, Run: func(vs []int) []int {
		mu.Lock()
		sizes = append(sizes, len(vs))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-release
		}
		out := make([]int, len(vs))
		for i, v := range vs {
			out[i] = v + 1000
		}
		return out
	}})
	var wg sync.WaitGroup
	results := make([]int, 11)
	wg.Add(1)
	go func() { defer wg.Done(); results[0], _ = b.Do(context.Background(), 0) }()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
	for i := 1; i <= 10; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); results[i], _ = b.Do(context.Background(), i) }()
	}
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 10 })
	close(release)
	wg.Wait()
	for i, r := range results {
		if r != i+1000 {
			t.Errorf("result %d = %d, want %d", i, r, i+1000)
		}
	}
	if len(sizes) != 2 || sizes[1] != 10 {
		t.Fatalf("batch sizes %v, want [1 10]", sizes)
	}
}

// TestMaxSizeSplitsBatches: a queue larger than MaxSize is sent in
// several batches, each within the cap.
func TestMaxSizeSplitsBatches(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	b := New(Config[int, int]{MaxInflight: 1, MaxSize: 4, Size: func(v int) int { return 2 }, Run: func(vs []int) []int {
		mu.Lock()
		sizes = append(sizes, len(vs))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-release
		}
		return make([]int, len(vs))
	}})
	var wg sync.WaitGroup
	for i := 0; i < 7; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); b.Do(context.Background(), i) }()
		if i == 0 {
			waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
		}
	}
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 6 })
	close(release)
	wg.Wait()
	if len(sizes) != 4 || sizes[1] != 2 || sizes[2] != 2 || sizes[3] != 2 {
		t.Fatalf("batch sizes %v, want [1 2 2 2]", sizes)
	}
}

// TestContextEndsWhileQueued: a request whose context ends while queued
// reports ErrNotSent and is never sent; one that was sent reports
// ErrUnknown.
func TestContextEndsWhileQueued(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sent []int
	b := New(Config[int, int]{MaxInflight: 1, Run: func(vs []int) []int {
		mu.Lock()
		sent = append(sent, vs...)
		mu.Unlock()
		<-release
		return make([]int, len(vs))
	}})
	ctx1, cancel1 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { _, err := b.Do(ctx1, 1); errs <- err }()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sent) == 1 })
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { _, err := b.Do(ctx2, 2); errs <- err }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 1 })
	cancel2()
	if err := <-errs; !errors.Is(err, ErrNotSent) {
		t.Fatalf("queued request: %v, want ErrNotSent", err)
	}
	cancel1()
	if err := <-errs; !errors.Is(err, ErrUnknown) {
		t.Fatalf("sent request: %v, want ErrUnknown", err)
	}
	close(release)
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.inflight == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 1 {
		t.Fatalf("sent %v; the abandoned request must not be sent", sent)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDoAllGoesTogether: requests given to DoAll on an idle batcher go out
// in one batch (split only by MaxItems), and each gets its own result.
func TestDoAllGoesTogether(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	b := New(Config[int, int]{MaxInflight: 1, MaxItems: 4, Run: func(vs []int) []int {
		mu.Lock()
		sizes = append(sizes, len(vs))
		mu.Unlock()
		out := make([]int, len(vs))
		for i, v := range vs {
			out[i] = v * 10
		}
		return out
	}})
	rs, errs := b.DoAll(context.Background(), []int{1, 2, 3, 4, 5, 6})
	for i, r := range rs {
		if errs[i] != nil || r != (i+1)*10 {
			t.Errorf("request %d: %d, %v; want %d", i, r, errs[i], (i+1)*10)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 2 || sizes[0] != 4 || sizes[1] != 2 {
		t.Fatalf("batch sizes %v, want [4 2]", sizes)
	}
	if rs, errs := b.DoAll(context.Background(), nil); len(rs) != 0 || len(errs) != 0 {
		t.Fatalf("DoAll of nothing: %v %v", rs, errs)
	}
}

// TestDoAllQueuesBehindABatch: while a batch is in flight, DoAll's requests
// join the queue and leave with the next batch; if its context ends first,
// those still queued are never sent (ErrNotSent).
func TestDoAllQueuesBehindABatch(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var batches [][]int
	b := New(Config[int, int]{MaxInflight: 1, Run: func(vs []int) []int {
		mu.Lock()
		batches = append(batches, append([]int(nil), vs...))
		first := len(batches) == 1
		mu.Unlock()
		if first {
			<-release
		}
		return vs
	}})
	done := make(chan error, 1)
	go func() { _, err := b.Do(context.Background(), 1); done <- err }()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(batches) == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	abandoned := make(chan []error, 1)
	go func() { _, errs := b.DoAll(ctx, []int{2, 3}); abandoned <- errs }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 2 })
	cancel()
	for i, err := range <-abandoned {
		if !errors.Is(err, ErrNotSent) {
			t.Fatalf("queued request %d: %v, want ErrNotSent", i, err)
		}
	}

	queued := make(chan []int, 1)
	go func() { rs, _ := b.DoAll(context.Background(), []int{4, 5}); queued <- rs }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 4 })
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rs := <-queued; len(rs) != 2 || rs[0] != 4 || rs[1] != 5 {
		t.Fatalf("results %v, want [4 5]", rs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 2 || len(batches[1]) != 2 || batches[1][0] != 4 {
		t.Fatalf("batches %v, want [[1] [4 5]]: abandoned requests must not be sent", batches)
	}
}
