#!/usr/bin/env bash
# AMQP 0-9-1 side by side: ferromq against RabbitMQ, same load generator
# (bench/src/bin/amqp.rs), same machine, one run. Prints a table with both figures and
# the ratio ferromq/RabbitMQ. See bench/README.md.
#
#   bench/amqp.sh                        # 3 runs of 10 s per case and broker, medians
#   RUNS=1 SECONDS_PER_RUN=5 bench/amqp.sh
#   CASES="persistent" bench/amqp.sh
#   CASES=sizes SIZES="16 65536" bench/amqp.sh         # 1 -> 1 transient at each size
#   CASES="lat-transient lat-persistent" bench/amqp.sh   # latency at a fixed RATE only
#   CASES="connect idle" IDLE_CONNECTIONS=5000 bench/amqp.sh
#
# Everything it writes (RabbitMQ's data and logs, ferromq's data, raw results) goes under
# $BENCH_DIR (default bench/target-peers/amqp, ignored by git through a generated
# .gitignore). Both brokers are stopped on exit, whatever the exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/bench/target-peers/amqp}
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
WARMUP=${WARMUP:-2}
# sizes: transient 1 -> 1 at each of SIZES; lat-<case>: <case> at a fixed RATE msg/s,
# with latency percentiles.
CASES=${CASES:-"transient persistent fanout sizes lat-transient lat-persistent connect idle"}
RATE=${RATE:-10000}
SIZE=${SIZE:-256}
SIZES=${SIZES:-"16 256 4096 65536"}
PREFETCH=${PREFETCH:-500}
WINDOW=${WINDOW:-500}
FANOUT=${FANOUT:-10}
# Concurrent open/close cycles in the connect case.
PARALLEL=${PARALLEL:-8}
# The idle case: connections held, their heartbeat (s), channels each connection opens
# (also in the connect case).
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-5000}
HEARTBEAT=${HEARTBEAT:-10}
CHANNELS=${CHANNELS:-1}
# Extra flags for every load-generator run (e.g. "--pipeline 4 --backlog 0").
AMQP_ARGS=${AMQP_ARGS:-}

# Ports: neither broker's defaults (5672, 4369, 25672), nor each other's.
RABBIT_PORT=${RABBIT_PORT:-5682}
RABBIT_DIST_PORT=${RABBIT_DIST_PORT:-25682}
EPMD_PORT=${EPMD_PORT:-24369}
FERROMQ_PORT=${FERROMQ_PORT:-5692}

SCRIPT=amqp.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
# shellcheck disable=SC2086 # CASES is a list
CASES=$(expand_sizes $CASES)

# --- Install ---------------------------------------------------------------------------
RABBIT_BIN=/usr/lib/rabbitmq/bin
if [ ! -x "$RABBIT_BIN/rabbitmq-server" ]; then
    say "installing rabbitmq-server (Debian package)"
    [ "$(id -u)" = 0 ] || die "rabbitmq-server is missing; run as root or: sudo apt-get install -y rabbitmq-server"
    # Debian's postinst starts the system service unless a policy-rc.d forbids it; this
    # script never uses that service (it would only share the CPU: see the check below).
    DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server </dev/null >&2 \
        || die "apt-get install -y rabbitmq-server failed"
fi
for p in "$RABBIT_PORT" "$RABBIT_DIST_PORT" "$EPMD_PORT" "$FERROMQ_PORT"; do
    port_open "$p" && die "port $p is already in use (set RABBIT_PORT, RABBIT_DIST_PORT, EPMD_PORT, FERROMQ_PORT)"
done
if port_open 5672; then
    say "warning: something listens on 5672 (a system RabbitMQ?); it shares the CPU with this benchmark"
fi

# --- Open files ------------------------------------------------------------------------
nofile_for_idle

# --- Build -----------------------------------------------------------------------------
if [ -z "${NO_BUILD:-}" ]; then
    say "building (release): the load generator and ferromq"
    (cd "$ROOT" && cargo build --release -p ferromq-bench --bin amqp >&2 && cargo build --release --bin ferromq >&2)
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[ -x "$TARGET/release/amqp" ] && [ -x "$TARGET/release/ferromq" ] \
    || die "missing $TARGET/release/amqp or $TARGET/release/ferromq (unset NO_BUILD)"

