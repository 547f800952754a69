// Package cluster starts real cairn server processes on 127.0.0.1 for
// system and chaos tests, and gives tests a small HTTP helper to talk to
// them.
//
// The cairn binary is built once per test binary from the module root
// (go build ./cmd/cairn), or taken from the CAIRN_BIN environment
// variable when it is set. A package that uses this helper should call
// Main from its TestMain so the built binary is removed afterwards:
//
//	func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }
//
// Start runs N nodes, each with its own data directory under t.TempDir
// and its own log file (stdout and stderr of the process). Node 1 is
// started with --bootstrap and the others --join it, or, with
// WithInitialCluster, every node gets the same --initial-cluster. All
// processes are killed in t.Cleanup, also when the test fails or panics;
// on failure the last lines of every node's log are written with t.Log.
// Children also get SIGKILL from the kernel if the test binary dies
// (Linux).
//
// Every wait polls with a deadline; nothing sleeps blindly. Methods that
// take a testing.TB call t.Fatal when their deadline passes and must run
// on the test goroutine; process control methods (Kill, Stop, Pause,
// Resume, Restart) return errors instead and are safe to call from any
// goroutine, for example from a chaos nemesis.
//
// Suites that set their nodes up their own way (tests/chaos puts a proxy
// in front of every node's Raft port) build on the same pieces: Process
// runs, signals and waits for one server process and reads its log,
// KillAll kills many at once, FreePort hands out ports, Poll waits, and
// AgreedLeader decides from the nodes' statuses whether they agree on a
// leader.
package cluster
