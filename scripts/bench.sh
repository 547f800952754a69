#!/usr/bin/env bash
# scripts/bench.sh — cairn and etcd side by side on this machine.
#
# Builds cairn, etcdload and benchtool; starts a three-node cairn cluster and
# a three-member etcd cluster on 127.0.0.1 (data in a temp dir); runs the same
# workloads against both with the same load generator (tests/bench/load),
# workers spread over all members; prints a Markdown table with the ratios
# and keeps the raw JSON results. Then, in full mode, loads 1,000,000 keys
# into cairn and reports each node's memory and how long a restarted node
# takes to serve again. Every process it starts is stopped on exit, Ctrl-C
# included. Only 127.0.0.1 is ever a target; every load is bounded in time.
#
# Usage: scripts/bench.sh            (or: make bench)
#        BENCH_SHORT=1 scripts/bench.sh   a smoke run of a few seconds per workload
#
# Environment:
#   BENCH_SHORT=1        one 3s round per workload, no memory/restart check
#   BENCH_DURATION=10s   time of each measured run (default 10s, 3s when short)
#   BENCH_ROUNDS=3       rounds per workload (default 3, 1 when short): each
#                        round runs cairn and etcd back to back, in turn
#                        first; the table gives medians and each round's ratio
#   BENCH_OUT=DIR        where the JSON results, the table and the logs go
#                        (default bench-results/<date>-<time>)
#   BENCH_PORT_BASE=N    ports N+1..N+3 cairn HTTP, N+101.. cairn Raft,
#                        N+201.. etcd clients, N+301.. etcd peers (default 18100)
#   BENCH_MEMORY=0|1     run the 1M-key memory/restart check (default 1, 0 when short)
#   BENCH_MEMORY_KEYS=N  keys for that check (default 1000000)
#   BENCH_INSTALL=0      never install etcd; by default a missing etcd is
#                        installed with apt-get (Debian's etcd-server) when
#                        running as root with apt-get available
#   BENCH_ETCD=PATH      the etcd binary (default: etcd from PATH)
#   BENCH_KEEP=1         keep the temp dir with the clusters' data
#   BENCH_ONLY=REGEX     run only the workloads whose name matches (e.g. put)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

SHORT=${BENCH_SHORT:-0}
if [[ $SHORT == 1 ]]; then
	DURATION=${BENCH_DURATION:-3s}
	ROUNDS=${BENCH_ROUNDS:-1}
	MEMORY=${BENCH_MEMORY:-0}
else
	DURATION=${BENCH_DURATION:-10s}
	ROUNDS=${BENCH_ROUNDS:-3}
	MEMORY=${BENCH_MEMORY:-1}
fi
MEMORY_KEYS=${BENCH_MEMORY_KEYS:-1000000}
BASE=${BENCH_PORT_BASE:-18100}
OUT=${BENCH_OUT:-bench-results/$(date +%Y%m%d-%H%M%S)}
VALUE_SIZE=256
KEYS=10000

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || die "BENCH_ROUNDS must be 1 to 99, not $ROUNDS"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# Results of an earlier run would be counted as rounds of this one.
compgen -G "$OUT/*.json" >/dev/null && die "$OUT already holds results; give BENCH_OUT an empty directory"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench.XXXXXX")
BIN=$WORK/bin
mkdir -p "$BIN"

# --- processes: every one started is recorded and stopped on exit --------
declare -A PIDS=() # name -> pid
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	for name in "${!PIDS[@]}"; do
		kill -TERM "${PIDS[$name]}" 2>/dev/null || true
	done
	for name in "${!PIDS[@]}"; do
		local pid=${PIDS[$name]} i
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- build -----------------------------------------------------------------
log "building cairn, etcdload and benchtool"
go build -o "$BIN/cairn" ./cmd/cairn
go build -o "$BIN/benchtool" ./tests/bench/benchtool
(cd tests/bench/etcdload && go build -o "$BIN/etcdload" .)

