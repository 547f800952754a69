package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/cairn-kv/cairn/client"
)

// Output formats of the kv and cluster commands.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// connOptions are the persistent flags of the kv and cluster commands: how
// to reach the cluster and how to print answers. They map onto
// client.Config.
type connOptions struct {
	endpoints []string
	timeout   time.Duration
	output    string
}

// addFlags registers the connection flags as persistent flags of cmd.
func (o *connOptions) addFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringSliceVar(&o.endpoints, "endpoints", client.DefaultConfig().Endpoints,
		"HTTP addresses of cluster members, host:port or URL, comma-separated (env CAIRN_ENDPOINTS)")
	f.DurationVar(&o.timeout, "timeout", 5*time.Second,
		"time limit of the whole command, retries included; each attempt gets a third of it (0: no limit)")
	f.StringVarP(&o.output, "output", "o", outputTable, "output format: table (for people) or json (for scripts)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(
		[]cobra.Completion{outputTable, outputJSON}, cobra.ShellCompDirectiveNoFileComp))
}

// config returns the client configuration the flags describe. With a
// --timeout, each attempt gets a third of it, so that a node that accepts
// connections but never answers leaves time to try the others.
func (o *connOptions) config() client.Config {
	cfg := client.DefaultConfig()
	cfg.Endpoints = o.endpoints
	if o.timeout > 0 {
		cfg.Timeout = o.timeout / 3
	}
	return cfg
}

// writeKey returns an idempotency key for one write of the command, so the
// client may retry it after any failure (an attempt that timed out, a node
// that died mid-request) without applying it twice.
func writeKey() client.Option {
	return client.WithIdempotencyKey("cli-" + rand.Text())
}

// run checks the shared flags, connects a client for the given config and
// calls fn with it and a context bounded by --timeout.
func (o *connOptions) run(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client) error) error {
	c, err := o.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := o.context(cmd)
	defer cancel()
	return fn(ctx, c)
}

// connect checks the shared flags and returns a client for them.
func (o *connOptions) connect() (*client.Client, error) {
	if o.output != outputTable && o.output != outputJSON {
		return nil, fmt.Errorf("--output must be %s or %s, not %q", outputTable, outputJSON, o.output)
	}
	return client.New(o.config())
}

// context returns the command's context bounded by --timeout.
func (o *connOptions) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if o.timeout > 0 {
		return context.WithTimeout(ctx, o.timeout)
	}
	return context.WithCancel(ctx)
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// silence makes cobra leave error reporting to main: RunE errors are
// printed once, as "Error: ...", without the usage text.
func silence(cmds ...*cobra.Command) {
	for _, c := range cmds {
		c.SilenceUsage = true
		c.SilenceErrors = true
	}
}

// consistencyFlag registers --consistency on cmd.
func consistencyFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "consistency", string(client.Linearizable),
		"read consistency: linearizable (never stale), leader (no quorum round) or stale (any node, may lag)")
	_ = cmd.RegisterFlagCompletionFunc("consistency", cobra.FixedCompletions([]cobra.Completion{
		string(client.Linearizable), string(client.Leader), string(client.Stale),
	}, cobra.ShellCompDirectiveNoFileComp))
}

// consistencyOption turns the --consistency flag into a client option.
func consistencyOption(s string) (client.Option, error) {
	switch c := client.Consistency(s); c {
	case client.Linearizable, client.Leader, client.Stale:
		return client.WithConsistency(c), nil
	}
	return nil, fmt.Errorf("--consistency must be linearizable, leader or stale, not %q", s)
}