# --- Fresh state -----------------------------------------------------------------------
mkdir -p "$BENCH_DIR"
# Generated files only: keep them out of git without touching the repository's .gitignore.
case "$BENCH_DIR" in "$ROOT"/*) printf '*\n' >"$(dirname "$BENCH_DIR")/.gitignore" ;; esac
RDIR=$BENCH_DIR/rabbitmq
FDIR=$BENCH_DIR/ferromq
rm -rf "$RDIR" "$FDIR" "$BENCH_DIR/bin"
mkdir -p "$RDIR/home" "$RDIR/mnesia" "$RDIR/log" "$FDIR/data" "$BENCH_DIR/bin"
# Copies, so that a build in the same target directory during the run (the idle case
# restarts ferromq) changes nothing.
cp "$TARGET/release/amqp" "$TARGET/release/ferromq" "$BENCH_DIR/bin/"
LOADGEN=$BENCH_DIR/bin/amqp
FERROMQ=$BENCH_DIR/bin/ferromq
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$BENCH_DIR/results-$STAMP.txt

RABBIT_PID=
FERROMQ_PID=
cleanup() {
    set +e
    stop_pid "$FERROMQ_PID"
    rabbitmq_stop
    # erl started an epmd daemon on our port; it outlives the node.
    rabbitmq_epmd_kill
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- RabbitMQ --------------------------------------------------------------------------
# Defaults except: its own node, ports and files; no plugins (no management).
RABBIT_NODE=bench@localhost
cat >"$RDIR/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$RABBIT_PORT
loopback_users.guest = true
log.console = false
log.file.level = warning
EOF
echo '[].' >"$RDIR/enabled_plugins"
rabbitmq_start AMQP

# --- ferromq ---------------------------------------------------------------------------
# Defaults except: its own port and data directory, the other listeners off, room for
# the idle connections.
start_ferromq() {
    say "starting ferromq on 127.0.0.1:$FERROMQ_PORT, data in $FDIR/data"
    rm -rf "$FDIR/data"
    mkdir -p "$FDIR/data"
    FERROMQ_DATA_DIR=$FDIR/data \
        FERROMQ_LISTENERS__AMQP=127.0.0.1:$FERROMQ_PORT \
        FERROMQ_LISTENERS__STOMP="" \
        FERROMQ_LISTENERS__STOMP_TLS="" \
        FERROMQ_LISTENERS__AMQP_TLS="" \
        FERROMQ_LISTENERS__MQTT="" \
        FERROMQ_LISTENERS__MQTT_TLS="" \
        FERROMQ_LISTENERS__OPENWIRE="" \
        FERROMQ_LISTENERS__OPENWIRE_TLS="" \
        FERROMQ_LISTENERS__WS="" \
        FERROMQ_LISTENERS__WSS="" \
        FERROMQ_AMQP__CONNECTIONS_MAX=$((IDLE_CONNECTIONS + 1000)) \
        FERROMQ_LOG=warn \
        "$FERROMQ" serve >>"$FDIR/ferromq.log" 2>&1 </dev/null &
    FERROMQ_PID=$!
    wait_port "$FERROMQ_PORT" 30 "$FERROMQ_PID" ferromq "$FDIR/ferromq.log"
}
start_ferromq

# The process whose CPU and RSS count: the Erlang VM (not its start script), ferromq.
broker_pid() { if [ "$1" = rabbitmq ]; then cat "$RDIR/rabbit.pid"; else echo "$FERROMQ_PID"; fi; }
# The idle case measures RSS growth: each of its runs gets a freshly started broker, so
# that memory kept from earlier cases does not hide the connections' cost.
restart() { # broker
    if [ "$1" = rabbitmq ]; then
        rabbitmq_stop
        rabbitmq_start AMQP
    else
        stop_pid "$FERROMQ_PID"
        start_ferromq
    fi
    sleep 1 # let it settle before its RSS is read
}

# --- Runs ------------------------------------------------------------------------------
uri() { echo "amqp://guest:guest@127.0.0.1:$1/%2f"; }
run_one() { # broker port case run
    local line rc=0 limit=$((SECONDS_PER_RUN + WARMUP + 90)) mode=(--case "$3") size=$SIZE
    case $3 in
    lat-*) mode=(--case "${3#lat-}" --rate "$RATE") ;;
    size-*) mode=(--case transient) size=${3#size-} ;;
    esac
    # A run that hangs is cut off; the drain alone may take 4 x 5 s.
    [ "$3" = idle ] && limit=$((4 * HEARTBEAT + 300))
    # shellcheck disable=SC2086 # AMQP_ARGS is a list of flags
    line=$(timeout "$limit" "$LOADGEN" --uri "$(uri "$2")" "${mode[@]}" \
        --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" --size "$size" --prefetch "$PREFETCH" \
        --window "$WINDOW" --fanout "$FANOUT" --label "$1" --broker-pid "$(broker_pid "$1")" \
        --parallel "$PARALLEL" --connections "$IDLE_CONNECTIONS" --heartbeat "$HEARTBEAT" \
        --channels "$CHANNELS" $AMQP_ARGS 2>>"$BENCH_DIR/loadgen-stderr.log") || rc=$?
    [ -n "$line" ] || line="label=$1 case=$3 msgs_per_s=0 error=\"load generator exit $rc, no result (see $BENCH_DIR/loadgen-stderr.log)\""
    line=$(rename_case "$3" <<<"$line")
    echo "run=$4 exit=$rc $line" | tee -a "$RESULTS" >&2
}

{
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# ferromq $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?')"
    echo "# cases: $CASES; runs: $RUNS of $SECONDS_PER_RUN s (+$WARMUP s warm-up); size $SIZE; sizes $SIZES; rate $RATE; parallel $PARALLEL; idle $IDLE_CONNECTIONS connections, heartbeat $HEARTBEAT s, $CHANNELS channel(s) each"
} >"$RESULTS"
say "cases: $CASES; $RUNS run(s) of $SECONDS_PER_RUN s (+$WARMUP s warm-up) per case and broker; results in $RESULTS"
for ((run = 1; run <= RUNS; run++)); do
    for c in $CASES; do
        # Alternate which broker goes first, so neither always runs on a warmer machine.
        if ((run % 2)); then order="rabbitmq ferromq"; else order="ferromq rabbitmq"; fi
        for b in $order; do
            if [ "$b" = rabbitmq ]; then port=$RABBIT_PORT; else port=$FERROMQ_PORT; fi
            kill -0 "$RABBIT_PID" 2>/dev/null || die "RabbitMQ is gone (see $RDIR/log)"
            kill -0 "$FERROMQ_PID" 2>/dev/null || die "ferromq is gone (see $FDIR/ferromq.log)"
            [ "$c" != idle ] || restart "$b"
            run_one "$b" "$port" "$c" "$run"
        done
    done
done

# --- Table -----------------------------------------------------------------------------
notes() { # broker case: everything that is not a clean run
    grep " label=$1 case=$2 " "$RESULTS" | awk -v b="$1" -v c="$2" '
        { lost = dup = cor = failed = dropped = 0; err = "none"; ex = 0; run = "?"
          for (i = 1; i <= NF; i++) { split($i, kv, "=")
            if (kv[1] == "run") run = kv[2]
            if (kv[1] == "lost") lost = kv[2]; if (kv[1] == "duplicates") dup = kv[2]
            if (kv[1] == "corrupt") cor = kv[2]
            if (kv[1] == "failed") failed = kv[2]; if (kv[1] == "dropped") dropped = kv[2]
            if (kv[1] == "exit") ex = kv[2]; if (kv[1] == "error") err = substr($0, index($0, "error=") + 6) }
          if (lost + dup + cor + failed + dropped > 0 || ex != 0 || err != "none")
            printf "%s %s run %s: lost=%s duplicates=%s corrupt=%s failed=%s dropped=%s exit=%s error=%s; ", b, c, run, lost, dup, cor, failed, dropped, ex, err }'
}
RATE_CASES=$(for c in $CASES; do case $c in lat-*) printf '%s ' "$c" ;; esac; done)
FLOOD_CASES=$(for c in $CASES; do case $c in lat-* | size-* | connect | idle) ;; *) printf '%s ' "$c" ;; esac; done)
{
    if [ -n "$FLOOD_CASES" ]; then
        echo
        echo "AMQP 0-9-1, ${SIZE}-byte messages, prefetch $PREFETCH, confirm window $WINDOW, fan-out $FANOUT;"
        echo "median of $RUNS run(s) of $SECONDS_PER_RUN s; messages delivered per second (fan-out: total over all queues)"
        echo
        printf '%-11s %14s %14s %10s\n' case RabbitMQ ferromq ratio
    fi
    for c in $FLOOD_CASES; do
        r=$(grep " label=rabbitmq case=$c " "$RESULTS" | field msgs_per_s | median)
        f=$(grep " label=ferromq case=$c " "$RESULTS" | field msgs_per_s | median)
        ratio=$(awk -v f="$f" -v r="$r" 'BEGIN { if (r > 0) printf "%.2fx", f / r; else print "n/a" }')
        printf '%-11s %14.0f %14.0f %10s\n' "$c" "$r" "$f" "$ratio"
    done
    sizes_table "$RESULTS" "Message sizes: transient, 1 -> 1, prefetch $PREFETCH; median of $RUNS run(s) of $SECONDS_PER_RUN s; messages delivered per second (body MiB/s)" \
        rabbitmq:RabbitMQ ferromq:ferromq
    if [ -n "$RATE_CASES" ]; then
        echo
        echo "Latency at a fixed $RATE msg/s, 1 -> 1, ${SIZE}-byte messages, prefetch $PREFETCH: from the time each"
        echo "message was due to be published to its delivery, microseconds; median over $RUNS run(s) of $SECONDS_PER_RUN s"
        echo "of each percentile; lost: sum over runs"
        echo
        latency_header
        for c in $RATE_CASES; do
            latency_rows "$RESULTS" "$c" "$c" rabbitmq:RabbitMQ ferromq:ferromq
            echo "  p99 ferromq / RabbitMQ: $(median_ratio "$RESULTS" ferromq rabbitmq lat_p99_us "$c")"
        done
    fi
    connect_table rabbitmq ferromq
    idle_table rabbitmq ferromq
    echo
    bad=""
    for c in $CASES; do bad+=$(notes rabbitmq "$c")$(notes ferromq "$c"); done
    if [ -n "$bad" ]; then echo "not clean: $bad"; else echo "every run delivered every message exactly once; every connection opened, stayed up and closed cleanly"; fi
    echo "raw lines: $RESULTS"
} | tee -a "$RESULTS"
