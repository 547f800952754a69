package client

import (
	"errors"
	"fmt"
	"net/http"
)

// Errors a call can return. Errors from the server are *StatusError (or
// *ConflictError) values that match these sentinels with errors.Is, so test
// with errors.Is rather than ==.
var (
	// ErrNotFound means the key does not exist (404 key_not_found).
	ErrNotFound = errors.New("key not found")

	// ErrMemberNotFound means the cluster has no member with that ID
	// (404 member_not_found).
	ErrMemberNotFound = errors.New("member not found")

	// ErrConflict means a compare-and-swap failed because the key's mod
	// revision differed from the expected one (409 cas_conflict). The
	// error is a *ConflictError carrying the current mod revision.
	ErrConflict = errors.New("compare-and-swap conflict")

	// ErrTooLarge means the value or request body exceeds the server's
	// limit (413 too_large).
	ErrTooLarge = errors.New("value too large")

	// ErrInvalidArgument means the request was rejected as malformed: a bad
	// key, option or body (400 invalid_key, invalid_argument or
	// malformed_json). The client also returns it, wrapped, for arguments
	// it can reject without asking the server, such as an empty key.
	ErrInvalidArgument = errors.New("invalid argument")

	// ErrNoLeader means the cluster has no leader at the moment, for
	// example during an election or without a quorum (503 no_leader).
	// Nothing was applied. The client retries it before giving up.
	ErrNoLeader = errors.New("no leader")

	// ErrNotReady means the node is still catching up (503 not_ready).
	// Nothing was applied. The client retries it before giving up.
	ErrNotReady = errors.New("node not ready")

	// ErrTimeout means the server did not finish the operation in time
	// (504 timeout). For a write the outcome is unknown: it may or may not
	// have been applied.
	ErrTimeout = errors.New("server timeout")

	// ErrCompacted means a watch asked for a revision older than the
	// history the server keeps (410 compacted). The error is a
	// *CompactedError carrying the oldest revision still available.
	ErrCompacted = errors.New("revision compacted")

	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("client: closed")
)

// codeErrors maps the API's error codes to sentinel errors.
var codeErrors = map[string]error{
	"key_not_found":    ErrNotFound,
	"member_not_found": ErrMemberNotFound,
	"cas_conflict":     ErrConflict,
	"too_large":        ErrTooLarge,
	"invalid_key":      ErrInvalidArgument,
	"invalid_argument": ErrInvalidArgument,
	"malformed_json":   ErrInvalidArgument,
	"no_leader":        ErrNoLeader,
	"not_ready":        ErrNotReady,
	"timeout":          ErrTimeout,
	"compacted":        ErrCompacted,
}

// StatusError is an error answer from a server: any response whose status
// is not 2xx. errors.Is(err, ErrNotFound) and the other sentinels match it
// by its Code; use errors.As to read its fields.
type StatusError struct {
	// StatusCode is the HTTP status, e.g. 404.
	StatusCode int
	// Code is the machine-readable code from the JSON body, e.g.
	// "key_not_found"; empty if the body was not the API's JSON.
	Code string
	// Message is the human-readable message from the body, or the status
	// text if the body had none.
	Message string
	// Endpoint is the base URL of the endpoint that answered.
	Endpoint string
}

// Error returns the server's message followed by the status and code.
func (e *StatusError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if e.Code == "" {
		return fmt.Sprintf("%s (HTTP %d from %s)", msg, e.StatusCode, e.Endpoint)
	}
	return fmt.Sprintf("%s (HTTP %d %s from %s)", msg, e.StatusCode, e.Code, e.Endpoint)
}

// Is reports whether target is the sentinel error for e's code, so that
// errors.Is(err, ErrNotFound) holds for a 404 key_not_found.
func (e *StatusError) Is(target error) bool {
	s, ok := codeErrors[e.Code]
	return ok && s == target
}

// ConflictError is the error for a failed compare-and-swap (409
// cas_conflict). It matches ErrConflict with errors.Is, and unwraps to the
// underlying *StatusError.
type ConflictError struct {
	// Key is the key the write was for.
	Key string
	// ModRevision is the key's current mod revision on the server, 0 if
	// the key does not exist. Retrying with WithCAS(ModRevision) succeeds
	// unless the key changes again in between.
	ModRevision int64
	// Status is the server's answer.
	Status *StatusError
}

// Error describes the conflict and the key's current mod revision.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("compare-and-swap conflict on %q: current mod revision is %d (HTTP %d %s from %s)",
		e.Key, e.ModRevision, e.Status.StatusCode, e.Status.Code, e.Status.Endpoint)
}

// Is reports whether target is ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Unwrap returns the underlying *StatusError.
func (e *ConflictError) Unwrap() error { return e.Status }

// CompactedError is the error that ends a watch whose start (or resume)
// revision is older than the history every reachable endpoint keeps (410
// compacted). It matches ErrCompacted with errors.Is and unwraps to the
// server's *StatusError.
type CompactedError struct {
	// Revision is the revision the watch asked to start at.
	Revision int64
	// OldestRevision is the oldest revision the server could still start a
	// watch at; watch from it (after reading the current state with Get or
	// List) to go on.
	OldestRevision int64
	// Status is the server's answer.
	Status *StatusError
}

// Error names the revision asked for and the oldest one available.
func (e *CompactedError) Error() string {
	return fmt.Sprintf("watch from revision %d: revision compacted, the oldest revision held is %d (HTTP %d %s from %s)",
		e.Revision, e.OldestRevision, e.Status.StatusCode, e.Status.Code, e.Status.Endpoint)
}

// Is reports whether target is ErrCompacted.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// Unwrap returns the underlying *StatusError.
func (e *CompactedError) Unwrap() error { return e.Status }
