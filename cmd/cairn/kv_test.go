package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-kv/cairn/client"
	"github.com/cairn-kv/cairn/client/clienttest"
)

// runCLI runs the kv and cluster commands in-process, as `cairn args...`
// with stdin as standard input, and returns what they printed.
func runCLI(t *testing.T, stdin []byte, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := &cobra.Command{Use: "cairn", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newKVCmd(), newClusterCmd())
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetIn(bytes.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// mustRunCLI is runCLI for commands that must succeed.
func mustRunCLI(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, stdin, args...)
	if err != nil {
		t.Fatalf("cairn %s: %v (stderr %q)", strings.Join(args, " "), err, errOut)
	}
	return out
}

func TestKVBinaryRoundTrip(t *testing.T) {
	fake := clienttest.NewServer(t)
	ep := "--endpoints=" + fake.Addr()
	var value []byte
	for i := range 256 {
		value = append(value, byte(i))
	}
	value = append(value, "\r\n\n"...)

	// From standard input, without VALUE and with "-".
	mustRunCLI(t, value, "kv", "put", "bin/a", ep)
	mustRunCLI(t, value, "kv", "put", "bin/b", "-", ep)
	for _, k := range []string{"bin/a", "bin/b"} {
		if got, _ := fake.Value(k); !bytes.Equal(got, value) {
			t.Errorf("stored %q = %q, want the 259 input bytes", k, got)
		}
		if out := mustRunCLI(t, nil, "kv", "get", k, ep); out != string(value) {
			t.Errorf("kv get %s printed %q, want the exact bytes", k, out)
		}
	}

	out := mustRunCLI(t, nil, "kv", "get", "bin/a", ep, "-o", "json")
	var kv client.KV
	if err := json.Unmarshal([]byte(out), &kv); err != nil {
		t.Fatalf("kv get -o json printed %q: %v", out, err)
	}
	if !bytes.Equal(kv.Value, value) || !strings.Contains(out, `"value_base64"`) {
		t.Errorf("kv get -o json = %s", out)
	}
}

func TestKVPutGet(t *testing.T) {
	fake := clienttest.NewServer(t)
	ep := "--endpoints=" + fake.Addr()

	if out := mustRunCLI(t, nil, "kv", "put", "greeting", "hello world", ep); out != "OK (revision 1)\n" {
		t.Errorf("kv put printed %q", out)
	}
	if out := mustRunCLI(t, nil, "kv", "get", "greeting", ep, "--consistency", "stale"); out != "hello world" {
		t.Errorf("kv get printed %q, want the value without a newline", out)
	}
	out := mustRunCLI(t, nil, "kv", "get", "greeting", ep, "-o", "json")
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("kv get -o json printed %q: %v", out, err)
	}
	want := map[string]any{"key": "greeting", "value": "hello world", "create_revision": 1.0,
		"mod_revision": 1.0, "version": 1.0, "revision": 1.0, "node": clienttest.NodeID}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("kv get -o json = %v, want %v", got, want)
	}
	out = mustRunCLI(t, nil, "kv", "put", "greeting", "hi", ep, "-o", "json")
	if err := json.Unmarshal([]byte(out), &got); err != nil || got["revision"] != 2.0 {
		t.Errorf("kv put -o json printed %q", out)
	}
}

