package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/client"
	"github.com/cairn-kv/cairn/client/clienttest"
)

func TestClusterStatus(t *testing.T) {
	fake := clienttest.NewServer(t)
	mustRunCLI(t, nil, "kv", "put", "k", "v", "--endpoints", fake.Addr())

	out := mustRunCLI(t, nil, "cluster", "status", "--endpoints", fake.Addr())
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 ||
		strings.Join(strings.Fields(lines[0]), " ") != "ENDPOINT ID STATE LEADER TERM COMMIT APPLIED REVISION" ||
		strings.Join(strings.Fields(lines[1]), " ") != fake.URL+" n1 Leader n1 1 2 2 1" ||
		strings.Index(lines[0], "ID") != strings.Index(lines[1], "n1") {
		t.Errorf("cluster status printed\n%s", out)
	}

	dead := deadAddr(t)
	out, errOut, err := runCLI(t, nil, "cluster", "status", "-o", "json", "--endpoints", fake.Addr()+","+dead)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 endpoints did not answer: http://"+dead) {
		t.Errorf("cluster status with a dead endpoint: %v", err)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("cluster status -o json printed %q: %v (stderr %q)", out, err, errOut)
	}
	if len(rows) != 2 || rows[0]["id"] != "n1" || rows[0]["state"] != "Leader" || rows[1]["error"] == nil {
		t.Errorf("cluster status -o json = %v", rows)
	}

	out, errOut, err = runCLI(t, nil, "cluster", "status", "--endpoints", dead+","+fake.Addr())
	if err == nil || !strings.Contains(out, fake.URL+"  n1") || !strings.Contains(errOut, "http://"+dead+": ") {
		t.Errorf("cluster status table with a dead endpoint: err %v, stdout %q, stderr %q", err, out, errOut)
	}
}

func TestClusterMembership(t *testing.T) {
	fake := clienttest.NewServer(t)
	ep := "--endpoints=" + fake.Addr()

	out := mustRunCLI(t, nil, "cluster", "join", "--id", "n2", "--raft-addr", "127.0.0.1:9002", "--http-addr", "127.0.0.1:8002", ep)
	want := "ID  RAFT_ADDR       HTTP_ADDR        VOTER  LEADER\n" +
		"n1  127.0.0.1:9001  " + fake.Addr() + "  true   *\n" +
		"n2  127.0.0.1:9002  127.0.0.1:8002   true   \n"
	if out != want {
		t.Errorf("cluster join printed\n%q\nwant\n%q", out, want)
	}

	out = mustRunCLI(t, nil, "cluster", "members", ep, "-o", "json")
	var got struct{ Members []client.Member }
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Members) != 2 || got.Members[1].ID != "n2" {
		t.Errorf("cluster members -o json printed %q (%v)", out, err)
	}

	out = mustRunCLI(t, nil, "cluster", "remove", "n2", ep)
	if strings.Contains(out, "n2") || !strings.Contains(out, "n1") {
		t.Errorf("cluster remove printed %q", out)
	}
	if _, _, err := runCLI(t, nil, "cluster", "remove", "n2", ep); !errors.Is(err, client.ErrMemberNotFound) {
		t.Errorf("removing an unknown member: %v, want ErrMemberNotFound", err)
	}
	if _, _, err := runCLI(t, nil, "cluster", "join", "--id", "n3", ep); err == nil ||
		!strings.Contains(err.Error(), `required flag(s) "http-addr", "raft-addr" not set`) {
		t.Errorf("cluster join without addresses: %v", err)
	}
}
