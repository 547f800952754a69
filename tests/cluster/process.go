package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process runs one cairn server process at a time: started, signalled,
// stopped and started again, from the same binary and directory, with its
// output appended to one log file. Its methods are safe for concurrent
// use. Cluster's nodes run on one; so do the nodes of other suites (such
// as tests/chaos) that start cairn processes their own way.
type Process struct {
	// ID names the node in errors and log headers, such as "n1".
	ID string
	// Bin is the cairn binary.
	Bin string
	// Dir is the process's working directory; a Cluster's node keeps its
	// data directory and log file in it.
	Dir string
	// LogPath is the file that gets the process's stdout and stderr,
	// appended to across restarts.
	LogPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	exitErr error
	paused  bool
	starts  int
}

var errNotRunning = errors.New("not running")

// ErrAddrInUse is wrapped by the error of WaitUp when the process exited
// during its start because a port it was given was taken meanwhile; the
// caller can pick other ports and try again.
var ErrAddrInUse = errors.New("address already in use")

// startHeader begins the line written to the log before every start.
const startHeader = "=== cluster: start #"

// Start launches Bin with args. It is an error if a process is already
// running.
func (p *Process) Start(args []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runningLocked() {
		return fmt.Errorf("node %s: already running", p.ID)
	}
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("node %s: log: %w", p.ID, err)
	}
	defer f.Close() // the child keeps its own copy
	p.starts++
	fmt.Fprintf(f, "%s%d of %s at %s: cairn %s\n",
		startHeader, p.starts, p.ID, time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(p.Bin, args...)
	cmd.Dir = p.Dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = childEnv()
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("node %s: start: %w", p.ID, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.exitErr, p.paused = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
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

// Running reports whether the process is alive (paused counts as alive).
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

func (p *Process) runningLocked() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Paused reports whether the process was stopped with SIGSTOP and not
// resumed.
func (p *Process) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused && p.runningLocked()
}

// Live reports whether the process runs and is not paused, so it can
// answer.
func (p *Process) Live() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked() && !p.paused
}

// Pid is the process id of the running process, or 0.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Done is closed when the current process exits; it is nil before the
// first start.
func (p *Process) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// ExitErr is what the last process's Wait returned (nil for exit status
// 0); it is nil while the process runs.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runningLocked() {
		return nil
	}
	return p.exitErr
}

// Signal sends sig to the running process and returns the channel closed
// at its exit. SIGSTOP marks it paused and SIGCONT resumed; any other
// signal but SIGKILL resumes a paused process first (a stopped process
// would not act on it).
func (p *Process) Signal(sig syscall.Signal) (done <-chan struct{}, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return nil, fmt.Errorf("node %s: %w", p.ID, errNotRunning)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return nil, fmt.Errorf("node %s: signal %v: %w", p.ID, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.paused = true
	case syscall.SIGCONT:
		p.paused = false
	default:
		if p.paused && sig != syscall.SIGKILL {
			p.cmd.Process.Signal(syscall.SIGCONT)
			p.paused = false
		}
	}
	return p.done, nil
}

// Kill sends SIGKILL and waits up to timeout for the exit.
func (p *Process) Kill(timeout time.Duration) error {
	done, err := p.Signal(syscall.SIGKILL)
	if err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("node %s: still running %v after SIGKILL", p.ID, timeout)
	}
}

// KillAll kills every running one of procs (Processes, or the nodes that
// embed one) at once, as Kill does, and returns the errors of those that
// did not exit.
func KillAll[P interface{ Kill(time.Duration) error }](procs []P) error {
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() {
			if err := p.Kill(10 * time.Second); err != nil && !errors.Is(err, errNotRunning) {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stop sends SIGTERM and waits up to timeout for the exit; then it kills
// the process and reports an error. An exit other than status 0 is an
// error too: SIGTERM must shut a node down cleanly.
func (p *Process) Stop(timeout time.Duration) error {
	done, err := p.Signal(syscall.SIGTERM)
	if err != nil {
		return err
	}
	select {
	case <-done:
	case <-time.After(timeout):
		p.Kill(10 * time.Second)
		return fmt.Errorf("node %s: did not exit within %v of SIGTERM; killed it", p.ID, timeout)
	}
	if err := p.ExitErr(); err != nil {
		return fmt.Errorf("node %s: unclean exit after SIGTERM: %w", p.ID, err)
	}
	return nil
}

// WaitUp polls GET /healthz through h until it answers 200, the process
// exits or timeout passes. An exit because a port was taken is reported
// as ErrAddrInUse; another exit with the tail of the log of this start.
func (p *Process) WaitUp(h *HTTP, timeout time.Duration) error {
	done := p.Done()
	if done == nil {
		return fmt.Errorf("node %s: %w", p.ID, errNotRunning)
	}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		select {
		case <-done:
			log := p.LastStartLog()
			if strings.Contains(log, "address already in use") {
				return fmt.Errorf("node %s: %w", p.ID, ErrAddrInUse)
			}
			return fmt.Errorf("node %s exited during start (%v); log:\n%s", p.ID, p.ExitErr(), Tail(log, 30))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := h.Do(ctx, http.MethodGet, "/healthz", nil, nil)
		cancel()
		if err == nil && r.Status == http.StatusOK {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = r.String()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: /healthz not 200 within %v (last: %s)", p.ID, timeout, last)
		}
		time.Sleep(pollInterval)
	}
}

// Log returns the whole log file.
func (p *Process) Log() (string, error) {
	b, err := os.ReadFile(p.LogPath)
	return string(b), err
}

// LogTail returns the last lines lines of the log file.
func (p *Process) LogTail(lines int) string {
	f, err := os.Open(p.LogPath)
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

// LogContains reports whether the log has a line containing s, ignoring
// case, and returns the first such line.
func (p *Process) LogContains(s string) (string, bool) {
	b, err := os.ReadFile(p.LogPath)
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

// LastStartLog returns the log written since the latest start.
func (p *Process) LastStartLog() string {
	s, _ := p.Log()
	if i := strings.LastIndex(s, startHeader); i >= 0 {
		return s[i:]
	}
	return s
}

// Tail returns the last lines lines of s.
func Tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
