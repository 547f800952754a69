package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/client"
	"github.com/cairn-kv/cairn/client/clienttest"
)

func TestKeyEscaping(t *testing.T) {
	tests := []struct{ key, path string }{
		{"a", "/v1/kv/a"},
		{"a/b/c", "/v1/kv/a/b/c"},
		{"a b/c%d/é", "/v1/kv/a%20b/c%25d/%C3%A9"},
		{"q?x=1#frag", "/v1/kv/q%3Fx=1%23frag"},
		{"dir/", "/v1/kv/dir/"},
		{"./..", "/v1/kv/%2E/%2E%2E"},
	}
	for _, tt := range tests {
		srv := newRecorder(t, okGet("v"))
		c := mustNewClient(t, srv.URL)
		resp, err := c.Get(context.Background(), tt.key)
		if err != nil {
			t.Fatalf("Get(%q): %v", tt.key, err)
		}
		if got := srv.last().URL.EscapedPath(); got != tt.path {
			t.Errorf("Get(%q) requested %q, want %q", tt.key, got, tt.path)
		}
		if got := srv.last().URL.Path; got != "/v1/kv/"+tt.key {
			t.Errorf("Get(%q): server decoded path %q", tt.key, got)
		}
		if resp.Key != tt.key {
			t.Errorf("resp.Key = %q, want %q", resp.Key, tt.key)
		}
	}
}

func TestGetMetadata(t *testing.T) {
	srv := newRecorder(t, okGet("hello"))
	c := mustNewClient(t, srv.addr())
	resp, err := c.Get(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	want := client.GetResponse{
		KV:   client.KV{Key: "k", Value: []byte("hello"), CreateRevision: 7, ModRevision: 40, Version: 3},
		Meta: client.Meta{Revision: 42, Node: "n2", Endpoint: srv.URL},
	}
	if !bytes.Equal(resp.Value, want.Value) || resp.KV.Key != want.Key || resp.CreateRevision != 7 ||
		resp.ModRevision != 40 || resp.Version != 3 || resp.Meta != want.Meta {
		t.Errorf("Get = %+v, want %+v", *resp, want)
	}
}

func TestRequestParameters(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		call   func(c *client.Client) error
		method string
		query  string
		idem   string
	}{
		{"get", func(c *client.Client) error { _, err := c.Get(ctx, "k"); return err }, "GET", "", ""},
		{"get stale", func(c *client.Client) error {
			_, err := c.Get(ctx, "k", client.WithConsistency(client.Stale), client.WithMinRevision(12))
			return err
		}, "GET", "consistency=stale&min_revision=12", ""},
		{"get leader", func(c *client.Client) error {
			_, err := c.Get(ctx, "k", client.WithConsistency(client.Leader))
			return err
		}, "GET", "consistency=leader", ""},
		{"put cas 0", func(c *client.Client) error {
			_, err := c.Put(ctx, "k", []byte("v"), client.WithCAS(0))
			return err
		}, "PUT", "cas=0", "*"},
		{"put ttl", func(c *client.Client) error {
			_, err := c.Put(ctx, "k", []byte("v"), client.WithTTL(30*time.Second), client.WithCAS(4))
			return err
		}, "PUT", "cas=4&ttl=30s", "*"},
		{"put idempotency key", func(c *client.Client) error {
			_, err := c.Put(ctx, "k", []byte("v"), client.WithIdempotencyKey("abc"))
			return err
		}, "PUT", "", "abc"},
		{"delete prefix", func(c *client.Client) error {
			_, err := c.Delete(ctx, "dir/", client.WithPrefix())
			return err
		}, "DELETE", "prefix=true", "*"},
		{"list", func(c *client.Client) error {
			_, err := c.List(ctx, "a/", client.WithLimit(10), client.WithAfter("a/b"), client.WithKeysOnly(),
				client.WithConsistency(client.Linearizable))
			return err
		}, "GET", "after=a%2Fb&consistency=linearizable&keys=true&limit=10&prefix=a%2F", ""},
		{"list all", func(c *client.Client) error { _, err := c.List(ctx, ""); return err }, "GET", "prefix=", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method == "GET" && r.URL.Path == "/v1/kv/" {
					_, _ = w.Write([]byte(`{"revision":1,"kvs":[],"more":false}`))
					return
				}
				okGet(`{"revision":1}`)(w, r)
			})
			c := mustNewClient(t, srv.URL)
			if err := tt.call(c); err != nil {
				t.Fatal(err)
			}
			r := srv.last()
			if r.Method != tt.method || r.URL.RawQuery != tt.query {
				t.Errorf("sent %s ?%s, want %s ?%s", r.Method, r.URL.RawQuery, tt.method, tt.query)
			}
			got := r.Header.Get("Idempotency-Key")
			if (tt.idem == "*" && got == "") || (tt.idem != "*" && got != tt.idem) {
				t.Errorf("Idempotency-Key = %q, want %q", got, tt.idem)
			}
		})
	}
}

