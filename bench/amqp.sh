#!/usr/bin/env bash
# AMQP 0-9-1 side by side: ferromq against RabbitMQ, same load generator
# (bench/src/bin/amqp.rs), same machine, one run. Prints a table with both figures and
# the ratio ferromq/RabbitMQ. See bench/README.md.
#
#   bench/amqp.sh                        # 3 runs of 10 s per case and broker, medians
#   RUNS=1 SECONDS_PER_RUN=5 bench/amqp.sh
#   CASES="persistent" bench/amqp.sh
#   CASES="lat-transient lat-persistent" bench/amqp.sh   # latency at a fixed RATE only
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
# lat-<case>: <case> at a fixed RATE msg/s, with latency percentiles.
CASES=${CASES:-"transient persistent fanout lat-transient lat-persistent"}
RATE=${RATE:-10000}
SIZE=${SIZE:-256}
PREFETCH=${PREFETCH:-500}
WINDOW=${WINDOW:-500}
FANOUT=${FANOUT:-10}
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

# --- Build -----------------------------------------------------------------------------
if [ -z "${NO_BUILD:-}" ]; then
    say "building (release): the load generator and ferromq"
    (cd "$ROOT" && cargo build --release -p ferromq-bench --bin amqp >&2 && cargo build --release --bin ferromq >&2)
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LOADGEN=$TARGET/release/amqp
FERROMQ=$TARGET/release/ferromq
[ -x "$LOADGEN" ] && [ -x "$FERROMQ" ] || die "missing $LOADGEN or $FERROMQ (unset NO_BUILD)"

