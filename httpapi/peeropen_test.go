//go:build unix

package httpapi

import (
	"context"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a TCP connection on 127.0.0.1 and the
// listener's address; both ends close when the test ends.
func tcpPair(t *testing.T) (client, server net.Conn, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server, ln.Addr().String()
}

// peerOpen tells an idle connection whose peer is there from one the peer
// closed, and one with unexpected data from an idle one.
func TestPeerOpen(t *testing.T) {
	c, srv, _ := tcpPair(t)
	if !peerOpen(c) {
		t.Fatal("an open, quiet connection reported closed")
	}
	srv.Write([]byte("x"))
	deadline := time.Now().Add(5 * time.Second)
	for peerOpen(c) {
		if time.Now().After(deadline) {
			t.Fatal("a connection with unread data still reported usable")
		}
		time.Sleep(time.Millisecond)
	}
	buf := make([]byte, 1)
	c.Read(buf)
	if !peerOpen(c) {
		t.Fatal("after reading the data the connection is usable again")
	}
	srv.Close()
	for peerOpen(c) {
		if time.Now().After(deadline) {
			t.Fatal("a connection the peer closed still reported open")
		}
		time.Sleep(time.Millisecond)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if !peerOpen(a) {
		t.Fatal("a connection that cannot be checked must count as open")
	}
}

// An idle stream whose deadline passed while it waited in the pool is
// still checked before reuse: one the leader closed is not handed out.
func TestStreamPoolChecksPastDeadline(t *testing.T) {
	conn, srv, addr := tcpPair(t)
	c := &fwdConn{conn: conn, addr: addr}
	srv.Close()
	for limit := time.Now().Add(5 * time.Second); peerOpen(conn); time.Sleep(time.Millisecond) {
		if time.Now().After(limit) {
			t.Fatal("the peer's close never reached the connection")
		}
	}
	// Its last pack left a deadline on it, which has passed since.
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	c.setDeadline(ctx)
	if dl, _ := ctx.Deadline(); !c.deadline.Equal(dl) {
		t.Fatalf("stream deadline %v, want the context's %v", c.deadline, dl)
	}
	// No new stream may be dialled: get either hands out c or nothing.
	pool := &fwdStreams{max: 1, noStream: map[string]time.Time{addr: time.Now().Add(time.Hour)}}
	pool.put(c)
	if got, err := pool.get(context.Background(), &Handler{}, addr); err == nil || got == c {
		t.Fatalf("the pool handed out a stream the peer closed (%v)", err)
	}
	if !c.deadline.IsZero() {
		t.Errorf("the passed deadline was left on the stream: %v", c.deadline)
	}
}

// A connection whose read deadline has passed cannot be peeked at: it
// counts as not usable rather than open.
func TestPeerOpenPastDeadline(t *testing.T) {
	c, _, _ := tcpPair(t)
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if peerOpen(c) {
		t.Fatal("a connection that could not be checked (deadline passed) reported open")
	}
}
