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
//
// Every call takes a context.Context first; its deadline or cancellation
// bounds the whole call including retries. Options are functional and each
// applies to some calls only (see Option). Responses embed Meta: the store
// revision, the node that served the call and the endpoint used.
//
// Keys may contain "/": each segment is escaped separately, so "a b/c"
// becomes the path /v1/kv/a%20b/c.
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
// Config.Timeout (5s) bounds each single attempt.
//
// Reads (Get, List, Status, Members) are retried after any transport error
// and after 502, 503 and 504 answers. Writes (Put, Delete, AddMember,
// RemoveMember) are retried only when the server provably did not apply
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
