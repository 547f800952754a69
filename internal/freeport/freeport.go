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
func Port(ip string) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	high := ephemeralLow()
	if high-lowest < 1000 {
		return 0, fmt.Errorf("ephemeral ports start at %d: no room below them", high)
	}
	for range 200 {
		p := lowest + rand.IntN(high-lowest)
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
	return 0, errors.New("freeport: no free port found")
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
