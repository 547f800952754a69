//go:build linux

package chaos

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairn-kv/cairn/tests/cluster"
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

// EnvPhase names the environment variable that, when set to a duration
// such as 30s, overrides the length of every phase.
const EnvPhase = "CAIRN_CHAOS_PHASE"

// GetMode reads EnvMode and EnvPhase; an unknown value fails t.
func GetMode(t testing.TB) Mode {
	t.Helper()
	trackOnce.Do(trackServerSources)
	var m Mode
	switch v := os.Getenv(EnvMode); v {
	case "full":
		m = Mode{Full: true, Phase: 12 * time.Second, CheckTimeout: 3 * time.Minute}
	case "", "smoke":
		if testing.Short() && v == "" {
			t.Skipf("chaos: skipped in -short mode; set %s=smoke or %s=full to run it", EnvMode, EnvMode)
		}
		m = Mode{Phase: 3 * time.Second, CheckTimeout: time.Minute}
	default:
		t.Fatalf("chaos: %s=%q: want full or smoke", EnvMode, v)
	}
	if v := os.Getenv(EnvPhase); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			t.Fatalf("chaos: %s=%q: want a duration of at least 1s", EnvPhase, v)
		}
		m.Phase = d
	}
	return m
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

// Verify runs the checks that follow every run, once the caller healed
// the faults: it stops the workload; the live nodes must converge to the same
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

var trackOnce sync.Once

// trackServerSources stats the cairn binary under test, or every source
// file it is built from, so that go test's result cache (which records
// the files a test opens or stats) is invalidated when the server
// changes: this package imports no server package, and the binary is
// built by a child go build the cache knows nothing of. It must run
// inside m.Run, where the test log is on; GetMode calls it.
func trackServerSources() {
	if p := os.Getenv(cluster.EnvBinary); p != "" {
		os.Stat(p)
		return
	}
	dir, err := os.Getwd()
	if err != nil {
		return
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return
		}
		dir = parent
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := d.Name()
		if d.IsDir() {
			if p != dir && (strings.HasPrefix(name, ".") || name == "tests" || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if (strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")) || name == "go.mod" || name == "go.sum" {
			os.Stat(p)
		}
		return nil
	})
}
