# Helpers shared by the side-by-side scripts (amqp.sh, mqtt.sh, stomp.sh, openwire.sh). Sourced, not run; the
# script sets SCRIPT (its name, for messages) first.

# ferromq reads every FERROMQ_* environment variable as configuration: a port given to a
# script as FERROMQ_PORT=... must stay the script's own, or ferromq refuses to start
# ("unknown field `port`").
export -n FERROMQ_PORT

say() { printf '== %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$SCRIPT" "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds pid name log
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        port_open "$1" && return 0
        kill -0 "$3" 2>/dev/null || { tail -n 40 "$5" >&2; die "$4 exited during start-up (log above: $5)"; }
        sleep 0.1
    done
    tail -n 40 "$5" >&2
    die "$4 does not accept connections on $1 after $2 s (log above: $5)"
}

stop_pid() { # pid: SIGTERM, then wait for it (it must be a child of this shell)
    if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
        kill -TERM "$1"
        wait "$1" 2>/dev/null || true
    fi
    return 0
}

# Result lines are `key=value` pairs: the values of key $1 on stdin, one a line.
field() { sed -n "s/.*[[:space:]]$1=\([^ ]*\).*/\1/p"; }
# The median of the numbers on stdin (0 if none).
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Latency cases: the load generator runs a throughput case at a fixed rate (`--rate`) and
# names it by that case; the scripts name it by their own case (lat0, lat-transient...)
# so that both kinds can share one results file. Rewrites `case=...` in a result line.
rename_case() { sed "s/^label=\([^ ]*\) case=[^ ]* /label=\1 case=$1 /"; } # new-case < line
# Sum of the values of key $1 on stdin.
total() { field "$1" | awk '{ s += $1 } END { print s + 0 }'; }
# Per result line on stdin: the share (%) of the messages due inside the window that
# arrived and were timed (lat_n over rate x seconds); below 100 the broker fell behind
# the rate, and the percentiles describe only the messages that made it.
timed_pct() {
    awk '{ n = r = s = ""
        for (i = 1; i <= NF; i++) { split($i, kv, "=")
          if (kv[1] == "lat_n") n = kv[2]; if (kv[1] == "rate") r = kv[2]; if (kv[1] == "seconds") s = kv[2] }
        if (n != "" && r * s > 0) print (n > r * s ? 100 : 100 * n / (r * s)) }'
}
# Rows of the latency table for one case: medians over runs of each percentile, per
# broker. Arguments: results case title broker:Name... (brokers with no lines are skipped).
# A run that timed no message at all (the broker never reached the messages due in the
# window) has no percentiles: "-" when that is the median run.
latency_rows() {
    local results=$1 c=$2 title=$3 bn b lines timed p
    shift 3
    for bn in "$@"; do
        b=${bn%%:*}
        lines=$(grep " label=$b case=$c " "$results") || continue
        timed=$(timed_pct <<<"$lines" | median)
        printf '%-22s %-10s %8.0f %6.0f%%' "$title" "${bn#*:}" "$(field msgs_per_s <<<"$lines" | median)" "$timed"
        for p in lat_p50_us lat_p99_us lat_p999_us lat_max_us; do
            if [ "$(field lat_n <<<"$lines" | median)" = 0 ]; then
                printf ' %9s' -
            else
                printf ' %9.1f' "$(field "$p" <<<"$lines" | median)"
            fi
        done
        printf ' %8s\n' "$(total lost <<<"$lines")"
        title=""
    done
}
latency_header() {
    printf '%-22s %-10s %8s %7s %9s %9s %9s %9s %8s\n' case broker msgs/s timed "p50 us" "p99 us" "p99.9 us" "max us" lost
}
# "1.23x" = field $4 median of broker $2 over broker $3 in case $5 (results $1), or n/a.
median_ratio() {
    local a b
    a=$(grep " label=$2 case=$5 " "$1" | field "$4" | median)
    b=$(grep " label=$3 case=$5 " "$1" | field "$4" | median)
    awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'
}