# --- etcd ------------------------------------------------------------------
HAVE_ETCD=1
ETCD=${BENCH_ETCD:-etcd}
if ! command -v "$ETCD" >/dev/null; then
	if [[ ${BENCH_INSTALL:-auto} != 0 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		log "etcd is missing: installing Debian's etcd-server"
		(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >"$OUT/apt.log" 2>&1 ||
			{ apt-get update -qq >>"$OUT/apt.log" 2>&1 &&
				DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >>"$OUT/apt.log" 2>&1; }) || true
		# The package's service must not hold the default ports meanwhile;
		# it is not ours to stop, and ours use other ports anyway.
	fi
	command -v "$ETCD" >/dev/null || HAVE_ETCD=0
fi
if [[ $HAVE_ETCD == 0 ]]; then
	printf '\n*** etcd is not available (install it with: apt-get install -y etcd-server).\n*** Running cairn ALONE: the table has no etcd figures and no ratios.\n\n' >&2
else
	ETCD_VERSION=$("$ETCD" --version 2>/dev/null | sed -n 's/^etcd Version: //p')
	[[ $(uname -m) == aarch64 ]] && export ETCD_UNSUPPORTED_ARCH=arm64
fi

# --- ports -----------------------------------------------------------------
CAIRN_EPS=() CAIRN_RAFT=() ETCD_EPS=() ETCD_PEERS=()
for i in 1 2 3; do
	CAIRN_EPS+=("127.0.0.1:$((BASE + i))")
	CAIRN_RAFT+=("127.0.0.1:$((BASE + 100 + i))")
	ETCD_EPS+=("127.0.0.1:$((BASE + 200 + i))")
	ETCD_PEERS+=("127.0.0.1:$((BASE + 300 + i))")
done
for a in "${CAIRN_EPS[@]}" "${CAIRN_RAFT[@]}" "${ETCD_EPS[@]}" "${ETCD_PEERS[@]}"; do
	port_busy "${a##*:}" && die "port ${a##*:} is in use; pick other ports with BENCH_PORT_BASE"
done
join() { local IFS=,; echo "$*"; }
CAIRN_ENDPOINTS=$(join "${CAIRN_EPS[@]}")
ETCD_ENDPOINTS=$(join "${ETCD_EPS[@]}")

# --- clusters ----------------------------------------------------------------
CAIRN_INITIAL=n1=${CAIRN_RAFT[0]},n2=${CAIRN_RAFT[1]},n3=${CAIRN_RAFT[2]}
start_cairn() { # start_cairn I
	local i=$1
	"$BIN/cairn" server --id "n$i" --data-dir "$WORK/cairn/n$i" \
		--http-addr "${CAIRN_EPS[i - 1]}" --raft-addr "${CAIRN_RAFT[i - 1]}" \
		--initial-cluster "$CAIRN_INITIAL" --log-level warn >>"$OUT/cairn-n$i.log" 2>&1 &
	PIDS[cairn$i]=$!
}
readyz_urls() { local a; for a in "$@"; do printf 'http://%s/readyz ' "$a"; done; }

log "starting cairn on ${CAIRN_ENDPOINTS}"
for i in 1 2 3; do start_cairn "$i"; done
# shellcheck disable=SC2046
"$BIN/benchtool" wait -timeout 60s $(readyz_urls "${CAIRN_EPS[@]}") >/dev/null
"$BIN/benchtool" members -n 3 -timeout 60s "${CAIRN_EPS[0]}"

if [[ $HAVE_ETCD == 1 ]]; then
	ETCD_INITIAL=e1=http://${ETCD_PEERS[0]},e2=http://${ETCD_PEERS[1]},e3=http://${ETCD_PEERS[2]}
	log "starting etcd $ETCD_VERSION on ${ETCD_ENDPOINTS}"
	for i in 1 2 3; do
		"$ETCD" --name "e$i" --data-dir "$WORK/etcd/e$i" \
			--listen-client-urls "http://${ETCD_EPS[i - 1]}" --advertise-client-urls "http://${ETCD_EPS[i - 1]}" \
			--listen-peer-urls "http://${ETCD_PEERS[i - 1]}" --initial-advertise-peer-urls "http://${ETCD_PEERS[i - 1]}" \
			--initial-cluster "$ETCD_INITIAL" --initial-cluster-state new --initial-cluster-token cairn-bench \
			--logger=zap --log-level=error >>"$OUT/etcd-e$i.log" 2>&1 &
		PIDS[etcd$i]=$!
	done
	health=()
	for a in "${ETCD_EPS[@]}"; do health+=("http://$a/health"); done
	"$BIN/benchtool" wait -timeout 60s "${health[@]}" >/dev/null
fi

# --- workloads ---------------------------------------------------------------
# name workload clients [extra flags]; the same flags go to both systems.
CASES=(
	"1-put-c1 put 1"
	"2-put-c64 put 64"
	"3-put-c256 put 256"
	"4-get-c64 get 64 --prefill"
	"5-stale-c64 stale 64"
)
common=(--duration "$DURATION" -o json)
# etcdload's default is one etcd client (gRPC connection) per member, as
# cairn bench's workers share one keep-alive transport: on a small machine
# that gave etcd its best figures (more connections cost it throughput).

# cpu_seconds PID... sums the CPU time (user and system) the processes have
# used so far; sampled around each measured run for the servers' CPU per
# operation.
TICKS=$(getconf CLK_TCK)
cpu_seconds() {
	local p t=0
	for p in "$@"; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	awk -v t="$t" -v hz="$TICKS" 'BEGIN {printf "%.3f", t / hz}'
}
# measure NAME TARGET DRIVER-ARGS...: one measured run, its result in
# NAME.TARGET.json and the servers' CPU seconds during it in NAME.TARGET.cpu.
# A --prefill is done first in a run of its own, so that it is not counted.
measure() {
	local name=$1 target=$2
	shift 2
	local -a args=("$@") pids=()
	local i
	if [[ $target == cairn ]]; then pids=("${PIDS[cairn1]}" "${PIDS[cairn2]}" "${PIDS[cairn3]}"); fi
	if [[ $target == etcd ]]; then pids=("${PIDS[etcd1]}" "${PIDS[etcd2]}" "${PIDS[etcd3]}"); fi
	for i in "${!args[@]}"; do
		if [[ ${args[i]} == --prefill ]]; then
			unset "args[i]"
			"$@" --count 1 -o json >/dev/null
		fi
	done
	local c0 c1
	c0=$(cpu_seconds "${pids[@]}")
	"${args[@]}" "${common[@]}" >"$OUT/$name.$target.json"
	c1=$(cpu_seconds "${pids[@]}")
	awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.3f\n", b - a}' >"$OUT/$name.$target.cpu"
}

log "workloads: ${ROUNDS} round(s) of ${DURATION} each, ${VALUE_SIZE} B values over ${KEYS} keys, clients spread over all members"
for case in "${CASES[@]}"; do
	read -r name workload clients extra <<<"$case"
	[[ -n ${BENCH_ONLY:-} && ! $name =~ $BENCH_ONLY ]] && continue
	for ((round = 1; round <= ROUNDS; round++)); do
		# In turn first, so that a machine getting busier or quieter over
		# a round favours neither.
		order=(cairn etcd)
		((round % 2 == 0)) && order=(etcd cairn)
		for target in "${order[@]}"; do
			case $target in
			cairn)
				log "$name round $round/$ROUNDS: cairn"
				# shellcheck disable=SC2086
				measure "$name.r$round" cairn "$BIN/cairn" bench --endpoints "$CAIRN_ENDPOINTS" --workload "$workload" \
					--concurrency "$clients" --value-size "$VALUE_SIZE" --keys "$KEYS" $extra
				;;
			etcd)
				[[ $HAVE_ETCD == 1 ]] || continue
				log "$name round $round/$ROUNDS: etcd"
				# shellcheck disable=SC2086
				measure "$name.r$round" etcd "$BIN/etcdload" --endpoints "$ETCD_ENDPOINTS" --workload "$workload" \
					--concurrency "$clients" --value-size "$VALUE_SIZE" --keys "$KEYS" $extra
				;;
			esac
		done
	done
