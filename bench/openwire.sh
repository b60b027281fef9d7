#!/usr/bin/env bash
# OpenWire (JMS) side by side: ferromq against ActiveMQ 5.17 (Debian's `activemq`), the same
# JMS load program (bench/openwire/JmsLoad.java, the ActiveMQ client from
# libactivemq-java) against both, same machine, one run. Prints tables: messages/s for
# both and the ratio ferromq/ActiveMQ with each broker's CPU and peak RSS; throughput at
# each message size; latency percentiles at a fixed rate; connections per second; broker
# RSS per idle connection. See bench/README.md.
#
#   bench/openwire.sh                        # 3 runs of 10 s per case and broker, medians
#   RUNS=1 SECONDS_PER_RUN=5 bench/openwire.sh
#   CASES="persistent" bench/openwire.sh
#   CASES=sizes SIZES="16 65536" bench/openwire.sh
#   CASES="lat-transient lat-persistent" RATE=5000 bench/openwire.sh
#   CASES="connect idle" IDLE_CONNECTIONS=5000 bench/openwire.sh
#
# Everything it writes goes under $BENCH_DIR (default bench/target-peers/openwire, ignored
# by git through a generated .gitignore). Both brokers are stopped on exit, whatever the exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/bench/target-peers/openwire}
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
WARMUP=${WARMUP:-2}
# Unrecorded rounds of every case but idle on both brokers before the measured runs, each
# of WARMUP_ROUND_SECONDS: the JVM compiles ActiveMQ's hot paths during its first runs.
WARMUP_ROUNDS=${WARMUP_ROUNDS:-1}
WARMUP_ROUND_SECONDS=${WARMUP_ROUND_SECONDS:-5}
# sizes: transient 1 -> 1 at each of SIZES; lat-<case>: <case> at a fixed RATE msg/s.
CASES=${CASES:-"transient persistent fanout fanin sizes lat-transient lat-persistent connect idle"}
BROKERS=${BROKERS:-"activemq ferromq"}
SIZE=${SIZE:-256}
SIZES=${SIZES:-"16 256 4096 65536"}
RATE=${RATE:-10000}
FANOUT=${FANOUT:-10}
FANIN=${FANIN:-10}
# Each producer stays at most BACKLOG / producers messages ahead of its slowest consumer.
BACKLOG=${BACKLOG:-20000}
# Persistent sends awaiting the broker's answer (ActiveMQ's AsyncCallback), as the confirm
# and receipt windows of amqp.sh and stomp.sh; 0: JMS's synchronous send(), one at a time.
WINDOW=${WINDOW:-500}
# Concurrent open/close cycles in the connect case.
PARALLEL=${PARALLEL:-8}
# The idle case: connections held (each a JMS connection + session), the inactivity
# monitor's period (s, OpenWire's heart-beat; also in the connect case; 30 is the JMS
# client's default), how long they are held (s; 2 periods + 5), and how many are opened at
# a time.
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-5000}
HEARTBEAT=${HEARTBEAT:-30}
HOLD=${HOLD:-65}
CONNECT_PARALLEL=${CONNECT_PARALLEL:-64}
# The load program's JVM: its heap (the idle case holds thousands of client connections)
# and thread stacks (the client runs a reader thread per connection).
LOADGEN_JAVA_OPTS=${LOADGEN_JAVA_OPTS:-"-Xms512m -Xmx2g -Xss512k"}
# The consumers' acknowledgement mode: auto (AUTO_ACKNOWLEDGE: the client writes an
# acknowledgement per message) or dups-ok (DUPS_OK_ACKNOWLEDGE: it acknowledges in batches).
ACK=${ACK:-auto}
# Extra flags for every load-program run (e.g. "--backlog 0").
JMS_ARGS=${JMS_ARGS:-}
# ActiveMQ's JVM: a heap and a broker memory limit large enough that producer flow control
# does not decide the result (PEERS.md: 4 GB heap with a 1 GB limit was stable).
AMQ_HEAP=${AMQ_HEAP:-4G}
AMQ_MEMORY_LIMIT=${AMQ_MEMORY_LIMIT:-1 gb}
# Ports: neither broker's default 61616, nor each other's.
AMQ_PORT=${AMQ_PORT:-61626}
FERROMQ_PORT=${FERROMQ_PORT:-61636}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# BENCH_FERROMQ: a ferromq binary to use instead of building one (not FERROMQ_*: ferromq reads those).

SCRIPT=openwire.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
case $ACK in auto) ACK_NAME=AUTO_ACKNOWLEDGE ;; dups-ok) ACK_NAME=DUPS_OK_ACKNOWLEDGE ;; *) die "ACK: auto or dups-ok" ;; esac

