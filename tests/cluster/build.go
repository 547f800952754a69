package cluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// EnvBinary names the environment variable that, when set, points at a
// prebuilt cairn binary; the helper then builds nothing.
const EnvBinary = "CAIRN_BIN"

var (
	buildOnce sync.Once
	buildPath string
	buildDir  string
	buildErr  error
)

// Main runs the tests of m and then removes the binary built for them.
// Call it from TestMain: os.Exit(cluster.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	return code
}

// Binary returns the path of the cairn binary, building it on first use:
// go build -o <tempdir>/cairn ./cmd/cairn in the module root found with
// go env GOMOD. CAIRN_BIN overrides the build. A build failure fails t.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { buildPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("cluster: %v", buildErr)
	}
	return buildPath
}

func build() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		return fromEnv(p)
	}
	goBin, err := goCommand()
	if err != nil {
		return "", err
	}
	root, err := moduleRoot(goBin)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "cairn-test-bin-")
	if err != nil {
		return "", fmt.Errorf("build dir: %w", err)
	}
	buildDir = dir
	bin := filepath.Join(dir, "cairn")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/cairn")
	cmd.Dir = root
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/cairn in %s: %w\n%s", root, err, buf.String())
	}
	return bin, nil
}

func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("go command not found in PATH or GOROOT")
	}
	return p, nil
}

// fromEnv resolves CAIRN_BIN: an absolute path, a path relative to the
// test's directory, or one relative to the module root (as in
// CAIRN_BIN=./cairn go test ./tests/).
func fromEnv(p string) (string, error) {
	cands := []string{p}
	if !filepath.IsAbs(p) {
		if goBin, err := goCommand(); err == nil {
			if root, err := moduleRoot(goBin); err == nil {
				cands = append(cands, filepath.Join(root, p))
			}
		}
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return filepath.Abs(c)
		}
	}
	return "", fmt.Errorf("%s=%q: no such file (tried %v)", EnvBinary, p, cands)
}

func moduleRoot(goBin string) (string, error) {
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}
