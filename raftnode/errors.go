package raftnode

import (
	"errors"

	"github.com/hashicorp/raft"
)

// Errors returned by a Node. Raft's own errors are translated to these at
// this boundary so callers need not import hashicorp/raft.
var (
	// ErrNotLeader is returned by leader-only calls on a follower. Nothing
	// was applied, so the call is safe to retry elsewhere.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader is returned when no leader is known within the wait.
	ErrNoLeader = errors.New("no leader")
	// ErrUnknownOutcome is returned when leadership was lost or time ran
	// out after a command was proposed: it may or may not be applied.
	ErrUnknownOutcome = errors.New("outcome unknown: leadership lost or timed out after the write was proposed")
	// ErrTimeout is returned when a call ran out of time before anything
	// was proposed.
	ErrTimeout = errors.New("timed out")
	// ErrUnknownMember is returned when removing a member that is not in
	// the configuration.
	ErrUnknownMember = errors.New("unknown member")
	// ErrInvalidMember is returned for a member whose ID or addresses
	// cannot work (wrapped with the reason).
	ErrInvalidMember = errors.New("invalid member")
	// ErrLastMember is returned when removing the only voter, which would
	// leave a cluster that can never elect a leader.
	ErrLastMember = errors.New("cannot remove the last voting member")
	// ErrShutdown is returned by calls on a node that is shutting down.
	ErrShutdown = errors.New("node is shutting down")
)

// translate maps hashicorp/raft errors onto this package's.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrNotVoter),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return ErrNotLeader
	case errors.Is(err, raft.ErrLeadershipLost):
		return ErrUnknownOutcome
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrTimeout
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	}
	return err
}
