#!/usr/bin/env bash
# STOMP side by side: ferromq against RabbitMQ (its STOMP plugin) and ActiveMQ 5.17, the
# same load generator (bench/src/bin/stomp/) against all three, same machine, one run.
# Prints a table with the three figures, the ratios ferromq/RabbitMQ and ferromq/ActiveMQ,
# and each broker's CPU seconds and peak RSS; for the latency cases, the percentiles of
# the end-to-end delay at a fixed rate. See bench/README.md.
#
#   bench/stomp.sh                            # 3 runs of 10 s per case and broker, medians
#   RUNS=1 SECONDS_PER_RUN=5 bench/stomp.sh
#   CASES="persistent" BROKERS="ferromq rabbitmq" bench/stomp.sh
#   CASES="lat-transient lat-persistent" bench/stomp.sh   # latency at a fixed RATE only
#   CASES=sizes SIZES="16 65536" bench/stomp.sh            # 1 -> 1 transient at each size
#   CASES="connect idle" IDLE_CONNECTIONS=5000 bench/stomp.sh
#
# Everything it writes (the brokers' configuration, data and logs, raw results) goes
# under $BENCH_DIR (default bench/target-peers/stomp, ignored by git through a generated
# .gitignore). Every broker is stopped on exit, whatever the exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/bench/target-peers/stomp}
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
WARMUP=${WARMUP:-2}
# Unrecorded rounds of every case on every broker before the measured runs, each of
# WARMUP_ROUND_SECONDS: the JVM compiles ActiveMQ's hot paths during the first run
# (its first 10 s run was 5x slower than the next ones here), and every broker then
# starts the measured runs with its queues, subscriptions and buffers exercised alike.
WARMUP_ROUNDS=${WARMUP_ROUNDS:-1}
WARMUP_ROUND_SECONDS=${WARMUP_ROUND_SECONDS:-5}
# sizes: transient 1 -> 1 at each of SIZES; lat-<case>: <case> at a fixed RATE msg/s,
# with latency percentiles.
CASES=${CASES:-"transient persistent fanout fanin sizes lat-transient lat-persistent connect idle"}
RATE=${RATE:-10000}
BROKERS=${BROKERS:-"rabbitmq activemq ferromq"}
SIZE=${SIZE:-256}
SIZES=${SIZES:-"16 256 4096 65536"}
PREFETCH=${PREFETCH:-500}
ACK_EVERY=${ACK_EVERY:-100}
WINDOW=${WINDOW:-500}
FANOUT=${FANOUT:-10}
FANIN=${FANIN:-10}
# Concurrent CONNECT/DISCONNECT cycles in the connect case.
PARALLEL=${PARALLEL:-8}
# The idle case: connections held and their heart-beat period (s, both ways; also asked
# for in the connect case).
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-5000}
HEARTBEAT=${HEARTBEAT:-10}
# Extra flags for every load-generator run (e.g. "--ack client-individual --backlog 0").
STOMP_ARGS=${STOMP_ARGS:-}
# ActiveMQ's JVM: a heap and a broker memory limit large enough that producer flow
# control does not decide the result (PEERS.md: 4 GB heap with a 1 GB limit was stable).
AMQ_HEAP=${AMQ_HEAP:-4G}
AMQ_MEMORY_LIMIT=${AMQ_MEMORY_LIMIT:-1 gb}

# Ports: none of the brokers' defaults (61613, 5672, 4369, 25672), nor each other's.
RABBIT_PORT=${RABBIT_PORT:-61663}
RABBIT_DIST_PORT=${RABBIT_DIST_PORT:-25683}
EPMD_PORT=${EPMD_PORT:-24370}
AMQ_PORT=${AMQ_PORT:-61673}
FERROMQ_PORT=${FERROMQ_PORT:-61683}

SCRIPT=stomp.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
# shellcheck disable=SC2086 # CASES is a list
CASES=$(expand_sizes $CASES)

