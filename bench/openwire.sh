#!/usr/bin/env bash
# OpenWire (JMS) side by side: ferromq against ActiveMQ 5.17 (Debian's `activemq`), the same
# JMS load program (bench/openwire/JmsLoad.java, the ActiveMQ client from
# libactivemq-java) against both, one after the other, same machine, one run. Prints a
# table: messages/s for both, the ratio ferromq/ActiveMQ, broker CPU seconds per run and
# peak RSS. See bench/README.md.
#
#   bench/openwire.sh                        # 3 runs of 10 s per case and broker, medians
#   RUNS=1 SECONDS_PER_RUN=5 bench/openwire.sh
#   CASES="persistent" bench/openwire.sh
#
# Cases: 1 producer -> 1 consumer on a queue, SIZE-byte BytesMessages, every message
# checked by sequence number. `transient`: NON_PERSISTENT (the client sends them
# asynchronously); `persistent`: PERSISTENT (synchronous sends, KahaDB on ActiveMQ, the
# journal on ferromq, each fsynced before the send returns).
#
# Everything it writes goes under $BENCH_DIR (default bench/target-peers/openwire, ignored
# by git through a generated .gitignore). Both brokers are stopped on exit, whatever the exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/bench/target-peers/openwire}
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
WARMUP=${WARMUP:-2}
CASES=${CASES:-"transient persistent"}
SIZE=${SIZE:-256}
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

