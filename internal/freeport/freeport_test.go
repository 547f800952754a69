package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortIsFreeBelowTheEphemeralRangeAndNotRepeated(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, err := Port("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if p < lowest || p >= ephemeralLow() {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, ephemeralLow())
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}

// A port something listens on is never handed out.
func TestPortSkipsTakenPorts(t *testing.T) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	taken := map[int]bool{}
	for p := lowest; p < lowest+200; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err == nil {
			held = append(held, l)
			taken[p] = true
		}
	}
	for range 100 {
		p, err := Port("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if taken[p] {
			t.Fatalf("handed out port %d, which is held by a listener", p)
		}
	}
}