func TestKVPutCASAndTTL(t *testing.T) {
	fake := clienttest.NewServer(t)
	ep := "--endpoints=" + fake.Addr()

	mustRunCLI(t, nil, "kv", "put", "lock", "me", "--cas", "0", ep)
	_, _, err := runCLI(t, nil, "kv", "put", "lock", "you", "--cas", "0", ep)
	if !errors.Is(err, client.ErrConflict) || !strings.Contains(err.Error(), "current mod revision is 1") {
		t.Fatalf("second kv put --cas 0: %v, want a conflict naming mod revision 1", err)
	}
	mustRunCLI(t, nil, "kv", "put", "lock", "you", "--cas", "1", ep)

	mustRunCLI(t, nil, "kv", "put", "tmp", "x", "--ttl", "50ms", ep)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, err := runCLI(t, nil, "kv", "get", "tmp", ep)
		if errors.Is(err, client.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key with --ttl 50ms still there after 5s (last error %v)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestKVDel(t *testing.T) {
	fake := clienttest.NewServer(t)
	ep := "--endpoints=" + fake.Addr()
	for _, k := range []string{"jobs/1", "jobs/2", "keep"} {
		mustRunCLI(t, nil, "kv", "put", k, "x", ep)
	}
	if out := mustRunCLI(t, nil, "kv", "del", "jobs/", "--prefix", ep); out != "deleted 2 keys (revision 4)\n" {
		t.Errorf("kv del --prefix printed %q", out)
	}
	if out := mustRunCLI(t, nil, "kv", "del", "keep", ep, "-o", "json"); !strings.Contains(out, `"deleted": 1`) {
		t.Errorf("kv del -o json printed %q", out)
	}
	if out := mustRunCLI(t, nil, "kv", "rm", "nothing", ep); out != "deleted 0 keys (revision 5)\n" {
		t.Errorf("kv rm of a missing key printed %q", out)
	}
}

func TestKVLs(t *testing.T) {
	fake := clienttest.NewServer(t)
	ep := "--endpoints=" + fake.Addr()
	mustRunCLI(t, nil, "kv", "put", "a/one", "1", ep)
	mustRunCLI(t, nil, "kv", "put", "a/two", "two\tlines\n", ep)
	mustRunCLI(t, []byte{0xff, 0x00}, "kv", "put", "a/bin", ep)
	mustRunCLI(t, nil, "kv", "put", "b", strings.Repeat("long ", 20), ep)

	out := mustRunCLI(t, nil, "kv", "ls", "a/", ep)
	want := `KEY    VALUE              CREATE_REV  MOD_REV  VERSION
a/bin  <binary, 2 bytes>  3           3        1
a/one  1                  1           1        1
a/two  "two\tlines\n"     2           2        1
`
	if out != want {
		t.Errorf("kv ls a/ printed\n%s\nwant\n%s", out, want)
	}
	out = mustRunCLI(t, nil, "kv", "ls", ep, "--keys-only", "--after", "a/one")
	if want := "KEY    CREATE_REV  MOD_REV  VERSION\na/two  2           2        1\nb      4           4        1\n"; out != want {
		t.Errorf("kv ls --keys-only --after printed\n%s\nwant\n%s", out, want)
	}
	out = mustRunCLI(t, nil, "kv", "ls", "b", ep)
	if !strings.Contains(out, strings.Repeat("long ", 9)+"lon...") {
		t.Errorf("long value not shortened:\n%s", out)
	}

	out = mustRunCLI(t, nil, "kv", "ls", ep, "-o", "json", "--limit", "3")
	var page struct {
		Revision int64       `json:"revision"`
		KVs      []client.KV `json:"kvs"`
		More     bool        `json:"more"`
	}
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("kv ls -o json printed %q: %v", out, err)
	}
	if page.Revision != 4 || len(page.KVs) != 3 || !page.More || !bytes.Equal(page.KVs[0].Value, []byte{0xff, 0}) {
		t.Errorf("kv ls -o json --limit 3 = %+v", page)
	}
}

// kv ls pages through listings longer than the server's page of 1000.
func TestKVLsPages(t *testing.T) {
	fake := clienttest.NewServer(t)
	c, err := client.New(client.Config{Endpoints: []string{fake.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 1005 {
		if _, err := c.Put(context.Background(), fmt.Sprintf("k%04d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	ep := "--endpoints=" + fake.Addr()
	out := mustRunCLI(t, nil, "kv", "ls", ep, "--keys-only")
	if lines := strings.Count(out, "\n"); lines != 1006 {
		t.Errorf("kv ls printed %d lines, want a header and 1005 keys", lines)
	}
	out, errOut, err := runCLI(t, nil, "kv", "ls", ep, "--keys-only", "--limit", "1002")
	if err != nil || strings.Count(out, "\n") != 1003 || !strings.Contains(errOut, `--after "k1001"`) {
		t.Errorf("kv ls --limit 1002: %d lines, stderr %q, err %v", strings.Count(out, "\n"), errOut, err)
	}
}

func TestKVErrors(t *testing.T) {
	fake := clienttest.NewServer(t)
	ep := "--endpoints=" + fake.Addr()
	tests := []struct {
		args []string
		want string
		is   error
	}{
		{[]string{"kv", "get", "missing", ep}, "key not found", client.ErrNotFound},
		{[]string{"kv", "get", "k", ep, "-o", "yaml"}, `--output must be table or json, not "yaml"`, nil},
		{[]string{"kv", "get", "k", ep, "--consistency", "eventual"}, "--consistency must be", nil},
		{[]string{"kv", "get", "k", "--endpoints", "ftp://x:1"}, `scheme must be http or https`, nil},
		{[]string{"kv", "get", "k", "--endpoints", deadAddr(t), "--timeout", "300ms"}, "connection refused", nil},
		{[]string{"kv", "put", "k", "v", ep, "--ttl", "-1s"}, "--ttl must not be negative", nil},
		{[]string{"kv", "ls", ep, "--limit", "-1"}, "--limit must not be negative", nil},
		{[]string{"kv", "get", ep}, "accepts 1 arg(s), received 0", nil},
		{[]string{"kv", "put", "k", "v", "extra", ep}, "accepts between 1 and 2 arg(s)", nil},
	}
	for _, tt := range tests {
		out, _, err := runCLI(t, nil, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.is != nil && !errors.Is(err, tt.is)) {
			t.Errorf("cairn %s: %v, want an error containing %q", strings.Join(tt.args, " "), err, tt.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("cairn %s: error spans lines: %q", strings.Join(tt.args, " "), err)
		}
		if out != "" {
			t.Errorf("cairn %s printed %q to stdout on error", strings.Join(tt.args, " "), out)
		}
	}
}

func TestKVEndpointsFromEnvironment(t *testing.T) {
	fake := clienttest.NewServer(t)
	t.Setenv(client.EnvEndpoints, deadAddr(t)+","+fake.Addr())
	mustRunCLI(t, nil, "kv", "put", "k", "v")
	if out := mustRunCLI(t, nil, "kv", "get", "k"); out != "v" {
		t.Errorf("kv get with CAIRN_ENDPOINTS printed %q", out)
	}
}

// Every command has the documentation cobra shows in help.
func TestCommandsDocumented(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Use == "" || c.Short == "" || c.Long == "" || c.Example == "" || c.RunE == nil {
			t.Errorf("command %q lacks Use, Short, Long, Example or RunE", c.CommandPath())
		}
		if !c.SilenceErrors || !c.SilenceUsage {
			t.Errorf("command %q prints its own errors or usage", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newKVCmd())
	walk(newClusterCmd())
}

func TestDisplayText(t *testing.T) {
	for in, want := range map[string]string{
		"plain text": "plain text",
		"":           `""`,
		"tab\there":  `"tab\there"`,
		"\xff\x00":   "<binary, 2 bytes>",
		"a\x00b":     `"a\x00b"`,
		"日本語":        "日本語",
	} {
		if got := displayText(in, 0); got != want {
			t.Errorf("displayText(%q) = %s, want %s", in, got, want)
		}
	}
	if got := displayText("abcdef", 3); got != "abc..." {
		t.Errorf("displayText cut = %q", got)
	}
	if got := displayText("ab\ncdef", 3); got != `"ab\n"...` {
		t.Errorf("displayText cut and quoted = %q", got)
	}
}

// deadAddr returns a local address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	s := clienttest.Start()
	addr := s.Addr()
	s.Close()
	return addr
}

// The real binary's main prints one "Error:" line and exits 1 on failure.
// The test runs its own test binary as cairn through TestMainHelper.
func TestMainExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	fake := clienttest.NewServer(t)
	run := func(stdin string, args ...string) (string, string, int) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMainHelper$", "--")
		cmd.Args = append(cmd.Args, args...)
		cmd.Env = append(os.Environ(), "CAIRN_TEST_MAIN=1", "CAIRN_ENDPOINTS="+fake.Addr())
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), code
	}
	if out, errOut, code := run("v\x00\n", "kv", "put", "k"); code != 0 || out != "OK (revision 1)\n" {
		t.Fatalf("cairn kv put: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out, _, code := run("", "kv", "get", "k"); code != 0 || out != "v\x00\n" {
		t.Errorf("cairn kv get: exit %d, stdout %q", code, out)
	}
	out, errOut, code := run("", "kv", "get", "missing")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "Error: key not found") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("cairn kv get missing: exit %d, stdout %q, stderr %q; want exit 1 and one Error: line", code, out, errOut)
	}
	if _, errOut, code := run("", "cluster", "remove", "n9"); code != 1 || !strings.HasPrefix(errOut, "Error: ") {
		t.Errorf("cairn cluster remove n9: exit %d, stderr %q", code, errOut)
	}
}

// TestMainHelper is not a test: TestMainExitStatus runs it in a subprocess
// to act as the cairn binary.
func TestMainHelper(t *testing.T) {
	if os.Getenv("CAIRN_TEST_MAIN") != "1" {
		t.Skip("helper process for TestMainExitStatus")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Args = append([]string{"cairn"}, args...)
	main()
	os.Exit(0)
}

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startCLI runs `cairn args...` in the background with ctx; wait returns
// its error once it ends.
func startCLI(ctx context.Context, args ...string) (out *syncBuffer, wait func() error) {
	root := &cobra.Command{Use: "cairn", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newKVCmd(), newClusterCmd())
	out = &syncBuffer{}
	root.SetArgs(args)
	root.SetIn(bytes.NewReader(nil))
	root.SetOut(out)
	root.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	return out, func() error { return <-done }
}

// waitOutput polls out until it equals want.
func waitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("printed\n%s\nwant\n%s", out, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestKVWatch(t *testing.T) {
	fake := clienttest.NewServer(t)
	ep := "--endpoints=" + fake.Addr()
	mustRunCLI(t, nil, "kv", "put", "cfg/a", "one", ep)
	mustRunCLI(t, nil, "kv", "put", "other", "x", ep)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, wait := startCLI(ctx, "kv", "watch", "cfg/", "--prefix", "--rev", "1", ep)
	jctx, jcancel := context.WithCancel(context.Background())
	defer jcancel()
	jout, jwait := startCLI(jctx, "kv", "watch", "cfg/b", "-o", "json", ep, "--timeout", "300ms")
	waitWatches(t, fake, 2)

	mustRunCLI(t, []byte{0xff, 0}, "kv", "put", "cfg/b", ep)
	mustRunCLI(t, nil, "kv", "put", "cfg/c", "two words\n", ep)
	mustRunCLI(t, nil, "kv", "del", "cfg/", "--prefix", ep)
	waitOutput(t, out, "PUT cfg/a 1 one\nPUT cfg/b 3 <binary, 2 bytes>\nPUT cfg/c 4 \"two words\\n\"\n"+
		"DELETE cfg/a 5\nDELETE cfg/b 5\nDELETE cfg/c 5\n")
	// --timeout does not end a watch.
	time.Sleep(400 * time.Millisecond)
	waitOutput(t, jout, `{"type":"put","key":"cfg/b","value_base64":"/wA=","create_revision":3,"mod_revision":3,"version":1}`+"\n"+
		`{"type":"delete","key":"cfg/b","create_revision":3,"mod_revision":5,"version":0}`+"\n")
	cancel()
	jcancel()
	if err := wait(); err != nil {
		t.Errorf("kv watch ended with %v, want nil on interrupt", err)
	}
	if err := jwait(); err != nil {
		t.Errorf("kv watch -o json ended with %v", err)
	}

	fake.Compact(3)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"kv", "watch", "cfg/", "--prefix", "--rev", "2", ep}, "oldest revision held is 3"},
		{[]string{"kv", "watch", "cfg/", "--rev", "99", ep}, "future"},
		{[]string{"kv", "watch", "k", "--rev", "-1", ep}, "--rev must not be negative"},
		{[]string{"kv", "watch", "", ep}, "empty key"},
		{[]string{"kv", "watch", ep}, "accepts 1 arg(s)"},
	} {
		_, _, err := runCLI(t, nil, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("cairn %s: %v, want an error containing %q", strings.Join(tt.args, " "), err, tt.want)
		}
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

func TestKVTxn(t *testing.T) {
	fake := clienttest.NewServer(t)
	ep := "--endpoints=" + fake.Addr()
	mustRunCLI(t, nil, "kv", "put", "acct/a", "100", ep)
	mustRunCLI(t, nil, "kv", "put", "acct/b", "50", ep)
	mustRunCLI(t, nil, "kv", "put", "old/1", "x", ep)

	txn := `{"compare": [{"key": "acct/a", "target": "mod_revision", "op": "==", "value": 1},
	                     {"key": "acct/b", "target": "value", "op": "==", "value": "50"}],
	         "success": [{"op": "put", "key": "acct/a", "value": "90"}, {"op": "put", "key": "acct/b", "value_base64": "/w=="},
	                     {"op": "get", "key": "acct/", "prefix": true}, {"op": "delete", "key": "old/", "prefix": true},
	                     {"op": "get", "key": "missing"}],
	         "failure": [{"op": "get", "key": "acct/a"}]}`
	out := mustRunCLI(t, []byte(txn), "kv", "txn", ep)
	want := `SUCCEEDED (revision 4)
1  put     acct/a   OK (revision 4)
2  put     acct/b   OK (revision 4)
3  get     acct/a   90                 (mod revision 4, version 2)
3  get     acct/b   <binary, 1 bytes>  (mod revision 4, version 2)
4  delete  old/     deleted 1 key
5  get     missing  (not found)
`
	if out != want {
		t.Errorf("kv txn printed\n%s\nwant\n%s", out, want)
	}
	if v, _ := fake.Value("acct/b"); string(v) != "\xff" {
		t.Errorf("acct/b = %q", v)
	}

	// The same again: the failure branch, from a file, as JSON.
	file := t.TempDir() + "/txn.json"
	if err := os.WriteFile(file, []byte(txn), 0o644); err != nil {
		t.Fatal(err)
	}
	out = mustRunCLI(t, nil, "kv", "txn", "--file", file, ep, "-o", "json")
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("kv txn -o json printed %q: %v", out, err)
	}
	if fmt.Sprint(got) != "map[results:[map[kvs:[map[create_revision:1 key:acct/a mod_revision:4 value:90 version:2]] op:get]] revision:4 succeeded:false]" {
		t.Errorf("kv txn -o json = %v", got)
	}
	if out := mustRunCLI(t, nil, "kv", "txn", "-f", file, ep); !strings.HasPrefix(out, "FAILED (revision 4)\n1  get  acct/a  90") {
		t.Errorf("failed kv txn printed %q", out)
	}

	before := fake.Requests()
	for _, tt := range []struct{ body, want string }{
		{`{"compare": [`, "reading the transaction"},
		{`{"success": [{"op": "put", "key": "a", "value": "x", "colour": "red"}]}`, `unknown field "colour"`},
		{`{"success": [{"op": "patch", "key": "a"}]}`, `get, put or delete, not "patch"`},
		{`{"compare": [{"key": "a", "target": "version", "op": "=", "value": 1}]}`, "==, !=, < or >"},
		{`{"success": [{"op": "put", "key": "a", "value": "x", "ttl": "forever"}]}`, `ttl "forever"`},
	} {
		_, _, err := runCLI(t, []byte(tt.body), "kv", "txn", ep)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("kv txn < %s: %v, want an invalid-argument error containing %q", tt.body, err, tt.want)
		}
	}
	if _, _, err := runCLI(t, nil, "kv", "txn", "--file", t.TempDir()+"/none.json", ep); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("kv txn --file of a missing file: %v", err)
	}
	if fake.Requests() != before {
		t.Errorf("bad transactions reached the server")
	}
}

// Each attempt gets a third of --timeout, so a node that accepts
// connections but never answers leaves time for the others; writes carry
// an idempotency key, so they are retried after such a timeout too.
func TestKVTimeoutPerAttempt(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so the server notices the client leaving
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	hung := strings.TrimPrefix(hang.URL, "http://")
	fake := clienttest.NewServer(t)
	ep := "--endpoints=" + hung + "," + fake.Addr()

	start := time.Now()
	if out := mustRunCLI(t, nil, "kv", "put", "k", "v", ep, "--timeout", "1500ms"); out != "OK (revision 1)\n" {
		t.Errorf("kv put printed %q", out)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 1400*time.Millisecond {
		t.Errorf("kv put took %v, want about a third of 1.5s", d)
	}
	if out := mustRunCLI(t, nil, "kv", "get", "k", ep, "--timeout", "1500ms"); out != "v" {
		t.Errorf("kv get printed %q", out)
	}
	if out := mustRunCLI(t, []byte(`{"success": [{"op": "put", "key": "k", "value": "w"}]}`), "kv", "txn", ep, "--timeout", "1500ms"); !strings.HasPrefix(out, "SUCCEEDED (revision 2)") {
		t.Errorf("kv txn printed %q", out)
	}
	if fake.Revision() != 2 {
		t.Errorf("store at revision %d, want 2: each write applied once", fake.Revision())
	}

	// The per-attempt timeout follows --timeout.
	o := &connOptions{endpoints: []string{"127.0.0.1:1"}, timeout: 9 * time.Second}
	if got := o.config().Timeout; got != 3*time.Second {
		t.Errorf("--timeout 9s: per-attempt %v, want 3s", got)
	}
	o.timeout = 0
	if got := o.config().Timeout; got != client.DefaultTimeout {
		t.Errorf("--timeout 0: per-attempt %v, want the default %v", got, client.DefaultTimeout)
	}
}

func TestKVGetMinRevision(t *testing.T) {
	fake := clienttest.NewServer(t)
	ep := "--endpoints=" + fake.Addr()
	mustRunCLI(t, nil, "kv", "put", "k", "v", ep)
	if out := mustRunCLI(t, nil, "kv", "get", "k", "--consistency", "stale", "--min-revision", "1", ep); out != "v" {
		t.Errorf("kv get --min-revision 1 printed %q", out)
	}
	if _, _, err := runCLI(t, nil, "kv", "get", "k", "--min-revision", "-1", ep); err == nil || !strings.Contains(err.Error(), "--min-revision must not be negative") {
		t.Errorf("kv get --min-revision -1: %v", err)
	}
}
