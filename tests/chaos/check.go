//go:build linux

package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// EnvMode names the environment variable that selects the suite's
// length: "full" runs every fault with long phases; empty or "smoke" runs
// the short default.
const EnvMode = "CAIRN_CHAOS"

// Mode is how long and how much the suite runs.
type Mode struct {
	// Full is true with CAIRN_CHAOS=full.
	Full bool
	// Phase is how long each phase of a run holds (before, during and
	// after a fault).
	Phase time.Duration
	// CheckTimeout bounds porcupine on one history.
	CheckTimeout time.Duration
}

// GetMode reads EnvMode; an unknown value fails t.
func GetMode(t testing.TB) Mode {
	t.Helper()
	switch v := os.Getenv(EnvMode); v {
	case "full":
		return Mode{Full: true, Phase: 12 * time.Second, CheckTimeout: 3 * time.Minute}
	case "", "smoke":
		if testing.Short() && v == "" {
			t.Skipf("chaos: skipped in -short mode; set %s=smoke or %s=full to run it", EnvMode, EnvMode)
		}
		return Mode{Phase: 3 * time.Second, CheckTimeout: time.Minute}
	default:
		t.Fatalf("chaos: %s=%q: want full or smoke", EnvMode, v)
	}
	return Mode{}
}

// RequireFull skips t unless the full matrix runs.
func RequireFull(t testing.TB) Mode {
	t.Helper()
	m := GetMode(t)
	if !m.Full {
		t.Skipf("chaos: this fault runs only in the full matrix: make chaos (%s=full go test -race ./tests/chaos/)", EnvMode)
	}
	return m
}

// Verify runs the checks that follow every run, after the caller stopped
// the workload and healed the faults: the live nodes converge to the same
// applied index and store hash; a final linearizable read of every key is
// added to the history; the history is linearizable; every error answer
// was a clean JSON error. It logs the availability of each phase and
// returns porcupine's verdict. On failure the artifacts go to
// c.Artifacts().
func Verify(t testing.TB, c *Cluster, w *Workload, m Mode) porcupine.CheckResult {
	t.Helper()
	w.Stop()
	c.WaitHealthy(t)
	c.WaitConverged(t)
	w.FinalReads(t, w.opts.Clients+1, c.opts.WaitTimeout)
	for _, l := range w.Availability() {
		t.Logf("availability: %s", l)
	}
	t.Logf("error answers: %v", w.ErrorCodes())
	t.Logf("network: %s", c.Net.Stats())
	for _, e := range w.UncleanErrors() {
		t.Errorf("unclean error answer: %s", e)
	}
	res := CheckLinearizable(t, c, w.History(), m)
	return res
}

// CheckLinearizable checks history with porcupine and reports a failure
// (with the visualization in the artifact directory) unless it is
// linearizable.
func CheckLinearizable(t testing.TB, c *Cluster, history []porcupine.Operation, m Mode) porcupine.CheckResult {
	t.Helper()
	start := time.Now()
	res, info, problems := Check(history, m.CheckTimeout)
	t.Logf("linearizability: %s (%d operations, checked in %v)", res, len(history), time.Since(start).Round(time.Millisecond))
	for _, p := range problems {
		t.Errorf("history contradiction: %s", p)
	}
	if res == porcupine.Ok && len(problems) == 0 {
		return res
	}
	dir := c.Artifacts()
	path := filepath.Join(dir, "linearizability.html")
	if err := porcupine.VisualizePath(Model.ToModel(), info, path); err != nil {
		t.Errorf("visualize: %v", err)
	}
	writeFile(dir, "history.txt", FormatHistory(history))
	switch res {
	case porcupine.Illegal:
		t.Errorf("history is NOT linearizable; visualization: %s", path)
	case porcupine.Unknown:
		t.Errorf("linearizability check timed out after %v; visualization: %s", m.CheckTimeout, path)
	}
	return res
}

func writeFile(dir, name, content string) {
	os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
}

// Hold lets the workload run for d (the length of a phase: the clients
// work meanwhile, nothing is being waited for).
func Hold(d time.Duration) { time.Sleep(d) }

// logf is t.Logf with the elapsed workload time in front.
func logf(t testing.TB, w *Workload, format string, args ...any) {
	t.Helper()
	t.Logf("[%6.2fs] %s", float64(w.Now())/1e9, fmt.Sprintf(format, args...))
}