wants() { case " $BROKERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# shellcheck disable=SC2086 # CASES is a list
CASES=$(expand_sizes $CASES)

# --- Install ---------------------------------------------------------------------------
AMQ_HOME=/usr/share/activemq
if wants activemq && [ ! -f "$AMQ_HOME/bin/activemq.jar" ]; then
    say "installing activemq (Debian package)"
    [ "$(id -u)" = 0 ] || die "activemq is missing; run as root or: sudo apt-get install -y activemq"
    DEBIAN_FRONTEND=noninteractive apt-get install -y activemq </dev/null >&2 \
        || die "apt-get install -y activemq failed"
fi
JARS="activemq-client geronimo-jms_1.1_spec geronimo-j2ee-management-1.1-spec hawtbuf slf4j-api slf4j-nop"
CP=
for j in $JARS; do
    [ -f "/usr/share/java/$j.jar" ] || die "missing /usr/share/java/$j.jar (apt-get install -y libactivemq-java libslf4j-java)"
    CP=${CP:+$CP:}/usr/share/java/$j.jar
done
command -v javac >/dev/null || die "javac is missing (apt-get install -y openjdk-17-jdk-headless)"
for p in "$AMQ_PORT" "$FERROMQ_PORT"; do
    port_open "$p" && die "port $p is already in use (set AMQ_PORT, FERROMQ_PORT)"
done
port_open 61616 && say "warning: something listens on 61616 (a system ActiveMQ?); it shares the CPU with this benchmark"

# --- Open files ------------------------------------------------------------------------
nofile_for_idle

# --- Build -----------------------------------------------------------------------------
mkdir -p "$BENCH_DIR"
case "$BENCH_DIR" in "$ROOT"/*) printf '*\n' >"$(dirname "$BENCH_DIR")/.gitignore" ;; esac
if wants ferromq && [ -z "${NO_BUILD:-}" ] && [ -z "${BENCH_FERROMQ:-}" ]; then
    say "building (release): ferromq"
    (cd "$ROOT" && cargo build --release --bin ferromq >&2)
fi
ADIR=$BENCH_DIR/activemq
FDIR=$BENCH_DIR/ferromq
rm -rf "$ADIR" "$FDIR" "${BENCH_DIR:?}/bin" "${BENCH_DIR:?}/classes"
mkdir -p "$ADIR/conf" "$ADIR/data" "$ADIR/tmp" "$FDIR/data" "$BENCH_DIR/bin" "$BENCH_DIR/classes"
# A copy, so that a build in the same target directory during the run (the idle case
# restarts ferromq) changes nothing.
SRC_FERROMQ=${BENCH_FERROMQ:-$TARGET/release/ferromq}
if wants ferromq; then
    [ -x "$SRC_FERROMQ" ] || die "missing $SRC_FERROMQ (unset NO_BUILD)"
    cp "$SRC_FERROMQ" "$BENCH_DIR/bin/ferromq"
fi
FERROMQ=$BENCH_DIR/bin/ferromq
javac -nowarn -d "$BENCH_DIR/classes" -cp "$CP" "$ROOT/bench/openwire/JmsLoad.java" >&2 \
    || die "javac failed on bench/openwire/JmsLoad.java"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$BENCH_DIR/results-$STAMP.txt

AMQ_PID=
FERROMQ_PID=
cleanup() {
    set +e
    stop_pid "$FERROMQ_PID"
    activemq_stop
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- ActiveMQ --------------------------------------------------------------------------
# Its own configuration, with only an OpenWire connector (lib.sh), and room for the idle
# connections (the connector's default maximumConnections is 1,000).
start_activemq() {
    rm -rf "$ADIR/data"
    mkdir -p "$ADIR/data"
    activemq_start openwire "tcp://127.0.0.1:$AMQ_PORT?maximumConnections=$((IDLE_CONNECTIONS + 1000))"
}

# --- ferromq ---------------------------------------------------------------------------
# Defaults except: its own port and data directory, every other listener off, room for
# the idle connections.
start_ferromq() {
    say "starting ferromq on 127.0.0.1:$FERROMQ_PORT, data in $FDIR/data"
    rm -rf "$FDIR/data"
    mkdir -p "$FDIR/data"
    FERROMQ_DATA_DIR=$FDIR/data \
        FERROMQ_LISTENERS__OPENWIRE=127.0.0.1:$FERROMQ_PORT \
        FERROMQ_LISTENERS__STOMP="" \
        FERROMQ_LISTENERS__STOMP_TLS="" \
        FERROMQ_LISTENERS__AMQP="" \
        FERROMQ_LISTENERS__AMQP_TLS="" \
        FERROMQ_LISTENERS__MQTT="" \
        FERROMQ_LISTENERS__MQTT_TLS="" \
        FERROMQ_LISTENERS__OPENWIRE_TLS="" \
        FERROMQ_LISTENERS__WS="" \
        FERROMQ_LISTENERS__WSS="" \
        FERROMQ_OPENWIRE__CONNECTIONS_MAX=$((IDLE_CONNECTIONS + 1000)) \
        FERROMQ_LOG=warn \
        "$FERROMQ" serve >>"$FDIR/ferromq.log" 2>&1 </dev/null &
    FERROMQ_PID=$!
    wait_port "$FERROMQ_PORT" 30 "$FERROMQ_PID" ferromq "$FDIR/ferromq.log"
}

if wants activemq; then start_activemq; fi
if wants ferromq; then start_ferromq; fi

broker_pid() { if [ "$1" = activemq ]; then echo "$AMQ_PID"; else echo "$FERROMQ_PID"; fi; }
broker_port() { if [ "$1" = activemq ]; then echo "$AMQ_PORT"; else echo "$FERROMQ_PORT"; fi; }
# The idle case measures RSS growth: each of its runs gets a freshly started broker, so
# that memory kept from earlier cases does not hide the connections' cost.
restart() { # broker
    if [ "$1" = activemq ]; then
        activemq_stop
        start_activemq
    else
        stop_pid "$FERROMQ_PID"
        start_ferromq
    fi
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
    idle) limit=$((HOLD + 600)) ;;
    esac
    # shellcheck disable=SC2086 # LOADGEN_JAVA_OPTS and JMS_ARGS are lists
    line=$(timeout "$limit" java $LOADGEN_JAVA_OPTS -cp "$BENCH_DIR/classes:$CP" JmsLoad \
        --url "tcp://127.0.0.1:$(broker_port "$1")" "${mode[@]}" --label "$1" \
        --broker-pid "$(broker_pid "$1")" --seconds "$4" --warmup "$WARMUP" --size "$size" \
        --fanout "$FANOUT" --fanin "$FANIN" --backlog "$BACKLOG" --window "$WINDOW" --parallel "$PARALLEL" \
        --connections "$IDLE_CONNECTIONS" --connect-parallel "$CONNECT_PARALLEL" \
        --heartbeat "$HEARTBEAT" --hold "$HOLD" --ack "$ACK" $JMS_ARGS \
        2>>"$BENCH_DIR/loadgen-stderr.log") || rc=$?
    record_run "$1" "$2" "$3" "$5" "$rc" "$line" "load program"
}

{
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# ferromq $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), ActiveMQ $(dpkg-query -W -f='${Version}' activemq 2>/dev/null || echo '?'), client libactivemq-java $(dpkg-query -W -f='${Version}' libactivemq-java 2>/dev/null || echo '?'), $(java -version 2>&1 | head -n1)"
    echo "# cases: $CASES; brokers: $BROKERS; runs: $RUNS of $SECONDS_PER_RUN s (+$WARMUP s warm-up) after $WARMUP_ROUNDS warm-up round(s) of $WARMUP_ROUND_SECONDS s; size $SIZE; sizes $SIZES; fan-out $FANOUT; fan-in $FANIN; backlog $BACKLOG; window $WINDOW; ack $ACK; rate $RATE; parallel $PARALLEL; idle $IDLE_CONNECTIONS connections, heart-beat $HEARTBEAT s, hold $HOLD s; load JVM: $LOADGEN_JAVA_OPTS; extra: ${JMS_ARGS:-none}"
} >"$RESULTS"
WARMUP_LOG=$BENCH_DIR/warmup-$STAMP.txt
run_rounds

# --- Table -----------------------------------------------------------------------------
if [ "$WINDOW" = 0 ]; then CONFIRMS="sync sends"; else CONFIRMS="window $WINDOW"; fi
describe() {
    case $1 in
    transient) echo "transient, 1 -> 1" ;; persistent) echo "persistent, $CONFIRMS, 1 -> 1" ;;
    fanout) echo "topic, 1 -> $FANOUT" ;; fanin) echo "queue, $FANIN -> 1" ;;
    lat-transient) echo "transient, 1 -> 1" ;; lat-persistent) echo "persistent, $CONFIRMS" ;;
    *) echo "$1" ;;
    esac
}
notes() { # broker case: everything that is not a clean run
    lines "$1" "$2" | awk -v b="$1" -v c="$2" '
        { lost = dup = cor = unc = failed = dropped = 0; err = "none"; ex = 0; run = "?"
          for (i = 1; i <= NF; i++) { split($i, kv, "=")
            if (kv[1] == "run") run = kv[2]
            if (kv[1] == "lost") lost = kv[2]; if (kv[1] == "duplicates") dup = kv[2]
            if (kv[1] == "corrupt") cor = kv[2]; if (kv[1] == "unconfirmed") unc = kv[2]
            if (kv[1] == "failed") failed = kv[2]; if (kv[1] == "dropped") dropped = kv[2]
            if (kv[1] == "exit") ex = kv[2]; if (kv[1] == "error") err = substr($0, index($0, "error=") + 6) }
          if (lost + dup + cor + unc + failed + dropped > 0 || ex != 0 || err != "none")
            printf "%s %s run %s: lost=%s duplicates=%s corrupt=%s unconfirmed=%s failed=%s dropped=%s exit=%s error=%s\n", b, c, run, lost, dup, cor, unc, failed, dropped, ex, err }'
}
RATE_CASES=$(for c in $CASES; do case $c in lat-*) printf '%s ' "$c" ;; esac; done)
FLOOD_CASES=$(for c in $CASES; do case $c in lat-* | size-* | connect | idle) ;; *) printf '%s ' "$c" ;; esac; done)
SIZE_CASES=$(for c in $CASES; do case $c in size-*) printf '%s ' "$c" ;; esac; done)
NAMES=$(for b in $BROKERS; do if [ "$b" = activemq ]; then printf 'activemq:ActiveMQ '; else printf 'ferromq:ferromq '; fi; done)
{
    if [ -n "$FLOOD_CASES" ]; then
        echo
        echo "OpenWire (ActiveMQ 5.17 JMS client), ${SIZE}-byte BytesMessages, $ACK_NAME, the client's default prefetch;"
        echo "median of $RUNS run(s) of $SECONDS_PER_RUN s; messages delivered per second (fan-out: total over all subscribers)"
        echo "cpu: broker CPU seconds in the window; us/msg: broker CPU microseconds per delivered message;"
        echo "rss: broker peak RSS in the run, MiB; each for ActiveMQ, ferromq"
        echo
        printf '%-32s %10s %10s %8s | %11s | %11s | %9s\n' case ActiveMQ ferromq "f/A" "cpu A f" "us/msg A f" "rss A f"
        for c in $FLOOD_CASES; do
            a=$(med activemq "$c" msgs_per_s)
            f=$(med ferromq "$c" msgs_per_s)
            printf '%-32s %10.0f %10.0f %8s | %5.2f %5.2f | %5.1f %5.1f | %4s %4s\n' "$(describe "$c")" "$a" "$f" \
                "$(median_ratio "$RESULTS" ferromq activemq msgs_per_s "$c")" \
                "$(med activemq "$c" broker_cpu_s)" "$(med ferromq "$c" broker_cpu_s)" \
                "$(us_per_msg activemq "$c")" "$(us_per_msg ferromq "$c")" \
                "$(mib "$(med activemq "$c" broker_rss_peak_kib)")" "$(mib "$(med ferromq "$c" broker_rss_peak_kib)")"
        done
    fi
    if [ -n "$SIZE_CASES" ]; then
        # shellcheck disable=SC2086 # NAMES is a list
        sizes_table "$RESULTS" "Message sizes: transient, 1 -> 1, BytesMessages; median of $RUNS run(s) of $SECONDS_PER_RUN s; messages delivered per second (body MiB/s)" $NAMES
    fi
    if [ -n "$RATE_CASES" ]; then
        echo
        echo "Latency at a fixed $RATE msg/s, 1 -> 1, ${SIZE}-byte BytesMessages: from the time each message was due to be"
        echo "sent to its arrival at the consumer's listener, microseconds; median over $RUNS run(s) of $SECONDS_PER_RUN s"
        echo "of each percentile; lost: sum over runs"
        echo
        latency_header
        for c in $RATE_CASES; do
            # shellcheck disable=SC2086 # NAMES is a list
            latency_rows "$RESULTS" "$c" "$(describe "$c")" $NAMES
            echo "  p99 ferromq / ActiveMQ: $(median_ratio "$RESULTS" ferromq activemq lat_p99_us "$c")"
        done
    fi
    # shellcheck disable=SC2086 # BROKERS is a list
    connect_table $BROKERS
    # shellcheck disable=SC2086
    idle_table $BROKERS
    echo
    echo "core use (medians of CPU seconds in the window; $(nproc) cores): load program / everything else on the machine"
    for c in $CASES; do
        printf '  %-15s' "$c"
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
        echo "every run delivered every message exactly once, intact; every connection opened, stayed up and closed cleanly"
    fi
    warmup_report
    echo "raw lines: $RESULTS"
} | tee -a "$RESULTS"