wants() { case " $BROKERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# --- Install ---------------------------------------------------------------------------
RABBIT_BIN=/usr/lib/rabbitmq/bin
AMQ_HOME=/usr/share/activemq
apt_install() { # package
    say "installing $1 (Debian package)"
    [ "$(id -u)" = 0 ] || die "$1 is missing; run as root or: sudo apt-get install -y $1"
    # Debian's postinst may start the system service; this script never uses it (see the
    # port checks below).
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$1" </dev/null >&2 \
        || die "apt-get install -y $1 failed"
}
if wants rabbitmq && [ ! -x "$RABBIT_BIN/rabbitmq-server" ]; then apt_install rabbitmq-server; fi
if wants activemq && [ ! -f "$AMQ_HOME/bin/activemq.jar" ]; then apt_install activemq; fi
for p in "$RABBIT_PORT" "$RABBIT_DIST_PORT" "$EPMD_PORT" "$AMQ_PORT" "$FERROMQ_PORT"; do
    port_open "$p" && die "port $p is already in use (set RABBIT_PORT, RABBIT_DIST_PORT, EPMD_PORT, AMQ_PORT, FERROMQ_PORT)"
done
if port_open 61613; then
    say "warning: something listens on 61613 (a system broker?); it shares the CPU with this benchmark"
fi

# --- Open files ------------------------------------------------------------------------
nofile_for_idle

# --- Build -----------------------------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${NO_BUILD:-}" ]; then
    say "building (release): the load generator and ferromq"
    (cd "$ROOT" && cargo build --release -p ferromq-bench --bin stomp >&2 && cargo build --release --bin ferromq >&2)
fi
[ -x "$TARGET/release/stomp" ] && [ -x "$TARGET/release/ferromq" ] \
    || die "missing $TARGET/release/stomp or $TARGET/release/ferromq (unset NO_BUILD)"

# --- Fresh state -----------------------------------------------------------------------
mkdir -p "$BENCH_DIR"
# Generated files only: keep them out of git without touching the repository's .gitignore.
case "$BENCH_DIR" in "$ROOT"/*) printf '*\n' >"$(dirname "$BENCH_DIR")/.gitignore" ;; esac
RDIR=$BENCH_DIR/rabbitmq
ADIR=$BENCH_DIR/activemq
FDIR=$BENCH_DIR/ferromq
rm -rf "$RDIR" "$ADIR" "$FDIR" "$BENCH_DIR/bin"
mkdir -p "$RDIR/home" "$RDIR/mnesia" "$RDIR/log" "$ADIR/conf" "$ADIR/data" "$ADIR/tmp" \
    "$FDIR/data" "$BENCH_DIR/bin"
# Copies, so that a build in the same target directory during the run changes nothing.
cp "$TARGET/release/stomp" "$TARGET/release/ferromq" "$BENCH_DIR/bin/"
LOADGEN=$BENCH_DIR/bin/stomp
FERROMQ=$BENCH_DIR/bin/ferromq
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$BENCH_DIR/results-$STAMP.txt

RABBIT_PID=
AMQ_PID=
FERROMQ_PID=
cleanup() {
    set +e
    stop_pid "$FERROMQ_PID"
    activemq_stop
    rabbitmq_stop
    # erl started an epmd daemon on our port; it outlives the node.
    if wants rabbitmq; then rabbitmq_epmd_kill; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- RabbitMQ --------------------------------------------------------------------------
# Defaults except: its own node, ports and files; no AMQP listener; one plugin, STOMP.
RABBIT_NODE=benchstomp@localhost
start_rabbitmq() {
    cat >"$RDIR/rabbitmq.conf" <<EOF
listeners.tcp = none
stomp.listeners.tcp.1 = 127.0.0.1:$RABBIT_PORT
loopback_users.guest = true
log.console = false
log.file.level = warning
EOF
    echo '[rabbitmq_stomp].' >"$RDIR/enabled_plugins"
    rabbitmq_start STOMP
}

# --- ActiveMQ --------------------------------------------------------------------------
# Its own configuration, with only a STOMP connector (lib.sh), and room for the idle
# connections (the connector's default maximumConnections is 1,000).
start_activemq() {
    activemq_start stomp "stomp://127.0.0.1:$AMQ_PORT?maximumConnections=$((IDLE_CONNECTIONS + 1000))"
}

# --- ferromq ---------------------------------------------------------------------------
# Defaults except: its own port and data directory, every other listener off.
start_ferromq() {
    say "starting ferromq STOMP on 127.0.0.1:$FERROMQ_PORT, data in $FDIR/data"
    FERROMQ_DATA_DIR=$FDIR/data \
        FERROMQ_LISTENERS__STOMP=127.0.0.1:$FERROMQ_PORT \
        FERROMQ_LISTENERS__STOMP_TLS="" \
        FERROMQ_LISTENERS__AMQP="" \
        FERROMQ_LISTENERS__AMQP_TLS="" \
        FERROMQ_LISTENERS__MQTT="" \
        FERROMQ_LISTENERS__MQTT_TLS="" \
        FERROMQ_LISTENERS__OPENWIRE="" \
        FERROMQ_LISTENERS__OPENWIRE_TLS="" \
        FERROMQ_LISTENERS__WS="" \
        FERROMQ_LISTENERS__WSS="" \
        FERROMQ_STOMP__CONNECTIONS_MAX=$((IDLE_CONNECTIONS + 1000)) \
        FERROMQ_LOG=warn \
        "$FERROMQ" serve >"$FDIR/ferromq.log" 2>&1 </dev/null &
    FERROMQ_PID=$!
    wait_port "$FERROMQ_PORT" 30 "$FERROMQ_PID" ferromq "$FDIR/ferromq.log"
}

if wants rabbitmq; then start_rabbitmq; fi
if wants activemq; then start_activemq; fi
if wants ferromq; then start_ferromq; fi

# The process whose CPU and RSS count: the Erlang VM (not its start script), the JVM,
# ferromq.
broker_pid() {
    case $1 in
    rabbitmq) cat "$RDIR/rabbit.pid" ;;
    activemq) echo "$AMQ_PID" ;;
    ferromq) echo "$FERROMQ_PID" ;;
    esac
}
broker_port() {
    case $1 in rabbitmq) echo "$RABBIT_PORT" ;; activemq) echo "$AMQ_PORT" ;; ferromq) echo "$FERROMQ_PORT" ;; esac
}
# The idle case measures RSS growth: each of its runs gets a freshly started broker, so
# that memory kept from earlier cases does not hide the connections' cost.
restart() { # broker
    case $1 in
    rabbitmq) rabbitmq_stop && start_rabbitmq ;;
    activemq) activemq_stop && start_activemq ;;
    ferromq) stop_pid "$FERROMQ_PID" && start_ferromq ;;
    esac
    sleep 1 # let it settle before its RSS is read
}
alive() {
    local pid
    pid=$(broker_pid "$1")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# --- Runs ------------------------------------------------------------------------------
run_one() { # broker case run seconds file
    local line rc=0 limit=$(($4 + WARMUP + 180)) mode=(--case "$2") size=$SIZE
    case $2 in
    lat-*) mode=(--case "${2#lat-}" --rate "$RATE") ;;
    size-*) mode=(--case transient) size=${2#size-} ;;
    esac
    # A run that hangs is cut off; set-up, drain and disconnects may take minutes at worst.
    [ "$2" = idle ] && limit=$((4 * HEARTBEAT + 300))
    # shellcheck disable=SC2086 # STOMP_ARGS is a list of flags
    line=$(timeout "$limit" "$LOADGEN" --port "$(broker_port "$1")" \
        --broker-pid "$(broker_pid "$1")" "${mode[@]}" --label "$1" \
        --seconds "$4" --warmup "$WARMUP" --size "$size" --prefetch "$PREFETCH" \
        --ack-every "$ACK_EVERY" --window "$WINDOW" --fanout "$FANOUT" --fanin "$FANIN" \
        --parallel "$PARALLEL" --connections "$IDLE_CONNECTIONS" --heartbeat "$HEARTBEAT" \
        $STOMP_ARGS 2>>"$BENCH_DIR/loadgen-stderr.log") || rc=$?
    record_run "$1" "$2" "$3" "$5" "$rc" "$line" "load generator"
}

{
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# ferromq $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?'), ActiveMQ $(dpkg-query -W -f='${Version}' activemq 2>/dev/null || echo '?')"
    echo "# cases: $CASES; brokers: $BROKERS; runs: $RUNS of $SECONDS_PER_RUN s (+$WARMUP s warm-up) after $WARMUP_ROUNDS warm-up round(s) of $WARMUP_ROUND_SECONDS s; size $SIZE; sizes $SIZES; prefetch $PREFETCH; ack every $ACK_EVERY; window $WINDOW; fan-out $FANOUT; fan-in $FANIN; rate $RATE; parallel $PARALLEL; idle $IDLE_CONNECTIONS connections, heart-beat $HEARTBEAT s; extra: ${STOMP_ARGS:-none}"
} >"$RESULTS"
WARMUP_LOG=$BENCH_DIR/warmup-$STAMP.txt
run_rounds

# --- Table -----------------------------------------------------------------------------
ratio() { awk -v f="$1" -v r="$2" 'BEGIN { if (r > 0) printf "%.2fx", f / r; else print "n/a" }'; }
describe() {
    case $1 in
    transient) echo "transient, 1 -> 1" ;; persistent) echo "persistent + receipts, 1 -> 1" ;;
    fanout) echo "topic, 1 -> $FANOUT" ;; fanin) echo "queue, $FANIN -> 1" ;;
    lat-transient) echo "transient, 1 -> 1" ;; lat-persistent) echo "persistent + receipts" ;;
    *) echo "$1" ;;
    esac
}
notes() { # broker case: everything that is not a clean run
    lines "$1" "$2" | awk -v b="$1" -v c="$2" '
        { lost = dup = cor = unr = failed = dropped = 0; err = "none"; ex = 0; run = "?"
          for (i = 1; i <= NF; i++) { split($i, kv, "=")
            if (kv[1] == "run") run = kv[2]
            if (kv[1] == "lost") lost = kv[2]; if (kv[1] == "duplicates") dup = kv[2]
            if (kv[1] == "corrupt") cor = kv[2]; if (kv[1] == "unreceipted") unr = kv[2]
            if (kv[1] == "failed") failed = kv[2]; if (kv[1] == "dropped") dropped = kv[2]
            if (kv[1] == "exit") ex = kv[2]; if (kv[1] == "error") err = substr($0, index($0, "error=") + 6) }
          if (lost + dup + cor + unr + failed + dropped > 0 || ex != 0 || err != "none")
            printf "%s %s run %s: lost=%s duplicates=%s corrupt=%s unreceipted=%s failed=%s dropped=%s exit=%s error=%s\n", b, c, run, lost, dup, cor, unr, failed, dropped, ex, err }'
}
RATE_CASES=$(for c in $CASES; do case $c in lat-*) printf '%s ' "$c" ;; esac; done)
FLOOD_CASES=$(for c in $CASES; do case $c in lat-* | size-* | connect | idle) ;; *) printf '%s ' "$c" ;; esac; done)
{
    if [ -n "$FLOOD_CASES" ]; then
        echo
        echo "STOMP 1.2, ${SIZE}-byte messages, ack:client every $ACK_EVERY, prefetch $PREFETCH, receipt window $WINDOW;"
        echo "median of $RUNS run(s) of $SECONDS_PER_RUN s; messages delivered per second (fan-out: total over all subscribers)"
        echo "cpu: broker CPU seconds in the window; us/msg: broker CPU microseconds per delivered message;"
        echo "rss: broker peak RSS in the run, MiB; each for RabbitMQ, ActiveMQ, ferromq"
        echo
        printf '%-30s %10s %10s %10s %9s %9s | %17s | %17s | %14s\n' case RabbitMQ ActiveMQ ferromq "f/R" "f/A" "cpu R A f" "us/msg R A f" "rss R A f"
        for c in $FLOOD_CASES; do
            r=$(med rabbitmq "$c" msgs_per_s)
            a=$(med activemq "$c" msgs_per_s)
            f=$(med ferromq "$c" msgs_per_s)
            printf '%-30s %10.0f %10.0f %10.0f %9s %9s | %5.2f %5.2f %5.2f | %5.1f %5.1f %5.1f | %4s %4s %4s\n' "$(describe "$c")" \
                "$r" "$a" "$f" "$(ratio "$f" "$r")" "$(ratio "$f" "$a")" \
                "$(med rabbitmq "$c" broker_cpu_s)" "$(med activemq "$c" broker_cpu_s)" "$(med ferromq "$c" broker_cpu_s)" \
                "$(us_per_msg rabbitmq "$c")" "$(us_per_msg activemq "$c")" "$(us_per_msg ferromq "$c")" \
                "$(mib "$(med rabbitmq "$c" broker_rss_peak_kib)")" "$(mib "$(med activemq "$c" broker_rss_peak_kib)")" \
                "$(mib "$(med ferromq "$c" broker_rss_peak_kib)")"
        done
    fi
    NAMES=$(for b in $BROKERS; do case $b in rabbitmq) printf 'rabbitmq:RabbitMQ ' ;; activemq) printf 'activemq:ActiveMQ ' ;; *) printf '%s:%s ' "$b" "$b" ;; esac; done)
    # shellcheck disable=SC2086 # NAMES is a list
    sizes_table "$RESULTS" "Message sizes: transient, 1 -> 1, ack:client every $ACK_EVERY, prefetch $PREFETCH; median of $RUNS run(s) of $SECONDS_PER_RUN s; messages delivered per second (body MiB/s)" $NAMES
    if [ -n "$RATE_CASES" ]; then
        echo
        echo "Latency at a fixed $RATE msg/s, 1 -> 1, ${SIZE}-byte messages, ack:client every $ACK_EVERY, prefetch $PREFETCH,"
        echo "receipt window $WINDOW: from the time each message was due to be sent to its arrival, microseconds;"
        echo "median over $RUNS run(s) of $SECONDS_PER_RUN s of each percentile; lost: sum over runs"
        echo
        latency_header
        for c in $RATE_CASES; do
            latency_rows "$RESULTS" "$c" "$(describe "$c")" rabbitmq:RabbitMQ activemq:ActiveMQ ferromq:ferromq
            echo "  p99 ferromq / RabbitMQ: $(median_ratio "$RESULTS" ferromq rabbitmq lat_p99_us "$c"); ferromq / ActiveMQ: $(median_ratio "$RESULTS" ferromq activemq lat_p99_us "$c")"
        done
    fi
    # shellcheck disable=SC2086 # BROKERS is a list
    connect_table $BROKERS
    # shellcheck disable=SC2086
    idle_table $BROKERS
    echo
    echo "core use (medians of CPU seconds in the window; $(nproc) cores): load generator / everything else on the machine"
    for c in $CASES; do
        printf '  %-10s' "$c"
        for b in $BROKERS; do
            printf '  %s runs %5.2f / %5.2f' "$b" "$(med "$b" "$c" loadgen_cpu_s)" "$(med "$b" "$c" other_cpu_s)"
        done
        echo
    done
    echo
    bad=$(for c in $CASES; do for b in $BROKERS; do notes "$b" "$c"; done; done)
    if [ -n "$bad" ]; then
        echo "not clean:"
        echo "$bad"
    else
        echo "every run delivered every message exactly once; every receipt arrived; every connection opened, stayed up and closed cleanly"
    fi
    warmup_report
    echo "raw lines: $RESULTS"
} | tee -a "$RESULTS"