func newKVCmd() *cobra.Command {
	conn := &connOptions{}
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Read and write keys",
		Long: `Read and write keys of a cairn cluster through any of its members.

Keys are UTF-8 strings of up to 1024 bytes and may contain "/"; values are
arbitrary bytes. The command fails over between the --endpoints on its own;
writes carry an idempotency key, so a retried write is applied once.`,
		Example: `  cairn kv put greeting hello
  cairn kv get greeting
  cairn kv ls --endpoints 127.0.0.1:8001,127.0.0.1:8002
  cairn kv watch config/ --prefix
  echo '{"success": [{"op": "put", "key": "a", "value": "1"}]}' | cairn kv txn`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	conn.addFlags(cmd)
	cmd.AddCommand(newKVGetCmd(conn), newKVPutCmd(conn), newKVDelCmd(conn), newKVLsCmd(conn),
		newKVWatchCmd(conn), newKVTxnCmd(conn))
	silence(cmd)
	return cmd
}

// kvGetOptions are the flags of `cairn kv get`.
type kvGetOptions struct {
	conn        *connOptions
	consistency string
	minRevision int64
}

func newKVGetCmd(conn *connOptions) *cobra.Command {
	o := &kvGetOptions{conn: conn}
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value",
		Long: `Print the value of KEY exactly as stored, without an added newline, so that
"cairn kv get KEY > FILE" round-trips binary data. With -o json, print the key,
its value (as "value", or "value_base64" when it is not UTF-8), its revisions,
the store revision and the node that answered instead. A missing key is an
error (exit status 1).

--min-revision N makes the serving node wait (bounded) until it has applied
revision N: pass the revision a put printed to read your own write even with
--consistency stale, from any node.`,
		Example: `  cairn kv get config/db
  cairn kv get --consistency stale config/db
  cairn kv get --consistency stale --min-revision 42 config/db
  cairn kv get -o json config/db
  cairn kv get photo.jpg > photo.jpg`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, args[0]) },
	}
	consistencyFlag(cmd, &o.consistency)
	cmd.Flags().Int64Var(&o.minRevision, "min-revision", 0,
		"wait until the serving node has applied this revision, e.g. one a put printed (0: no wait)")
	silence(cmd)
	return cmd
}

func (o *kvGetOptions) run(cmd *cobra.Command, key string) error {
	cons, err := consistencyOption(o.consistency)
	if err != nil {
		return err
	}
	if o.minRevision < 0 {
		return fmt.Errorf("--min-revision must not be negative (%d)", o.minRevision)
	}
	return o.conn.run(cmd, func(ctx context.Context, c *client.Client) error {
		resp, err := c.Get(ctx, key, cons, client.WithMinRevision(o.minRevision))
		if err != nil {
			return err
		}
		if o.conn.output == outputJSON {
			return printJSON(cmd.OutOrStdout(), newKVOut(resp.KV, &resp.Meta))
		}
		_, err = cmd.OutOrStdout().Write(resp.Value)
		return err
	})
}

// kvOut is the JSON form of a key: the API's own shape plus, for a single
// key, the store revision and the node that served it.
type kvOut struct {
	Key            string  `json:"key"`
	Value          *string `json:"value,omitempty"`
	ValueBase64    *string `json:"value_base64,omitempty"`
	CreateRevision int64   `json:"create_revision"`
	ModRevision    int64   `json:"mod_revision"`
	Version        int64   `json:"version"`
	Revision       int64   `json:"revision,omitempty"`
	Node           string  `json:"node,omitempty"`
}

func newKVOut(kv client.KV, m *client.Meta) kvOut {
	var out kvOut
	b, _ := json.Marshal(kv) // client.KV encodes the value the API's way
	_ = json.Unmarshal(b, &out)
	if m != nil {
		out.Revision, out.Node = m.Revision, m.Node
	}
	return out
}

// kvPutOptions are the flags of `cairn kv put`.
type kvPutOptions struct {
	conn *connOptions
	cas  int64
	ttl  time.Duration
}

