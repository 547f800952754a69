package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/client"
)

var allSentinels = []error{
	client.ErrNotFound, client.ErrMemberNotFound, client.ErrConflict, client.ErrTooLarge,
	client.ErrInvalidArgument, client.ErrNoLeader, client.ErrNotReady, client.ErrTimeout, client.ErrClosed,
	client.ErrCompacted,
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		want     error // sentinel errors.Is must match; nil: none may
		status   int
		code     string
		contains string
	}{
		{"404 key_not_found", apiError(404, "key_not_found", "key not found: k"), client.ErrNotFound, 404, "key_not_found", "key not found: k"},
		{"404 member_not_found", apiError(404, "member_not_found", "no member n7"), client.ErrMemberNotFound, 404, "member_not_found", "no member n7"},
		{"409 cas_conflict", apiError(409, "cas_conflict", "mod revision is 7", "mod_revision", 7), client.ErrConflict, 409, "cas_conflict", "current mod revision is 7"},
		{"413 too_large", apiError(413, "too_large", "value larger than 1048576 bytes"), client.ErrTooLarge, 413, "too_large", "larger than"},
		{"400 invalid_key", apiError(400, "invalid_key", "key longer than 1024 bytes"), client.ErrInvalidArgument, 400, "invalid_key", "1024"},
		{"400 invalid_argument", apiError(400, "invalid_argument", "bad ttl"), client.ErrInvalidArgument, 400, "invalid_argument", "bad ttl"},
		{"400 malformed_json", apiError(400, "malformed_json", "unknown field"), client.ErrInvalidArgument, 400, "malformed_json", "unknown field"},
		{"503 no_leader", apiError(503, "no_leader", "no leader"), client.ErrNoLeader, 503, "no_leader", "no leader"},
		{"503 not_ready", apiError(503, "not_ready", "catching up"), client.ErrNotReady, 503, "not_ready", "catching up"},
		{"504 timeout", apiError(504, "timeout", "apply timed out"), client.ErrTimeout, 504, "timeout", "apply timed out"},
		{"410 compacted", apiError(410, "compacted", "revision compacted", "oldest_revision", 5), client.ErrCompacted, 410, "compacted", "revision compacted"},
		{"500 internal", apiError(500, "internal", "disk on fire"), nil, 500, "internal", "disk on fire"},
		{"500 not JSON", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(500)
			_, _ = io.WriteString(w, "panic: boom\n")
		}, nil, 500, "", "panic: boom"},
		{"418 unknown code", apiError(418, "teapot", "short and stout"), nil, 418, "teapot", "short and stout"},
		{"301 redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusMovedPermanently)
		}, nil, 301, "", "Moved Permanently"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRecorder(t, tt.handler)
			c := mustNewClientConfig(t, client.Config{Endpoints: []string{srv.URL}, MaxRetries: -1})
			_, err := c.Put(context.Background(), "k", []byte("v"), client.WithCAS(3))
			if err == nil {
				t.Fatal("Put succeeded, want an error")
			}
			for _, s := range allSentinels {
				if got := errors.Is(err, s); got != (s == tt.want) {
					t.Errorf("errors.Is(%v, %q) = %v", err, s, got)
				}
			}
			var se *client.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("errors.As(%T, *StatusError) failed", err)
			}
			if se.StatusCode != tt.status || se.Code != tt.code || se.Endpoint != srv.URL {
				t.Errorf("StatusError = %+v, want status %d code %q endpoint %s", se, tt.status, tt.code, srv.URL)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %q does not contain %q", err, tt.contains)
			}
			if srv.hits() != 1 {
				t.Errorf("server got %d requests, want 1", srv.hits())
			}
		})
	}
}

func TestConflictErrorCarriesModRevision(t *testing.T) {
	for _, rev := range []int64{0, 7} {
		srv := newRecorder(t, apiError(409, "cas_conflict", "mod revision mismatch", "mod_revision", rev))
		c := mustNewClient(t, srv.URL)
		_, err := c.Delete(context.Background(), "a/b", client.WithCAS(5))
		var ce *client.ConflictError
		if !errors.As(err, &ce) {
			t.Fatalf("Delete error %v (%T), want *ConflictError", err, err)
		}
		if ce.ModRevision != rev || ce.Key != "a/b" || ce.Status.StatusCode != 409 {
			t.Errorf("ConflictError = %+v, want ModRevision %d for key a/b", ce, rev)
		}
		if !errors.Is(err, client.ErrConflict) {
			t.Error("errors.Is(err, ErrConflict) = false")
		}
		if srv.hits() != 1 {
			t.Errorf("a 409 was retried: %d requests", srv.hits())
		}
	}
}

func TestStatusErrorMessage(t *testing.T) {
	err := &client.StatusError{StatusCode: 404, Code: "key_not_found", Message: "key not found: k", Endpoint: "http://h:1"}
	want := "key not found: k (HTTP 404 key_not_found from http://h:1)"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}
