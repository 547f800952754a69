// Command cairn is the cairn server and its command-line client: one binary
// that runs a node (server), a local three-node cluster (dev), and reads and
// writes keys and manages the cluster through the Go client.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "cairn",
		Short: "cairn is a Raft-replicated key-value store",
		Long: `cairn is a Raft-replicated key-value store: a few machines agree on some
data, any node serves any request, and the cluster stays available while a
majority lives. Every flag can also be set with an environment variable
CAIRN_<FLAG> (dashes become underscores), e.g. CAIRN_DATA_DIR.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags())
		},
	}
	root.AddCommand(newServerCmd(), newDevCmd(), newVersionCmd(), newKVCmd(), newClusterCmd())
	root.AddCommand(newBenchCmd())
	return root
}

// applyEnv sets every flag not given on the command line from its
// CAIRN_<FLAG> environment variable.
func applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "CAIRN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, serr)
			}
		}
	})
	return err
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print cairn's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cairn %s\n", v)
			return nil
		},
	}
}