func newKVPutCmd(conn *connOptions) *cobra.Command {
	o := &kvPutOptions{conn: conn}
	cmd := &cobra.Command{
		Use:   "put KEY [VALUE]",
		Short: "Store a value under a key",
		Long: `Store VALUE under KEY. Without VALUE, or when it is "-", the value is read
from standard input, byte for byte (no newline is stripped), so binary data and
files work. --cas makes the write conditional on the key's mod revision (0:
only if the key does not exist); a failed condition is an error that reports
the current mod revision. --ttl makes the key expire.`,
		Example: `  cairn kv put greeting hello
  cairn kv put photo.jpg < photo.jpg
  printf 'v2' | cairn kv put config/db --cas 41
  cairn kv put lock/job1 me --cas 0 --ttl 30s`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args, cmd.Flags().Changed("cas"))
		},
	}
	cmd.Flags().Int64Var(&o.cas, "cas", 0, "write only if the key's mod revision is this (0: only if absent)")
	cmd.Flags().DurationVar(&o.ttl, "ttl", 0, "expire the key after this long, e.g. 30s (0: never)")
	silence(cmd)
	return cmd
}

func (o *kvPutOptions) run(cmd *cobra.Command, args []string, cas bool) error {
	var value []byte
	if len(args) == 2 && args[1] != "-" {
		value = []byte(args[1])
	} else {
		v, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return fmt.Errorf("reading the value from standard input: %w", err)
		}
		value = v
	}
	opts := []client.Option{writeKey()}
	if cas {
		opts = append(opts, client.WithCAS(o.cas))
	}
	if o.ttl < 0 {
		return fmt.Errorf("--ttl must not be negative (%v)", o.ttl)
	}
	if o.ttl > 0 {
		opts = append(opts, client.WithTTL(o.ttl))
	}
	return o.conn.run(cmd, func(ctx context.Context, c *client.Client) error {
		resp, err := c.Put(ctx, args[0], value, opts...)
		if err != nil {
			return err
		}
		if o.conn.output == outputJSON {
			return printJSON(cmd.OutOrStdout(), map[string]any{"revision": resp.Revision, "node": resp.Node})
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "OK (revision %d)\n", resp.Revision)
		return err
	})
}

// kvDelOptions are the flags of `cairn kv del`.
type kvDelOptions struct {
	conn   *connOptions
	prefix bool
	cas    int64
}

func newKVDelCmd(conn *connOptions) *cobra.Command {
	o := &kvDelOptions{conn: conn}
	cmd := &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete a key, or every key under a prefix",
		Long: `Delete KEY, or with --prefix every key that starts with KEY, and print how
many keys were deleted. Deleting a missing key is not an error. --cas deletes
only if the key's mod revision matches.`,
		Example: `  cairn kv del greeting
  cairn kv del --prefix jobs/
  cairn kv del config/db --cas 41`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0], cmd.Flags().Changed("cas"))
		},
	}
	cmd.Flags().BoolVar(&o.prefix, "prefix", false, "delete every key that starts with KEY")
	cmd.Flags().Int64Var(&o.cas, "cas", 0, "delete only if the key's mod revision is this")
	silence(cmd)
	return cmd
}

func (o *kvDelOptions) run(cmd *cobra.Command, key string, cas bool) error {
	opts := []client.Option{writeKey()}
	if o.prefix {
		opts = append(opts, client.WithPrefix())
	}
	if cas {
		opts = append(opts, client.WithCAS(o.cas))
	}
	return o.conn.run(cmd, func(ctx context.Context, c *client.Client) error {
		resp, err := c.Delete(ctx, key, opts...)
		if err != nil {
			return err
		}
		if o.conn.output == outputJSON {
			return printJSON(cmd.OutOrStdout(), map[string]any{"deleted": resp.Deleted, "revision": resp.Revision, "node": resp.Node})
		}
		noun := "keys"
		if resp.Deleted == 1 {
			noun = "key"
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "deleted %d %s (revision %d)\n", resp.Deleted, noun, resp.Revision)
		return err
	})
}

