//go:build linux

package chaos

import (
	"io"
	"net"
	"testing"
	"time"
)

// echoServer listens on slot's address and echoes every connection.
func echoServer(t *testing.T, slot int) string {
	t.Helper()
	ln, err := net.Listen("tcp", SlotIP(slot)+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// dialFrom connects to addr from slot's address.
func dialFrom(t *testing.T, slot int, addr string) net.Conn {
	t.Helper()
	c, err := tryDialFrom(t, slot, addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tryDialFrom(t *testing.T, slot int, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(SlotIP(slot))}, Timeout: time.Second}
	c, err := d.Dial("tcp", addr)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// works reports whether a new connection from slot to addr echoes.
func works(t *testing.T, slot int, addr string) bool {
	c, err := tryDialFrom(t, slot, addr)
	if err != nil {
		return false // the proxy reset it before the dial returned
	}
	_, err = roundTrip(c, "probe", time.Second)
	return err == nil
}

// roundTrip writes msg and reads it back within timeout; it returns how
// long that took, or an error.
func roundTrip(c net.Conn, msg string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	c.SetDeadline(start.Add(timeout))
	if _, err := c.Write([]byte(msg)); err != nil {
		return 0, err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return 0, err
	}
	if string(buf) != msg {
		return 0, io.ErrUnexpectedEOF
	}
	return time.Since(start), nil
}

// TestNetwork drives each kind of link through a proxy: node 1 talks to
// an echo server standing for node 2.
func TestNetwork(t *testing.T) {
	nw := NewNetwork()
	t.Cleanup(func() { nw.Close() })
	if _, err := nw.AddProxy(1, echoServer(t, 1)); err != nil {
		t.Fatal(err)
	}
	p2, err := nw.AddProxy(2, echoServer(t, 2))
	if err != nil {
		t.Fatal(err)
	}

	c := dialFrom(t, 1, p2.Addr())
	if _, err := roundTrip(c, "hello", time.Second); err != nil {
		t.Fatalf("healthy link: %v", err)
	}

	// Delay on 1->2 only: one round trip takes at least the delay.
	nw.SetLink(1, 2, Link{Delay: 150 * time.Millisecond})
	if d, err := roundTrip(c, "slow", 2*time.Second); err != nil || d < 150*time.Millisecond {
		t.Errorf("delayed link: round trip %v, %v; want >= 150ms", d, err)
	}

	// A cut resets the open connection and refuses new ones.
	nw.SetLink(1, 2, Link{Cut: true})
	if _, err := roundTrip(c, "cut", time.Second); err == nil {
		t.Errorf("cut link: open connection still works")
	}
	if works(t, 1, p2.Addr()) {
		t.Errorf("cut link: new connection works")
	}
	// The reverse direction is cut too for request/response: node 2's
	// answers to node 1 would be lost, so a cut of 2->1 refuses as well.
	nw.SetLink(1, 2, Link{})
	nw.SetLink(2, 1, Link{Cut: true})
	if works(t, 1, p2.Addr()) {
		t.Errorf("reverse cut: new connection works")
	}
	nw.Heal()

	// A blackhole keeps connections open but nothing arrives; healing
	// resets them, and new connections work.
	c4 := dialFrom(t, 1, p2.Addr())
	if _, err := roundTrip(c4, "before", time.Second); err != nil {
		t.Fatalf("healed: %v", err)
	}
	nw.SetLink(1, 2, Link{Blackhole: true})
	c5 := dialFrom(t, 1, p2.Addr())
	if _, err := roundTrip(c5, "void", 300*time.Millisecond); err == nil {
		t.Errorf("blackhole: bytes got through")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("blackhole: %v, want a timeout", err)
	}
	nw.Heal()
	c6 := dialFrom(t, 1, p2.Addr())
	if _, err := roundTrip(c6, "after", time.Second); err != nil {
		t.Errorf("after blackhole: %v", err)
	}

	// Certain loss resets a connection on its first chunk.
	nw.SetAll(Link{Loss: 1})
	if works(t, 1, p2.Addr()) {
		t.Errorf("lossy link: bytes got through")
	}
	nw.Heal()

	// Connections from an unknown address (not a node) pass untouched.
	nw.Isolate(Link{Cut: true}, 2)
	c8, err := net.Dial("tcp", p2.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c8.Close()
	if _, err := roundTrip(c8, "outsider", time.Second); err != nil {
		t.Errorf("unknown source: %v", err)
	}
	t.Logf("%s; %s", nw.Describe(), nw.Stats())
}
