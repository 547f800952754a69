package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/httpapi"
	"github.com/cairn-kv/cairn/tests/cluster"
	"github.com/cairn-kv/cairn/tests/inproc"
)

// putJSON and deleteJSON are the answers of writes.
type putJSON struct {
	Revision int64 `json:"revision"`
}

type deleteJSON struct {
	Revision int64 `json:"revision"`
	Deleted  int64 `json:"deleted"`
}

type listJSON struct {
	Revision int64            `json:"revision"`
	KVs      []map[string]any `json:"kvs"`
	More     bool             `json:"more"`
}

// TestAPI runs the API's behaviour against one three-node cluster over
// real HTTP. Subtests run in order and use their own key prefixes.
func TestAPI(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})

	t.Run("WriteReadDeleteThroughFollower", func(t *testing.T) {
		l := c.Leader(t)
		f := c.Followers(l)[0]
		key := "dir/sub//key with space/ü%"
		r := call(t, f, "PUT", kvPath(key), []byte("hello")).wantOK(t)
		var put putJSON
		r.decode(t, &put)
		if got := r.Header.Get("X-Cairn-Node"); got != l.ID {
			t.Errorf("forwarded PUT: X-Cairn-Node %q, want the leader %s", got, l.ID)
		}
		if put.Revision == 0 || r.revisionHeader(t) != put.Revision {
			t.Errorf("PUT answer revision %d, header %q", put.Revision, r.Header.Get("X-Cairn-Revision"))
		}
		for _, tn := range c.Nodes {
			g := call(t, tn, "GET", kvPath(key), nil).wantOK(t)
			if string(g.Body) != "hello" {
				t.Errorf("%s: GET body %q", tn.ID, g.Body)
			}
			h := g.Header
			if h.Get("X-Cairn-Mod-Revision") != itoa(put.Revision) || h.Get("X-Cairn-Create-Revision") != itoa(put.Revision) ||
				h.Get("X-Cairn-Version") != "1" || g.revisionHeader(t) < put.Revision || h.Get("X-Cairn-Node") == "" {
				t.Errorf("%s: GET headers %v", tn.ID, h)
			}
		}
		r2 := call(t, f, "PUT", kvPath(key), []byte("again")).wantOK(t)
		var put2 putJSON
		r2.decode(t, &put2)
		if put2.Revision != put.Revision+1 {
			t.Errorf("second PUT revision %d, want %d", put2.Revision, put.Revision+1)
		}
		g := call(t, f, "GET", kvPath(key), nil).wantOK(t)
		if g.Header.Get("X-Cairn-Version") != "2" || g.Header.Get("X-Cairn-Create-Revision") != itoa(put.Revision) || string(g.Body) != "again" {
			t.Errorf("after overwrite: %q %v", g.Body, g.Header)
		}
		hd := call(t, f, "HEAD", kvPath(key), nil).wantOK(t)
		if len(hd.Body) != 0 || hd.Header.Get("X-Cairn-Version") != "2" {
			t.Errorf("HEAD: body %q headers %v", hd.Body, hd.Header)
		}

		d := call(t, f, "DELETE", kvPath(key), nil).wantOK(t)
		var del deleteJSON
		d.decode(t, &del)
		if del.Deleted != 1 || del.Revision != put2.Revision+1 || d.Header.Get("X-Cairn-Node") != l.ID || d.revisionHeader(t) != del.Revision {
			t.Errorf("DELETE: %s headers %v", d.Body, d.Header)
		}
		for _, tn := range c.Nodes {
			call(t, tn, "GET", kvPath(key), nil).wantError(t, http.StatusNotFound, "key_not_found")
		}
		d2 := call(t, f, "DELETE", kvPath(key), nil).wantOK(t)
		var del2 deleteJSON
		d2.decode(t, &del2)
		if del2.Deleted != 0 || del2.Revision != del.Revision {
			t.Errorf("DELETE of a missing key: %s, want deleted 0 at revision %d", d2.Body, del.Revision)
		}
	})

	t.Run("KeyBoundaries", func(t *testing.T) {
		f := c.Followers(c.Leader(t))[0]
		long := strings.Repeat("k", 1024)
		call(t, f, "PUT", kvPath(long), []byte("x")).wantOK(t)
		if g := call(t, f, "GET", kvPath(long), nil).wantOK(t); string(g.Body) != "x" {
			t.Errorf("1024-byte key: %q", g.Body)
		}
		call(t, f, "DELETE", kvPath(long), nil).wantOK(t)
		// A value of exactly the limit is accepted.
		call(t, f, "PUT", kvPath("big/max"), bytes.Repeat([]byte{'v'}, 1<<20)).wantOK(t)
		if g := call(t, f, "GET", kvPath("big/max"), nil).wantOK(t); len(g.Body) != 1<<20 {
			t.Errorf("1 MiB value came back with %d bytes", len(g.Body))
		}
		call(t, f, "DELETE", kvPath("big/max"), nil).wantOK(t)
	})

	t.Run("Consistency", func(t *testing.T) {
		l := c.Leader(t)
		fs := c.Followers(l)
		var put putJSON
		call(t, l, "PUT", kvPath("cons/k"), []byte("v1")).wantOK(t).decode(t, &put)
		for _, f := range fs {
			// Linearizable (the default) reads see the write on every node.
			for _, q := range []string{"", "?consistency=linearizable"} {
				g := call(t, f, "GET", kvPath("cons/k")+q, nil).wantOK(t)
				if string(g.Body) != "v1" || g.revisionHeader(t) < put.Revision {
					t.Errorf("%s GET%s: %q rev %s", f.ID, q, g.Body, g.Header.Get("X-Cairn-Revision"))
				}
			}
			g := call(t, f, "GET", kvPath("cons/k")+"?consistency=leader", nil).wantOK(t)
			if string(g.Body) != "v1" || g.Header.Get("X-Cairn-Node") != l.ID {
				t.Errorf("%s GET consistency=leader: %q from %q, want the leader %s", f.ID, g.Body, g.Header.Get("X-Cairn-Node"), l.ID)
			}
			g = call(t, f, "GET", kvPath("cons/k")+"?consistency=stale&min_revision="+itoa(put.Revision), nil).wantOK(t)
			if string(g.Body) != "v1" || g.Header.Get("X-Cairn-Node") != f.ID {
				t.Errorf("%s GET consistency=stale: %q from %q, want it served locally", f.ID, g.Body, g.Header.Get("X-Cairn-Node"))
			}
			var lst listJSON
			ls := call(t, f, "GET", "/v1/kv/?prefix=cons/&consistency=stale&min_revision="+itoa(put.Revision), nil).wantOK(t)
			ls.decode(t, &lst)
			if len(lst.KVs) != 1 || lst.KVs[0]["value"] != "v1" || ls.Header.Get("X-Cairn-Node") != f.ID {
				t.Errorf("%s stale list: %s", f.ID, ls.Body)
			}
			ls = call(t, f, "GET", "/v1/kv/?prefix=cons/&consistency=leader", nil).wantOK(t)
			ls.decode(t, &lst)
			if len(lst.KVs) != 1 || ls.Header.Get("X-Cairn-Node") != l.ID {
				t.Errorf("%s leader list: %s from %s", f.ID, ls.Body, ls.Header.Get("X-Cairn-Node"))
			}
		}
	})

	t.Run("MinRevisionWaits", func(t *testing.T) {
		l := c.Leader(t)
		f := c.Followers(l)[0]
		next := l.Store.Revision() + 1
		got := make(chan response, 1)
		errc := make(chan error, 1)
		go func() {
			r, err := tryCall(f, "GET", kvPath("minrev/k")+"?consistency=stale&min_revision="+itoa(next), nil)
			if err != nil {
				errc <- err
				return
			}
			got <- r
		}()
		call(t, l, "PUT", kvPath("minrev/k"), []byte("arrived")).wantOK(t)
		select {
		case err := <-errc:
			t.Fatal(err)
		case r := <-got:
			r.wantOK(t)
			if string(r.Body) != "arrived" || r.revisionHeader(t) < next {
				t.Fatalf("GET with min_revision=%d: %q at %s", next, r.Body, r.Header.Get("X-Cairn-Revision"))
			}
		}

		// A revision that never comes ends the wait with a timeout.
		h, err := httpapi.New(httpapi.Config{RequestTimeout: 300 * time.Millisecond, Logger: c.Log}, f.Raft, f.Store)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, httptest.NewRequest("GET", kvPath("minrev/k")+"?consistency=stale&min_revision=999999999", nil))
		recorded(rec).wantError(t, http.StatusGatewayTimeout, "timeout")
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("min_revision wait took %v with a 300ms request timeout", took)
		}

		// A client that goes away ends the wait, long before the timeout.
		h, err = httpapi.New(httpapi.Config{RequestTimeout: time.Minute, Logger: c.Log}, f.Raft, f.Store)
		if err != nil {
			t.Fatal(err)
		}
		ctx, leave := context.WithCancel(context.Background())
		req := httptest.NewRequest("GET", kvPath("minrev/k")+"?consistency=stale&min_revision=999999999", nil).WithContext(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.ServeHTTP(httptest.NewRecorder(), req)
		}()
		select {
		case <-done:
			t.Fatal("min_revision wait ended before the revision came or the client left")
		case <-time.After(100 * time.Millisecond):
		}
		leave()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("min_revision wait went on after its client left")
		}
	})

	t.Run("CAS", func(t *testing.T) {
		l := c.Leader(t)
		f := c.Followers(l)[0]
		var p1 putJSON
		call(t, f, "PUT", kvPath("cas/k")+"?cas=0", []byte("first")).wantOK(t).decode(t, &p1)
		before := l.Store.Revision()
		r := call(t, f, "PUT", kvPath("cas/k")+"?cas=0", []byte("second"))
		e := r.wantError(t, http.StatusConflict, "cas_conflict")
		if e.ModRevision == nil || *e.ModRevision != p1.Revision {
			t.Errorf("cas=0 on a present key: mod_revision %v, want %d: %s", e.ModRevision, p1.Revision, r.Body)
		}
		if r.Header.Get("X-Cairn-Node") != l.ID {
			t.Errorf("forwarded conflict from %q, want %s", r.Header.Get("X-Cairn-Node"), l.ID)
		}
		if got := l.Store.Revision(); got != before {
			t.Errorf("a failed CAS moved the revision from %d to %d", before, got)
		}
		var p2 putJSON
		call(t, f, "PUT", kvPath("cas/k")+"?cas="+itoa(p1.Revision), []byte("second")).wantOK(t).decode(t, &p2)
		e = call(t, f, "PUT", kvPath("cas/k")+"?cas="+itoa(p1.Revision), []byte("third")).wantError(t, http.StatusConflict, "cas_conflict")
		if e.ModRevision == nil || *e.ModRevision != p2.Revision {
			t.Errorf("stale cas: mod_revision %v, want %d", e.ModRevision, p2.Revision)
		}
		e = call(t, f, "DELETE", kvPath("cas/k")+"?cas="+itoa(p1.Revision), nil).wantError(t, http.StatusConflict, "cas_conflict")
		if e.ModRevision == nil || *e.ModRevision != p2.Revision {
			t.Errorf("stale cas delete: mod_revision %v, want %d", e.ModRevision, p2.Revision)
		}
		var d deleteJSON
		call(t, f, "DELETE", kvPath("cas/k")+"?cas="+itoa(p2.Revision), nil).wantOK(t).decode(t, &d)
		if d.Deleted != 1 {
			t.Errorf("CAS delete: %+v", d)
		}
		r = call(t, l, "PUT", kvPath("cas/absent")+"?cas=5", []byte("x"))
		e = r.wantError(t, http.StatusConflict, "cas_conflict")
		if e.ModRevision == nil || *e.ModRevision != 0 {
			t.Errorf("cas on an absent key: body %s, want mod_revision 0", r.Body)
		}
		call(t, l, "GET", kvPath("cas/absent"), nil).wantError(t, http.StatusNotFound, "key_not_found")
	})

	t.Run("Idempotency", func(t *testing.T) {
		l := c.Leader(t)
		f := c.Followers(l)[0]
		var a, b putJSON
		call(t, f, "PUT", kvPath("idem/k"), []byte("v"), "Idempotency-Key", "req-1").wantOK(t).decode(t, &a)
		rev := l.Store.Revision()
		call(t, f, "PUT", kvPath("idem/k"), []byte("v"), "Idempotency-Key", "req-1").wantOK(t).decode(t, &b)
		if a.Revision != b.Revision || l.Store.Revision() != rev {
			t.Fatalf("retry with the same Idempotency-Key: revisions %d then %d, store %d -> %d", a.Revision, b.Revision, rev, l.Store.Revision())
		}
		if g := call(t, f, "GET", kvPath("idem/k"), nil).wantOK(t); g.Header.Get("X-Cairn-Version") != "1" {
			t.Fatalf("retried write applied twice: version %s", g.Header.Get("X-Cairn-Version"))
		}
	})

	t.Run("TTL", func(t *testing.T) {
		l := c.Leader(t)
		f := c.Followers(l)[0]
		call(t, f, "PUT", kvPath("ttl/k")+"?ttl=1s", []byte("brief")).wantOK(t)
		var keep putJSON
		call(t, f, "PUT", kvPath("ttl/keep"), []byte("stays")).wantOK(t).decode(t, &keep)
		if g := call(t, f, "GET", kvPath("ttl/k"), nil).wantOK(t); string(g.Body) != "brief" {
			t.Fatalf("GET right after a ttl put: %q", g.Body)
		}
		// The leader's reaper deletes it through the log: the revision
		// moves on every node.
		inproc.WaitRevision(t, keep.Revision+1, c.Nodes...)
		for _, tn := range c.Nodes {
			if _, _, err := tn.Store.Get("ttl/k"); err == nil {
				t.Errorf("%s still has ttl/k at revision %d", tn.ID, tn.Store.Revision())
			}
		}
		call(t, f, "GET", kvPath("ttl/k"), nil).wantError(t, http.StatusNotFound, "key_not_found")
		var lst listJSON
		call(t, f, "GET", "/v1/kv/?prefix=ttl/", nil).wantOK(t).decode(t, &lst)
		if len(lst.KVs) != 1 || lst.KVs[0]["key"] != "ttl/keep" {
			t.Fatalf("listing after expiry: %+v", lst)
		}
	})

	t.Run("PrefixDelete", func(t *testing.T) {
		l := c.Leader(t)
		f := c.Followers(l)[0]
		for _, k := range []string{"pd/a", "pd/b", "pd/c/d", "pdx", "pd"} {
			call(t, f, "PUT", kvPath(k), []byte(k)).wantOK(t)
		}
		var d deleteJSON
		r := call(t, f, "DELETE", kvPath("pd/")+"?prefix=true", nil).wantOK(t)
		r.decode(t, &d)
		if d.Deleted != 3 || r.Header.Get("X-Cairn-Node") != l.ID {
			t.Fatalf("prefix delete: %s from %s, want 3 deleted", r.Body, r.Header.Get("X-Cairn-Node"))
		}
		var lst listJSON
		call(t, f, "GET", "/v1/kv/?prefix=pd", nil).wantOK(t).decode(t, &lst)
		var keys []string
		for _, kv := range lst.KVs {
			keys = append(keys, kv["key"].(string))
		}
		if strings.Join(keys, ",") != "pd,pdx" {
			t.Fatalf("after deleting pd/: keys %v, want pd,pdx", keys)
		}
		call(t, f, "DELETE", kvPath("pd/")+"?prefix=true", nil).wantOK(t).decode(t, &d)
		if d.Deleted != 0 {
			t.Fatalf("second prefix delete deleted %d", d.Deleted)
		}
	})

	t.Run("ListPaging", func(t *testing.T) {
		f := c.Followers(c.Leader(t))[0]
		for i := 0; i < 25; i++ {
			call(t, f, "PUT", kvPath(fmt.Sprintf("list/k%02d", i)), []byte(fmt.Sprintf("v%02d", i))).wantOK(t)
		}
		var got []string
		after := ""
		for page := 0; ; page++ {
			q := url.Values{"prefix": {"list/"}, "limit": {"10"}}
			if after != "" {
				q.Set("after", after)
			}
			r := call(t, f, "GET", "/v1/kv/?"+q.Encode(), nil).wantOK(t)
			var lst listJSON
			r.decode(t, &lst)
			if lst.Revision == 0 || r.revisionHeader(t) != lst.Revision {
				t.Errorf("page %d: revision %d, header %s", page, lst.Revision, r.Header.Get("X-Cairn-Revision"))
			}
			wantN, wantMore := 10, true
			if page == 2 {
				wantN, wantMore = 5, false
			}
			if len(lst.KVs) != wantN || lst.More != wantMore {
				t.Fatalf("page %d: %d keys, more=%v; want %d, %v", page, len(lst.KVs), lst.More, wantN, wantMore)
			}
			for _, kv := range lst.KVs {
				k := kv["key"].(string)
				if kv["value"] != "v"+k[len("list/k"):] || kv["mod_revision"] == nil || kv["create_revision"] == nil || kv["version"] != 1.0 {
					t.Errorf("page %d: entry %v", page, kv)
				}
				got = append(got, k)
			}
			if !lst.More {
				break
			}
			after = got[len(got)-1]
		}
		for i, k := range got {
			if k != fmt.Sprintf("list/k%02d", i) {
				t.Fatalf("paged keys out of order or missing: %v", got)
			}
		}

		for _, tt := range []struct {
			q    string
			n    int
			more bool
		}{
			{"prefix=list/", 25, false},
			{"prefix=list/&limit=0", 25, false},
			{"prefix=list/&limit=25", 25, false},
			{"prefix=list/&limit=24", 24, true},
			{"prefix=list/&limit=5000", 25, false},
			{"prefix=list/&after=list/k23", 1, false},
			{"prefix=list/&after=list/k24", 0, false},
			{"prefix=list/nothing", 0, false},
		} {
			var lst listJSON
			call(t, f, "GET", "/v1/kv/?"+tt.q, nil).wantOK(t).decode(t, &lst)
			if len(lst.KVs) != tt.n || lst.More != tt.more || lst.KVs == nil {
				t.Errorf("?%s: %d keys (nil: %v), more=%v; want %d, %v", tt.q, len(lst.KVs), lst.KVs == nil, lst.More, tt.n, tt.more)
			}
		}

		var lst listJSON
		call(t, f, "GET", "/v1/kv/?prefix=list/&limit=3&keys=true", nil).wantOK(t).decode(t, &lst)
		if len(lst.KVs) != 3 || !lst.More {
			t.Fatalf("keys=true: %+v", lst)
		}
		for _, kv := range lst.KVs {
			_, v := kv["value"]
			_, b := kv["value_base64"]
			if v || b || kv["key"] == nil || kv["mod_revision"] == nil {
				t.Errorf("keys=true entry %v: want key and revisions without a value", kv)
			}
		}
	})

	t.Run("BinaryValues", func(t *testing.T) {
		f := c.Followers(c.Leader(t))[0]
		raw := []byte{0xff, 0x00, 0xfe, 'a'}
		call(t, f, "PUT", kvPath("bin/raw"), raw).wantOK(t)
		call(t, f, "PUT", kvPath("bin/text"), []byte("héllo\n")).wantOK(t)
		call(t, f, "PUT", kvPath("bin/empty"), []byte{}).wantOK(t)
		if g := call(t, f, "GET", kvPath("bin/raw"), nil).wantOK(t); !bytes.Equal(g.Body, raw) || g.Header.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("GET binary: %x (%s)", g.Body, g.Header.Get("Content-Type"))
		}
		if g := call(t, f, "GET", kvPath("bin/empty"), nil).wantOK(t); len(g.Body) != 0 {
			t.Errorf("GET empty value: %q", g.Body)
		}
		var lst listJSON
		call(t, f, "GET", "/v1/kv/?prefix=bin/", nil).wantOK(t).decode(t, &lst)
		byKey := map[string]map[string]any{}
		for _, kv := range lst.KVs {
			byKey[kv["key"].(string)] = kv
		}
		if kv := byKey["bin/raw"]; kv == nil || kv["value_base64"] != base64.StdEncoding.EncodeToString(raw) || kv["value"] != nil {
			t.Errorf("binary value in a listing: %v, want value_base64 only", kv)
		}
		if kv := byKey["bin/text"]; kv == nil || kv["value"] != "héllo\n" || kv["value_base64"] != nil {
			t.Errorf("text value in a listing: %v", kv)
		}
		if kv := byKey["bin/empty"]; kv == nil || kv["value"] != "" {
			t.Errorf("empty value in a listing: %v, want value \"\"", kv)
		}
	})

	t.Run("StatusMembersHealth", func(t *testing.T) {
		l := c.Leader(t)
		for _, tn := range c.Nodes {
			var st cluster.Status
			call(t, tn, "GET", "/v1/status", nil).wantOK(t).decode(t, &st)
			wantState := "Follower"
			if tn == l {
				wantState = "Leader"
			}
			if st.ID != tn.ID || st.State != wantState || st.Leader.ID != l.ID || st.Leader.HTTPAddr != l.HTTPAddr ||
				st.Term == 0 || st.CommitIndex == 0 || st.AppliedIndex == 0 || st.Revision == 0 {
				t.Errorf("%s status: %+v", tn.ID, st)
			}
			var ms cluster.Members
			call(t, tn, "GET", "/v1/cluster/members", nil).wantOK(t).decode(t, &ms)
			if len(ms.Members) != 3 {
				t.Fatalf("%s members: %+v", tn.ID, ms)
			}
			for i, m := range ms.Members {
				w := c.Nodes[i]
				if m.ID != w.ID || m.RaftAddr != w.RaftAddr || m.HTTPAddr != w.HTTPAddr || !m.Voter || m.Leader != (w == l) {
					t.Errorf("%s member %d: %+v", tn.ID, i, m)
				}
			}
			var ok map[string]string
			call(t, tn, "GET", "/healthz", nil).wantOK(t).decode(t, &ok)
			if ok["status"] != "ok" {
				t.Errorf("%s healthz: %v", tn.ID, ok)
			}
			call(t, tn, "GET", "/readyz", nil).wantOK(t).decode(t, &ok)
			if ok["status"] != "ready" {
				t.Errorf("%s readyz: %v", tn.ID, ok)
			}
		}
	})

	t.Run("Errors", func(t *testing.T) {
		testErrors(t, c)
	})

	t.Run("TooManyHops", func(t *testing.T) {
		l := c.Leader(t)
		f := c.Followers(l)[0]
		rev := l.Store.Revision()
		call(t, f, "PUT", kvPath("hops/k"), []byte("v"), "X-Cairn-Hops", "3").wantError(t, http.StatusServiceUnavailable, "no_leader")
		if got := l.Store.Revision(); got != rev {
			t.Fatalf("revision moved from %d to %d", rev, got)
		}
	})

	// Last: if the server wrongly accepts the member, the subtest removes
	// it again.
	t.Run("MalformedJoinRefused", func(t *testing.T) {
		testMalformedJoin(t, c)
	})
}

