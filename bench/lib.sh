# Helpers shared by the side-by-side scripts (amqp.sh, mqtt.sh, stomp.sh). Sourced, not run; the
# script sets SCRIPT (its name, for messages) first.

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
