// Package bench holds cairn's benchmarks.
//
// Its test file has Go benchmarks of the parts of the write and read paths
// that run in one process: the state machine applying batches of puts
// (store.Apply), the binary command codec, and store.Get. They run only
// with -bench:
//
//	go test -run '^$' -bench . -benchmem ./tests/bench/
//
// Whole-cluster figures come from elsewhere: tests/bench/load is the load
// generator behind `cairn bench`; tests/bench/etcdload (a module of its own)
// drives etcd with the same generator; and scripts/bench.sh starts a
// three-node cairn cluster and a three-member etcd cluster on 127.0.0.1 and
// compares them workload by workload (make bench).
package bench
