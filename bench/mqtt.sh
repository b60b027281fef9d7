#!/usr/bin/env bash
# MQTT side by side: ferromq against Mosquitto, same load generator
# (bench/src/bin/mqtt/), same machine, one run. Prints a table with both figures, the
# ratio ferromq/Mosquitto, each broker's CPU seconds and peak RSS, the RSS per idle
# connection, and latency percentiles at a fixed rate. The 1 -> 1 cases also run against
# a loopback relay that only forwards bytes (bench/src/bin/relay.rs), as a reference for
# what the machine can do. See bench/README.md.
#
#   bench/mqtt.sh                              # 3 runs of 10 s per case and broker, medians
#   RUNS=1 SECONDS_PER_RUN=5 bench/mqtt.sh
#   CASES="qos1 fanout1" bench/mqtt.sh
#   CASES=idle IDLE_CONNECTIONS=50000 bench/mqtt.sh
#   CASES="lat0 lat1" RATE=10000 bench/mqtt.sh   # latency at a fixed rate only
#   CASES=sizes SIZES="16 65536" bench/mqtt.sh   # QoS 0 1 -> 1 at each size
#
# Everything it writes (Mosquitto's config and log, ferromq's data, raw results) goes
# under $BENCH_DIR (default bench/target-peers/mqtt, ignored by git through a generated
# .gitignore). Both brokers are stopped on exit, whatever the exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/bench/target-peers/mqtt}
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
WARMUP=${WARMUP:-2}
# sizes: qos0 1 -> 1 at each of SIZES; lat0, lat1: qos0, qos1 at a fixed RATE msg/s,
# with latency percentiles.
CASES=${CASES:-"qos0 qos1 fanout0 fanout1 fanin0 fanin1 sizes connect idle lat0 lat1"}
RATE=${RATE:-10000}
# 1: the 1 -> 1 cases (qos0 qos1 lat0 lat1) also run against the loopback relay.
RELAY=${RELAY:-1}
# 1: Mosquitto sets TCP_NODELAY on its sockets (set_tcp_nodelay; its default is off).
MOSQUITTO_NODELAY=${MOSQUITTO_NODELAY:-0}
SIZE=${SIZE:-256}
SIZES=${SIZES:-"16 256 4096 65536"}
FANOUT=${FANOUT:-10}
FANIN=${FANIN:-10}
# Messages each broker sends a client before waiting for PUBACKs (both brokers alike:
# ferromq's inflight_out_max default, Mosquitto's max_inflight_messages).
INFLIGHT=${INFLIGHT:-128}
# Concurrent CONNECT/CONNACK/DISCONNECT cycles in the connect case.
PARALLEL=${PARALLEL:-8}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-50000}
KEEP_ALIVE=${KEEP_ALIVE:-10}
# Extra flags for every load-generator run (e.g. "--backlog 0").
MQTT_ARGS=${MQTT_ARGS:-}
# CPU lists for taskset, e.g. BROKER_CPUS=0 LOADGEN_CPUS=1; empty: not pinned (the
# load generator reports everyone's CPU seconds instead).
BROKER_CPUS=${BROKER_CPUS:-}
LOADGEN_CPUS=${LOADGEN_CPUS:-}

# Ports: neither broker's default (1883), nor each other's.
MOSQUITTO_PORT=${MOSQUITTO_PORT:-1893}
FERROMQ_PORT=${FERROMQ_PORT:-1903}
RELAY_PORT=${RELAY_PORT:-1913}

SCRIPT=mqtt.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
# shellcheck disable=SC2086 # CASES is a list
CASES=$(expand_sizes $CASES)

