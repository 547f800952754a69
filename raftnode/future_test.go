package raftnode

import (
	"context"
	"errors"
	"testing"
	"time"
)

// unanswered is a raft.Future that is never answered, as one left in
// hashicorp/raft's apply queue when it shuts down; answered is one that is.
type unanswered struct{ never chan struct{} }

func (u unanswered) Error() error { <-u.never; return nil }

type answered struct{ err error }

func (a answered) Error() error { return a.err }

// TestFutureErrorEndsWithContext: a future raft never answers does not
// hold its waiter past the context (it held Node.Shutdown forever once);
// an answered one gives its own error.
func TestFutureErrorEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	never := make(chan struct{})
	defer close(never) // lets the goroutine left waiting on it go
	done := make(chan error, 1)
	go func() { done <- futureError(ctx, unanswered{never}) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("futureError = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("futureError still waits on an unanswered future after its context ended")
	}
	want := errors.New("leadership lost")
	if err := futureError(context.Background(), answered{want}); err != want {
		t.Fatalf("futureError = %v, want %v", err, want)
	}
}
