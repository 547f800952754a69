// Package freeport hands tests TCP ports to listen on later, outside the
// kernel's ephemeral range.
//
// The usual trick (listen on port 0, close, reuse the port) picks a port
// from the ephemeral range, which every outgoing connection also draws
// from: a test that dials a lot (Raft, forwarding) can take the port as
// the source of a connection before the node binds it, and the node's
// listen fails with "address already in use". Ports below the range are
// never given to outgoing connections, so only another listener can take
// one, and Port checks that none holds it.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port handed out.
const lowest = 20000

var (
	mu   sync.Mutex
	used = map[int]bool{}
)

// Port returns a TCP port on ip (such as "127.0.0.1") that nothing listens
// on, below the ephemeral range, never the same one twice in a process.
// Where the ephemeral range leaves no room below it, Port falls back to a
// port the kernel picks (listening on port 0).
func Port(ip string) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	if high := ephemeralLow(); high-lowest >= 1000 {
		return pick(ip, lowest, high)
	}
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, fmt.Errorf("freeport: listen on %s: %w", ip, err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !used[p] {
			used[p] = true
			return p, nil
		}
	}
	return 0, errors.New("freeport: no free port found")
}

// pick returns a random port in [lo, hi) on ip that nothing listens on and
// that was not handed out before; mu is held.
func pick(ip string, lo, hi int) (int, error) {
	for range 200 {
		p := lo + rand.IntN(hi-lo)
		if used[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			continue // taken
		}
		l.Close()
		used[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("freeport: no free port in [%d, %d)", lo, hi)
}

// ephemeralLow returns the first port of the kernel's ephemeral range
// (Linux's default, 32768, where it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > 0 {
				return lo
			}
		}
	}
	return 32768
}
