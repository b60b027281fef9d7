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
