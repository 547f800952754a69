package store

import (
	"errors"
	"fmt"
)

// Errors returned by the store. Callers test them with errors.Is.
var (
	// ErrNotFound is returned when a key does not exist (or has expired).
	ErrNotFound = errors.New("key not found")
	// ErrConflict is returned when a compare-and-swap finds another mod
	// revision; the error is a *ConflictError carrying the current one.
	ErrConflict = errors.New("compare-and-swap conflict")
	// ErrInvalidKey is returned for a key that is empty, longer than
	// MaxKeyLen, not valid UTF-8 or contains a NUL byte.
	ErrInvalidKey = errors.New("invalid key")
	// ErrInvalidCommand is returned when a command cannot be decoded or
	// breaks a rule that encoding should have enforced.
	ErrInvalidCommand = errors.New("invalid command")
	// ErrClosed is returned by calls on a closed store.
	ErrClosed = errors.New("store closed")
	// ErrCorrupt is returned when the bbolt file or a snapshot is damaged.
	ErrCorrupt = errors.New("store data corrupt")
	// ErrUnclean is returned by Open when a store kept without fsync
	// (Config.NoSync) was open when the machine itself went down: its file
	// may have lost writes the Raft log still holds, so it must be rebuilt
	// from the log and snapshots rather than trusted.
	ErrUnclean = errors.New("store was open without fsync when the machine restarted")
)

// ConflictError reports a failed compare-and-swap. It matches ErrConflict
// under errors.Is.
type ConflictError struct {
	// Key is the key whose mod revision did not match.
	Key string
	// ModRevision is the key's current mod revision, 0 if it is absent.
	ModRevision int64
}

// Error implements error.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("compare-and-swap conflict on %q: current mod revision is %d", e.Key, e.ModRevision)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }
