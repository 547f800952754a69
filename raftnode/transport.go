package raftnode

import (
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tcpStreamLayer is the plain TCP raft.StreamLayer. A TLS layer replaces it
// in newStreamLayer without touching anything else.
type tcpStreamLayer struct {
	net.Listener
	advertise net.Addr
	local     *net.TCPAddr // source address of outgoing connections, if any
}

// newStreamLayer listens on the Raft address. It is the one place the
// transport's connections are made.
func newStreamLayer(listen, advertise string) (raft.StreamLayer, error) {
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	t := &tcpStreamLayer{Listener: ln, advertise: adv}
	// Dial from the listen IP when it is a specific one, so peers (and
	// firewalls) see Raft traffic come from the node's own address.
	if la, ok := ln.Addr().(*net.TCPAddr); ok && !la.IP.IsUnspecified() {
		t.local = &net.TCPAddr{IP: la.IP}
	}
	return t, nil
}

func (t *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if t.local != nil {
		d.LocalAddr = t.local
	}
	conn, err := d.Dial("tcp", string(address))
	if err == nil {
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
	}
	return conn, err
}

// Addr is the advertised address: raft records it as this node's.
func (t *tcpStreamLayer) Addr() net.Addr { return t.advertise }
