package raftnode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-kv/cairn/store"
)

// Member is a cluster member as the configuration and the store know it.
type Member struct {
	// ID is the member's server ID.
	ID string `json:"id"`
	// RaftAddr is its Raft address.
	RaftAddr string `json:"raft_addr"`
	// HTTPAddr is its HTTP API address; empty until it has registered.
	HTTPAddr string `json:"http_addr"`
	// Voter says whether it votes (cairn adds every member as a voter).
	Voter bool `json:"voter"`
	// Leader says whether it is the leader this node knows of.
	Leader bool `json:"leader"`
}

// Members lists the members in the latest Raft configuration.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, translate(err)
	}
	_, lid := n.raft.LeaderWithID()
	var out []Member
	for _, s := range f.Configuration().Servers {
		m := Member{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: s.ID == lid}
		if rec, ok := n.store.Member(m.ID); ok {
			m.HTTPAddr = rec.HTTPAddr
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// AddMember adds (or updates) a member; it must run on the leader. A member
// already present with the same addresses is left alone; one whose
// address changed is updated in place; another member holding the same
// Raft address is removed first (it was replaced).
func (n *Node) AddMember(ctx context.Context, m store.Member) error {
	if err := validMember(m); err != nil {
		return err
	}
	if !n.IsLeader() {
		return ErrNotLeader
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return translate(err)
	}
	timeout := deadline(ctx)
	present := false
	for _, s := range f.Configuration().Servers {
		switch {
		case string(s.ID) == m.ID && string(s.Address) == m.RaftAddr && s.Suffrage == raft.Voter:
			present = true
		case string(s.ID) != m.ID && string(s.Address) == m.RaftAddr:
			n.log.Info("removing member that held the joining member's address", "old", s.ID, "new", m.ID)
			if err := n.raft.RemoveServer(s.ID, 0, timeout).Error(); err != nil {
				return translate(err)
			}
			n.forget(ctx, string(s.ID))
		}
	}
	if !present {
		n.log.Info("adding member", "id", m.ID, "raft_addr", m.RaftAddr, "http_addr", m.HTTPAddr)
		if err := n.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, timeout).Error(); err != nil {
			return translate(err)
		}
	}
	if rec, ok := n.store.Member(m.ID); ok && rec == m {
		return nil
	}
	_, err := n.Apply(ctx, &store.Command{Op: store.OpSetMember, Member: m})
	return err
}

// RemoveMember removes member id from the cluster; it must run on the
// leader. Removing the leader itself makes it step down once committed.
func (n *Node) RemoveMember(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return translate(err)
	}
	found, voters := false, 0
	for _, s := range f.Configuration().Servers {
		found = found || string(s.ID) == id
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	if voters <= 1 {
		return fmt.Errorf("%w: %q is the only voter", ErrLastMember, id)
	}
	n.log.Info("removing member", "id", id)
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, deadline(ctx)).Error(); err != nil {
		return translate(err)
	}
	n.forget(ctx, id)
	return nil
}

// forget drops a removed member's addresses from the store, if this node
// still leads; a stale record is harmless, as listings follow the Raft
// configuration.
func (n *Node) forget(ctx context.Context, id string) {
	if _, ok := n.store.Member(id); !ok || !n.IsLeader() {
		return
	}
	if _, err := n.Apply(ctx, &store.Command{Op: store.OpRemoveMember, Member: store.Member{ID: id}}); err != nil {
		n.log.Debug("forget member", "id", id, "err", err)
	}
}

// validMember checks that a member can work: a proper ID and reachable
// host:port addresses (no scheme, no port 0, no 0.0.0.0).
func validMember(m store.Member) error {
	if err := checkID(m.ID); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMember, err)
	}
	if err := checkAdvertise("raft_addr", m.RaftAddr); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMember, strings.TrimPrefix(err.Error(), "raftnode: "))
	}
	if err := checkAdvertise("http_addr", m.HTTPAddr); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMember, strings.TrimPrefix(err.Error(), "raftnode: "))
	}
	return nil
}

func deadline(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 10 * time.Second
}

// self is this node's record as it should be in the store.
func (n *Node) self() store.Member {
	return store.Member{ID: n.cfg.ID, RaftAddr: n.cfg.RaftAdvertiseAddr, HTTPAddr: n.cfg.HTTPAdvertiseAddr}
}

// Registered reports whether this node has finished registering: it has
// seen itself as a voter at its advertised Raft address with its HTTP
// address recorded, and no longer asks to join.
func (n *Node) Registered() bool { return n.regDone.Load() }

// registered reports whether this node is a voter at its advertised Raft
// address and the store holds its current HTTP address.
func (n *Node) registered() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	me := n.self()
	in := false
	for _, s := range f.Configuration().Servers {
		in = in || (string(s.ID) == me.ID && string(s.Address) == me.RaftAddr && s.Suffrage == raft.Voter)
	}
	if in {
		// A node removed right after it joined may never be seen in the
		// configuration by watchRemoval's slower ticks.
		n.wasMember.Store(true)
	}
	rec, ok := n.store.Member(me.ID)
	return in && ok && rec == me
}

// register runs until this node is a member with its addresses recorded:
// a leader records itself; a follower or a new node asks the leader (or
// the --join addresses) over HTTP. It covers bootstrap, join, the initial
// cluster, and a restart with a changed address alike.
func (n *Node) register() {
	defer n.wg.Done()
	backoff := 100 * time.Millisecond
	for n.ctx.Err() == nil {
		if n.registered() {
			n.log.Info("member registered", "id", n.cfg.ID, "http_addr", n.cfg.HTTPAdvertiseAddr)
			n.regDone.Store(true)
			return
		}
		var err error
		if n.IsLeader() {
			ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
			err = n.AddMember(ctx, n.self())
			cancel()
		} else {
			targets := append([]string{}, n.cfg.Join...)
			if id, addr := n.Leader(); id != "" && addr != "" && id != n.cfg.ID {
				targets = append([]string{addr}, targets...)
			}
			err = fmt.Errorf("no member to ask yet")
			for _, t := range targets {
				if t == n.cfg.HTTPAdvertiseAddr {
					continue
				}
				if err = n.postJoin(t); err == nil {
					break
				}
			}
		}
		if err != nil {
			n.log.Debug("not registered yet", "err", err, "retry_in", backoff)
		} else {
			backoff = 50 * time.Millisecond
		}
		select {
		case <-n.ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (n *Node) postJoin(target string) error {
	body, _ := json.Marshal(n.self())
	url := target
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/cluster/members", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("join via %s: %s: %s", target, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
