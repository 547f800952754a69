package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairn-kv/cairn/client"
)

func newClusterCmd() *cobra.Command {
	conn := &connOptions{}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect and change cluster membership",
		Long: `Inspect the nodes of a cairn cluster and change its membership. Any member
accepts membership changes and forwards them to the leader.`,
		Example: `  cairn cluster status --endpoints 127.0.0.1:8001,127.0.0.1:8002,127.0.0.1:8003
  cairn cluster members
  cairn cluster join --id n4 --raft-addr 127.0.0.1:9004 --http-addr 127.0.0.1:8004
  cairn cluster remove n4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	conn.addFlags(cmd)
	cmd.AddCommand(newClusterStatusCmd(conn), newClusterMembersCmd(conn),
		newClusterJoinCmd(conn), newClusterRemoveCmd(conn))
	silence(cmd)
	return cmd
}

// clusterStatusOptions are the flags of `cairn cluster status`.
type clusterStatusOptions struct {
	conn *connOptions
}

func newClusterStatusCmd(conn *connOptions) *cobra.Command {
	o := &clusterStatusOptions{conn: conn}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each endpoint's view of the cluster",
		Long: `Ask every node in --endpoints, in parallel, for its status: its ID, Raft
state, the leader it knows, term, commit and applied index, and store revision.
Nodes that do not answer are reported on standard error, and make the command
fail after the table is printed.`,
		Example: `  cairn cluster status
  cairn cluster status --endpoints 127.0.0.1:8001,127.0.0.1:8002,127.0.0.1:8003 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	silence(cmd)
	return cmd
}

// endpointStatus is one row of `cairn cluster status`.
type endpointStatus struct {
	Endpoint     string            `json:"endpoint"`
	ID           string            `json:"id,omitempty"`
	State        string            `json:"state,omitempty"`
	Leader       client.LeaderInfo `json:"leader"`
	Term         uint64            `json:"term"`
	CommitIndex  uint64            `json:"commit_index"`
	AppliedIndex uint64            `json:"applied_index"`
	Revision     int64             `json:"revision"`
	Error        string            `json:"error,omitempty"`
}

func (o *clusterStatusOptions) run(cmd *cobra.Command) error {
	// The main client only validates the flags and endpoints; each node is
	// asked through a client of its own, without failover.
	return o.conn.run(cmd, func(ctx context.Context, all *client.Client) error {
		eps := all.Endpoints()
		rows := make([]endpointStatus, len(eps))
		var wg sync.WaitGroup
		for i, ep := range eps {
			wg.Go(func() {
				rows[i] = o.status(ctx, ep)
			})
		}
		wg.Wait()

		var failed []string
		for _, r := range rows {
			if r.Error != "" {
				failed = append(failed, r.Endpoint)
			}
		}
		if o.conn.output == outputJSON {
			if err := printJSON(cmd.OutOrStdout(), rows); err != nil {
				return err
			}
		} else {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ENDPOINT\tID\tSTATE\tLEADER\tTERM\tCOMMIT\tAPPLIED\tREVISION")
			for _, r := range rows {
				if r.Error != "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", r.Endpoint, r.Error)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", r.Endpoint, r.ID, r.State,
					orDash(r.Leader.ID), r.Term, r.CommitIndex, r.AppliedIndex, r.Revision)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("%d of %d endpoints did not answer: %s", len(failed), len(eps), strings.Join(failed, ", "))
		}
		return nil
	})
}

// status asks one endpoint for its status.
func (o *clusterStatusOptions) status(ctx context.Context, ep string) endpointStatus {
	row := endpointStatus{Endpoint: ep}
	cfg := o.conn.config()
	cfg.Endpoints = []string{ep}
	cfg.MaxRetries = -1
	c, err := client.New(cfg)
	if err != nil {
		row.Error = err.Error()
		return row
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		row.Error = err.Error()
		return row
	}
	row.ID, row.State, row.Leader = st.ID, st.State, st.Leader
	row.Term, row.CommitIndex, row.AppliedIndex, row.Revision = st.Term, st.CommitIndex, st.AppliedIndex, st.Revision
	return row
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clusterMembersOptions are the flags of `cairn cluster members`.
type clusterMembersOptions struct {
	conn *connOptions
}

func newClusterMembersCmd(conn *connOptions) *cobra.Command {
	o := &clusterMembersOptions{conn: conn}
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the cluster's members",
		Long: `List the members of the cluster's Raft configuration: ID, Raft and HTTP
addresses, whether each votes, and which one leads.`,
		Example: `  cairn cluster members
  cairn cluster members -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.conn.run(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Members(ctx)
				if err != nil {
					return err
				}
				return printMembers(cmd.OutOrStdout(), o.conn.output, resp.Members)
			})
		},
	}
	silence(cmd)
	return cmd
}

// printMembers prints a member list as a table or as the API's JSON.
func printMembers(w io.Writer, output string, members []client.Member) error {
	if members == nil {
		members = []client.Member{}
	}
	if output == outputJSON {
		return printJSON(w, map[string]any{"members": members})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRAFT_ADDR\tHTTP_ADDR\tVOTER\tLEADER")
	for _, m := range members {
		leader := ""
		if m.Leader {
			leader = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\n", m.ID, m.RaftAddr, m.HTTPAddr, m.Voter, leader)
	}
	return tw.Flush()
}

// clusterJoinOptions are the flags of `cairn cluster join`.
type clusterJoinOptions struct {
	conn     *connOptions
	id       string
	raftAddr string
	httpAddr string
}

func newClusterJoinCmd(conn *connOptions) *cobra.Command {
	o := &clusterJoinOptions{conn: conn}
	cmd := &cobra.Command{
		Use:   "join --id ID --raft-addr ADDR --http-addr ADDR",
		Short: "Add a node to the cluster",
		Long: `Add a node to the cluster as a voter, then print the member list. The node
itself must be running (started without --bootstrap) so that the leader can
replicate to it. "cairn server --join" does this on its own; use this command
to add a node by hand.`,
		Example: `  cairn cluster join --id n4 --raft-addr 127.0.0.1:9004 --http-addr 127.0.0.1:8004`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.conn.run(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.AddMember(ctx, client.Member{ID: o.id, RaftAddr: o.raftAddr, HTTPAddr: o.httpAddr})
				if err != nil {
					return err
				}
				return printMembers(cmd.OutOrStdout(), o.conn.output, resp.Members)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.id, "id", "", "the new node's ID (required)")
	f.StringVar(&o.raftAddr, "raft-addr", "", "the new node's Raft address, host:port (required)")
	f.StringVar(&o.httpAddr, "http-addr", "", "the new node's HTTP API address, host:port (required)")
	for _, name := range []string{"id", "raft-addr", "http-addr"} {
		_ = cmd.MarkFlagRequired(name)
	}
	silence(cmd)
	return cmd
}

// clusterRemoveOptions are the flags of `cairn cluster remove`.
type clusterRemoveOptions struct {
	conn *connOptions
}

func newClusterRemoveCmd(conn *connOptions) *cobra.Command {
	o := &clusterRemoveOptions{conn: conn}
	cmd := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a node from the cluster",
		Long: `Remove the member with the given ID from the cluster's configuration, then
print the remaining members. Removing the leader makes the others elect a new
one. An unknown ID is an error.`,
		Example: `  cairn cluster remove n4`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.conn.run(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.RemoveMember(ctx, args[0])
				if err != nil {
					return err
				}
				return printMembers(cmd.OutOrStdout(), o.conn.output, resp.Members)
			})
		},
	}
	silence(cmd)
	return cmd
}
