// Package chaos runs cairn's fault-tolerance suite: real cairn server
// processes whose Raft traffic passes through TCP proxies the test
// controls, concurrent clients that record histories of put, get, delete
// and compare-and-swap, and checks after every run that the history is
// linearizable (porcupine), that no acknowledged write was lost, that
// every node converged to the same state, and how available the cluster
// stayed before, during and after each fault.
//
// # Network
//
// Node i listens for Raft on its own loopback address 127.0.0.(10+i) and
// dials its peers from that address, but advertises 127.0.0.1:P(i), the
// port of proxy i, which forwards to the node's real Raft address. Proxy i
// learns which node a connection comes from by its source address, so a
// Network can cut, blackhole, delay or make lossy every ordered pair of
// nodes (bytes flowing from src to dst). HTTP is never proxied: clients and
// nodes talk to each other's HTTP APIs directly on 127.0.0.1.
//
// TCP never loses bytes inside a stream, so "loss" is emulated the way an
// application sees it: each chunk of bytes crossing a lossy link resets
// its connection with the link's probability (a connection that gave up),
// on top of the link's delay and jitter (retransmissions). A cut link
// resets its connections at once and refuses new ones; a blackholed link
// accepts connections and silently drops the bytes, so the sender only
// learns through its own timeouts. Changing a link to or from cut or
// blackhole resets the connections of that pair, whose streams have lost
// bytes.
//
// # Running
//
// The default (go test ./tests/chaos/, part of make test) is a smoke run
// of about a minute: the baseline, a kill of the leader, the leader cut
// into a minority, and the negative control. CAIRN_CHAOS=full runs every
// fault with longer phases (about ten minutes); the other faults skip
// themselves otherwise. CAIRN_CHAOS_PHASE=30s sets the length of every
// phase. go test -short skips the suite unless CAIRN_CHAOS is set. Failure artifacts (porcupine's HTML visualization, the history
// and every node's log) go to a directory made with os.MkdirTemp, whose
// path the failing test prints.
package chaos