// errorCase is one bad request and the error it must get.
type errorCase struct {
	name   string
	method string
	target string
	body   []byte
	hdr    []string
	status int
	code   string
	allow  string // the Allow header of a 405
}

func errorCases() []errorCase {
	join := func(s string) []byte { return []byte(s) }
	tooBig := bytes.Repeat([]byte{'x'}, 1<<20+1)
	return []errorCase{
		{name: "NUL in key", method: "PUT", target: "/v1/kv/a%00b", body: join("v"), status: 400, code: "invalid_key"},
		{name: "NUL in key get", method: "GET", target: "/v1/kv/a%00b", status: 400, code: "invalid_key"},
		{name: "invalid UTF-8 key", method: "PUT", target: "/v1/kv/%FF", body: join("v"), status: 400, code: "invalid_key"},
		{name: "invalid UTF-8 key get", method: "GET", target: "/v1/kv/ok/%C3", status: 400, code: "invalid_key"},
		{name: "invalid UTF-8 key delete", method: "DELETE", target: "/v1/kv/%FF", status: 400, code: "invalid_key"},
		{name: "1025-byte key", method: "PUT", target: "/v1/kv/" + strings.Repeat("k", 1025), body: join("v"), status: 400, code: "invalid_key"},
		{name: "1025-byte key get", method: "GET", target: "/v1/kv/" + strings.Repeat("k", 1025), status: 400, code: "invalid_key"},
		{name: "empty key put", method: "PUT", target: "/v1/kv/", body: join("v"), status: 400, code: "invalid_key"},
		{name: "empty key delete", method: "DELETE", target: "/v1/kv/", status: 400, code: "invalid_key"},
		{name: "invalid prefix", method: "GET", target: "/v1/kv/?prefix=%FF", status: 400, code: "invalid_key"},
		{name: "NUL in after", method: "GET", target: "/v1/kv/?after=a%00", status: 400, code: "invalid_key"},
		{name: "invalid prefix delete", method: "DELETE", target: "/v1/kv/%FF?prefix=true", status: 400, code: "invalid_key"},

		{name: "value too large", method: "PUT", target: "/v1/kv/big", body: tooBig, status: 413, code: "too_large"},
		{name: "join body too large", method: "POST", target: "/v1/cluster/members", body: tooBig, status: 413, code: "too_large"},

		{name: "join malformed JSON", method: "POST", target: "/v1/cluster/members", body: join(`{"id":`), status: 400, code: "malformed_json"},
		{name: "join empty body", method: "POST", target: "/v1/cluster/members", body: join(``), status: 400, code: "malformed_json"},
		{name: "join array", method: "POST", target: "/v1/cluster/members", body: join(`[]`), status: 400, code: "malformed_json"},
		{name: "join unknown field", method: "POST", target: "/v1/cluster/members", body: join(`{"id":"n9","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2","voter":true}`), status: 400, code: "malformed_json"},
		{name: "join wrong type", method: "POST", target: "/v1/cluster/members", body: join(`{"id":9,"raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`), status: 400, code: "malformed_json"},
		{name: "join trailing data", method: "POST", target: "/v1/cluster/members", body: join(`{"id":"n1"} {}`), status: 400, code: "malformed_json"},
		{name: "join missing fields", method: "POST", target: "/v1/cluster/members", body: join(`{"id":"n9"}`), status: 400, code: "invalid_argument"},
		{name: "join null", method: "POST", target: "/v1/cluster/members", body: join(`null`), status: 400, code: "invalid_argument"},
		{name: "join ID too long", method: "POST", target: "/v1/cluster/members", body: join(`{"id":"` + strings.Repeat("n", 200) + `","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`), status: 400, code: "invalid_argument"},

		{name: "limit negative", method: "GET", target: "/v1/kv/?limit=-1", status: 400, code: "invalid_argument"},
		{name: "limit not a number", method: "GET", target: "/v1/kv/?limit=ten", status: 400, code: "invalid_argument"},
		{name: "limit overflow", method: "GET", target: "/v1/kv/?limit=99999999999999999999", status: 400, code: "invalid_argument"},
		{name: "cas negative", method: "PUT", target: "/v1/kv/k?cas=-1", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "cas not a number", method: "PUT", target: "/v1/kv/k?cas=abc", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "cas fraction", method: "PUT", target: "/v1/kv/k?cas=1.5", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "cas empty", method: "PUT", target: "/v1/kv/k?cas=", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "delete cas bad", method: "DELETE", target: "/v1/kv/k?cas=x", status: 400, code: "invalid_argument"},
		{name: "delete prefix with cas", method: "DELETE", target: "/v1/kv/p/?prefix=true&cas=1", status: 400, code: "invalid_argument"},
		{name: "delete prefix not bool", method: "DELETE", target: "/v1/kv/p/?prefix=maybe", status: 400, code: "invalid_argument"},
		{name: "ttl not a duration", method: "PUT", target: "/v1/kv/k?ttl=soon", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "ttl without unit", method: "PUT", target: "/v1/kv/k?ttl=30", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "ttl zero", method: "PUT", target: "/v1/kv/k?ttl=0s", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "ttl negative", method: "PUT", target: "/v1/kv/k?ttl=-5s", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "ttl under a second", method: "PUT", target: "/v1/kv/k?ttl=500ms", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "ttl over a year", method: "PUT", target: "/v1/kv/k?ttl=8761h", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "consistency unknown", method: "GET", target: "/v1/kv/k?consistency=strong", status: 400, code: "invalid_argument"},
		{name: "consistency unknown list", method: "GET", target: "/v1/kv/?consistency=STALE", status: 400, code: "invalid_argument"},
		{name: "min_revision negative", method: "GET", target: "/v1/kv/k?min_revision=-1", status: 400, code: "invalid_argument"},
		{name: "min_revision not a number", method: "GET", target: "/v1/kv/k?min_revision=x&consistency=stale", status: 400, code: "invalid_argument"},
		{name: "min_revision list", method: "GET", target: "/v1/kv/?min_revision=1e3", status: 400, code: "invalid_argument"},
		{name: "keys not bool", method: "GET", target: "/v1/kv/?keys=maybe", status: 400, code: "invalid_argument"},
		// A query that does not parse must not lose the condition it
		// carried: ?cas=1;x=2 or ?cas=%zz turning into an unconditional
		// write would break a client's compare-and-swap.
		{name: "cas with bad escape", method: "PUT", target: "/v1/kv/k?cas=%zz", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "cas with semicolon", method: "PUT", target: "/v1/kv/k?cas=1;x=2", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "ttl with semicolon", method: "PUT", target: "/v1/kv/k?ttl=5s;", body: join("v"), status: 400, code: "invalid_argument"},
		{name: "delete cas with bad escape", method: "DELETE", target: "/v1/kv/k?cas=%zz", status: 400, code: "invalid_argument"},

		{name: "txn malformed JSON", method: "POST", target: "/v1/txn", body: join(`{"success":[`), status: 400, code: "malformed_json"},
		{name: "txn unknown field", method: "POST", target: "/v1/txn", body: join(`{"success":[],"then":[]}`), status: 400, code: "malformed_json"},
		{name: "txn unknown op", method: "POST", target: "/v1/txn", body: join(`{"success":[{"op":"frob","key":"a"}]}`), status: 400, code: "invalid_argument"},
		{name: "txn unknown target", method: "POST", target: "/v1/txn", body: join(`{"compare":[{"key":"a","target":"size","op":"==","value":1}]}`), status: 400, code: "invalid_argument"},
		{name: "txn invalid key", method: "POST", target: "/v1/txn", body: join(`{"success":[{"op":"put","key":"a\u0000b","value":"x"}]}`), status: 400, code: "invalid_key"},
		{name: "txn short ttl", method: "POST", target: "/v1/txn", body: join(`{"success":[{"op":"put","key":"a","value":"x","ttl":"1ms"}]}`), status: 400, code: "invalid_argument"},
		{name: "txn too large", method: "POST", target: "/v1/txn", body: tooBig, status: 413, code: "too_large"},
		{name: "watch invalid key", method: "GET", target: "/v1/watch/%FF", status: 400, code: "invalid_key"},
		{name: "watch bad rev", method: "GET", target: "/v1/watch/k?rev=-1", status: 400, code: "invalid_argument"},
		{name: "watch bad prefix flag", method: "GET", target: "/v1/watch/k?prefix=yes-please", status: 400, code: "invalid_argument"},
		{name: "status bad hash flag", method: "GET", target: "/v1/status?hash=sometimes", status: 400, code: "invalid_argument"},

		{name: "idempotency key too long", method: "PUT", target: "/v1/kv/k", body: join("v"), hdr: []string{"Idempotency-Key", strings.Repeat("i", 257)}, status: 400, code: "invalid_argument"},
		{name: "remove member without id", method: "DELETE", target: "/v1/cluster/members/", status: 400, code: "invalid_argument"},

		{name: "missing key", method: "GET", target: "/v1/kv/no/such/key", status: 404, code: "key_not_found"},
		{name: "remove unknown member", method: "DELETE", target: "/v1/cluster/members/nobody", status: 404, code: "member_not_found"},
		{name: "unknown path", method: "GET", target: "/v1/nope", status: 404, code: "not_found"},
		{name: "kv without slash", method: "GET", target: "/v1/kv", status: 404, code: "not_found"},
		{name: "root", method: "GET", target: "/", status: 404, code: "not_found"},
		{name: "v2", method: "PUT", target: "/v2/kv/k", body: join("v"), status: 404, code: "not_found"},

		{name: "POST kv", method: "POST", target: "/v1/kv/k", body: join("v"), status: 405, code: "method_not_allowed", allow: "GET, PUT, DELETE"},
		{name: "PATCH kv list", method: "PATCH", target: "/v1/kv/", status: 405, code: "method_not_allowed", allow: "GET, PUT, DELETE"},
		{name: "PUT status", method: "PUT", target: "/v1/status", status: 405, code: "method_not_allowed", allow: "GET"},
		{name: "PUT members", method: "PUT", target: "/v1/cluster/members", status: 405, code: "method_not_allowed", allow: "GET, POST"},
		{name: "GET member", method: "GET", target: "/v1/cluster/members/n1", status: 405, code: "method_not_allowed", allow: "DELETE"},
		{name: "GET txn", method: "GET", target: "/v1/txn", status: 405, code: "method_not_allowed", allow: "POST"},
		{name: "POST watch", method: "POST", target: "/v1/watch/k", status: 405, code: "method_not_allowed", allow: "GET"},
	}
}