// kvLsOptions are the flags of `cairn kv ls`.
type kvLsOptions struct {
	conn        *connOptions
	limit       int
	after       string
	keysOnly    bool
	consistency string
}

func newKVLsCmd(conn *connOptions) *cobra.Command {
	o := &kvLsOptions{conn: conn}
	cmd := &cobra.Command{
		Use:     "ls [PREFIX]",
		Aliases: []string{"list"},
		Short:   "List keys under a prefix",
		Long: `List the keys that start with PREFIX (all keys without it) in key order,
fetching page after page until --limit keys or the end. The table shows values
shortened, quoted when they contain control characters, and binary ones by
size only; -o json gives them in full, in the API's listing format.`,
		Example: `  cairn kv ls
  cairn kv ls jobs/ --keys-only
  cairn kv ls jobs/ --limit 100 --after jobs/0099
  cairn kv ls -o json config/`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			return o.run(cmd, prefix)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.limit, "limit", 0, "list at most this many keys (0: all)")
	f.StringVar(&o.after, "after", "", "start after this key (exclusive), e.g. the last key of the previous page")
	f.BoolVar(&o.keysOnly, "keys-only", false, "list keys and revisions without values")
	consistencyFlag(cmd, &o.consistency)
	silence(cmd)
	return cmd
}

// maxPage is the server's largest page.
const maxPage = 1000

func (o *kvLsOptions) run(cmd *cobra.Command, prefix string) error {
	if o.limit < 0 {
		return fmt.Errorf("--limit must not be negative (%d)", o.limit)
	}
	cons, err := consistencyOption(o.consistency)
	if err != nil {
		return err
	}
	return o.conn.run(cmd, func(ctx context.Context, c *client.Client) error {
		var (
			kvs  []client.KV
			rev  int64
			more = true
		)
		after := o.after
		for more && (o.limit == 0 || len(kvs) < o.limit) {
			// Later pages come from a node at least as recent as the first.
			opts := []client.Option{cons, client.WithAfter(after), client.WithMinRevision(rev)}
			if o.limit > 0 && o.limit-len(kvs) < maxPage {
				opts = append(opts, client.WithLimit(o.limit-len(kvs)))
			}
			if o.keysOnly {
				opts = append(opts, client.WithKeysOnly())
			}
			page, err := c.List(ctx, prefix, opts...)
			if err != nil {
				return err
			}
			if rev == 0 {
				rev = page.Revision
			}
			kvs = append(kvs, page.KVs...)
			more = page.More && len(page.KVs) > 0
			if len(page.KVs) > 0 {
				after = page.KVs[len(page.KVs)-1].Key
			}
		}
		if o.conn.output == outputJSON {
			out := struct {
				Revision int64   `json:"revision"`
				KVs      []kvOut `json:"kvs"`
				More     bool    `json:"more"`
			}{rev, make([]kvOut, len(kvs)), more}
			for i, kv := range kvs {
				out.KVs[i] = newKVOut(kv, nil)
			}
			return printJSON(cmd.OutOrStdout(), out)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		if o.keysOnly {
			fmt.Fprintln(tw, "KEY\tCREATE_REV\tMOD_REV\tVERSION")
		} else {
			fmt.Fprintln(tw, "KEY\tVALUE\tCREATE_REV\tMOD_REV\tVERSION")
		}
		for _, kv := range kvs {
			if o.keysOnly {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", displayText(kv.Key, 0), kv.CreateRevision, kv.ModRevision, kv.Version)
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", displayText(kv.Key, 0), displayText(string(kv.Value), 48),
					kv.CreateRevision, kv.ModRevision, kv.Version)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if more {
			fmt.Fprintf(cmd.ErrOrStderr(), "more keys follow; continue with --after %q\n", kvs[len(kvs)-1].Key)
		}
		return nil
	})
}

// displayText renders s for a table cell: as is when it is printable text,
// quoted Go-style when it is UTF-8 with tabs, newlines or other control
// characters, and as "<binary, N bytes>" when it is not UTF-8. When max > 0,
// text longer than max runes is cut and marked with "...".
func displayText(s string, max int) string {
	if !utf8.ValidString(s) {
		return fmt.Sprintf("<binary, %d bytes>", len(s))
	}
	cut := max > 0 && utf8.RuneCountInString(s) > max
	if cut {
		s = string([]rune(s)[:max])
	}
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		s = strconv.Quote(s)
	}
	if cut {
		s += "..."
	}
	return s
}

// kvWatchOptions are the flags of `cairn kv watch`.
type kvWatchOptions struct {
	conn   *connOptions
	prefix bool
	rev    int64
}

func newKVWatchCmd(conn *connOptions) *cobra.Command {
	o := &kvWatchOptions{conn: conn}
	cmd := &cobra.Command{
		Use:   "watch KEY",
		Short: "Print the changes of a key, or of every key under a prefix, as they happen",
		Long: `Print each change of KEY (or with --prefix of every key that starts with KEY;
"" --prefix watches everything) as one line, in revision order, until
interrupted with Ctrl-C (exit status 0):

  PUT KEY REVISION VALUE
  DELETE KEY REVISION

Values are shown as in "cairn kv ls": quoted when they hold control
characters, binary ones by size only. With -o json each change is printed as
one line of JSON exactly as the HTTP watch stream has it ({"type", "key",
"value" or "value_base64", "create_revision", "mod_revision", "version"}).

Without --rev the watch starts with the changes after it connected; --rev R
starts at revision R, including past changes the cluster still holds (a
revision older than that history is an error). The watch survives node
failures: it resumes on another endpoint from the last revision printed, so
no change is lost or printed twice. --timeout does not end a watch; each
connection attempt gets a third of it.`,
		Example: `  cairn kv watch config/db
  cairn kv watch config/ --prefix
  cairn kv watch jobs/ --prefix --rev 1 -o json
  cairn kv watch "" --prefix`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, args[0]) },
	}
	cmd.Flags().BoolVar(&o.prefix, "prefix", false, "watch every key that starts with KEY")
	cmd.Flags().Int64Var(&o.rev, "rev", 0, "start at this revision, including past changes (0: from now)")
	silence(cmd)
	return cmd
}

