package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// devOptions are the flags of `cairn dev`.
type devOptions struct {
	dataDir  string
	logLevel string
}

func newDevCmd() *cobra.Command {
	o := &devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local three-node cluster for development",
		Long: `Run a three-node cluster of real cairn server processes on this machine:
HTTP on 127.0.0.1:8001-8003, Raft on 127.0.0.1:9001-9003, data under
--data-dir. Each node's log lines are prefixed with its ID. Ctrl-C stops
all three. Running it again reuses the data.`,
		Example: `  cairn dev
  cairn dev --data-dir /tmp/cairn-dev`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDev(cmd.Context(), cmd.OutOrStdout(), o) },
	}
	cmd.Flags().StringVar(&o.dataDir, "data-dir", "cairn-data", "directory holding the three nodes' data")
	cmd.Flags().StringVar(&o.logLevel, "log-level", "info", "the nodes' log level")
	return cmd
}

func runDev(ctx context.Context, out io.Writer, o *devOptions) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var mu sync.Mutex // serialises the prefixed log lines
	var procs []*exec.Cmd
	exited := make(chan error, 3)
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("n%d", i)
		args := []string{"server", "--id", id,
			"--data-dir", filepath.Join(o.dataDir, id),
			"--http-addr", fmt.Sprintf("127.0.0.1:%d", 8000+i),
			"--raft-addr", fmt.Sprintf("127.0.0.1:%d", 9000+i),
			"--log-level", o.logLevel}
		if i == 1 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", "127.0.0.1:8001")
		}
		c := exec.Command(exe, args...)
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		pr, pw := io.Pipe()
		c.Stdout, c.Stderr = pw, pw
		if err := c.Start(); err != nil {
			stopAll(procs)
			return fmt.Errorf("start %s: %w", id, err)
		}
		procs = append(procs, c)
		go func() {
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				mu.Lock()
				fmt.Fprintf(out, "%-3s| %s\n", id, sc.Text())
				mu.Unlock()
			}
		}()
		go func() {
			err := c.Wait()
			pw.Close()
			exited <- fmt.Errorf("%s exited: %v", id, err)
		}()
	}
	mu.Lock()
	fmt.Fprint(out, `
cairn dev: three nodes are starting (data in `+o.dataDir+`).
  HTTP  127.0.0.1:8001 (n1)  127.0.0.1:8002 (n2)  127.0.0.1:8003 (n3)
Try, against any node:
  curl -X PUT --data-binary 'hello' http://127.0.0.1:8002/v1/kv/greeting
  curl http://127.0.0.1:8003/v1/kv/greeting
  curl 'http://127.0.0.1:8001/v1/kv/?prefix=gr'
  curl http://127.0.0.1:8002/v1/cluster/members
Press Ctrl-C to stop all three.

`)
	mu.Unlock()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-exited:
	}
	stopAll(procs)
	if runErr != nil && !errors.Is(ctx.Err(), context.Canceled) {
		return runErr
	}
	return nil
}

// stopAll sends SIGTERM to every node, and SIGKILL to any still running
// after 10 seconds.
func stopAll(procs []*exec.Cmd) {
	var wg sync.WaitGroup
	for _, c := range procs {
		if c.Process == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Process.Signal(syscall.SIGTERM)
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if err := c.Process.Signal(syscall.Signal(0)); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			c.Process.Kill()
		}()
	}
	wg.Wait()
}