func testErrors(t *testing.T, c *inproc.Cluster) {
	l := c.Leader(t)
	targets := []*inproc.Node{l, c.Followers(l)[0]}
	for _, tc := range errorCases() {
		t.Run(tc.name, func(t *testing.T) {
			for _, tn := range targets {
				role := "leader"
				if tn != l {
					role = "follower"
				}
				before := l.Store.Revision()
				r := call(t, tn, tc.method, tc.target, tc.body, tc.hdr...)
				if r.Status >= 500 {
					t.Fatalf("%s: %s %s answered %d for bad input: %s", role, tc.method, tc.target, r.Status, r.Body)
				}
				e := r.wantError(t, tc.status, tc.code)
				if tc.allow != "" && r.Header.Get("Allow") != tc.allow {
					t.Errorf("%s: Allow %q, want %q", role, r.Header.Get("Allow"), tc.allow)
				}
				if r.Header.Get("X-Cairn-Node") == "" {
					t.Errorf("%s: no X-Cairn-Node on an error", role)
				}
				if strings.Contains(e.Error, "panic") || strings.Contains(e.Error, "goroutine") {
					t.Errorf("%s: error message leaks internals: %q", role, e.Error)
				}
				if got := l.Store.Revision(); got != before {
					t.Errorf("%s: bad request moved the revision from %d to %d", role, before, got)
				}
			}
		})
	}

	// A body over the limit sent chunked (no Content-Length) is cut off
	// at the limit all the same.
	t.Run("chunked value too large", func(t *testing.T) {
		for _, tn := range targets {
			before := l.Store.Revision()
			body := struct{ *bytes.Reader }{bytes.NewReader(bytes.Repeat([]byte{'x'}, 1<<20+10))}
			callReader(t, tn, "PUT", kvPath("big/chunked"), body).wantError(t, http.StatusRequestEntityTooLarge, "too_large")
			if got := l.Store.Revision(); got != before {
				t.Errorf("%s: revision moved from %d to %d", tn.ID, before, got)
			}
		}
	})
}