func TestInvalidArgumentsNotSent(t *testing.T) {
	ctx := context.Background()
	srv := newRecorder(t, okGet("v"))
	c := mustNewClient(t, srv.URL)
	for name, call := range map[string]func() error{
		"empty key":       func() error { _, err := c.Get(ctx, ""); return err },
		"empty put key":   func() error { _, err := c.Put(ctx, "", nil); return err },
		"ttl on get":      func() error { _, err := c.Get(ctx, "k", client.WithTTL(time.Second)); return err },
		"prefix on get":   func() error { _, err := c.Get(ctx, "k", client.WithPrefix()); return err },
		"consistency put": func() error { _, err := c.Put(ctx, "k", nil, client.WithConsistency(client.Stale)); return err },
		"bad consistency": func() error { _, err := c.Get(ctx, "k", client.WithConsistency("eventual")); return err },
		"negative limit":  func() error { _, err := c.List(ctx, "", client.WithLimit(-1)); return err },
		"zero ttl":        func() error { _, err := c.Put(ctx, "k", nil, client.WithTTL(0)); return err },
		"negative cas":    func() error { _, err := c.Delete(ctx, "k", client.WithCAS(-1)); return err },
		"empty idem key":  func() error { _, err := c.Put(ctx, "k", nil, client.WithIdempotencyKey("")); return err },
		"long idem key": func() error {
			_, err := c.Put(ctx, "k", nil, client.WithIdempotencyKey(strings.Repeat("x", client.MaxIdempotencyKeyLen+1)))
			return err
		},
		"empty member id":  func() error { _, err := c.RemoveMember(ctx, ""); return err },
		"incomplete join":  func() error { _, err := c.AddMember(ctx, client.Member{ID: "n4"}); return err },
		"keys-only on get": func() error { _, err := c.Get(ctx, "k", client.WithKeysOnly()); return err },
	} {
		if err := call(); !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if srv.hits() != 0 {
		t.Errorf("%d invalid requests were sent", srv.hits())
	}
}

func TestKVAgainstFake(t *testing.T) {
	fake := clienttest.NewServer(t)
	c := mustNewClient(t, fake.Addr())
	ctx := context.Background()

	binary := []byte{0, 1, 2, 0xff, 0xfe, '\n'}
	p, err := c.Put(ctx, "bin", binary)
	if err != nil || p.Revision != 1 || p.Node != clienttest.NodeID {
		t.Fatalf("Put = %+v, %v", p, err)
	}
	g, err := c.Get(ctx, "bin")
	if err != nil || !bytes.Equal(g.Value, binary) || g.ModRevision != 1 || g.Version != 1 {
		t.Fatalf("Get = %+v, %v", g, err)
	}
	if _, err := c.Put(ctx, "bin", []byte("x"), client.WithCAS(0)); !errors.Is(err, client.ErrConflict) {
		t.Errorf("Put cas=0 on existing key: %v, want ErrConflict", err)
	}
	if _, err := c.Put(ctx, "bin", []byte("x"), client.WithCAS(g.ModRevision)); err != nil {
		t.Errorf("Put with matching CAS: %v", err)
	}
	if _, err := c.Put(ctx, "empty", nil); err != nil {
		t.Errorf("Put empty value: %v", err)
	}
	if g, err := c.Get(ctx, "empty"); err != nil || len(g.Value) != 0 {
		t.Errorf("Get empty value = %+v, %v", g, err)
	}

	fake.SetMaxValueSize(10)
	if _, err := c.Put(ctx, "big", make([]byte, 11)); !errors.Is(err, client.ErrTooLarge) {
		t.Errorf("Put too large: %v, want ErrTooLarge", err)
	}

	for _, k := range []string{"d/a", "d/b", "d/c", "e"} {
		if _, err := c.Put(ctx, k, []byte("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	page, err := c.List(ctx, "d/", client.WithLimit(2))
	if err != nil || len(page.KVs) != 2 || !page.More || page.KVs[0].Key != "d/a" || string(page.KVs[1].Value) != "v-d/b" {
		t.Fatalf("List page 1 = %+v, %v", page, err)
	}
	page, err = c.List(ctx, "d/", client.WithAfter(page.KVs[1].Key), client.WithKeysOnly())
	if err != nil || len(page.KVs) != 1 || page.More || page.KVs[0].Key != "d/c" || page.KVs[0].Value != nil {
		t.Fatalf("List page 2 = %+v, %v", page, err)
	}
	all, err := c.List(ctx, "")
	if err != nil || len(all.KVs) != 6 || !bytes.Equal(all.KVs[0].Value, []byte("x")) || all.Revision != fake.Revision() {
		t.Fatalf("List all = %+v, %v", all, err)
	}

	d, err := c.Delete(ctx, "d/", client.WithPrefix())
	if err != nil || d.Deleted != 3 {
		t.Fatalf("Delete prefix = %+v, %v", d, err)
	}
	d, err = c.Delete(ctx, "nope")
	if err != nil || d.Deleted != 0 {
		t.Fatalf("Delete missing = %+v, %v", d, err)
	}
	if _, err := c.Get(ctx, "d/a"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Get deleted key: %v, want ErrNotFound", err)
	}
}

func TestKVJSON(t *testing.T) {
	for _, kv := range []client.KV{
		{Key: "t", Value: []byte("text"), CreateRevision: 1, ModRevision: 2, Version: 3},
		{Key: "b", Value: []byte{0xff, 0}, CreateRevision: 4, ModRevision: 4, Version: 1},
		{Key: "keys-only", ModRevision: 5},
		{Key: "empty", Value: []byte{}},
	} {
		b, err := json.Marshal(kv)
		if err != nil {
			t.Fatal(err)
		}
		var back client.KV
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if back.Key != kv.Key || !bytes.Equal(back.Value, kv.Value) || (back.Value == nil) != (kv.Value == nil) ||
			back.ModRevision != kv.ModRevision || back.Version != kv.Version || back.CreateRevision != kv.CreateRevision {
			t.Errorf("round trip of %+v via %s gave %+v", kv, b, back)
		}
	}
	b, _ := json.Marshal(client.KV{Key: "b", Value: []byte{0xff}})
	if want := `{"key":"b","value_base64":"/w==","create_revision":0,"mod_revision":0,"version":0}`; string(b) != want {
		t.Errorf("Marshal binary = %s, want %s", b, want)
	}
}
