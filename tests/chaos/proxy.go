//go:build linux

package chaos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Link is what happens to the bytes one node sends to another. The zero
// Link is a healthy network.
type Link struct {
	// Cut resets every connection carrying bytes from src to dst and
	// refuses new ones (the peer sees connection resets).
	Cut bool
	// Blackhole silently drops the bytes; connections stay open, so the
	// sender only learns through its own timeouts.
	Blackhole bool
	// Delay holds each chunk this long, plus a random part up to Jitter.
	// Order within a connection is kept.
	Delay, Jitter time.Duration
	// Loss is the probability that a chunk resets its connection.
	Loss float64
}

// String describes the link for logs.
func (l Link) String() string {
	switch {
	case l.Cut:
		return "cut"
	case l.Blackhole:
		return "blackhole"
	case l == Link{}:
		return "ok"
	}
	return fmt.Sprintf("delay %v±%v loss %.3f", l.Delay, l.Jitter, l.Loss)
}

// broken reports whether the link loses whole streams (cut or blackhole).
func (l Link) broken() bool { return l.Cut || l.Blackhole }

type pair struct{ src, dst int }

// Network holds the state of every ordered pair of nodes and the proxies
// that apply it. Nodes are known by slot number (node i has slot i and
// the loopback address 127.0.0.(10+i)). Its methods are safe for
// concurrent use.
type Network struct {
	mu      sync.Mutex
	links   map[pair]Link
	pipes   map[*pipe]struct{}
	proxies map[int]*Proxy
	rnd     *rand.Rand
	closed  bool

	accepted atomic.Int64
	refused  atomic.Int64
	resets   atomic.Int64
	dropped  atomic.Int64
}

// NewNetwork returns a healthy network without proxies.
func NewNetwork() *Network {
	return &Network{
		links:   map[pair]Link{},
		pipes:   map[*pipe]struct{}{},
		proxies: map[int]*Proxy{},
		rnd:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
	}
}

// SlotIP is the loopback address node slot listens and dials from.
func SlotIP(slot int) string { return fmt.Sprintf("127.0.0.%d", 10+slot) }

// slotOf maps a connection's source address to a node slot, 0 if unknown.
func slotOf(addr net.Addr) int {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return 0
	}
	ip := ta.IP.To4()
	if ip == nil || ip[0] != 127 || ip[1] != 0 || ip[2] != 0 || ip[3] <= 10 {
		return 0
	}
	return int(ip[3]) - 10
}

// Proxy forwards the connections made to one node's advertised Raft
// address to its real one.
type Proxy struct {
	nw     *Network
	slot   int
	ln     net.Listener
	target atomic.Pointer[string]
	wg     sync.WaitGroup
}

// AddProxy starts the proxy of node slot on 127.0.0.1 (a free port); it
// forwards to target, which SetTarget can change.
func (nw *Network) AddProxy(slot int, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{nw: nw, slot: slot, ln: ln}
	p.target.Store(&target)
	nw.mu.Lock()
	if nw.closed || nw.proxies[slot] != nil {
		nw.mu.Unlock()
		ln.Close()
		return nil, fmt.Errorf("chaos: proxy of slot %d: network closed or proxy exists", slot)
	}
	nw.proxies[slot] = p
	nw.mu.Unlock()
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's address, the node's advertised Raft address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget changes the address new connections are forwarded to.
func (p *Proxy) SetTarget(addr string) { p.target.Store(&addr) }

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.nw.handle(c, slotOf(c.RemoteAddr()), p.slot, *p.target.Load())
		}()
	}
}

// pipe is one proxied connection: client is the connection from the node
// in slot src, server the one to the node in slot dst.
type pipe struct {
	src, dst       int
	client, server net.Conn
	dead           chan struct{}
	once           sync.Once
}

// carries reports whether the pipe carries bytes from a to b.
func (p *pipe) carries(a, b int) bool {
	return (p.src == a && p.dst == b) || (p.src == b && p.dst == a)
}

// reset closes both connections with an RST.
func (p *pipe) reset() {
	p.once.Do(func() {
		close(p.dead)
		for _, c := range []net.Conn{p.client, p.server} {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
		}
	})
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func (nw *Network) handle(c net.Conn, src, dst int, target string) {
	nw.mu.Lock()
	refuse := nw.closed || nw.links[pair{src, dst}].Cut || nw.links[pair{dst, src}].Cut
	nw.mu.Unlock()
	if refuse {
		nw.refused.Add(1)
		resetConn(c)
		return
	}
	s, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		nw.refused.Add(1)
		resetConn(c)
		return
	}
	if tc, ok := s.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	p := &pipe{src: src, dst: dst, client: c, server: s, dead: make(chan struct{})}
	nw.mu.Lock()
	// Checked again under the lock: a cut made since must see this pipe.
	refuse = nw.closed || nw.links[pair{src, dst}].Cut || nw.links[pair{dst, src}].Cut
	if !refuse {
		nw.pipes[p] = struct{}{}
	}
	nw.mu.Unlock()
	if refuse {
		nw.refused.Add(1)
		p.reset()
		return
	}
	nw.accepted.Add(1)
	var wg sync.WaitGroup
	wg.Go(func() { nw.pump(p, p.client, p.server, src, dst) })
	wg.Go(func() { nw.pump(p, p.server, p.client, dst, src) })
	wg.Wait()
	p.reset()
	nw.mu.Lock()
	delete(nw.pipes, p)
	nw.mu.Unlock()
}

