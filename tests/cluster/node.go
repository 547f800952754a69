package cluster

import (
	"fmt"
	"os"
)

// Node is one cairn server process of a Cluster. Its fields are fixed for
// its life; a restart reuses them.
type Node struct {
	// Process runs the node: its ID (the node's --id, such as "n1"), Dir
	// (which holds DataDir and LogPath) and LogPath, and the methods that
	// start, signal and inspect the process and its log.
	*Process
	// HTTPAddr is its --http-addr, 127.0.0.1:port.
	HTTPAddr string
	// RaftAddr is its --raft-addr, 127.0.0.1:port.
	RaftAddr string
	// DataDir is its --data-dir.
	DataDir string

	args []string
	http *HTTP
}

// URL is http://HTTPAddr.
func (n *Node) URL() string { return "http://" + n.HTTPAddr }

// HTTP returns a helper that talks to this node.
func (n *Node) HTTP() *HTTP { return n.http }

// Args returns the command-line arguments the node is started with.
func (n *Node) Args() []string { return append([]string(nil), n.args...) }

// start launches the process with the node's arguments.
func (n *Node) start() error {
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return fmt.Errorf("node %s: %w", n.ID, err)
	}
	return n.Process.Start(n.args)
}
