// Package tests holds cairn's multi-process system tests: each test starts
// real cairn server processes on 127.0.0.1 with the tests/cluster helper
// and talks to them over the public HTTP API only.
//
// Run them with go test ./tests/ (add -short for smaller load). Set
// CAIRN_BIN to test a prebuilt binary, and CAIRN_TEST_LOGS=1 to see the
// tail of every node's log even when the tests pass.
package tests
