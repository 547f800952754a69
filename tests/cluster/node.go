package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Node is one cairn server process of a Cluster. Its fields are fixed for
// its life; a restart reuses them.
type Node struct {
	// ID is the node's --id, such as "n1".
	ID string
	// HTTPAddr is its --http-addr, 127.0.0.1:port.
	HTTPAddr string
	// RaftAddr is its --raft-addr, 127.0.0.1:port.
	RaftAddr string
	// Dir holds DataDir and LogPath.
	Dir string
	// DataDir is its --data-dir.
	DataDir string
	// LogPath is the file that gets the process's stdout and stderr,
	// appended to across restarts.
	LogPath string

	bin  string
	args []string
	http *HTTP

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	exitErr error
	paused  bool
	starts  int
}

var errNotRunning = errors.New("not running")

// URL is http://HTTPAddr.
func (n *Node) URL() string { return "http://" + n.HTTPAddr }

// HTTP returns a helper that talks to this node.
func (n *Node) HTTP() *HTTP { return n.http }

// Args returns the command-line arguments the node is started with.
func (n *Node) Args() []string { return append([]string(nil), n.args...) }

// Running reports whether the node's process is alive (paused counts as
// alive).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.runningLocked()
}

func (n *Node) runningLocked() bool {
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Paused reports whether the node was stopped with Pause and not resumed.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused && n.runningLocked()
}

// live reports whether the node runs and is not paused, so it can answer.
func (n *Node) live() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.runningLocked() && !n.paused
}

// Pid is the process id of the running process, or 0.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.runningLocked() {
		return 0
	}
	return n.cmd.Process.Pid
}

// ExitErr is what the last process's Wait returned (nil for exit status
// 0); it is nil while the process runs.
func (n *Node) ExitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.runningLocked() {
		return nil
	}
	return n.exitErr
}

// start launches the process; the caller has checked it is not running.
func (n *Node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.runningLocked() {
		return fmt.Errorf("node %s: already running", n.ID)
	}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return fmt.Errorf("node %s: %w", n.ID, err)
	}
	f, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("node %s: log: %w", n.ID, err)
	}
	defer f.Close() // the child keeps its own copy
	n.starts++
	fmt.Fprintf(f, "=== cluster: start #%d of %s at %s: cairn %s\n",
		n.starts, n.ID, time.Now().Format(time.RFC3339Nano), strings.Join(n.args, " "))
	cmd := exec.Command(n.bin, n.args...)
	cmd.Dir = n.Dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = childEnv()
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("node %s: start: %w", n.ID, err)
	}
	done := make(chan struct{})
	n.cmd, n.done, n.exitErr, n.paused = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		n.exitErr = err
		n.mu.Unlock()
		close(done)
	}()
	return nil
}

// childEnv is the test's environment without CAIRN_* variables, which the
// server would read as flags.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			env = append(env, kv)
		}
	}
	return env
}

// signal sends sig to the running process, resuming it first when it is
// paused and sig is not SIGKILL (a stopped process would not act on it).
func (n *Node) signal(sig syscall.Signal) (done chan struct{}, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.runningLocked() {
		return nil, fmt.Errorf("node %s: %w", n.ID, errNotRunning)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return nil, fmt.Errorf("node %s: signal %v: %w", n.ID, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		n.paused = true
	case syscall.SIGCONT:
		n.paused = false
	default:
		if n.paused && sig != syscall.SIGKILL {
			n.cmd.Process.Signal(syscall.SIGCONT)
			n.paused = false
		}
	}
	return n.done, nil
}

// kill sends SIGKILL and waits for the exit.
func (n *Node) kill(timeout time.Duration) error {
	done, err := n.signal(syscall.SIGKILL)
	if err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("node %s: still running %v after SIGKILL", n.ID, timeout)
	}
}

// stop sends SIGTERM and waits up to timeout for the exit; then it kills
// the process and reports an error. An exit other than status 0 is an
// error too: SIGTERM must shut a node down cleanly.
func (n *Node) stop(timeout time.Duration) error {
	done, err := n.signal(syscall.SIGTERM)
	if err != nil {
		return err
	}
	select {
	case <-done:
	case <-time.After(timeout):
		n.kill(10 * time.Second)
		return fmt.Errorf("node %s: did not exit within %v of SIGTERM; killed it", n.ID, timeout)
	}
	if err := n.ExitErr(); err != nil {
		return fmt.Errorf("node %s: unclean exit after SIGTERM: %w", n.ID, err)
	}
	return nil
}

// Log returns the node's whole log file.
func (n *Node) Log() (string, error) {
	b, err := os.ReadFile(n.LogPath)
	return string(b), err
}

// LogTail returns the last lines lines of the node's log file.
func (n *Node) LogTail(lines int) string {
	f, err := os.Open(n.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	ring := make([]string, 0, lines)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		if len(ring) == lines {
			copy(ring, ring[1:])
			ring = ring[:lines-1]
		}
		ring = append(ring, sc.Text())
	}
	return strings.Join(ring, "\n")
}

// LogContains reports whether the node's log has a line containing s,
// ignoring case, and returns the first such line.
func (n *Node) LogContains(s string) (string, bool) {
	b, err := os.ReadFile(n.LogPath)
	if err != nil {
		return "", false
	}
	want := strings.ToLower(s)
	for line := range bytes.Lines(b) {
		if strings.Contains(strings.ToLower(string(line)), want) {
			return strings.TrimRight(string(line), "\n"), true
		}
	}
	return "", false
}

// lastStartLog returns the log written since the latest start.
func (n *Node) lastStartLog() string {
	s, _ := n.Log()
	if i := strings.LastIndex(s, "=== cluster: start #"); i >= 0 {
		return s[i:]
	}
	return s
}