func (o *kvWatchOptions) run(cmd *cobra.Command, key string) error {
	if o.rev < 0 {
		return fmt.Errorf("--rev must not be negative (%d)", o.rev)
	}
	c, err := o.conn.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var opts []client.Option
	if o.prefix {
		opts = append(opts, client.WithPrefix())
	}
	if o.rev > 0 {
		opts = append(opts, client.WithRevision(o.rev))
	}
	out := cmd.OutOrStdout()
	for resp := range c.Watch(ctx, key, opts...) {
		if resp.Err != nil {
			return resp.Err
		}
		for _, ev := range resp.Events {
			if err := printEvent(out, o.conn.output, ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// printEvent prints one watch event as a line.
func printEvent(w io.Writer, output string, ev client.Event) error {
	if output == outputJSON {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	if ev.Type == client.EventDelete {
		_, err := fmt.Fprintf(w, "DELETE %s %d\n", displayText(ev.KV.Key, 0), ev.Revision())
		return err
	}
	_, err := fmt.Fprintf(w, "%s %s %d %s\n", strings.ToUpper(string(ev.Type)), displayText(ev.KV.Key, 0),
		ev.Revision(), displayText(string(ev.KV.Value), 0))
	return err
}

// kvTxnOptions are the flags of `cairn kv txn`.
type kvTxnOptions struct {
	conn *connOptions
	file string
}

func newKVTxnCmd(conn *connOptions) *cobra.Command {
	o := &kvTxnOptions{conn: conn}
	cmd := &cobra.Command{
		Use:   "txn",
		Short: "Run a transaction read as JSON",
		Long: `Run a transaction atomically: read it from standard input (or --file) in the
JSON form of the HTTP API's POST /v1/txn body, and print what happened.

  {"compare": [{"key": "a", "target": "mod_revision", "op": "==", "value": 5}],
   "success": [{"op": "put", "key": "a", "value": "text", "ttl": "30s"},
               {"op": "get", "key": "dir/", "prefix": true, "limit": 10}],
   "failure": [{"op": "get", "key": "a"}]}

A compare's target is value, mod_revision, create_revision, version or exists,
its op ==, !=, < or >. Operations are get (with prefix and limit), put (with
ttl) and delete (with prefix). Binary values go in "value_base64". Unknown
fields are errors.

The first line says whether the comparisons held (SUCCEEDED: the success
operations ran) or not (FAILED: the failure operations ran), with the store
revision; then one line per operation result (one per key a get found). A
FAILED transaction is not an error: the exit status is 0 either way. With
-o json the answer is printed as the HTTP API gives it ({"succeeded",
"revision", "results"}).`,
		Example: `  cairn kv txn < transfer.json
  cairn kv txn --file transfer.json -o json
  echo '{"compare": [{"key": "lock", "target": "exists", "op": "==", "value": false}],
         "success": [{"op": "put", "key": "lock", "value": "me", "ttl": "30s"}]}' | cairn kv txn`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	cmd.Flags().StringVarP(&o.file, "file", "f", "", `read the transaction from this file ("-" or none: standard input)`)
	silence(cmd)
	return cmd
}

func (o *kvTxnOptions) run(cmd *cobra.Command) error {
	var (
		body []byte
		err  error
	)
	if o.file != "" && o.file != "-" {
		body, err = os.ReadFile(o.file)
	} else {
		body, err = io.ReadAll(cmd.InOrStdin())
	}
	if err != nil {
		return fmt.Errorf("reading the transaction: %w", err)
	}
	var req client.TxnRequest
	if err := req.UnmarshalJSON(body); err != nil {
		return fmt.Errorf("reading the transaction: %w", err)
	}
	if _, err := req.MarshalJSON(); err != nil { // the checks Txn makes, before connecting
		return fmt.Errorf("reading the transaction: %w", err)
	}
	return o.conn.run(cmd, func(ctx context.Context, c *client.Client) error {
		resp, err := c.Txn(ctx, req, writeKey())
		if err != nil {
			return err
		}
		if o.conn.output == outputJSON {
			return printJSON(cmd.OutOrStdout(), resp)
		}
		ops := req.Success
		verdict := "SUCCEEDED"
		if !resp.Succeeded {
			ops, verdict = req.Failure, "FAILED"
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s (revision %d)\n", verdict, resp.Revision)
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		for i, r := range resp.Results {
			key := ""
			if i < len(ops) {
				key = ops[i].Key
			}
			switch r.Type {
			case client.OpTypeGet:
				if len(r.KVs) == 0 {
					fmt.Fprintf(tw, "%d\tget\t%s\t(not found)\n", i+1, displayText(key, 0))
				}
				for _, kv := range r.KVs {
					fmt.Fprintf(tw, "%d\tget\t%s\t%s\t(mod revision %d, version %d)\n", i+1, displayText(kv.Key, 0),
						displayText(string(kv.Value), 48), kv.ModRevision, kv.Version)
				}
			case client.OpTypePut:
				fmt.Fprintf(tw, "%d\tput\t%s\tOK (revision %d)\n", i+1, displayText(key, 0), r.Revision)
			case client.OpTypeDelete:
				noun := "keys"
				if r.Deleted == 1 {
					noun = "key"
				}
				fmt.Fprintf(tw, "%d\tdelete\t%s\tdeleted %d %s\n", i+1, displayText(key, 0), r.Deleted, noun)
			default:
				fmt.Fprintf(tw, "%d\t%s\t%s\n", i+1, r.Type, displayText(key, 0))
			}
		}
		return tw.Flush()
	})
}
