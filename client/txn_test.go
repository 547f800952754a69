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

func TestTxnRequestJSON(t *testing.T) {
	req := client.TxnRequest{
		Compare: []client.Cmp{
			client.Compare("a").ModRevision("==", 5),
			client.Compare("a").CreateRevision(">", 1),
			client.Compare("b").Version("<", 3),
			client.Compare("c").Value("!=", []byte("text")),
			client.Compare("d").Value("==", []byte{0xff, 0}),
			client.Compare("e").Exists(),
			client.Compare("f").NotExists(),
		},
		Success: []client.Op{
			client.OpPut("a", []byte("v"), client.WithTTL(30*time.Second)),
			client.OpPut("bin", []byte{0xff}),
			client.OpGet("dir/", client.WithPrefix(), client.WithLimit(10)),
			client.OpDelete("old/", client.WithPrefix()),
		},
		Failure: []client.Op{client.OpGet("a"), client.OpPut("empty", nil)},
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"compare":[` +
		`{"key":"a","target":"mod_revision","op":"==","value":5},` +
		`{"key":"a","target":"create_revision","op":"\u003e","value":1},` +
		`{"key":"b","target":"version","op":"\u003c","value":3},` +
		`{"key":"c","target":"value","op":"!=","value":"text"},` +
		`{"key":"d","target":"value","op":"==","value_base64":"/wA="},` +
		`{"key":"e","target":"exists","op":"==","value":true},` +
		`{"key":"f","target":"exists","op":"==","value":false}],` +
		`"success":[{"op":"put","key":"a","value":"v","ttl":"30s"},{"op":"put","key":"bin","value_base64":"/w=="},` +
		`{"op":"get","key":"dir/","prefix":true,"limit":10},{"op":"delete","key":"old/","prefix":true}],` +
		`"failure":[{"op":"get","key":"a"},{"op":"put","key":"empty","value":""}]}`
	if string(b) != want {
		t.Errorf("JSON:\n%s\nwant\n%s", b, want)
	}

	var back client.TxnRequest
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	b2, err := json.Marshal(back)
	if err != nil || string(b2) != want {
		t.Errorf("round trip: %s, %v", b2, err)
	}
	if !bytes.Equal(back.Compare[4].Value, []byte{0xff, 0}) || back.Success[0].TTL != 30*time.Second {
		t.Errorf("decoded %+v", back)
	}
}

func TestTxnRequestJSONErrors(t *testing.T) {
	for _, tt := range []struct{ name, body, want string }{
		{"unknown top field", `{"compare": [], "sucess": []}`, "unknown field"},
		{"unknown op field", `{"success": [{"op": "put", "key": "a", "vaule": "x"}]}`, "unknown field"},
		{"not an object", `[1]`, "transaction JSON"},
		{"trailing data", `{} {}`, "after the object"},
		{"number for value target", `{"compare": [{"key": "a", "target": "value", "op": "==", "value": 1}]}`, "string value"},
		{"string for mod_revision", `{"compare": [{"key": "a", "target": "mod_revision", "op": "==", "value": "1"}]}`, "integer"},
		{"bad exists", `{"compare": [{"key": "a", "target": "exists", "op": "==", "value": 1}]}`, "true or false"},
		{"bad target", `{"compare": [{"key": "a", "target": "colour", "op": "==", "value": 1}]}`, "target"},
		{"bad base64", `{"success": [{"op": "put", "key": "a", "value_base64": "!!"}]}`, "base64"},
		{"bad ttl", `{"success": [{"op": "put", "key": "a", "value": "x", "ttl": "forever"}]}`, "ttl"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var r client.TxnRequest
			err := r.UnmarshalJSON([]byte(tt.body))
			if !errors.Is(err, client.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Unmarshal(%s) = %v, want ErrInvalidArgument mentioning %q", tt.body, err, tt.want)
			}
		})
	}
}

func TestTxnRejectsBadRequestsBeforeSending(t *testing.T) {
	srv := newRecorder(t, okPut(1))
	c := mustNewClient(t, srv.URL)
	for name, req := range map[string]client.TxnRequest{
		"unknown operator":   {Compare: []client.Cmp{client.Compare("a").ModRevision("=", 1)}},
		"unknown target":     {Compare: []client.Cmp{{Key: "a", Target: "colour", Op: "=="}}},
		"empty compare key":  {Compare: []client.Cmp{client.Compare("").Exists()}},
		"empty put key":      {Success: []client.Op{client.OpPut("", []byte("v"))}},
		"get with TTL":       {Success: []client.Op{client.OpGet("a", client.WithTTL(time.Minute))}},
		"put with prefix":    {Failure: []client.Op{client.OpPut("a", nil, client.WithPrefix())}},
		"unknown op":         {Success: []client.Op{{Type: "patch", Key: "a"}}},
		"negative limit":     {Success: []client.Op{{Type: client.OpTypeGet, Key: "a", Prefix: true, Limit: -1}}},
		"delete with a TTL":  {Success: []client.Op{{Type: client.OpTypeDelete, Key: "a", TTL: time.Second}}},
		"option for nothing": {Success: []client.Op{client.OpDelete("a", client.WithCAS(1))}},
	} {
		_, err := c.Txn(context.Background(), req)
		if !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := c.Txn(context.Background(), client.TxnRequest{}, client.WithCAS(1)); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("Txn with WithCAS: %v, want ErrInvalidArgument", err)
	}
	if srv.hits() != 0 {
		t.Errorf("%d requests sent, want none", srv.hits())
	}
}

func TestTxnAgainstFake(t *testing.T) {
	fake := clienttest.NewServer(t)
	c := mustNewClient(t, fake.Addr())
	ctx := context.Background()
	put, err := c.Put(ctx, "acct/a", []byte("10"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "acct/b", []byte{0xff, 0xfe}); err != nil {
		t.Fatal(err)
	}

	// A guarded transfer succeeds once.
	transfer := client.TxnRequest{
		Compare: []client.Cmp{client.Compare("acct/a").ModRevision("==", put.Revision), client.Compare("acct/c").NotExists()},
		Success: []client.Op{
			client.OpPut("acct/a", []byte("7")), client.OpPut("acct/c", []byte("3"), client.WithTTL(time.Hour)),
			client.OpGet("acct/", client.WithPrefix()), client.OpDelete("acct/b"),
		},
		Failure: []client.Op{client.OpGet("acct/a")},
	}
	resp, err := c.Txn(ctx, transfer)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded || resp.Revision != 3 || len(resp.Results) != 4 || resp.Node != clienttest.NodeID {
		t.Fatalf("Txn = %+v", resp)
	}
	if r := resp.Results[0]; r.Type != client.OpTypePut || r.Revision != 3 {
		t.Errorf("put result %+v", r)
	}
	if r := resp.Results[2]; r.Type != client.OpTypeGet || len(r.KVs) != 3 || !bytes.Equal(r.KVs[1].Value, []byte{0xff, 0xfe}) ||
		string(r.KVs[2].Value) != "3" {
		t.Errorf("get result %+v", r)
	}
	if r := resp.Results[3]; r.Type != client.OpTypeDelete || r.Deleted != 1 {
		t.Errorf("delete result %+v", r)
	}

	// The same again fails: the failure branch runs and writes nothing.
	resp, err = c.Txn(ctx, transfer)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Succeeded || resp.Revision != 3 || len(resp.Results) != 1 || string(resp.Results[0].KVs[0].Value) != "7" {
		t.Errorf("second Txn = %+v", resp)
	}
	if fake.Revision() != 3 {
		t.Errorf("store revision %d, want 3", fake.Revision())
	}

	out, err := json.Marshal(resp)
	if err != nil || string(out) != `{"succeeded":false,"revision":3,"results":[{"op":"get","kvs":[{"key":"acct/a","value":"7","create_revision":1,"mod_revision":3,"version":2}]}]}` {
		t.Errorf("TxnResponse JSON %s, %v", out, err)
	}
}

func TestTxnRetryRules(t *testing.T) {
	ctx := context.Background()
	write := client.TxnRequest{Success: []client.Op{client.OpPut("a", []byte("v"))}}
	read := client.TxnRequest{Success: []client.Op{client.OpGet("a")}}
	okTxn := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"succeeded": true, "revision": 4, "results": [{"op": "put", "revision": 4}]}`))
	}

	// A write that may have been applied is not retried without a key of
	// the caller's...
	reset := newRecorder(t, resetConn)
	good := newRecorder(t, okTxn)
	c := mustNewClient(t, reset.URL, good.URL)
	if _, err := c.Txn(ctx, write); err == nil || !strings.Contains(err.Error(), "may have been applied") {
		t.Errorf("write Txn after a reset: %v, want an unknown-outcome error", err)
	}
	if good.hits() != 0 {
		t.Errorf("write retried on the next endpoint")
	}
	// ...but is with one, with the same key on every attempt.
	resp, err := c.Txn(ctx, write, client.WithIdempotencyKey("txn-1"))
	if err != nil || resp.Revision != 4 || !resp.Succeeded {
		t.Fatalf("write Txn with a key: %+v, %v", resp, err)
	}
	if keys := append(reset.idempotencyKeys(), good.idempotencyKeys()...); keys[len(keys)-1] != "txn-1" || keys[len(keys)-2] != "txn-1" {
		t.Errorf("idempotency keys %q", keys)
	}
	// A read-only transaction is retried like a read.
	reset2 := newRecorder(t, resetConn)
	c2 := mustNewClient(t, reset2.URL, good.URL)
	if _, err := c2.Txn(ctx, read); err != nil {
		t.Errorf("read-only Txn after a reset: %v", err)
	}
	if k := good.last().Header.Get("Idempotency-Key"); k != "" {
		t.Errorf("read-only Txn sent Idempotency-Key %q", k)
	}
	// Every write attempt carries a key, the same one.
	flaky := newRecorder(t, apiError(503, "no_leader", "election"))
	c3 := mustNewClient(t, flaky.URL, good.URL)
	if _, err := c3.Txn(ctx, write); err != nil {
		t.Fatal(err)
	}
	k1, k2 := flaky.idempotencyKeys()[0], good.last().Header.Get("Idempotency-Key")
	if k1 == "" || k1 != k2 {
		t.Errorf("write attempts carried keys %q and %q, want one non-empty key", k1, k2)
	}
	if ct := good.last().Header.Get("Content-Type"); ct != "application/json" || good.last().URL.Path != "/v1/txn" || good.last().Method != http.MethodPost {
		t.Errorf("request %s %s with Content-Type %q", good.last().Method, good.last().URL.Path, ct)
	}
}
