package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/cairn-kv/cairn/client"
	"github.com/cairn-kv/cairn/client/clienttest"
)

func TestClusterCalls(t *testing.T) {
	fake := clienttest.NewServer(t)
	c := mustNewClient(t, fake.Addr())
	ctx := context.Background()
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != clienttest.NodeID || st.State != "Leader" || st.Leader.ID != clienttest.NodeID ||
		st.Leader.HTTPAddr != fake.Addr() || st.Term != 1 || st.AppliedIndex != 2 || st.Revision != 1 ||
		st.Node != clienttest.NodeID || st.Endpoint != fake.URL {
		t.Errorf("Status = %+v", st)
	}

	ms, err := c.AddMember(ctx, client.Member{ID: "n2", RaftAddr: "127.0.0.1:9002", HTTPAddr: "127.0.0.1:8002"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms.Members) != 2 || ms.Members[1] != (client.Member{ID: "n2", RaftAddr: "127.0.0.1:9002", HTTPAddr: "127.0.0.1:8002", Voter: true}) {
		t.Errorf("AddMember = %+v", ms.Members)
	}
	ms, err = c.Members(ctx)
	if err != nil || len(ms.Members) != 2 || !ms.Members[0].Leader {
		t.Errorf("Members = %+v, %v", ms, err)
	}
	ms, err = c.RemoveMember(ctx, "n2")
	if err != nil || len(ms.Members) != 1 {
		t.Errorf("RemoveMember = %+v, %v", ms, err)
	}
	if _, err := c.RemoveMember(ctx, "n2"); !errors.Is(err, client.ErrMemberNotFound) {
		t.Errorf("RemoveMember of unknown member: %v, want ErrMemberNotFound", err)
	}
}

// The join body has exactly the three fields the API defines; the server
// rejects unknown fields.
func TestAddMemberBody(t *testing.T) {
	srv := newRecorder(t, okGet(`{"members":[]}`))
	c := mustNewClient(t, srv.URL)
	if _, err := c.AddMember(context.Background(), client.Member{ID: "n/4", RaftAddr: "r:1", HTTPAddr: "h:2", Voter: true}); err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(srv.bodies[0]), &body); err != nil {
		t.Fatal(err)
	}
	if len(body) != 3 || body["id"] != "n/4" || body["raft_addr"] != "r:1" || body["http_addr"] != "h:2" {
		t.Errorf("join body = %s", srv.bodies[0])
	}
	if ct := srv.last().Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if _, err := c.RemoveMember(context.Background(), "n/4"); err != nil {
		t.Fatal(err)
	}
	if got := srv.last().URL.EscapedPath(); got != "/v1/cluster/members/n%2F4" {
		t.Errorf("remove path = %q", got)
	}
}
