// Package client is the Go client for cairn, a Raft-replicated key-value
// store. It speaks the HTTP API (docs/http-api.md), imports only the
// standard library, and fails over between cluster members on its own.
//
// # Usage
//
//	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:8001", "127.0.0.1:8002"}})
//	if err != nil { ... }
//	defer c.Close()
//
//	put, err := c.Put(ctx, "config/db", []byte("postgres://..."))
//	kv, err := c.Get(ctx, "config/db")                  // kv.Value, kv.ModRevision
//	_, err = c.Put(ctx, "config/db", v, client.WithCAS(kv.ModRevision))
//	page, err := c.List(ctx, "config/", client.WithLimit(100))
//	tx, err := c.Txn(ctx, client.TxnRequest{...})        // tx.Succeeded, tx.Results
//	for resp := range c.Watch(ctx, "config/", client.WithPrefix()) { ... }
//
// Every call takes a context.Context first; its deadline or cancellation
// bounds the whole call including retries. Options are functional and each
// applies to some calls only (see Option). Responses embed Meta: the store
// revision, the node that served the call and the endpoint used.
//
// Keys may contain "/": each segment is escaped separately, so "a b/c"
// becomes the path /v1/kv/a%20b/c.
//
// # Read your writes
//
// Every response's Meta.Revision is a store revision: for a write, the
// revision it created; for a read, the revision of the store that answered.
// Pass the highest one you have seen to WithMinRevision and a read waits
// (bounded, on the server) until the node serving it has applied that
// revision. Linearizable reads (the default) need no help, but Stale reads,
// served by whichever node answers, then still see your own writes and
// never go back in time, even when the client switches nodes:
//
//	put, err := c.Put(ctx, "config/db", []byte("v2"))
//	if err != nil { ... }
//	kv, err := c.Get(ctx, "config/db",
//		client.WithConsistency(client.Stale), client.WithMinRevision(put.Revision))
//	// kv.Value is "v2" or newer, whichever node served it
//	seen := max(put.Revision, kv.Revision) // carry it to the next read
//
// # Transactions
//
// Txn evaluates comparisons and runs one of two lists of operations, all at
// one revision with nothing in between, much like etcd's:
//
//	resp, err := c.Txn(ctx, client.TxnRequest{
//		Compare: []client.Cmp{
//			client.Compare("acct/a").ModRevision("==", a.ModRevision),
//			client.Compare("acct/b").ModRevision("==", b.ModRevision),
//		},
//		Success: []client.Op{client.OpPut("acct/a", []byte("90")), client.OpPut("acct/b", []byte("110"))},
//		Failure: []client.Op{client.OpGet("acct/", client.WithPrefix())},
//	})
//	if err == nil && !resp.Succeeded { /* someone changed an account: resp.Results[0].KVs */ }
//
// Comparisons look at a key's value, mod or create revision, version, or
// existence (Compare(key).Value, ModRevision, CreateRevision, Version,
// Exists, NotExists) with ==, !=, < or >. Operations are OpGet (WithPrefix,
// WithLimit), OpPut (WithTTL) and OpDelete (WithPrefix). A TxnRequest
// marshals to, and unmarshals from, the JSON body of POST /v1/txn.
//
// # Watches
//
// Watch streams the changes of a key or prefix on a channel, from a start
// revision (WithRevision) or from now. It resumes on another endpoint by
// itself when a stream breaks, from the last revision delivered, so the
// caller sees each change once, in revision order, across node failures:
//
//	ctx, cancel := context.WithCancel(ctx)
//	defer cancel()
//	for resp := range c.Watch(ctx, "config/", client.WithPrefix(), client.WithRevision(page.Revision+1)) {
//		if resp.Err != nil {
//			return resp.Err // errors.Is(resp.Err, client.ErrCompacted): too old; List again
//		}
//		for _, ev := range resp.Events {
//			apply(ev.Type, ev.KV) // EventPut or EventDelete
//		}
//	}
//
// Listing a prefix and then watching it from the listing's Revision+1 keeps
// a local copy exactly in step with the cluster. Each node keeps a bounded
// history of recent changes; a watch from an older revision fails with
// ErrCompacted (a *CompactedError with the oldest revision held).
//
// # Failover and retries
//
// Any member serves any request (followers forward to the leader), so the
// client only needs some member to answer. It sends each call to the
// endpoint that answered last and, when an attempt fails in a way that
// allows it, moves on to the next endpoint; once every endpoint has been
// tried in a call it pauses between attempts, from Config.RetryBackoff
// (50ms) doubling up to Config.MaxRetryBackoff (1s), for at most
// Config.MaxRetries (10) retries and never past the context's deadline.
// Config.Timeout (4s) bounds each single attempt, so that a node that
// accepts connections but never answers does not use up a call's whole
// deadline; the context bounds the call as a whole.
//
// Reads (Get, List, Status, Members, and transactions without puts or
// deletes) are retried after any transport error and after 502, 503 and
// 504 answers. Writes (Put, Delete, Txn, AddMember, RemoveMember) are
// retried only when the server provably did not apply
// them: when the connection could not be made, or on a 503 no_leader or
// not_ready. A write that failed after it was sent (a reset connection, a
// timeout) may have been applied and is returned as an error, unless the
// call carries WithIdempotencyKey: then the server applies it at most once,
// so the client retries it after any transport error or 502/503/504 too.
// Every write attempt carries an Idempotency-Key header, the caller's or a
// random one made once per call, so the server can deduplicate retries.
//
// # Error handling
//
// Errors are values to test with errors.Is and errors.As, never by string:
//
//   - ErrNotFound: Get of a missing key (404 key_not_found).
//   - ErrConflict: a WithCAS write whose expected revision did not match
//     (409 cas_conflict). The error is a *ConflictError whose ModRevision is
//     the key's current mod revision (0 if absent).
//   - ErrTooLarge: the value is over the server's limit (413).
//   - ErrInvalidArgument: a bad key or option, found by the client before
//     sending or by the server (400).
//   - ErrNoLeader, ErrNotReady: the cluster could not serve the call within
//     the retries (503); nothing was applied.
//   - ErrTimeout: the server gave up (504); a write may or may not have been
//     applied.
//   - ErrCompacted: a watch from a revision no longer held (410); the
//     error is a *CompactedError with the oldest revision still held.
//   - ErrMemberNotFound: RemoveMember of an unknown member (404).
//   - ErrClosed: the call was made after Close.
//
// Every error the server sends is a *StatusError (StatusCode, Code,
// Message, Endpoint), including statuses the package has no sentinel for,
// such as a 500; a *ConflictError unwraps to one. Transport failures are
// returned as the net/http error (a *url.Error), and a context that ends
// first makes errors.Is(err, context.DeadlineExceeded) or
// errors.Is(err, context.Canceled) hold.
//
//	kv, err := c.Get(ctx, "k")
//	switch {
//	case errors.Is(err, client.ErrNotFound):
//		// absent
//	case err != nil:
//		return err
//	}
//
//	_, err = c.Put(ctx, "k", v, client.WithCAS(rev))
//	var conflict *client.ConflictError
//	if errors.As(err, &conflict) {
//		rev = conflict.ModRevision // somebody else wrote first; reread and retry
//	}
//
// # Connections
//
// A Client keeps HTTP keep-alive connections to the endpoints and is safe
// for concurrent use; make one and share it. Response bodies are always
// read to the end and closed so connections are reused. Close releases the
// idle connections.
package client