# CPU seconds (user + system) a process has used so far.
cpu_s() {
    local ticks
    ticks=$(awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0)
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
# Peak resident set of a process so far, MiB.
peak_rss_mib() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# --- Install ---------------------------------------------------------------------------
AMQ_HOME=/usr/share/activemq
if [ ! -f "$AMQ_HOME/bin/activemq.jar" ]; then
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

# --- Build -----------------------------------------------------------------------------
mkdir -p "$BENCH_DIR"
case "$BENCH_DIR" in "$ROOT"/*) printf '*\n' >"$(dirname "$BENCH_DIR")/.gitignore" ;; esac
if [ -z "${NO_BUILD:-}" ]; then
    say "building (release): ferromq"
    (cd "$ROOT" && cargo build --release --bin ferromq >&2)
fi
FERROMQ=${BENCH_FERROMQ:-$TARGET/release/ferromq}
[ -x "$FERROMQ" ] || die "missing $FERROMQ (unset NO_BUILD)"
mkdir -p "$BENCH_DIR/classes"
javac -nowarn -d "$BENCH_DIR/classes" -cp "$CP" "$ROOT/bench/openwire/JmsLoad.java" >&2 \
    || die "javac failed on bench/openwire/JmsLoad.java"

# --- Fresh state -----------------------------------------------------------------------
ADIR=$BENCH_DIR/activemq
FDIR=$BENCH_DIR/ferromq
rm -rf "$ADIR" "$FDIR"
mkdir -p "$ADIR/conf" "$ADIR/data" "$ADIR/tmp" "$FDIR/data"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$BENCH_DIR/results-$STAMP.txt

AMQ_PID=
FERROMQ_PID=
cleanup() {
    set +e
    for pid in "$FERROMQ_PID" "$AMQ_PID"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- ActiveMQ --------------------------------------------------------------------------
# Its own configuration, with only an OpenWire connector (lib.sh).
activemq_start openwire "tcp://127.0.0.1:$AMQ_PORT"

# --- ferromq ---------------------------------------------------------------------------
say "starting ferromq on 127.0.0.1:$FERROMQ_PORT, data in $FDIR/data"
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
    FERROMQ_LOG=warn \
    "$FERROMQ" serve >"$FDIR/ferromq.log" 2>&1 </dev/null &
FERROMQ_PID=$!
wait_port "$FERROMQ_PORT" 30 "$FERROMQ_PID" ferromq "$FDIR/ferromq.log"

# --- Runs ------------------------------------------------------------------------------
run_one() { # broker port pid case run
    local line rc=0 before after
    before=$(cpu_s "$3")
    line=$(timeout $((SECONDS_PER_RUN + WARMUP + 180)) java -cp "$BENCH_DIR/classes:$CP" JmsLoad \
        "tcp://127.0.0.1:$2" "$4" "$SECONDS_PER_RUN" "$WARMUP" "$SIZE" "$1" \
        2>>"$BENCH_DIR/loadgen-stderr.log") || rc=$?
    after=$(cpu_s "$3")
    [ -n "$line" ] || line="label=$1 case=$4 msgs_per_s=0 error=\"load program exit $rc, no result (see $BENCH_DIR/loadgen-stderr.log)\""
    local cpu
    cpu=$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", a - b }')
    echo "run=$5 exit=$rc $line broker_cpu_s=$cpu" | tee -a "$RESULTS" >&2
}

say "cases: $CASES; $RUNS run(s) of $SECONDS_PER_RUN s (+$WARMUP s warm-up) per case and broker; results in $RESULTS"
for ((run = 1; run <= RUNS; run++)); do
    for c in $CASES; do
        # Alternate which broker goes first, so neither always runs on a warmer machine.
        if ((run % 2)); then order="activemq ferromq"; else order="ferromq activemq"; fi
        for b in $order; do
            kill -0 "$AMQ_PID" 2>/dev/null || die "ActiveMQ is gone (see $ADIR)"
            kill -0 "$FERROMQ_PID" 2>/dev/null || die "ferromq is gone (see $FDIR/ferromq.log)"
            if [ "$b" = activemq ]; then
                run_one activemq "$AMQ_PORT" "$AMQ_PID" "$c" "$run"
            else
                run_one ferromq "$FERROMQ_PORT" "$FERROMQ_PID" "$c" "$run"
            fi
        done
    done
done

# --- Table -----------------------------------------------------------------------------
field() { sed -n "s/.*[[:space:]]$1=\([^ ]*\).*/\1/p"; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
notes() { # broker case: everything that is not a clean run
    grep " label=$1 case=$2 " "$RESULTS" | awk -v b="$1" -v c="$2" '
        { lost = dup = ooo = 0; err = "none"; ex = 0; run = "?"
          for (i = 1; i <= NF; i++) { split($i, kv, "=")
            if (kv[1] == "run") run = kv[2]
            if (kv[1] == "lost") lost = kv[2]; if (kv[1] == "duplicates") dup = kv[2]
            if (kv[1] == "out_of_order") ooo = kv[2]
            if (kv[1] == "exit") ex = kv[2]; if (kv[1] == "error") err = kv[2] }
          if (lost + dup + ooo > 0 || ex != 0 || err != "none")
            printf "%s %s run %s: lost=%s duplicates=%s out_of_order=%s exit=%s error=%s; ", b, c, run, lost, dup, ooo, ex, err }'
}
AMQ_RSS=$(peak_rss_mib "$AMQ_PID")
F_RSS=$(peak_rss_mib "$FERROMQ_PID")
{
    echo
    echo "OpenWire (ActiveMQ 5.x JMS client), 1 producer -> 1 consumer, ${SIZE}-byte messages;"
    echo "median of $RUNS run(s) of $SECONDS_PER_RUN s; messages delivered per second; broker CPU s per run (median)"
    echo
    printf '%-11s %12s %12s %8s %14s %14s\n' case ActiveMQ ferromq ratio "ActiveMQ CPU s" "ferromq CPU s"
    for c in $CASES; do
        a=$(grep " label=activemq case=$c " "$RESULTS" | field msgs_per_s | median)
        f=$(grep " label=ferromq case=$c " "$RESULTS" | field msgs_per_s | median)
        ac=$(grep " label=activemq case=$c " "$RESULTS" | field broker_cpu_s | median)
        fc=$(grep " label=ferromq case=$c " "$RESULTS" | field broker_cpu_s | median)
        ratio=$(awk -v f="$f" -v r="$a" 'BEGIN { if (r > 0) printf "%.2fx", f / r; else print "n/a" }')
        printf '%-11s %12.0f %12.0f %8s %14s %14s\n' "$c" "$a" "$f" "$ratio" "$ac" "$fc"
    done
    echo
    echo "peak RSS over the whole session: ActiveMQ ${AMQ_RSS} MiB, ferromq ${F_RSS} MiB"
    bad=""
    for c in $CASES; do bad+=$(notes activemq "$c")$(notes ferromq "$c"); done
    if [ -n "$bad" ]; then echo "not clean: $bad"; else echo "every run delivered every message exactly once, in order"; fi
    echo "raw lines: $RESULTS"
} | tee -a "$RESULTS"