// testMalformedJoin posts members that no node could ever be. They must be
// refused (400), not added as voters that never answer.
func testMalformedJoin(t *testing.T, c *inproc.Cluster) {
	for _, m := range []cluster.Member{
		{ID: "bogus1", RaftAddr: "not-an-address", HTTPAddr: "127.0.0.1:1"},
		{ID: "bogus2", RaftAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:1"},
		{ID: "bogus3", RaftAddr: "127.0.0.1:7", HTTPAddr: "no port"},
		{ID: "bogus 4", RaftAddr: "127.0.0.1:7", HTTPAddr: "127.0.0.1:1"},
	} {
		t.Run(m.ID, func(t *testing.T) {
			l := c.Leader(t)
			f := c.Followers(l)[0]
			body, _ := json.Marshal(map[string]string{"id": m.ID, "raft_addr": m.RaftAddr, "http_addr": m.HTTPAddr})
			r := call(t, f, "POST", "/v1/cluster/members", body)
			if r.Status == http.StatusOK {
				t.Errorf("POST /v1/cluster/members %s: 200, want 400 invalid_argument; undoing", body)
				call(t, f, "DELETE", "/v1/cluster/members/"+url.PathEscape(m.ID), nil).wantOK(t)
			} else {
				r.wantError(t, http.StatusBadRequest, "invalid_argument")
			}
			c.WaitMembers(t, c.Nodes...)
		})
	}
}

// TestNoLeader stops two of three nodes: the last one answers writes and
// linearizable reads with 503 no_leader within a few seconds, and still
// serves stale reads.
func TestNoLeader(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{API: httpapi.Config{LeaderWait: 500 * time.Millisecond, RequestTimeout: 3 * time.Second}})
	l := c.Leader(t)
	fs := c.Followers(l)
	keep := fs[0]
	var put putJSON
	call(t, keep, "PUT", kvPath("k"), []byte("v")).wantOK(t).decode(t, &put)
	inproc.WaitRevision(t, put.Revision, c.Nodes...)
	start := time.Now()
	c.Stop(fs[1])
	c.Stop(l)
	t.Logf("stopped two nodes in %v", time.Since(start).Round(time.Millisecond))
	waitLeaderless(t, keep)
	rev := keep.Store.Revision()

	for _, tc := range []struct {
		method, target string
		body           []byte
	}{
		{"PUT", kvPath("k"), []byte("v2")},
		{"DELETE", kvPath("k"), nil},
		{"GET", kvPath("k"), nil},
		{"GET", kvPath("k") + "?consistency=leader", nil},
		{"GET", "/v1/kv/?prefix=k", nil},
		{"DELETE", "/v1/cluster/members/n9", nil},
	} {
		start := time.Now()
		r := call(t, keep, tc.method, tc.target, tc.body)
		took := time.Since(start)
		t.Logf("%s %s: %d after %v", tc.method, tc.target, r.Status, took.Round(time.Millisecond))
		r.wantError(t, http.StatusServiceUnavailable, "no_leader")
		if took > 5*time.Second {
			t.Errorf("%s %s took %v to fail", tc.method, tc.target, took)
		}
	}
	if got := keep.Store.Revision(); got != rev {
		t.Errorf("revision moved from %d to %d without a leader", rev, got)
	}
	g := call(t, keep, "GET", kvPath("k")+"?consistency=stale", nil).wantOK(t)
	if string(g.Body) != "v" {
		t.Errorf("stale read without a leader: %q", g.Body)
	}
	call(t, keep, "GET", "/readyz", nil).wantError(t, http.StatusServiceUnavailable, "not_ready")
	call(t, keep, "GET", "/healthz", nil).wantOK(t)
	call(t, keep, "GET", "/v1/status", nil).wantOK(t)
}