done

if compgen -G "$OUT/*.cairn.json" >/dev/null; then
{
	echo "cairn $(git rev-parse --short HEAD 2>/dev/null || echo '?') vs etcd ${ETCD_VERSION:-(not available)}, three members each on 127.0.0.1 ($(nproc) CPUs, shared with the load generator)."
	echo "${ROUNDS} round(s) of ${DURATION} per workload and system (medians; throughput and latency ratios are the median of the rounds' own, CPU per operation is over all rounds), closed loop, ${VALUE_SIZE} B values over ${KEYS} keys (pre-filled for reads), clients spread over all members."
	echo "Ratios are cairn/etcd: above 1 means cairn has more throughput, or more latency. Command: $( [[ $SHORT == 1 ]] && echo 'BENCH_SHORT=1 ')scripts/bench.sh"
	if [[ $HAVE_ETCD == 0 ]]; then
		echo
		echo "**etcd was not available, so cairn ran alone: no etcd figures, no ratios.**"
	fi
	echo
	"$BIN/benchtool" report "$OUT"
} >"$OUT/table.md"
echo
cat "$OUT/table.md"
echo
fi

# --- memory and restart --------------------------------------------------------
if [[ $MEMORY == 1 ]]; then
	if [[ $HAVE_ETCD == 1 ]]; then
		log "stopping etcd to give cairn the machine"
		for i in 1 2 3; do kill -TERM "${PIDS[etcd$i]}" 2>/dev/null || true; done
		for i in 1 2 3; do wait "${PIDS[etcd$i]}" 2>/dev/null || true; unset "PIDS[etcd$i]"; done
	fi
	# VmRSS, split into anonymous memory (the heap) and mapped file pages
	# (bbolt's mmap, which the kernel can drop).
	rss() {
		awk '/^VmRSS:/ {t=$2} /^RssAnon:/ {a=$2} /^RssFile:/ {f=$2}
			END {printf "%.0f MiB (anon %.0f MiB, file-backed %.0f MiB)", t/1024, a/1024, f/1024}' "/proc/$1/status" 2>/dev/null || echo "?"
	}
	{
		echo
		echo "Memory and restart: $MEMORY_KEYS keys of $VALUE_SIZE B loaded into cairn through POST /v1/txn (128 puts each)."
		echo
		echo -n "- load: "
		"$BIN/benchtool" fill -endpoints "$CAIRN_ENDPOINTS" -keys "$MEMORY_KEYS" -value-size "$VALUE_SIZE" -batch 128 -c 16 -timeout 10m
		for i in 1 2 3; do
			echo "- n$i: RSS $(rss "${PIDS[cairn$i]}"), data dir $(du -sh "$WORK/cairn/n$i" | cut -f1)"
		done
		# Restart a follower: stop it cleanly, start it again, time until it
		# serves (/readyz answers 200).
		f=
		for i in 1 2 3; do
			if "$BIN/benchtool" get "http://${CAIRN_EPS[i - 1]}/v1/status" | grep -q '"state":"Follower"'; then
				f=$i
				break
			fi
		done
		if [[ -n $f ]]; then
			t0=$(date +%s.%N)
			kill -TERM "${PIDS[cairn$f]}"
			wait "${PIDS[cairn$f]}" 2>/dev/null || true
			t1=$(date +%s.%N)
			start_cairn "$f"
			ready=$("$BIN/benchtool" wait -timeout 300s "http://${CAIRN_EPS[f - 1]}/readyz")
			echo "- restart of follower n$f: stopped in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')s, serving again (/readyz 200) ${ready}s after its start; RSS then $(rss "${PIDS[cairn$f]}")"
		else
			echo "- restart: no follower found"
		fi
	} >"$OUT/memory.md" # a group, not a pipe: start_cairn must update PIDS here
	cat "$OUT/memory.md" >>"$OUT/table.md"
	cat "$OUT/memory.md"
fi

log "results in $OUT (table.md, *.json, logs)"
