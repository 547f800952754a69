// Package httpapi serves cairn's HTTP API (v1): keys, transactions,
// watches, status and membership. Any node serves any request: a follower
// forwards writes, and reads that need the leader, to the leader itself
// and relays its answer, headers included. Every error is JSON
// {"error", "code"} with a proper status; one function, writeError, maps
// errors to statuses.
package httpapi