# --- Fresh state -----------------------------------------------------------------------
mkdir -p "$BENCH_DIR"
# Generated files only: keep them out of git without touching the repository's .gitignore.
case "$BENCH_DIR" in "$ROOT"/*) printf '*\n' >"$(dirname "$BENCH_DIR")/.gitignore" ;; esac
RDIR=$BENCH_DIR/rabbitmq
FDIR=$BENCH_DIR/ferromq
rm -rf "$RDIR" "$FDIR"
mkdir -p "$RDIR/home" "$RDIR/mnesia" "$RDIR/log" "$FDIR/data"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$BENCH_DIR/results-$STAMP.txt

RABBIT_PID=
FERROMQ_PID=
cleanup() {
    set +e
    stop_pid "$FERROMQ_PID"
    if [ -n "$RABBIT_PID" ] && kill -0 "$RABBIT_PID" 2>/dev/null; then
        # The start script turns SIGTERM into a clean `rabbitmqctl stop`.
        kill -TERM "$RABBIT_PID"
        wait "$RABBIT_PID" 2>/dev/null
    fi
    # The Erlang VM itself, should the start script have died before it.
    if [ -s "$RDIR/rabbit.pid" ]; then
        local beam
        beam=$(cat "$RDIR/rabbit.pid")
        if kill -0 "$beam" 2>/dev/null; then
            kill -TERM "$beam"
            sleep 2
            kill -KILL "$beam" 2>/dev/null
        fi
    fi
    # erl started an epmd daemon on our port; it outlives the node.
    ERL_EPMD_PORT=$EPMD_PORT epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- RabbitMQ --------------------------------------------------------------------------
cat >"$RDIR/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$RABBIT_PORT
loopback_users.guest = true
log.console = false
log.file.level = warning
EOF
: >"$RDIR/rabbitmq-env.conf" # instead of /etc/rabbitmq/rabbitmq-env.conf
echo '[].' >"$RDIR/enabled_plugins" # no plugins (no management)
export_rabbit_env() {
    export HOME=$RDIR/home # the Erlang cookie, shared by the server and rabbitmqctl
    export RABBITMQ_NODENAME=bench@localhost
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT=$RABBIT_PORT
    export RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT
    export ERL_EPMD_PORT=$EPMD_PORT
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_CONF_ENV_FILE=$RDIR/rabbitmq-env.conf
    export RABBITMQ_CONFIG_FILE=$RDIR/rabbitmq.conf
    export RABBITMQ_ADVANCED_CONFIG_FILE=$RDIR/advanced.config
    export RABBITMQ_ENABLED_PLUGINS_FILE=$RDIR/enabled_plugins
    export RABBITMQ_MNESIA_BASE=$RDIR/mnesia
    export RABBITMQ_LOG_BASE=$RDIR/log
    export RABBITMQ_PID_FILE=$RDIR/rabbit.pid
}
say "starting RabbitMQ ($(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?')) on 127.0.0.1:$RABBIT_PORT, files in $RDIR"
(export_rabbit_env && exec "$RABBIT_BIN/rabbitmq-server" >"$RDIR/log/stdout.log" 2>&1 </dev/null) &
RABBIT_PID=$!
wait_port "$RABBIT_PORT" 120 "$RABBIT_PID" RabbitMQ "$RDIR/log/stdout.log"
(export_rabbit_env && "$RABBIT_BIN/rabbitmqctl" await_startup --timeout 60 >/dev/null 2>&1) \
    || say "warning: rabbitmqctl await_startup failed; the AMQP port is open, going on"

# --- ferromq ---------------------------------------------------------------------------
say "starting ferromq on 127.0.0.1:$FERROMQ_PORT, data in $FDIR/data"
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
    FERROMQ_LOG=warn \
    "$FERROMQ" serve >"$FDIR/ferromq.log" 2>&1 </dev/null &
FERROMQ_PID=$!
wait_port "$FERROMQ_PORT" 30 "$FERROMQ_PID" ferromq "$FDIR/ferromq.log"

# --- Runs ------------------------------------------------------------------------------
uri() { echo "amqp://guest:guest@127.0.0.1:$1/%2f"; }
run_one() { # broker port case run
    local line rc=0 mode=(--case "$3")
    case $3 in lat-*) mode=(--case "${3#lat-}" --rate "$RATE") ;; esac
    # A run that hangs is cut off; the drain alone may take 4 x 5 s.
    line=$(timeout $((SECONDS_PER_RUN + WARMUP + 90)) "$LOADGEN" --uri "$(uri "$2")" "${mode[@]}" \
        --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" --size "$SIZE" --prefetch "$PREFETCH" \
        --window "$WINDOW" --fanout "$FANOUT" --label "$1" $AMQP_ARGS 2>>"$BENCH_DIR/loadgen-stderr.log") || rc=$?
    [ -n "$line" ] || line="label=$1 case=$3 msgs_per_s=0 error=\"load generator exit $rc, no result (see $BENCH_DIR/loadgen-stderr.log)\""
    line=$(rename_case "$3" <<<"$line")
    echo "run=$4 exit=$rc $line" | tee -a "$RESULTS" >&2
}

{
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# ferromq $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?')"
    echo "# cases: $CASES; runs: $RUNS of $SECONDS_PER_RUN s (+$WARMUP s warm-up); size $SIZE; rate $RATE"
} >>"$RESULTS"
say "cases: $CASES; $RUNS run(s) of $SECONDS_PER_RUN s (+$WARMUP s warm-up) per case and broker; results in $RESULTS"
for ((run = 1; run <= RUNS; run++)); do
    for c in $CASES; do
        # Alternate which broker goes first, so neither always runs on a warmer machine.
        if ((run % 2)); then order="rabbitmq ferromq"; else order="ferromq rabbitmq"; fi
        for b in $order; do
            if [ "$b" = rabbitmq ]; then port=$RABBIT_PORT; else port=$FERROMQ_PORT; fi
            kill -0 "$RABBIT_PID" 2>/dev/null || die "RabbitMQ is gone (see $RDIR/log)"
            kill -0 "$FERROMQ_PID" 2>/dev/null || die "ferromq is gone (see $FDIR/ferromq.log)"
            run_one "$b" "$port" "$c" "$run"
        done
    done
done

# --- Table -----------------------------------------------------------------------------
notes() { # broker case: everything that is not a clean run
    grep " label=$1 case=$2 " "$RESULTS" | awk -v b="$1" -v c="$2" '
        { lost = dup = cor = 0; err = "none"; ex = 0; run = "?"
          for (i = 1; i <= NF; i++) { split($i, kv, "=")
            if (kv[1] == "run") run = kv[2]
            if (kv[1] == "lost") lost = kv[2]; if (kv[1] == "duplicates") dup = kv[2]
            if (kv[1] == "corrupt") cor = kv[2]
            if (kv[1] == "exit") ex = kv[2]; if (kv[1] == "error") err = substr($0, index($0, "error=") + 6) }
          if (lost + dup + cor > 0 || ex != 0 || err != "none")
            printf "%s %s run %s: lost=%s duplicates=%s corrupt=%s exit=%s error=%s; ", b, c, run, lost, dup, cor, ex, err }'
}
RATE_CASES=$(for c in $CASES; do case $c in lat-*) printf '%s ' "$c" ;; esac; done)
FLOOD_CASES=$(for c in $CASES; do case $c in lat-*) ;; *) printf '%s ' "$c" ;; esac; done)
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
    echo
    bad=""
    for c in $CASES; do bad+=$(notes rabbitmq "$c")$(notes ferromq "$c"); done
    if [ -n "$bad" ]; then echo "not clean: $bad"; else echo "every run delivered every message exactly once"; fi
    echo "raw lines: $RESULTS"
} | tee -a "$RESULTS"