type chunk struct {
	data []byte
	at   time.Time
}

// pump copies bytes from one side of a pipe to the other, applying the
// link from slot a to slot b to every chunk.
func (nw *Network) pump(p *pipe, from, to net.Conn, a, b int) {
	ch := make(chan chunk, 256)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for c := range ch {
			if d := time.Until(c.at); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-p.dead:
					return
				}
			}
			if _, err := to.Write(c.data); err != nil {
				p.reset()
				return
			}
		}
		// The sender closed its side and everything it sent is delivered.
		p.reset()
	}()
	defer func() {
		close(ch)
		<-writerDone
	}()
	var last time.Time
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			l := nw.link(a, b)
			switch {
			case l.Cut:
				nw.resets.Add(1)
				p.reset()
				return
			case l.Loss > 0 && nw.chance(l.Loss):
				nw.resets.Add(1)
				p.reset()
				return
			}
			if l.Blackhole {
				nw.dropped.Add(int64(n))
				if err != nil {
					return
				}
				continue
			}
			at := time.Now()
			if l.Delay > 0 || l.Jitter > 0 {
				at = at.Add(l.Delay + nw.jitter(l.Jitter))
			}
			if at.Before(last) {
				at = last
			}
			last = at
			select {
			case ch <- chunk{data: slices.Clone(buf[:n]), at: at}:
			case <-p.dead:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (nw *Network) link(a, b int) Link {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.links[pair{a, b}]
}

func (nw *Network) chance(p float64) bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.rnd.Float64() < p
}

func (nw *Network) jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return time.Duration(nw.rnd.Int64N(int64(max)))
}

// SetLink sets what happens to bytes from slot src to slot dst. Moving to
// or from cut or blackhole resets the pair's connections.
func (nw *Network) SetLink(src, dst int, l Link) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.setLocked(src, dst, l)
}

func (nw *Network) setLocked(src, dst int, l Link) {
	k := pair{src, dst}
	old := nw.links[k]
	if l == (Link{}) {
		delete(nw.links, k)
	} else {
		nw.links[k] = l
	}
	if old.broken() || l.broken() {
		for p := range nw.pipes {
			if p.carries(src, dst) {
				nw.resets.Add(1)
				p.reset()
			}
		}
	}
}

// Slots returns the slots that have a proxy, in order.
func (nw *Network) Slots() []int {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	var out []int
	for s := range nw.proxies {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Partition splits the nodes into groups that cannot reach one another
// (both directions, with link l: a Cut or a Blackhole). Slots in no group
// form one more group.
func (nw *Network) Partition(l Link, groups ...[]int) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	group := map[int]int{}
	for i, g := range groups {
		for _, s := range g {
			group[s] = i + 1
		}
	}
	for a := range nw.proxies {
		for b := range nw.proxies {
			if a != b && group[a] != group[b] {
				nw.setLocked(a, b, l)
			}
		}
	}
}

// Isolate cuts the given slots off from every other slot (both
// directions, with link l), leaving links among them alone.
func (nw *Network) Isolate(l Link, slots ...int) { nw.Partition(l, slots) }

// SetAll sets every link between distinct nodes to l.
func (nw *Network) SetAll(l Link) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for a := range nw.proxies {
		for b := range nw.proxies {
			if a != b {
				nw.setLocked(a, b, l)
			}
		}
	}
}

// Heal makes every link healthy again.
func (nw *Network) Heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for k := range nw.links {
		nw.setLocked(k.src, k.dst, Link{})
	}
}

// Describe lists the links that are not healthy.
func (nw *Network) Describe() string {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	var keys []pair
	for k := range nw.links {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y pair) int {
		if x.src != y.src {
			return x.src - y.src
		}
		return x.dst - y.dst
	})
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf(" %d->%d:%s", k.src, k.dst, nw.links[k])
	}
	if s == "" {
		return "all links ok"
	}
	return s[1:]
}

// Stats summarises what the proxies did.
func (nw *Network) Stats() string {
	return fmt.Sprintf("connections accepted=%d refused=%d reset=%d, bytes blackholed=%d",
		nw.accepted.Load(), nw.refused.Load(), nw.resets.Load(), nw.dropped.Load())
}

// Close stops every proxy and resets every connection.
func (nw *Network) Close() error {
	nw.mu.Lock()
	if nw.closed {
		nw.mu.Unlock()
		return nil
	}
	nw.closed = true
	proxies := nw.proxies
	var pipes []*pipe
	for p := range nw.pipes {
		pipes = append(pipes, p)
	}
	nw.mu.Unlock()
	var errs []error
	for _, p := range proxies {
		errs = append(errs, p.ln.Close())
	}
	for _, p := range pipes {
		p.reset()
	}
	for _, p := range proxies {
		p.wg.Wait()
	}
	return errors.Join(errs...)
}
