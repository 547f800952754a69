package raftnode_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/store"
	"github.com/cairn-kv/cairn/tests/inproc"
)

func validConfig() raftnode.Config {
	cfg := raftnode.DefaultConfig()
	cfg.ID = "n1"
	cfg.DataDir = "/tmp/cairn-n1"
	cfg.RaftAddr = "127.0.0.1:9001"
	cfg.HTTPAdvertiseAddr = "127.0.0.1:8001"
	return cfg
}

func TestConfigValidate(t *testing.T) {
	three := []raftnode.Peer{{ID: "n1", RaftAddr: "127.0.0.1:9001"}, {ID: "n2", RaftAddr: "127.0.0.1:9002"}, {ID: "n3", RaftAddr: "127.0.0.1:9003"}}
	tests := []struct {
		name    string
		mod     func(c *raftnode.Config)
		wantErr string // substring; empty means valid
	}{
		{"valid", func(c *raftnode.Config) {}, ""},
		{"zero timeouts take defaults", func(c *raftnode.Config) {
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.MaxAppendEntries, c.RaftLogLevel = 0, 0, 0, 0, ""
		}, ""},
		{"hostname advertise", func(c *raftnode.Config) { c.HTTPAdvertiseAddr = "node1.example:8001" }, ""},
		{"listen on all, advertise one", func(c *raftnode.Config) {
			c.RaftAddr, c.RaftAdvertiseAddr = "0.0.0.0:9001", "10.0.0.1:9001"
		}, ""},
		{"initial cluster", func(c *raftnode.Config) { c.InitialCluster = three }, ""},
		{"short timeouts", func(c *raftnode.Config) {
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
		}, ""},

		{"missing ID", func(c *raftnode.Config) { c.ID = "" }, "ID is required"},
		{"ID with space", func(c *raftnode.Config) { c.ID = "n 1" }, "without spaces"},
		{"ID with slash", func(c *raftnode.Config) { c.ID = "a/b" }, "without spaces or '/'"},
		{"ID too long", func(c *raftnode.Config) { c.ID = strings.Repeat("x", 129) }, "at most 128"},
		{"missing data dir", func(c *raftnode.Config) { c.DataDir = "" }, "DataDir is required"},
		{"missing raft addr", func(c *raftnode.Config) { c.RaftAddr = "" }, "RaftAddr is required"},
		{"missing http addr", func(c *raftnode.Config) { c.HTTPAdvertiseAddr = "" }, "HTTPAdvertiseAddr is required"},
		{"unspecified raft address", func(c *raftnode.Config) { c.RaftAddr = "0.0.0.0:9001" }, "not an address others can reach"},
		{"unspecified IPv6 raft address", func(c *raftnode.Config) { c.RaftAddr = "[::]:9001" }, "not an address others can reach"},
		{"unspecified advertise address", func(c *raftnode.Config) { c.RaftAdvertiseAddr = "0.0.0.0:9001" }, "not an address others can reach"},
		{"empty host", func(c *raftnode.Config) { c.RaftAddr = ":9001" }, "not an address others can reach"},
		{"unspecified http address", func(c *raftnode.Config) { c.HTTPAdvertiseAddr = "0.0.0.0:8001" }, "HTTPAdvertiseAddr"},
		{"raft port 0", func(c *raftnode.Config) { c.RaftAddr = "127.0.0.1:0" }, "needs a fixed port"},
		{"http port 0", func(c *raftnode.Config) { c.HTTPAdvertiseAddr = "127.0.0.1:0" }, "needs a fixed port"},
		{"no port", func(c *raftnode.Config) { c.RaftAddr = "127.0.0.1" }, "RaftAdvertiseAddr"},
		{"lease over heartbeat", func(c *raftnode.Config) {
			c.HeartbeatTimeout, c.LeaderLeaseTimeout = 300*time.Millisecond, 301*time.Millisecond
		}, "LeaderLeaseTimeout"},
		{"max append entries", func(c *raftnode.Config) { c.MaxAppendEntries = 2000 }, "MaxAppendEntries"},
		{"negative max append entries", func(c *raftnode.Config) { c.MaxAppendEntries = -1 }, "MaxAppendEntries"},
		{"bad log level", func(c *raftnode.Config) { c.RaftLogLevel = "loud" }, "unknown log level"},
		{"bootstrap with initial cluster", func(c *raftnode.Config) {
			c.Bootstrap, c.InitialCluster = true, three
		}, "exclusive"},
		{"initial cluster without self", func(c *raftnode.Config) { c.InitialCluster = three[1:] }, "does not name this node"},
		{"initial cluster twice", func(c *raftnode.Config) {
			c.InitialCluster = append(append([]raftnode.Peer{}, three...), three[1])
		}, "twice"},
		{"initial cluster member without address", func(c *raftnode.Config) {
			c.InitialCluster = []raftnode.Peer{three[0], {ID: "n2"}}
		}, "needs an ID and an address"},
		{"initial cluster gives self another address", func(c *raftnode.Config) {
			c.InitialCluster = []raftnode.Peer{{ID: "n1", RaftAddr: "127.0.0.1:9999"}, three[1]}
		}, "advertises"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.mod(&cfg)
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	d := raftnode.DefaultConfig()
	if d.LeaderLeaseTimeout > d.HeartbeatTimeout || d.HeartbeatTimeout == 0 || d.ElectionTimeout == 0 ||
		d.MaxAppendEntries == 0 || d.SnapshotThreshold == 0 || d.TrailingLogs == 0 || d.RaftLogLevel == "" {
		t.Fatalf("DefaultConfig() = %+v", d)
	}
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "ID is required") {
		t.Fatalf("DefaultConfig().Validate() = %v, want ID is required", err)
	}
}

// New checks the config before it touches the data directory.
func TestNewRejectsInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	scfg := store.DefaultConfig(filepath.Join(dir, "fsm.db"))
	scfg.Logger = inproc.Logger(t)
	st, err := store.Open(scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := validConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.RaftAddr = "0.0.0.0:9001"
	if n, err := raftnode.New(cfg, st); err == nil {
		n.Shutdown()
		t.Fatal("New accepted an unreachable advertise address")
	}
}
