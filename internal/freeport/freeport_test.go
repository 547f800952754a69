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
		if high := ephemeralLow(); high-lowest >= 1000 && (p < lowest || p >= high) {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, high)
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
func TestPickSkipsTakenPorts(t *testing.T) {
	// Two ports of our own, next to each other, one held by a listener.
	var held net.Listener
	var free int
	for held == nil {
		p, err := Port("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatal(err)
		}
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		if err != nil {
			l.Close()
			continue // p+1 is someone else's: try another pair
		}
		l2.Close()
		held, free = l, p+1
	}
	defer held.Close()
	mu.Lock()
	defer mu.Unlock()
	taken := held.Addr().(*net.TCPAddr).Port
	delete(used, taken)
	for range 20 {
		delete(used, free)
		p, err := pick("127.0.0.1", taken, taken+2)
		if err != nil {
			t.Fatal(err)
		}
		if p != free {
			t.Fatalf("picked %d from [%d, %d) where %d is held", p, taken, taken+2, taken)
		}
	}
	if p, err := pick("127.0.0.1", taken, taken+1); err == nil {
		t.Fatalf("picked %d, which is held, from a range of that port alone", p)
	}
}
