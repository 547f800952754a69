package raftnode

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Peer is one member named in an initial cluster.
type Peer struct {
	// ID is the member's server ID.
	ID string
	// RaftAddr is its Raft address.
	RaftAddr string
}

// Config configures a Node. Fields left zero take the value DefaultConfig
// gives them, except where said.
type Config struct {
	// ID is this node's Raft server ID. Required.
	ID string
	// DataDir holds the Raft log (raft/raft.db) and snapshots
	// (raft/snapshots). Required.
	DataDir string
	// RaftAddr is the address the Raft transport listens on. Required.
	RaftAddr string
	// RaftAdvertiseAddr is the address other members dial to reach this
	// node's Raft transport. Empty means RaftAddr, which must then not be
	// an unspecified address such as 0.0.0.0.
	RaftAdvertiseAddr string
	// HTTPAdvertiseAddr is the address of this node's HTTP API as other
	// members and clients should reach it; it is replicated through the
	// log so every node can forward to the leader. Required.
	HTTPAdvertiseAddr string

	// Bootstrap makes a one-member cluster if DataDir holds no Raft state.
	Bootstrap bool
	// InitialCluster bootstraps all members at once if DataDir holds no
	// Raft state; it must contain this node. Exclusive with Bootstrap.
	InitialCluster []Peer
	// Join lists HTTP addresses of members to ask for membership; the node
	// retries until it is a member.
	Join []string

	// HeartbeatTimeout is how long a follower waits without hearing from
	// the leader before it starts an election (randomised up to twice).
	// Default 750ms: a LAN round trip is well under a millisecond, and
	// this still rides out a busy 2-core machine.
	HeartbeatTimeout time.Duration
	// ElectionTimeout is how long a candidate waits for votes. Default 750ms.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader stays leader without hearing
	// from a quorum. Default 375ms; must not exceed HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long followers may wait to learn of a new
	// commit index when no writes flow. Default 20ms.
	CommitTimeout time.Duration
	// MaxAppendEntries is the most entries sent in one append request and
	// batched into one log write. Default 256.
	MaxAppendEntries int
	// MaxInflightProposals is how many log entries of client writes may be
	// in flight before further writes wait and are packed together into
	// one entry (group commit). Default 1: measured, larger batches cost
	// less CPU per write than more entries in flight.
	MaxInflightProposals int
	// SnapshotThreshold is how many log entries past the last snapshot
	// trigger a new one. Default 8192.
	SnapshotThreshold uint64
	// SnapshotInterval is how often the threshold is checked. Default 30s.
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries are kept after a snapshot, so a
	// briefly absent follower catches up from the log. Default 10240.
	TrailingLogs uint64
	// SnapshotRetain is how many snapshots are kept on disk. Default 2.
	SnapshotRetain int
	// RaftLogLevel is hashicorp/raft's own log level: "debug", "info",
	// "warn" or "error". Default "warn".
	RaftLogLevel string

	// HTTPClient is used to ask other members to add this node. Nil means
	// a client with a 5s timeout.
	HTTPClient *http.Client
	// Logger receives the node's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every tunable set.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:     750 * time.Millisecond,
		ElectionTimeout:      750 * time.Millisecond,
		LeaderLeaseTimeout:   375 * time.Millisecond,
		CommitTimeout:        20 * time.Millisecond,
		MaxAppendEntries:     256,
		MaxInflightProposals: 1,
		SnapshotThreshold:    8192,
		SnapshotInterval:     30 * time.Second,
		TrailingLogs:         10240,
		SnapshotRetain:       2,
		RaftLogLevel:         "warn",
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = d.HeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = d.ElectionTimeout
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = min(d.LeaderLeaseTimeout, c.HeartbeatTimeout/2)
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = d.CommitTimeout
	}
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = d.MaxAppendEntries
	}
	if c.MaxInflightProposals == 0 {
		c.MaxInflightProposals = d.MaxInflightProposals
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = d.SnapshotInterval
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = d.SnapshotRetain
	}
	if c.RaftLogLevel == "" {
		c.RaftLogLevel = d.RaftLogLevel
	}
	if c.RaftAdvertiseAddr == "" {
		c.RaftAdvertiseAddr = c.RaftAddr
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first problem with c (after defaults are applied).
func (c Config) Validate() error {
	c = c.withDefaults()
	if err := checkID(c.ID); err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	switch {
	case c.DataDir == "":
		return errors.New("raftnode: DataDir is required")
	case c.RaftAddr == "":
		return errors.New("raftnode: RaftAddr is required")
	case c.HTTPAdvertiseAddr == "":
		return errors.New("raftnode: HTTPAdvertiseAddr is required")
	case c.Bootstrap && len(c.InitialCluster) > 0:
		return errors.New("raftnode: Bootstrap and InitialCluster are exclusive")
	case c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("raftnode: LeaderLeaseTimeout (%v) must not exceed HeartbeatTimeout (%v)", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	case c.MaxAppendEntries < 1 || c.MaxAppendEntries > 1024:
		return fmt.Errorf("raftnode: MaxAppendEntries must be 1 to 1024, got %d", c.MaxAppendEntries)
	}
	if err := checkAdvertise("RaftAdvertiseAddr", c.RaftAdvertiseAddr); err != nil {
		return err
	}
	if err := checkAdvertise("HTTPAdvertiseAddr", c.HTTPAdvertiseAddr); err != nil {
		return err
	}
	if len(c.InitialCluster) > 0 {
		found := false
		seen := map[string]bool{}
		for _, p := range c.InitialCluster {
			if p.ID == "" || p.RaftAddr == "" {
				return fmt.Errorf("raftnode: initial cluster member %q=%q needs an ID and an address", p.ID, p.RaftAddr)
			}
			if seen[p.ID] {
				return fmt.Errorf("raftnode: initial cluster names %q twice", p.ID)
			}
			seen[p.ID] = true
			if p.ID == c.ID {
				found = true
				if p.RaftAddr != c.RaftAdvertiseAddr {
					return fmt.Errorf("raftnode: initial cluster gives %s the address %s, but it advertises %s", p.ID, p.RaftAddr, c.RaftAdvertiseAddr)
				}
			}
		}
		if !found {
			return fmt.Errorf("raftnode: initial cluster does not name this node (%s)", c.ID)
		}
	}
	if _, err := parseLevel(c.RaftLogLevel); err != nil {
		return err
	}
	return nil
}

// checkID checks a member ID: 1 to 128 bytes without spaces or '/'.
func checkID(id string) error {
	if id == "" {
		return errors.New("ID is required")
	}
	if strings.ContainsAny(id, "/ \t\r\n\x00") || len(id) > 128 {
		return fmt.Errorf("ID %q must be at most 128 characters without spaces or '/'", id)
	}
	return nil
}

func checkAdvertise(name, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("raftnode: %s %q: %v", name, addr, err)
	}
	if port == "0" || port == "" {
		return fmt.Errorf("raftnode: %s %q needs a fixed port", name, addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("raftnode: %s %q is not an address others can reach; set an advertise address", name, addr)
	}
	return nil
}
