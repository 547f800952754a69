// Package raftnode owns cairn's consensus: it builds the hashicorp/raft
// instance, its TCP transport, the raft-boltdb log and stable store, the
// file snapshot store, bootstrap and membership, and the leader-side paths
// for writes (Apply) and linearizable reads (ReadIndex). It knows nothing
// of HTTP handlers; the store it replicates is package store.
//
// See DESIGN.md for durability and the read paths.
package raftnode