// TestRemoveLastMember asks a one-node cluster to remove its only member:
// that is the user's mistake, to be refused with a 4xx, not a 500.
func TestRemoveLastMember(t *testing.T) {
	c := inproc.Start(t, 1, inproc.Options{})
	n := c.Nodes[0]
	r := call(t, n, "DELETE", "/v1/cluster/members/"+n.ID, nil)
	if r.Status >= 500 || r.Status < 400 {
		t.Errorf("DELETE /v1/cluster/members/%s on a one-node cluster: %d %s, want a 4xx refusal", n.ID, r.Status, r.Body)
	} else {
		var e errorJSON
		r.decode(t, &e)
		if e.Code == "" || e.Error == "" {
			t.Errorf("error body %s", r.Body)
		}
	}
	c.WaitMembers(t, n)
	call(t, n, "PUT", kvPath("still"), []byte("works")).wantOK(t)
}

// tryCall is call without the testing.TB, for goroutines.
func tryCall(tn *inproc.Node, method, target string, body []byte) (response, error) {
	var rd *bytes.Reader
	req, err := http.NewRequest(method, "http://"+tn.HTTPAddr+target, nil)
	if body != nil {
		rd = bytes.NewReader(body)
		req, err = http.NewRequest(method, "http://"+tn.HTTPAddr+target, rd)
	}
	if err != nil {
		return response{}, err
	}
	resp, err := testClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: buf.Bytes()}, nil
}

