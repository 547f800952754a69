// Package store owns cairn's replicated state: keys, values and their
// revisions, the members' HTTP addresses, and the last Raft index applied,
// all kept in one bbolt file.
//
// The Store is written only through Apply, by the Raft FSM in this package,
// so every node that applies the same log holds the same bytes. Commands are
// encoded in a compact, versioned binary format (see Command). Applied
// entries are committed to bbolt in batches (Config.CommitInterval); reads
// see them at once through an in-memory overlay of the keys changed since
// the last commit. See DESIGN.md for durability and the read paths.
package store