# Starts ActiveMQ (Debian's package, $AMQ_HOME) in the background from its own copy of the
# configuration under $ADIR: KahaDB in that folder, the one transport connector given, no
# JMX, no advisories, memory limit $AMQ_MEMORY_LIMIT, heap $AMQ_HEAP; producer flow control
# stays on (the default). Sets AMQ_PID and waits for $AMQ_PORT.
activemq_start() { # connector-name connector-uri
    cat >"$ADIR/conf/activemq.xml" <<XML
<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="bench"
          dataDirectory="$ADIR/data" schedulerSupport="false" advisorySupport="false">
    <persistenceAdapter>
      <kahaDB directory="$ADIR/data/kahadb"/>
    </persistenceAdapter>
    <systemUsage>
      <systemUsage>
        <memoryUsage><memoryUsage limit="$AMQ_MEMORY_LIMIT"/></memoryUsage>
        <storeUsage><storeUsage limit="20 gb"/></storeUsage>
        <tempUsage><tempUsage limit="10 gb"/></tempUsage>
      </systemUsage>
    </systemUsage>
    <transportConnectors>
      <transportConnector name="$1" uri="$2"/>
    </transportConnectors>
  </broker>
</beans>
XML
    # Debian's ActiveMQ logs through log4j 1.2 and ignores its shipped configuration.
    cat >"$ADIR/conf/log4j.properties" <<PROPS
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$ADIR/activemq.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=%d %-5p %c - %m%n
PROPS
    say "starting ActiveMQ ($(dpkg-query -W -f='${Version}' activemq 2>/dev/null || echo '?')) $1 on $2, heap $AMQ_HEAP, files in $ADIR"
    java -Xms"$AMQ_HEAP" -Xmx"$AMQ_HEAP" \
        -Dorg.apache.activemq.UseDedicatedTaskRunner=false \
        -Djava.io.tmpdir="$ADIR/tmp" \
        -Dlog4j.configuration="file:$ADIR/conf/log4j.properties" \
        -Dactivemq.classpath="$ADIR/conf:$AMQ_HOME/lib/" \
        -Dactivemq.home="$AMQ_HOME" -Dactivemq.base="$ADIR" \
        -Dactivemq.conf="$ADIR/conf" -Dactivemq.data="$ADIR/data" \
        -jar "$AMQ_HOME/bin/activemq.jar" start "xbean:file:$ADIR/conf/activemq.xml" \
        >"$ADIR/stdout.log" 2>&1 </dev/null &
    AMQ_PID=$!
    wait_port "$AMQ_PORT" 120 "$AMQ_PID" ActiveMQ "$ADIR/stdout.log"
}

# Raises this shell's open-file limit (inherited by the brokers and the load generator)
# for an idle case of $IDLE_CONNECTIONS connections when $CASES has one: every broker and
# the load generator hold one descriptor per connection. Raising the hard limit needs
# CAP_SYS_RESOURCE; without it IDLE_CONNECTIONS is cut to hard limit − 1,000 and
# IDLE_NOTE says so (for under the table).
nofile_for_idle() {
    IDLE_NOTE=""
    case " $CASES " in
    *" idle "*)
        local need=$((IDLE_CONNECTIONS + 1000)) hard
        if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
            ulimit -Hn "$need" 2>/dev/null || true
        fi
        hard=$(ulimit -Hn)
        if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
            IDLE_NOTE="idle: $IDLE_CONNECTIONS connections asked, the open-file hard limit is $hard and cannot be raised here (no CAP_SYS_RESOURCE), so $((hard - 1000)) were opened"
            say "warning: $IDLE_NOTE"
            IDLE_CONNECTIONS=$((hard - 1000))
        fi
        ;;
    esac
    [ "$(ulimit -Hn)" = unlimited ] || ulimit -n "$(ulimit -Hn)"
}