// recorded turns a ResponseRecorder's answer into a response.
func recorded(rec *httptest.ResponseRecorder) response {
	res := rec.Result()
	return response{Status: res.StatusCode, Header: res.Header, Body: rec.Body.Bytes()}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestCloseEndsWaitingRequests: requests waiting for a leader end a moment
// after the handler closes (its grace period), not when their own timeout
// runs out, whether the server derives their contexts from the handler's
// BaseContext (as cmd/cairn does) or not. Raft keeps running meanwhile, so
// nothing else ends them.
func TestCloseEndsWaitingRequests(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{API: httpapi.Config{LeaderWait: 30 * time.Second, RequestTimeout: 30 * time.Second}})
	l := c.Leader(t)
	keep := c.Followers(l)[0]
	for _, n := range c.Nodes {
		if n != keep {
			c.Stop(n)
		}
	}
	waitLeaderless(t, keep)
	// keep's handler served twice more, with and without BaseContext, by
	// servers that say when a request has reached the handler (and stay
	// up while keep stops, so every request gets an answer).
	arrived := make(chan struct{}, 2)
	serve := func(base func(net.Listener) context.Context) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{BaseContext: base, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			keep.API.ServeHTTP(w, r)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}

	type ended struct {
		via    string
		status int
		body   string
		took   time.Duration
	}
	done := make(chan ended, 2)
	start := time.Now()
	for via, addr := range map[string]string{"BaseContext": serve(keep.API.BaseContext), "plain server": serve(nil)} {
		go func() {
			req, _ := http.NewRequest("PUT", "http://"+addr+kvPath("waits"), strings.NewReader("v"))
			resp, err := testClient.Do(req)
			status, body := 0, ""
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				status, body = resp.StatusCode, string(b)
			}
			done <- ended{via, status, body, time.Since(start)}
		}()
	}
	for range 2 {
		<-arrived // then it waits for a leader
	}
	// Close the handler alone: Raft keeps running, so only the drain can
	// end the requests before their 30 s.
	keep.API.Close()
	for range 2 {
		select {
		case e := <-done:
			t.Logf("%s: status %d after %v: %s", e.via, e.status, e.took.Round(time.Millisecond), e.body)
			if e.status == 0 || e.status == http.StatusOK {
				t.Errorf("%s: status %d, want an error answer: the write cannot succeed without a leader", e.via, e.status)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a request waiting for a leader was still running 10 s after its handler closed")
		}
	}
}

// waitLeaderless waits until n has known no leader for a second. The
// leader stopped last hands leadership to n on its way out, so n may be
// a candidate (no leader known) an instant before it wins that election,
// and then lead for up to a lease timeout without a quorum; only after
// that is it leaderless for good.
func waitLeaderless(t *testing.T, n *inproc.Node) {
	t.Helper()
	var since time.Time
	inproc.WaitFor(t, 15*time.Second, n.ID+" to have no leader for a second", func() error {
		if id, _ := n.Raft.Leader(); id != "" || n.Raft.IsLeader() {
			since = time.Time{}
			return fmt.Errorf("%s follows %q (leader: %v)", n.ID, id, n.Raft.IsLeader())
		}
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(since) < time.Second {
			return fmt.Errorf("%s has had no leader for only %v", n.ID, time.Since(since))
		}
		return nil
	})
}
