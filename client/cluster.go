package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// LeaderInfo identifies the leader a node knows of; both fields are empty
// when it knows none.
type LeaderInfo struct {
	// ID is the leader's node ID.
	ID string `json:"id"`
	// HTTPAddr is the leader's HTTP API address.
	HTTPAddr string `json:"http_addr"`
}

// StatusResponse is one node's view of the cluster, from Status. Meta.Node
// and Meta.Endpoint say which node it is; Meta.Revision is its store
// revision.
type StatusResponse struct {
	Meta
	// ID is the node's ID.
	ID string
	// State is the node's Raft state: "Leader", "Follower", "Candidate"
	// or "Shutdown".
	State string
	// Leader is the leader this node knows of.
	Leader LeaderInfo
	// Term is the node's current Raft term.
	Term uint64
	// CommitIndex is the index of the last Raft log entry known committed.
	CommitIndex uint64
	// AppliedIndex is the index of the last Raft log entry applied to the
	// store on this node.
	AppliedIndex uint64
	// LastLogIndex is the index of the last entry in this node's Raft
	// log, 0 if the server does not report it.
	LastLogIndex uint64
}

// Member is one member of the cluster's Raft configuration.
type Member struct {
	// ID is the node's ID.
	ID string `json:"id"`
	// RaftAddr is the address other members reach its Raft transport on.
	RaftAddr string `json:"raft_addr"`
	// HTTPAddr is the address of its HTTP API.
	HTTPAddr string `json:"http_addr"`
	// Voter says whether it votes in elections and counts for quorum.
	Voter bool `json:"voter"`
	// Leader says whether it is the current leader.
	Leader bool `json:"leader"`
}

// MembersResponse is the cluster's member list.
type MembersResponse struct {
	Meta
	// Members lists every member of the Raft configuration.
	Members []Member
}

// Status returns the status of the node that answers, normally the one
// that answered last. To ask a particular node, make a Client with only
// that endpoint.
func (c *Client) Status(ctx context.Context) (*StatusResponse, error) {
	out := &StatusResponse{}
	m, err := c.do(ctx, &request{method: http.MethodGet, path: "/v1/status"},
		func(resp *http.Response, m *Meta) error {
			var body struct {
				ID           string     `json:"id"`
				State        string     `json:"state"`
				Leader       LeaderInfo `json:"leader"`
				Term         uint64     `json:"term"`
				CommitIndex  uint64     `json:"commit_index"`
				AppliedIndex uint64     `json:"applied_index"`
				LastLogIndex uint64     `json:"last_log_index"`
				Revision     int64      `json:"revision"`
			}
			if err := decodeJSON(resp, &body); err != nil {
				return err
			}
			out.ID, out.State, out.Leader = body.ID, body.State, body.Leader
			out.Term, out.CommitIndex, out.AppliedIndex = body.Term, body.CommitIndex, body.AppliedIndex
			out.LastLogIndex = body.LastLogIndex
			m.Revision = body.Revision
			if m.Node == "" {
				m.Node = body.ID
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	out.Meta = *m
	return out, nil
}

// Members returns the cluster's members.
func (c *Client) Members(ctx context.Context) (*MembersResponse, error) {
	return c.members(ctx, &request{method: http.MethodGet, path: "/v1/cluster/members"})
}

// AddMember adds a node to the cluster as a voter; m.ID, m.RaftAddr and
// m.HTTPAddr are required, the other fields are ignored. Any endpoint
// accepts it and forwards it to the leader. It returns the new member list.
func (c *Client) AddMember(ctx context.Context, m Member) (*MembersResponse, error) {
	switch {
	case m.ID == "":
		return nil, fmt.Errorf("client: %w: member ID is empty", ErrInvalidArgument)
	case m.RaftAddr == "":
		return nil, fmt.Errorf("client: %w: member Raft address is empty", ErrInvalidArgument)
	case m.HTTPAddr == "":
		return nil, fmt.Errorf("client: %w: member HTTP address is empty", ErrInvalidArgument)
	}
	body, err := json.Marshal(struct {
		ID       string `json:"id"`
		RaftAddr string `json:"raft_addr"`
		HTTPAddr string `json:"http_addr"`
	}{m.ID, m.RaftAddr, m.HTTPAddr})
	if err != nil {
		return nil, err
	}
	return c.members(ctx, &request{
		method: http.MethodPost, path: "/v1/cluster/members", body: body,
		contentType: "application/json", write: true,
	})
}

// RemoveMember removes the member with the given ID from the cluster and
// returns the remaining members. It fails with ErrMemberNotFound if there
// is no such member.
func (c *Client) RemoveMember(ctx context.Context, id string) (*MembersResponse, error) {
	if id == "" {
		return nil, fmt.Errorf("client: %w: member ID is empty", ErrInvalidArgument)
	}
	return c.members(ctx, &request{
		method: http.MethodDelete, path: "/v1/cluster/members/" + url.PathEscape(id), write: true,
	})
}

// members runs r and decodes a member list.
func (c *Client) members(ctx context.Context, r *request) (*MembersResponse, error) {
	out := &MembersResponse{}
	m, err := c.do(ctx, r, func(resp *http.Response, _ *Meta) error {
		var body struct {
			Members []Member `json:"members"`
		}
		if err := decodeJSON(resp, &body); err != nil {
			return err
		}
		out.Members = body.Members
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.Meta = *m
	return out, nil
}