# Starts RabbitMQ (Debian's package, $RABBIT_BIN) in the background as the invoking user
# from the files under $RDIR: the caller writes rabbitmq.conf and enabled_plugins there.
# Node $RABBIT_NODE, distribution port $RABBIT_DIST_PORT, epmd on $EPMD_PORT; nothing in
# /etc/rabbitmq or /var/lib/rabbitmq is used. Sets RABBIT_PID (the start script) and
# waits for $RABBIT_PORT and for the node's start-up.
rabbitmq_start() { # what (for the message)
    : >"$RDIR/rabbitmq-env.conf" # instead of /etc/rabbitmq/rabbitmq-env.conf
    say "starting RabbitMQ ($(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?')) $1 on 127.0.0.1:$RABBIT_PORT, files in $RDIR"
    (rabbitmq_env && exec "$RABBIT_BIN/rabbitmq-server" >>"$RDIR/log/stdout.log" 2>&1 </dev/null) &
    RABBIT_PID=$!
    wait_port "$RABBIT_PORT" 120 "$RABBIT_PID" RabbitMQ "$RDIR/log/stdout.log"
    (rabbitmq_env && "$RABBIT_BIN/rabbitmqctl" await_startup --timeout 60 >/dev/null 2>&1) \
        || say "warning: rabbitmqctl await_startup failed; its port is open, going on"
}
rabbitmq_env() {
    export HOME=$RDIR/home # the Erlang cookie, shared by the server and rabbitmqctl
    export RABBITMQ_NODENAME=$RABBIT_NODE
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
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
# Stops the node rabbitmq_start started, and the Erlang VM should the start script have
# died before it. The epmd it started is left for rabbitmq_epmd_kill (a restart reuses it).
rabbitmq_stop() {
    if [ -n "${RABBIT_PID:-}" ] && kill -0 "$RABBIT_PID" 2>/dev/null; then
        # The start script turns SIGTERM into a clean `rabbitmqctl stop`.
        kill -TERM "$RABBIT_PID"
        wait "$RABBIT_PID" 2>/dev/null || true
    fi
    if [ -s "$RDIR/rabbit.pid" ]; then
        local beam
        beam=$(cat "$RDIR/rabbit.pid")
        if kill -0 "$beam" 2>/dev/null; then
            kill -TERM "$beam"
            sleep 2
            kill -KILL "$beam" 2>/dev/null || true
        fi
        rm -f "$RDIR/rabbit.pid"
    fi
    RABBIT_PID=
}
rabbitmq_epmd_kill() { ERL_EPMD_PORT=$EPMD_PORT epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true; }

# Stops the ActiveMQ activemq_start started: SIGTERM, up to 10 s, then SIGKILL.
activemq_stop() {
    if [ -n "${AMQ_PID:-}" ] && kill -0 "$AMQ_PID" 2>/dev/null; then
        kill -TERM "$AMQ_PID"
        for _ in $(seq 1 100); do kill -0 "$AMQ_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$AMQ_PID" 2>/dev/null || true
        wait "$AMQ_PID" 2>/dev/null || true
    fi
    AMQ_PID=
}

# The connection cases' tables, from the result lines in $RESULTS (a `med broker case
# field` function must exist), each only when $CASES has the case: connects per second
# per broker, and the idle connections' RSS.
connect_table() { # brokers...
    local b
    case " $CASES " in
    *" connect "*)
        echo
        echo "Connection rate: $PARALLEL workers each opening and closing whole connections; medians"
        printf '%-10s %12s %12s %14s\n' broker connects/s "cpu s" "us cpu/conn"
        for b in "$@"; do
            printf '%-10s %12.0f %12.2f %14.1f\n' "$b" "$(med "$b" connect connects_per_s)" \
                "$(med "$b" connect broker_cpu_s)" \
                "$(awk -v c="$(med "$b" connect broker_cpu_s)" -v n="$(med "$b" connect connects_window)" \
                    'BEGIN { if (n > 0) print c * 1e6 / n; else print 0 }')"
        done
        ;;
    esac
}
idle_table() { # brokers...
    local b
    case " $CASES " in
    *" idle "*)
        echo
        echo "Idle connections: $IDLE_CONNECTIONS with heart-beats every ${HEARTBEAT:-${KEEP_ALIVE:-?}} s, each broker freshly started; medians"
        printf '%-10s %12s %14s %14s %14s %12s %12s\n' broker connected "rss before" "rss held" "bytes/conn" "connects/s" "cpu s hold"
        for b in "$@"; do
            printf '%-10s %12.0f %11.1f MiB %11.1f MiB %14.0f %12.0f %12.2f\n' "$b" \
                "$(med "$b" idle connected)" \
                "$(awk -v k="$(med "$b" idle rss_before_kib)" 'BEGIN { print k / 1024 }')" \
                "$(awk -v k="$(med "$b" idle rss_held_kib)" 'BEGIN { print k / 1024 }')" \
                "$(med "$b" idle rss_per_conn_b)" "$(med "$b" idle connects_per_s)" "$(med "$b" idle broker_cpu_s)"
        done
        [ -z "${IDLE_NOTE:-}" ] || echo "note: $IDLE_NOTE"
        ;;
    esac
}

