package inproc

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// logWriter sends log lines to t.Log until the test's cleanup marks it
// done; later lines (from goroutines that outlive the test) are dropped
// instead of panicking.
type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// Logger returns an Info-level logger writing to t.Log. Call it before
// anything whose cleanup may log, so that its own cleanup runs last.
//
// For a fuzz target (t is a *testing.F, which may not be used from other
// goroutines while the fuzz function runs) the logs are kept instead and
// shown only if the target failed.
func Logger(t testing.TB) *slog.Logger {
	if f, ok := t.(*testing.F); ok {
		return fuzzLogger(f)
	}
	w := &logWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return newLogger(w)
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// tailWriter keeps the last lines written to it.
type tailWriter struct {
	mu    sync.Mutex
	lines []string
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.lines) == 2000 {
		w.lines = append(w.lines[:0], w.lines[1000:]...)
	}
	w.lines = append(w.lines, string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// fuzzLogger is Logger for a fuzz target.
func fuzzLogger(f *testing.F) *slog.Logger {
	w := &tailWriter{}
	f.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if f.Failed() {
			f.Log(strings.Join(w.lines, "\n"))
		}
		w.lines = nil
	})
	return newLogger(w)
}
