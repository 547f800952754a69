package httpapi_test

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/cairn-kv/cairn/store"
	"github.com/cairn-kv/cairn/tests/inproc"
)

// TestSnapshotBackup: GET /v1/snapshot on a follower streams a backup that
// holds every acknowledged write and restores into a fresh store.
func TestSnapshotBackup(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	f := c.Followers(l)[0]
	var last int64
	for i := 0; i < 50; i++ {
		last = call(t, f, "PUT", kvPath(fmt.Sprintf("backup/%02d", i)), []byte(fmt.Sprint(i))).wantOK(t).revisionHeader(t)
	}
	r := call(t, f, "GET", "/v1/snapshot", nil).wantOK(t)
	if got := r.revisionHeader(t); got < last {
		t.Fatalf("backup at revision %d, the last write was %d", got, last)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	st, err := store.Open(store.DefaultConfig(filepath.Join(t.TempDir(), "restored.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Restore(bytes.NewReader(r.Body)); err != nil {
		t.Fatalf("restore the backup: %v", err)
	}
	kvs, _, _, err := st.List(store.ListOptions{Prefix: "backup/"})
	if err != nil || len(kvs) != 50 {
		t.Fatalf("restored %d keys (%v), want 50", len(kvs), err)
	}
	// A truncated download is refused, not half restored.
	if err := st.Restore(bytes.NewReader(r.Body[:len(r.Body)/2])); err == nil {
		t.Fatal("a truncated backup was restored")
	}
	call(t, f, "POST", "/v1/snapshot", nil).wantError(t, http.StatusMethodNotAllowed, "method_not_allowed")
	call(t, f, "GET", "/v1/snapshot?consistency=bogus", nil).wantError(t, http.StatusBadRequest, "invalid_argument")
}