# The `sizes` case of every script: 1 -> 1 transient throughput at each size of $SIZES
# (bytes), run as the cases size-<N>. Prints the case list with `sizes` expanded.
expand_sizes() { # cases...
    local c s out=()
    for c in "$@"; do
        if [ "$c" = sizes ]; then
            for s in $SIZES; do
                case $s in '' | *[!0-9]*) die "SIZES: $s is not a number of bytes" ;; esac
                [ "$s" -ge 16 ] || die "SIZES: $s is below 16 bytes (the body header every load generator checks)"
                out+=("size-$s")
            done
        else
            out+=("$c")
        fi
    done
    echo "${out[*]}"
}
# The sizes table, when $CASES has size-<N> cases: per size, each broker's median
# messages/s and body MiB/s over the runs, and ferromq's ratio to each other broker.
# Arguments: results title broker:Name... (ferromq among them).
sizes_table() {
    local results=$1 title=$2 c s bn b m peers=()
    shift 2
    case " $CASES " in *" size-"*) ;; *) return 0 ;; esac
    echo
    echo "$title"
    printf '%-9s' size
    for bn in "$@"; do printf ' %20s' "${bn#*:} msg/s (MiB/s)"; done
    for bn in "$@"; do [ "${bn%%:*}" = ferromq ] || { peers+=("${bn%%:*}"); printf ' %9s' "f/${bn#*:}"; }; done
    echo
    for c in $CASES; do
        case $c in size-*) ;; *) continue ;; esac
        s=${c#size-}
        printf '%-9s' "$s B"
        for bn in "$@"; do
            b=${bn%%:*}
            m=$(grep " label=$b case=$c " "$results" | field msgs_per_s | median)
            printf ' %11.0f (%6.1f)' "$m" "$(awk -v m="$m" -v s="$s" 'BEGIN { print m * s / 1048576 }')"
        done
        for b in "${peers[@]}"; do printf ' %9s' "$(median_ratio "$results" ferromq "$b" msgs_per_s "$c")"; done
        echo
    done
}

# --- Runs shared by the scripts that define run_one, alive and restart ------------------
record_run() { # broker case run file rc line program: one result line, in the file and on stderr
    local line=$6
    [ -n "$line" ] || line="label=$1 case=$2 msgs_per_s=0 error=\"$7 exit $5, no result (see $BENCH_DIR/loadgen-stderr.log)\""
    line=$(rename_case "$2" <<<"$line")
    echo "run=$3 exit=$5 $line" | tee -a "$4" >&2
}

# WARMUP_ROUNDS unrecorded rounds of every case but idle (lines in WARMUP_LOG), then RUNS
# measured rounds into RESULTS, the first broker rotating, so that none always runs on a
# warmer machine; idle restarts its broker first.
run_rounds() {
    local round run c b shift_by order
    for ((round = 1; round <= WARMUP_ROUNDS; round++)); do
        say "warm-up round $round of $WARMUP_ROUNDS ($WARMUP_ROUND_SECONDS s per case and broker; not counted; lines in $WARMUP_LOG)"
        # Not the idle case: it warms nothing up and restarts the broker anyway.
        for c in $CASES; do
            [ "$c" != idle ] || continue
            for b in $BROKERS; do
                alive "$b" || die "$b is gone (see its log under $BENCH_DIR/$b)"
                run_one "$b" "$c" "warmup$round" "$WARMUP_ROUND_SECONDS" "$WARMUP_LOG"
            done
        done
    done
    say "cases: $CASES; $RUNS run(s) of $SECONDS_PER_RUN s (+$WARMUP s warm-up) per case and broker; results in $RESULTS"
    for ((run = 1; run <= RUNS; run++)); do
        read -ra order <<<"$BROKERS"
        shift_by=$(((run - 1) % ${#order[@]}))
        order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
        for c in $CASES; do
            for b in "${order[@]}"; do
                alive "$b" || die "$b is gone (see its log under $BENCH_DIR/$b)"
                [ "$c" != idle ] || restart "$b"
                run_one "$b" "$c" "$run" "$SECONDS_PER_RUN" "$RESULTS"
            done
        done
    done
}

warmup_report() { # the warm-up lines that were not clean, if any
    if [ -s "$WARMUP_LOG" ] && grep -qv ' exit=0 ' "$WARMUP_LOG"; then
        echo "warm-up runs not clean (not counted above):"
        grep -v ' exit=0 ' "$WARMUP_LOG"
    fi
}

# --- Reading RESULTS back, for the tables -------------------------------------------------
lines() { grep " label=$1 case=$2 " "$RESULTS" || true; } # broker case (none: not run)
med() { lines "$1" "$2" | field "$3" | median; }             # broker case field
# Broker CPU microseconds per delivered message, median over the runs: what a message
# costs whatever share of the shared cores the broker got.
us_per_msg() { # broker case
    lines "$1" "$2" | awk '{ cpu = n = ""
        for (i = 1; i <= NF; i++) { split($i, kv, "=")
          if (kv[1] == "broker_cpu_s") cpu = kv[2]; if (kv[1] == "delivered_window") n = kv[2] }
        if (cpu != "" && n > 0) print cpu * 1e6 / n }' | median
}
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
