// Package inproc runs cairn clusters inside the test process, for the
// tests of raftnode and httpapi: every node is a real bbolt store, a real
// raftnode.Node and a real httpapi.Handler served over HTTP, all on
// 127.0.0.1, wired and shut down the way cmd/cairn does it.
//
// Start makes a cluster whose node 1 bootstraps and the others join it
// (or, with Options.Initial, all are started with one InitialCluster),
// and waits until every node is a voter and all agree on a leader:
//
//	c := inproc.Start(t, 3, inproc.Options{})
//	l := c.Leader(t)
//	rev := c.Put(t, "k", "v")
//	inproc.WaitRevision(t, rev, c.Nodes...)
//
// Every node is stopped in t.Cleanup, before the test's temporary
// directories go. The helpers taking a testing.TB fail it with t.Fatal
// and must run on the test's goroutine.
//
// Logger, the t.Log-backed slog logger the nodes log to, serves other
// tests too. (store's own tests keep a copy of it: this package imports
// store, so store's internal tests cannot import it.)
package inproc
