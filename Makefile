# cairn — common tasks. `make run` starts a local three-node cluster;
# `make test` runs every test (what CI runs).

GO      ?= go
BIN     ?= bin/cairn
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build run test fmt-check vet unit fuzz clean bench bench-go chaos

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/cairn

run: build
	./$(BIN) dev

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Every test, with the race detector.
test: fmt-check vet
	$(GO) test -race -count=1 -timeout 20m ./...

# Each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeAndApply$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzValidateKey$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME) ./httpapi/

# cairn against etcd on 127.0.0.1, side by side (installs Debian's
# etcd-server when missing and run as root). BENCH_SHORT=1 is the few-second
# smoke run CI uses.
BENCH_SHORT ?= 0
bench:
	BENCH_SHORT=$(BENCH_SHORT) scripts/bench.sh

# Every fault of the chaos suite with long phases (about ten minutes);
# make test runs its smoke version (baseline, leader kill, minority
# partition, negative control).
chaos:
	CAIRN_CHAOS=full $(GO) test -race -count=1 -timeout 30m -v ./tests/chaos/

# The Go micro-benchmarks: state machine apply, command codec, read path.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./tests/bench/

clean:
	rm -rf bin cairn-data