pinned() { # cpus command...: becomes the command (exec), under taskset when cpus is set
    local cpus=$1
    shift
    if [ -n "$cpus" ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

# --- Install ---------------------------------------------------------------------------
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    say "installing mosquitto (Debian package)"
    [ "$(id -u)" = 0 ] || die "mosquitto is missing; run as root or: sudo apt-get install -y mosquitto"
    DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto </dev/null >&2 \
        || die "apt-get install -y mosquitto failed"
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
for p in "$MOSQUITTO_PORT" "$FERROMQ_PORT" "$RELAY_PORT"; do
    port_open "$p" && die "port $p is already in use (set MOSQUITTO_PORT, FERROMQ_PORT, RELAY_PORT)"
done
if port_open 1883; then
    say "warning: something listens on 1883 (a system Mosquitto?); it shares the CPU with this benchmark"
fi

# --- Open files ------------------------------------------------------------------------
# Each broker holds one descriptor per connection, and so does the load generator (it
# raises its own soft limit to the hard one); see lib.sh.
nofile_for_idle

# --- Build -----------------------------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${NO_BUILD:-}" ]; then
    say "building (release): the load generator and ferromq"
    (cd "$ROOT" && cargo build --release -p ferromq-bench --bin mqtt --bin relay >&2 && cargo build --release --bin ferromq >&2)
fi
LOADGEN=$TARGET/release/mqtt
FERROMQ=$TARGET/release/ferromq
RELAY_BIN=$TARGET/release/relay
[ -x "$LOADGEN" ] && [ -x "$FERROMQ" ] || die "missing $LOADGEN or $FERROMQ (unset NO_BUILD)"
[ "$RELAY" != 1 ] || [ -x "$RELAY_BIN" ] || die "missing $RELAY_BIN (unset NO_BUILD, or RELAY=0)"

# --- Fresh state -----------------------------------------------------------------------
mkdir -p "$BENCH_DIR"
# Generated files only: keep them out of git without touching the repository's .gitignore.
case "$BENCH_DIR" in "$ROOT"/*) printf '*\n' >"$(dirname "$BENCH_DIR")/.gitignore" ;; esac
MDIR=$BENCH_DIR/mosquitto
FDIR=$BENCH_DIR/ferromq
rm -rf "$MDIR" "$FDIR"
mkdir -p "$MDIR" "$FDIR/data"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$BENCH_DIR/results-$STAMP.txt

MOSQUITTO_PID=
FERROMQ_PID=
RELAY_PID=
cleanup() {
    set +e
    stop_pid "$FERROMQ_PID"
    stop_pid "$MOSQUITTO_PID"
    stop_pid "$RELAY_PID"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Mosquitto -------------------------------------------------------------------------
# Defaults except: its own port, files and user; no persistence file (ferromq keeps
# clean sessions in memory too); queues and in-flight windows that do not drop or
# throttle QoS 1 under load (PEERS.md: the default max_queued_messages of 1000 drops).
cat >"$MDIR/mosquitto.conf" <<EOF
# Generated by bench/mqtt.sh
user $(id -un)
pid_file $MDIR/mosquitto.pid
persistence false
log_dest file $MDIR/mosquitto.log
log_type error
log_type warning
connection_messages false
max_queued_messages 1000000
max_inflight_messages $INFLIGHT
listener $MOSQUITTO_PORT 127.0.0.1
allow_anonymous true
EOF
[ "$MOSQUITTO_NODELAY" != 1 ] || echo "set_tcp_nodelay true" >>"$MDIR/mosquitto.conf"
start_mosquitto() {
    pinned "$BROKER_CPUS" "$MOSQUITTO" -c "$MDIR/mosquitto.conf" >>"$MDIR/stdout.log" 2>&1 </dev/null &
    MOSQUITTO_PID=$!
    wait_port "$MOSQUITTO_PORT" 30 "$MOSQUITTO_PID" Mosquitto "$MDIR/stdout.log"
}
say "starting Mosquitto ($("$MOSQUITTO" -h 2>/dev/null | sed -n 's/^mosquitto version //p')) on 127.0.0.1:$MOSQUITTO_PORT, files in $MDIR"
start_mosquitto

# --- ferromq ---------------------------------------------------------------------------
# Defaults except: its own port and data directory, the other listeners off, room for
# the idle connections, the same in-flight window as Mosquitto's.
start_ferromq() {
    rm -rf "$FDIR/data"
    mkdir -p "$FDIR/data"
    FERROMQ_DATA_DIR=$FDIR/data \
        FERROMQ_LISTENERS__MQTT=127.0.0.1:$FERROMQ_PORT \
        FERROMQ_LISTENERS__STOMP="" \
        FERROMQ_LISTENERS__STOMP_TLS="" \
        FERROMQ_LISTENERS__AMQP="" \
        FERROMQ_LISTENERS__AMQP_TLS="" \
        FERROMQ_LISTENERS__MQTT_TLS="" \
        FERROMQ_LISTENERS__OPENWIRE="" \
        FERROMQ_LISTENERS__OPENWIRE_TLS="" \
        FERROMQ_LISTENERS__WS="" \
        FERROMQ_LISTENERS__WSS="" \
        FERROMQ_MQTT__CONNECTIONS_MAX=$((IDLE_CONNECTIONS + 1000)) \
        FERROMQ_MQTT__INFLIGHT_OUT_MAX=$INFLIGHT \
        FERROMQ_LOG=warn \
        pinned "$BROKER_CPUS" "$FERROMQ" serve >>"$FDIR/ferromq.log" 2>&1 </dev/null &
    FERROMQ_PID=$!
    wait_port "$FERROMQ_PORT" 30 "$FERROMQ_PID" ferromq "$FDIR/ferromq.log"
}
say "starting ferromq on 127.0.0.1:$FERROMQ_PORT, data in $FDIR/data"
start_ferromq

# --- Loopback relay --------------------------------------------------------------------
# Not a broker: forwards the producer's PUBLISH packets to the consumer (relay.rs).
start_relay() {
    pinned "$BROKER_CPUS" "$RELAY_BIN" --listen "127.0.0.1:$RELAY_PORT" >>"$BENCH_DIR/relay.log" 2>&1 </dev/null &
    RELAY_PID=$!
    wait_port "$RELAY_PORT" 30 "$RELAY_PID" relay "$BENCH_DIR/relay.log"
}
relay_case() { [ "$RELAY" = 1 ] && case $1 in qos0 | qos1 | lat0 | lat1) true ;; *) false ;; esac; }

# Every run gets a freshly started broker, so that its CPU seconds and peak RSS are
# its own: memory a broker kept from an earlier case (malloc rarely returns it) would
# count again, and the idle case, which measures RSS growth, would see new
# connections reuse it and hide their cost.
restart() { # broker
    if [ "$1" = mosquitto ]; then
        stop_pid "$MOSQUITTO_PID"
        start_mosquitto
    elif [ "$1" = relay ]; then
        stop_pid "$RELAY_PID"
        start_relay
    else
        stop_pid "$FERROMQ_PID"
        start_ferromq
    fi
    sleep 1 # let it settle before its RSS is read
}

# --- Runs ------------------------------------------------------------------------------
run_one() { # broker port pid case run
    local line rc=0 limit=$((SECONDS_PER_RUN + WARMUP + 120)) mode=(--case "$4") size=$SIZE
    [ "$4" = idle ] && limit=$((4 * KEEP_ALIVE + 300))
    case $4 in
    lat0 | lat1) mode=(--case "qos${4#lat}" --rate "$RATE") ;;
    size-*) mode=(--case qos0) size=${4#size-} ;;
    esac
    line=$(pinned "$LOADGEN_CPUS" timeout "$limit" "$LOADGEN" --port "$2" --broker-pid "$3" \
        "${mode[@]}" --label "$1" --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" --size "$size" \
        --fanout "$FANOUT" --fanin "$FANIN" --parallel "$PARALLEL" \
        --connections "$IDLE_CONNECTIONS" --keep-alive "$KEEP_ALIVE" \
        $MQTT_ARGS 2>>"$BENCH_DIR/loadgen-stderr.log") || rc=$?
    [ -n "$line" ] || line="label=$1 case=$4 msgs_per_s=0 error=\"load generator exit $rc, no result (see $BENCH_DIR/loadgen-stderr.log)\""
    line=$(rename_case "$4" <<<"$line")
    echo "run=$5 exit=$rc $line" | tee -a "$RESULTS" >&2
}

{
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# ferromq $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), $("$MOSQUITTO" -h 2>/dev/null | head -n1)"
    echo "# cases: $CASES; runs: $RUNS of $SECONDS_PER_RUN s (+$WARMUP s warm-up); size $SIZE; sizes $SIZES; fan-out $FANOUT; fan-in $FANIN; inflight $INFLIGHT; rate $RATE; relay $RELAY; mosquitto nodelay $MOSQUITTO_NODELAY"
    echo "# broker cpus: ${BROKER_CPUS:-any}; load generator cpus: ${LOADGEN_CPUS:-any}"
} >"$RESULTS"
say "cases: $CASES; $RUNS run(s) per case and broker; results in $RESULTS"
for ((run = 1; run <= RUNS; run++)); do
    for c in $CASES; do
        # Alternate which broker goes first, so neither always runs on a warmer machine.
        if ((run % 2)); then order="mosquitto ferromq"; else order="ferromq mosquitto"; fi
        if relay_case "$c"; then
            if ((run % 2)); then order="$order relay"; else order="relay $order"; fi
        fi
        for b in $order; do
            kill -0 "$MOSQUITTO_PID" 2>/dev/null || die "Mosquitto is gone (see $MDIR/mosquitto.log)"
            kill -0 "$FERROMQ_PID" 2>/dev/null || die "ferromq is gone (see $FDIR/ferromq.log)"
            restart "$b"
            if [ "$b" = mosquitto ]; then
                run_one "$b" "$MOSQUITTO_PORT" "$MOSQUITTO_PID" "$c" "$run"
            elif [ "$b" = relay ]; then
                run_one "$b" "$RELAY_PORT" "$RELAY_PID" "$c" "$run"
                stop_pid "$RELAY_PID"
            else
                run_one "$b" "$FERROMQ_PORT" "$FERROMQ_PID" "$c" "$run"
            fi
        done
    done
done

# --- Table -----------------------------------------------------------------------------
lost() { grep " label=$1 case=$2 " "$RESULTS" | field lost | awk '{ s += $1 } END { print s + 0 }'; } # broker case
rate_field() { case $1 in connect) echo connects_per_s ;; *) echo msgs_per_s ;; esac; }
describe() {
    case $1 in
    qos0) echo "QoS 0, 1 -> 1" ;; qos1) echo "QoS 1, 1 -> 1" ;;
    fanout0) echo "QoS 0, 1 -> $FANOUT" ;; fanout1) echo "QoS 1, 1 -> $FANOUT" ;;
    fanin0) echo "QoS 0, $FANIN -> 1" ;; fanin1) echo "QoS 1, $FANIN -> 1" ;;
    connect) echo "connects/s ($PARALLEL parallel)" ;;
    lat0) echo "QoS 0, 1 -> 1" ;; lat1) echo "QoS 1, 1 -> 1" ;;
    esac
}
notes() { # broker case: everything that is not a clean run
    { grep " label=$1 case=$2 " "$RESULTS" || true; } | awk -v b="$1" -v c="$2" '
        { lost = dup = cor = failed = dropped = 0; err = "none"; ex = 0; run = "?"
          for (i = 1; i <= NF; i++) { split($i, kv, "=")
            if (kv[1] == "run") run = kv[2]
            if (kv[1] == "lost") lost = kv[2]; if (kv[1] == "duplicates") dup = kv[2]
            if (kv[1] == "corrupt") cor = kv[2]; if (kv[1] == "failed") failed = kv[2]
            if (kv[1] == "dropped") dropped = kv[2]
            if (kv[1] == "exit") ex = kv[2]; if (kv[1] == "error") err = substr($0, index($0, "error=") + 6) }
          if (lost + dup + cor + failed + dropped > 0 || ex != 0 || err != "none")
            printf "%s %s run %s: lost=%s duplicates=%s corrupt=%s failed=%s dropped=%s exit=%s error=%s\n", b, c, run, lost, dup, cor, failed, dropped, ex, err }'
}
FLOW_CASES=$(for c in $CASES; do case $c in idle | lat0 | lat1 | size-*) ;; *) printf '%s ' "$c" ;; esac; done)
RATE_CASES=$(for c in $CASES; do case $c in lat0 | lat1) printf '%s ' "$c" ;; esac; done)
# The relay's figure and ferromq's share of it, for the cases that ran against it.
relay_cols() { # case
    if grep -q " label=relay case=$1 " "$RESULTS"; then
        printf '%11.0f %7s' "$(med relay "$1" msgs_per_s)" "$(median_ratio "$RESULTS" ferromq relay msgs_per_s "$1")"
    else
        printf '%11s %7s' - -
    fi
}
{
    if [ -n "$FLOW_CASES" ]; then
        echo
        echo "MQTT 3.1.1, ${SIZE}-byte messages, rumqttc clients, broker in-flight window $INFLIGHT;"
        echo "median of $RUNS run(s) of $SECONDS_PER_RUN s; messages delivered per second (fan-out: total over all consumers)"
        echo "cpu: broker CPU seconds in the window; rss: broker peak RSS in the run (freshly started), MiB; lost: sum over runs"
        echo
        printf '%-24s %11s %11s %7s | %6s %6s | %6s %6s | %6s %6s | %11s %7s\n' case Mosquitto ferromq ratio "cpu M" "cpu f" "rss M" "rss f" "lost M" "lost f" relay f/relay
    fi
    for c in $FLOW_CASES; do
        rf=$(rate_field "$c")
        m=$(med mosquitto "$c" "$rf")
        f=$(med ferromq "$c" "$rf")
        ratio=$(awk -v f="$f" -v m="$m" 'BEGIN { if (m > 0) printf "%.2fx", f / m; else print "n/a" }')
        printf '%-24s %11.0f %11.0f %7s | %6.2f %6.2f | %6s %6s | %6s %6s | %s\n' "$(describe "$c")" "$m" "$f" "$ratio" \
            "$(med mosquitto "$c" broker_cpu_s)" "$(med ferromq "$c" broker_cpu_s)" \
            "$(mib "$(med mosquitto "$c" broker_rss_peak_kib)")" "$(mib "$(med ferromq "$c" broker_rss_peak_kib)")" \
            "$(lost mosquitto "$c")" "$(lost ferromq "$c")" "$(relay_cols "$c")"
    done
    sizes_table "$RESULTS" "Message sizes: QoS 0, 1 -> 1; median of $RUNS run(s) of $SECONDS_PER_RUN s; messages delivered per second (body MiB/s)" \
        mosquitto:Mosquitto ferromq:ferromq
    if [ -n "$RATE_CASES" ]; then
        echo
        echo "Latency at a fixed $RATE msg/s, ${SIZE}-byte messages: from the time each message was due to be"
        echo "published to its delivery, microseconds; median over $RUNS run(s) of $SECONDS_PER_RUN s of each percentile;"
        echo "lost: sum over runs; relay: the loopback relay that only forwards bytes (not a broker)"
        echo
        latency_header
        for c in $RATE_CASES; do
            latency_rows "$RESULTS" "$c" "$(describe "$c")" mosquitto:Mosquitto ferromq:ferromq relay:relay
            printf '  p99 ferromq / Mosquitto: %s' "$(median_ratio "$RESULTS" ferromq mosquitto lat_p99_us "$c")"
            if grep -q " label=relay case=$c " "$RESULTS"; then
                printf '; ferromq / relay: %s' "$(median_ratio "$RESULTS" ferromq relay lat_p99_us "$c")"
            fi
            echo
        done
    fi
    idle_table mosquitto ferromq
    echo
    echo "core use (medians of CPU seconds in the window; $(nproc) cores): load generator / everything else on the machine"
    for c in $CASES; do
        printf '  %-8s mosquitto runs %5.2f / %5.2f   ferromq runs %5.2f / %5.2f' "$c" \
            "$(med mosquitto "$c" loadgen_cpu_s)" "$(med mosquitto "$c" other_cpu_s)" \
            "$(med ferromq "$c" loadgen_cpu_s)" "$(med ferromq "$c" other_cpu_s)"
        if grep -q " label=relay case=$c " "$RESULTS"; then
            printf '   relay runs %5.2f / %5.2f (relay itself %5.2f)' "$(med relay "$c" loadgen_cpu_s)" \
                "$(med relay "$c" other_cpu_s)" "$(med relay "$c" broker_cpu_s)"
        fi
        echo
    done
    echo
    bad=$(for c in $CASES; do notes mosquitto "$c"; notes ferromq "$c"; notes relay "$c"; done)
    if [ -n "$bad" ]; then
        echo "not clean:"
        echo "$bad"
    else
        echo "every run delivered every message exactly once; every idle connection stayed up"
    fi
    echo "raw lines: $RESULTS"
} | tee -a "$RESULTS"
