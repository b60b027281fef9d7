// OpenWire load generator for bench/openwire.sh: JMS producers and consumers with the
// ActiveMQ 5.x client (Debian's libactivemq-java), against whichever broker the URL names.
// Prints one line of key=value results on stdout (the fields the Rust load generators
// print, so that bench/lib.sh's tables read both) and exits 1 unless the run was clean.
//
// Usage: java -cp ... JmsLoad --url URL --case CASE [--label NAME] [--broker-pid PID]
//     [--seconds 10] [--warmup 2] [--size 256] [--fanout 10] [--fanin 10] [--backlog 20000]
//     [--window 500] [--rate MSGS_PER_S] [--parallel 8] [--connections 5000] [--connect-parallel 64]
//     [--heartbeat 10] [--hold 25] [--ack auto|dups-ok]
//
// Cases: transient | persistent (1 -> 1 on a queue), fanout (1 -> --fanout on a topic),
// fanin (--fanin -> 1 on a queue), connect, idle. --rate N sends transient or persistent
// at a fixed N msg/s and reports latency percentiles. See bench/README.md.
//
// Bodies have the layout of bench/src/tally.rs: producer number (u16), sequence number
// (48 bits), due time (u64 ns since this process's origin, 0 unless paced), little-endian,
// 16 bytes; then a pattern that depends on the producer. Every consumer checks every body:
// its length, its producer, its pattern byte for byte, and its sequence number against
// what it has seen (duplicates, order) and what was sent (loss).

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import javax.jms.BytesMessage;
import javax.jms.Connection;
import javax.jms.DeliveryMode;
import javax.jms.Destination;
import javax.jms.JMSException;
import javax.jms.Message;
import javax.jms.MessageConsumer;
import javax.jms.MessageProducer;
import javax.jms.Session;
import org.apache.activemq.ActiveMQConnection;
import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.ActiveMQMessageProducer;
import org.apache.activemq.AsyncCallback;

public class JmsLoad {
    static final int HEADER_BYTES = 16;
    static final long ORIGIN = System.nanoTime();
    /// A connect cycle or an idle connection's opening that takes longer fails.
    static final long CYCLE_TIMEOUT_NS = 10_000_000_000L;
    /// A drain that makes no progress for this long ends: what is missing is lost.
    static final long DRAIN_STALL_NS = 30_000_000_000L;

    static long nowNs() {
        return System.nanoTime() - ORIGIN;
    }

    // --- Options --------------------------------------------------------------------------
    String url;
    String kase;
    String label = "broker";
    int brokerPid;
    long seconds = 10;
    long warmup = 2;
    int size = 256;
    int fanout = 10;
    int fanin = 10;
    long backlog = 20_000;
    int window = 500;
    long rate;
    int parallel = 8;
    int connections = 5_000;
    int connectParallel = 64;
    long heartbeat = 10;
    long hold = 25;
    /// The consumers' acknowledgement mode: AUTO_ACKNOWLEDGE (the client acknowledges every
    /// message, one write each) or DUPS_OK_ACKNOWLEDGE (it acknowledges in batches).
    int ackMode = Session.AUTO_ACKNOWLEDGE;

    static JmsLoad parse(String[] args) {
        JmsLoad a = new JmsLoad();
        for (int i = 0; i < args.length; i += 2) {
            if (i + 1 >= args.length) throw new IllegalArgumentException(args[i] + " needs a value");
            String v = args[i + 1];
            switch (args[i]) {
                case "--url": a.url = v; break;
                case "--case": a.kase = v; break;
                case "--label": a.label = v; break;
                case "--broker-pid": a.brokerPid = Integer.parseInt(v); break;
                case "--seconds": a.seconds = Long.parseLong(v); break;
                case "--warmup": a.warmup = Long.parseLong(v); break;
                case "--size": a.size = Integer.parseInt(v); break;
                case "--fanout": a.fanout = Integer.parseInt(v); break;
                case "--fanin": a.fanin = Integer.parseInt(v); break;
                case "--backlog": a.backlog = Long.parseLong(v); break;
                case "--window": a.window = Integer.parseInt(v); break;
                case "--rate": a.rate = Long.parseLong(v); break;
                case "--parallel": a.parallel = Integer.parseInt(v); break;
                case "--connections": a.connections = Integer.parseInt(v); break;
                case "--connect-parallel": a.connectParallel = Integer.parseInt(v); break;
                case "--heartbeat": a.heartbeat = Long.parseLong(v); break;
                case "--hold": a.hold = Long.parseLong(v); break;
                case "--ack":
                    switch (v) {
                        case "auto": a.ackMode = Session.AUTO_ACKNOWLEDGE; break;
                        case "dups-ok": a.ackMode = Session.DUPS_OK_ACKNOWLEDGE; break;
                        default: throw new IllegalArgumentException("--ack: auto or dups-ok");
                    }
                    break;
                default: throw new IllegalArgumentException("unknown flag " + args[i]);
            }
        }
        if (a.url == null || a.kase == null) throw new IllegalArgumentException("--url and --case are required");
        if (a.size < HEADER_BYTES) throw new IllegalArgumentException("--size must be at least " + HEADER_BYTES + " (producer, sequence number, due time)");
        if (a.seconds <= 0) throw new IllegalArgumentException("--seconds must be positive");
        if (a.rate > 0 && !(a.kase.equals("transient") || a.kase.equals("persistent")))
            throw new IllegalArgumentException("--rate goes with the transient and persistent cases");
        return a;
    }

    public static void main(String[] args) throws Exception {
        JmsLoad a = parse(args);
        boolean clean;
        switch (a.kase) {
            case "transient": clean = a.flow(1, 1, false, false); break;
            case "persistent": clean = a.flow(1, 1, true, false); break;
            case "fanout": clean = a.flow(1, a.fanout, false, true); break;
            case "fanin": clean = a.flow(a.fanin, 1, false, false); break;
            case "connect": clean = a.connect(); break;
            case "idle": clean = a.idle(); break;
            default: throw new IllegalArgumentException("case: transient, persistent, fanout, fanin, connect or idle");
        }
        System.out.flush();
        // The client's threads (transport readers, the inactivity monitor's scheduler) are
        // not all daemons.
        System.exit(clean ? 0 : 1);
    }

    ActiveMQConnectionFactory factory(boolean withHeartbeat) {
        String u = url;
        if (withHeartbeat) {
            // The inactivity monitor's period, the OpenWire heart-beat (KeepAliveInfo when a
            // side has written nothing for a while); the broker may lower it.
            u += (u.contains("?") ? "&" : "?") + "wireFormat.maxInactivityDuration=" + heartbeat * 1000;
        }
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(u);
        f.setUserName("guest");
        f.setPassword("guest");
        return f;
    }

    // --- Bodies ---------------------------------------------------------------------------
    static byte[] pattern(int p, int size) {
        byte[] b = new byte[size];
        for (int i = 0; i < size; i++) b[i] = (byte) (i * 31 + p);
        b[0] = (byte) p;
        b[1] = (byte) (p >>> 8);
        Arrays.fill(b, 2, HEADER_BYTES, (byte) 0);
        return b;
    }

    static void stamp(byte[] b, long seq, long dueNs) {
        for (int k = 0; k < 6; k++) b[2 + k] = (byte) (seq >>> (8 * k));
        for (int k = 0; k < 8; k++) b[8 + k] = (byte) (dueNs >>> (8 * k));
    }

    static long le(byte[] b, int from, int bytes) {
        long v = 0;
        for (int k = bytes - 1; k >= 0; k--) v = (v << 8) | (b[from + k] & 0xff);
        return v;
    }

    /// What one consumer received, from each producer. Written by the consumer's session
    /// thread, read by the producers (for the backlog) and at the end.
    static final class Tally {
        final byte[][] patterns;
        final BitSet[] seen;
        final long[] high;
        final AtomicLongArray distinct;
        long delivered, duplicates, outOfOrder, corrupt, redelivered;

        Tally(byte[][] patterns) {
            this.patterns = patterns;
            int n = patterns.length;
            seen = new BitSet[n];
            for (int p = 0; p < n; p++) seen[p] = new BitSet();
            high = new long[n];
            distinct = new AtomicLongArray(n);
        }

        /// Accounts for one body; returns its due time if this is the first arrival of its
        /// number, -1 otherwise.
        synchronized long record(byte[] body, int len) {
            delivered++;
            if (len < HEADER_BYTES) {
                corrupt++;
                return -1;
            }
            int p = (int) le(body, 0, 2);
            long seq = le(body, 2, 6);
            if (p >= patterns.length || seq >= Integer.MAX_VALUE) {
                corrupt++;
                return -1;
            }
            byte[] want = patterns[p];
            if (len != want.length || !Arrays.equals(body, HEADER_BYTES, len, want, HEADER_BYTES, want.length)) corrupt++;
            if (seen[p].get((int) seq)) {
                duplicates++;
                return -1;
            }
            seen[p].set((int) seq);
            distinct.incrementAndGet(p);
            if (seq + 1 < high[p]) outOfOrder++;
            high[p] = Math.max(high[p], seq + 1);
            return le(body, 8, 8);
        }

        /// Numbers below sent[p] from each producer p that never arrived.
        synchronized long lost(long[] sent) {
            long lost = 0;
            for (int p = 0; p < sent.length; p++) {
                int n = (int) Math.min(sent[p], Integer.MAX_VALUE);
                lost += n - seen[p].get(0, n).cardinality();
            }
            return lost;
        }
    }

    /// Latencies in nanoseconds, kept whole (a run at 10,000 msg/s for 10 s keeps 100,000):
    /// percentiles are exact, the ceil(q x n)-th smallest value, as bench/src/latency.rs
    /// ranks them (which then reports its bucket's upper edge, at most 0.8 % above).
    static final class Samples {
        long[] v = new long[1 << 16];
        int n;

        synchronized void add(long ns) {
            if (n == v.length) v = Arrays.copyOf(v, 2 * n);
            v[n++] = Math.max(0, ns);
        }

        synchronized String fields(String prefix) {
            long[] s = Arrays.copyOf(v, n);
            Arrays.sort(s);
            return String.format("%s_n=%d %s_p50_us=%.1f %s_p99_us=%.1f %s_p999_us=%.1f %s_max_us=%.1f",
                prefix, n, prefix, q(s, 0.5), prefix, q(s, 0.99), prefix, q(s, 0.999), prefix,
                n == 0 ? 0.0 : s[n - 1] / 1000.0);
        }

        static double q(long[] s, double q) {
            if (s.length == 0) return 0;
            int rank = (int) Math.min(s.length, Math.max(1, (long) Math.ceil(q * s.length)));
            return s[rank - 1] / 1000.0;
        }
    }

    // --- Throughput and latency -----------------------------------------------------------
    /// One producer's sends. Persistent messages are confirmed: with a window, sent with
    /// ActiveMQ's AsyncCallback (the broker answers each with a Response, as it does a
    /// synchronous send) and at most `window` awaiting their answer; with a window of 0,
    /// JMS's synchronous send(), one at a time. Transient messages get no answer (the
    /// client sends NON_PERSISTENT messages asynchronously).
    static final class Sender {
        final MessageProducer producer;
        final boolean persistent;
        final int window;
        final Semaphore slots;
        final AtomicLong confirmed = new AtomicLong();
        final AtomicReference<String> error;

        Sender(MessageProducer producer, boolean persistent, int window, AtomicReference<String> error) {
            this.producer = producer;
            this.persistent = persistent;
            this.window = persistent ? window : 0;
            this.slots = new Semaphore(Math.max(1, this.window));
            this.error = error;
        }

        void send(Message m) throws JMSException, InterruptedException {
            if (window == 0) {
                producer.send(m);
                if (persistent) confirmed.incrementAndGet();
                return;
            }
            slots.acquire();
            ((ActiveMQMessageProducer) producer).send(m, new AsyncCallback() {
                @Override
                public void onSuccess() {
                    confirmed.incrementAndGet();
                    slots.release();
                }

                @Override
                public void onException(JMSException e) {
                    error.compareAndSet(null, "send not confirmed: " + e);
                    slots.release();
                }
            });
        }

        /// Waits up to 60 s for the answers still awaited.
        void awaitConfirms() throws InterruptedException {
            if (window > 0 && slots.tryAcquire(window, 60, TimeUnit.SECONDS)) slots.release(window);
        }
    }

    /// producers -> consumers on a fresh queue (or topic), each on its own connection.
    boolean flow(int producers, int consumers, boolean persistent, boolean topic) throws Exception {
        String name = "bench.openwire." + kase + "." + UUID.randomUUID().toString().substring(0, 8);
        final byte[][] patterns = new byte[producers][];
        for (int p = 0; p < producers; p++) patterns[p] = pattern(p, size);
        final AtomicReference<String> error = new AtomicReference<>();
        final long measureFrom = nowNs() + warmup * 1_000_000_000L;
        final long measureTo = measureFrom + seconds * 1_000_000_000L;
        final AtomicLong deliveredWindow = new AtomicLong();
        final Samples lat = new Samples();
        final Samples paceLate = new Samples();
        final Samples paceSend = new Samples();
        Usage usage = new Usage(brokerPid);

        ActiveMQConnectionFactory f = factory(false);
        List<Connection> consumerConns = new ArrayList<>();
        List<Tally> tallies = new ArrayList<>();
        for (int c = 0; c < consumers; c++) {
            Connection conn = f.createConnection();
            consumerConns.add(conn);
            Session s = conn.createSession(false, ackMode);
            Destination d = topic ? s.createTopic(name) : s.createQueue(name);
            MessageConsumer consumer = s.createConsumer(d);
            Tally t = new Tally(patterns);
            tallies.add(t);
            byte[][] buf = {new byte[size]};
            consumer.setMessageListener(m -> {
                try {
                    long now = nowNs();
                    BytesMessage b = (BytesMessage) m;
                    int len = (int) b.getBodyLength();
                    if (buf[0].length != len) buf[0] = new byte[len];
                    b.readBytes(buf[0]);
                    if (m.getJMSRedelivered()) {
                        synchronized (t) { t.redelivered++; }
                    }
                    long due = t.record(buf[0], len);
                    if (now >= measureFrom && now < measureTo) deliveredWindow.incrementAndGet();
                    if (rate > 0 && due >= measureFrom && due < measureTo) lat.add(now - due);
                } catch (Throwable e) {
                    error.compareAndSet(null, "consumer: " + e);
                }
            });
            // Consumers are registered once createConsumer has returned (it waits for the
            // broker's response), so no topic subscriber misses a message.
            conn.start();
        }

        final AtomicLongArray sent = new AtomicLongArray(producers);
        final List<Sender> senders = new ArrayList<>();
        final long backlogPerProducer = Math.max(1, backlog / producers);
        List<Thread> threads = new ArrayList<>();
        List<Connection> producerConns = new ArrayList<>();
        for (int p = 0; p < producers; p++) {
            Connection conn = f.createConnection();
            producerConns.add(conn);
            conn.start();
            Session s = conn.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer producer = s.createProducer(topic ? s.createTopic(name) : s.createQueue(name));
            producer.setDeliveryMode(persistent ? DeliveryMode.PERSISTENT : DeliveryMode.NON_PERSISTENT);
            final Sender sender = new Sender(producer, persistent, window, error);
            senders.add(sender);
            final int pn = p;
            Thread th = new Thread(() -> {
                byte[] body = patterns[pn].clone();
                try {
                    if (rate > 0) {
                        setTimerSlack();
                        paced(s, sender, body, sent, pn, measureTo, measureFrom, paceLate, paceSend);
                    } else {
                        for (long seq = 0; nowNs() < measureTo; seq++) {
                            // At most backlogPerProducer ahead of the slowest consumer.
                            while (seq - slowest(tallies, pn) >= backlogPerProducer && nowNs() < measureTo) {
                                LockSupport.parkNanos(100_000);
                            }
                            stamp(body, seq, 0);
                            BytesMessage m = s.createBytesMessage();
                            m.writeBytes(body);
                            sender.send(m);
                            sent.incrementAndGet(pn);
                        }
                    }
                    sender.awaitConfirms();
                } catch (Throwable e) {
                    error.compareAndSet(null, "producer " + pn + ": " + e);
                }
            }, "producer-" + p);
            threads.add(th);
        }
        Thread clock = new Thread(() -> {
            sleepUntil(measureFrom);
            usage.open();
            sleepUntil(measureTo);
            usage.close();
        }, "window");
        clock.start();
        for (Thread th : threads) th.start();
        for (Thread th : threads) th.join();
        // A closed producer connection is one whose every send the broker has taken: close
        // waits for the broker's answer to its RemoveInfo, sent after the last message.
        for (Connection c : producerConns) closeQuietly(c, error);
        clock.join();

        long[] sentNow = new long[producers];
        long sentTotal = 0, unconfirmed = 0;
        for (int p = 0; p < producers; p++) {
            sentNow[p] = sent.get(p);
            sentTotal += sentNow[p];
            if (persistent) unconfirmed += sentNow[p] - senders.get(p).confirmed.get();
        }
        // Drain: until every consumer has every number, or nothing arrives for 30 s.
        long lastProgress = nowNs(), lastCount = -1;
        while (true) {
            long have = 0;
            for (Tally t : tallies) for (int p = 0; p < producers; p++) have += t.distinct.get(p);
            if (have >= sentTotal * consumers) break;
            if (have != lastCount) {
                lastCount = have;
                lastProgress = nowNs();
            } else if (nowNs() - lastProgress > DRAIN_STALL_NS) {
                break;
            }
            Thread.sleep(20);
        }
        for (Connection c : consumerConns) closeQuietly(c, error);

        long lost = 0, dup = 0, ooo = 0, corrupt = 0, redelivered = 0, delivered = 0;
        for (Tally t : tallies) {
            synchronized (t) {
                dup += t.duplicates;
                ooo += t.outOfOrder;
                corrupt += t.corrupt;
                redelivered += t.redelivered;
                delivered += t.delivered;
            }
            lost += t.lost(sentNow);
        }
        StringBuilder line = new StringBuilder();
        line.append(String.format("label=%s case=%s msgs_per_s=%.0f seconds=%d size=%d producers=%d consumers=%d persistent=%b "
                + "window=%d sent=%d delivered=%d delivered_window=%d lost=%d duplicates=%d out_of_order=%d corrupt=%d "
                + "redelivered=%d unconfirmed=%d",
            label, kase, deliveredWindow.get() / (double) seconds, seconds, size, producers, consumers, persistent,
            persistent ? this.window : 0, sentTotal, delivered, deliveredWindow.get(), lost, dup, ooo, corrupt, redelivered,
            unconfirmed));
        if (rate > 0) {
            line.append(" rate=").append(rate).append(' ').append(lat.fields("lat"))
                .append(' ').append(paceLate.fields("pace_late")).append(' ').append(paceSend.fields("pace_send"))
                .append(" timer_slack_1ns=").append(timerSlackSet);
        }
        line.append(' ').append(usage.fields());
        line.append(" error=").append(errorField(error.get()));
        System.out.println(line);
        return error.get() == null && lost == 0 && dup == 0 && corrupt == 0 && unconfirmed == 0;
    }

    /// The fewest numbers from producer p that any consumer has received.
    static long slowest(List<Tally> tallies, int p) {
        long min = Long.MAX_VALUE;
        for (Tally t : tallies) min = Math.min(min, t.distinct.get(p));
        return min;
    }

    /// Fixed rate: message i is due at start + i / rate (from i, so it does not drift); the
    /// thread sleeps until each due time and sends; when it falls behind, it sends what is
    /// overdue at once and each such message still carries its own due time, so the wait
    /// counts in its latency (no coordinated omission). Runs until the window closes (by
    /// the clock: a pacer that fell behind leaves the rest of the window's messages unsent,
    /// and the `timed` share shows it).
    void paced(Session s, Sender sender, byte[] body, AtomicLongArray sent, int pn, long measureTo,
            long measureFrom, Samples late, Samples sendTime) throws JMSException, InterruptedException {
        long start = nowNs();
        for (long i = 0; ; i++) {
            long due = start + (long) (i * (1e9 / rate));
            if (due >= measureTo || nowNs() >= measureTo) return;
            sleepUntil(due);
            long handed = nowNs();
            stamp(body, i, due);
            BytesMessage m = s.createBytesMessage();
            m.writeBytes(body);
            sender.send(m);
            long done = nowNs();
            sent.incrementAndGet(pn);
            if (due >= measureFrom) {
                late.add(handed - due);
                sendTime.add(done - handed);
            }
        }
    }

    static void sleepUntil(long atNs) {
        for (long left = atNs - nowNs(); left > 0; left = atNs - nowNs()) LockSupport.parkNanos(left);
    }

    static volatile boolean timerSlackSet;

    /// The pacing thread's timer slack to 1 ns (Linux's default 50 us would make every
    /// sleep up to 50 us late), through /proc/<tid>/timerslack_ns (Java has no prctl; the
    /// thread's id is the last part of /proc/thread-self). Reported as timer_slack_1ns:
    /// without it the pacer's lateness (pace_late_*) is higher.
    static void setTimerSlack() {
        try {
            Path tid = Files.readSymbolicLink(Paths.get("/proc/thread-self")).getFileName(); // of "<pid>/task/<tid>"
            Files.write(Paths.get("/proc", tid.toString(), "timerslack_ns"), "1".getBytes(StandardCharsets.US_ASCII),
                java.nio.file.StandardOpenOption.WRITE);
            timerSlackSet = true;
        } catch (Exception e) {
            timerSlackSet = false;
        }
    }

    // --- Connections ----------------------------------------------------------------------
    /// --parallel workers each repeat: open a connection and a session, close the
    /// connection; a cycle counts once it has fully succeeded within 10 s.
    boolean connect() throws Exception {
        ActiveMQConnectionFactory f = factory(true);
        final AtomicReference<String> error = new AtomicReference<>();
        final long measureFrom = nowNs() + warmup * 1_000_000_000L;
        final long measureTo = measureFrom + seconds * 1_000_000_000L;
        final AtomicLong ok = new AtomicLong(), okWindow = new AtomicLong();
        final AtomicLong failed = new AtomicLong(), failedWindow = new AtomicLong();
        final AtomicLong stallMaxNs = new AtomicLong();
        Usage usage = new Usage(brokerPid);
        List<Thread> workers = new ArrayList<>();
        for (int w = 0; w < parallel; w++) {
            Thread th = new Thread(() -> {
                while (nowNs() < measureTo) {
                    long t0 = nowNs();
                    Connection c = null;
                    boolean good;
                    try {
                        c = f.createConnection();
                        c.start();
                        c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                        c.close();
                        c = null;
                        good = true;
                    } catch (Throwable e) {
                        good = false;
                        error.compareAndSet(null, "connect cycle: " + e);
                        if (c != null) closeQuietly(c, null);
                    }
                    long t1 = nowNs();
                    stallMaxNs.accumulateAndGet(t1 - t0, Math::max);
                    if (good && t1 - t0 > CYCLE_TIMEOUT_NS) {
                        good = false;
                        error.compareAndSet(null, "connect cycle over 10 s");
                    }
                    boolean inWindow = t1 >= measureFrom && t1 < measureTo;
                    if (good) {
                        ok.incrementAndGet();
                        if (inWindow) okWindow.incrementAndGet();
                    } else {
                        failed.incrementAndGet();
                        if (inWindow) failedWindow.incrementAndGet();
                    }
                }
            }, "connect-" + w);
            workers.add(th);
            th.start();
        }
        sleepUntil(measureFrom);
        usage.open();
        sleepUntil(measureTo);
        usage.close();
        for (Thread th : workers) th.join();
        System.out.println(String.format("label=%s case=connect connects_per_s=%.0f seconds=%d parallel=%d connects_window=%d "
                + "failed_window=%d connects=%d failed=%d stall_max_ms=%d %s error=%s",
            label, okWindow.get() / (double) seconds, seconds, parallel, okWindow.get(), failedWindow.get(), ok.get(),
            failed.get(), stallMaxNs.get() / 1_000_000, usage.fields(), errorField(error.get())));
        return failed.get() == 0 && error.get() == null;
    }

    /// --connections connections (each with a session), opened --connect-parallel at a time,
    /// held --hold seconds with the inactivity monitor at --heartbeat seconds, then closed.
    /// A connection whose exception listener fires (the broker closed it, or the monitor
    /// gave up on it) is dropped.
    boolean idle() throws Exception {
        if (brokerPid == 0) throw new IllegalArgumentException("idle needs --broker-pid (it measures the broker's RSS)");
        ActiveMQConnectionFactory f = factory(true);
        final AtomicReference<String> error = new AtomicReference<>();
        final int n = connections;
        final ActiveMQConnection[] conns = new ActiveMQConnection[n];
        final AtomicBoolean closing = new AtomicBoolean();
        final AtomicLong failed = new AtomicLong(), dropped = new AtomicLong();
        final AtomicLong next = new AtomicLong();
        long rssBefore = Usage.statusKib(brokerPid, "VmRSS:");
        long t0 = nowNs();
        List<Thread> openers = new ArrayList<>();
        for (int w = 0; w < Math.min(connectParallel, n); w++) {
            Thread th = new Thread(() -> {
                for (long i = next.getAndIncrement(); i < n; i = next.getAndIncrement()) {
                    long c0 = nowNs();
                    try {
                        ActiveMQConnection c = (ActiveMQConnection) f.createConnection();
                        final long id = i;
                        c.setExceptionListener(e -> {
                            if (!closing.get()) {
                                dropped.incrementAndGet();
                                error.compareAndSet(null, "connection " + id + " dropped: " + e);
                            }
                        });
                        c.start();
                        c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                        conns[(int) i] = c;
                        if (nowNs() - c0 > CYCLE_TIMEOUT_NS) {
                            failed.incrementAndGet();
                            error.compareAndSet(null, "connection " + id + ": opening took over 10 s");
                        }
                    } catch (Throwable e) {
                        failed.incrementAndGet();
                        error.compareAndSet(null, "connection " + i + ": " + e);
                    }
                }
            }, "open-" + w);
            openers.add(th);
            th.start();
        }
        for (Thread th : openers) th.join();
        double connectS = (nowNs() - t0) / 1e9;
        long connected = 0;
        for (ActiveMQConnection c : conns) if (c != null) connected++;
        long rssConnected = Usage.statusKib(brokerPid, "VmRSS:");

        Usage usage = new Usage(brokerPid);
        usage.open();
        Thread.sleep(hold * 1000);
        usage.close();
        long rssHeld = Usage.statusKib(brokerPid, "VmRSS:");

        closing.set(true);
        final AtomicLong alive = new AtomicLong();
        next.set(0);
        List<Thread> closers = new ArrayList<>();
        for (int w = 0; w < Math.min(connectParallel, n); w++) {
            Thread th = new Thread(() -> {
                for (long i = next.getAndIncrement(); i < n; i = next.getAndIncrement()) {
                    ActiveMQConnection c = conns[(int) i];
                    if (c == null) continue;
                    boolean up = !c.isClosed() && !c.isTransportFailed();
                    try {
                        c.close();
                        if (up) alive.incrementAndGet();
                    } catch (Throwable e) {
                        error.compareAndSet(null, "connection " + i + " at the end: " + e);
                    }
                }
            }, "close-" + w);
            closers.add(th);
            th.start();
        }
        for (Thread th : closers) th.join();
        Thread.sleep(2000);
        long rssClosed = Usage.statusKib(brokerPid, "VmRSS:");
        double perConn = connected > 0 ? (rssHeld - rssBefore) * 1024.0 / connected : 0;
        System.out.println(String.format("label=%s case=idle connections=%d connected=%d failed=%d dropped=%d alive_at_end=%d "
                + "heartbeat_s=%d hold_s=%d connect_s=%.2f connects_per_s=%.0f rss_before_kib=%d rss_connected_kib=%d "
                + "rss_held_kib=%d rss_closed_kib=%d rss_per_conn_b=%.0f %s error=%s",
            label, n, connected, failed.get(), dropped.get(), alive.get(), heartbeat, hold, connectS,
            connected / connectS, rssBefore, rssConnected, rssHeld, rssClosed, perConn, usage.fields(),
            errorField(error.get())));
        return failed.get() == 0 && dropped.get() == 0 && alive.get() == n && error.get() == null;
    }

    static void closeQuietly(Connection c, AtomicReference<String> error) {
        try {
            c.close();
        } catch (Throwable e) {
            if (error != null) error.compareAndSet(null, "close: " + e);
        }
    }

    static String errorField(String e) {
        return e == null ? "none" : "\"" + e.replace('"', '\'').replace('\n', ' ') + "\"";
    }

    // --- /proc ----------------------------------------------------------------------------
    /// CPU seconds of the broker, of this process and of everything else on the machine
    /// between open() and close(), and the broker's peak RSS from construction (its peak
    /// is reset then) to close().
    static final class Usage {
        static final double HZ = clockTicks();
        final int pid;
        double broker0, self0, all0, broker1, self1, all1;
        long peakKib;

        Usage(int pid) {
            this.pid = pid;
            if (pid > 0) {
                try {
                    Files.write(Paths.get("/proc/" + pid + "/clear_refs"), "5".getBytes(StandardCharsets.US_ASCII));
                } catch (Exception e) {
                    // Not ours to reset: the peak is then since the broker started.
                }
            }
        }

        void open() {
            broker0 = pid > 0 ? procCpu(Integer.toString(pid)) : 0;
            self0 = procCpu("self");
            all0 = machineCpu();
        }

        void close() {
            broker1 = pid > 0 ? procCpu(Integer.toString(pid)) : 0;
            self1 = procCpu("self");
            all1 = machineCpu();
            peakKib = pid > 0 ? statusKib(pid, "VmHWM:") : 0;
        }

        String fields() {
            double b = broker1 - broker0, s = self1 - self0;
            return String.format("broker_cpu_s=%.2f broker_rss_peak_kib=%d loadgen_cpu_s=%.2f other_cpu_s=%.2f",
                b, peakKib, s, Math.max(0, (all1 - all0) - b - s));
        }

        static double clockTicks() {
            try {
                Process p = new ProcessBuilder("getconf", "CLK_TCK").start();
                return Double.parseDouble(new String(p.getInputStream().readAllBytes(), StandardCharsets.US_ASCII).trim());
            } catch (Exception e) {
                return 100;
            }
        }

        /// utime + stime of /proc/<who>/stat, seconds (fields 14 and 15; the name in
        /// parentheses may hold spaces, so count from its closing parenthesis).
        static double procCpu(String who) {
            try {
                String s = Files.readString(Paths.get("/proc/" + who + "/stat"));
                String[] f = s.substring(s.lastIndexOf(')') + 2).split(" ");
                return (Long.parseLong(f[11]) + Long.parseLong(f[12])) / HZ;
            } catch (Exception e) {
                return 0;
            }
        }

        /// Busy CPU seconds of the whole machine: /proc/stat's first line less idle and iowait.
        static double machineCpu() {
            try {
                String[] f = Files.readAllLines(Paths.get("/proc/stat")).get(0).trim().split("\\s+");
                long busy = 0;
                for (int i = 1; i < f.length && i <= 8; i++) if (i != 4 && i != 5) busy += Long.parseLong(f[i]);
                return busy / HZ;
            } catch (Exception e) {
                return 0;
            }
        }

        static long statusKib(int pid, String key) {
            try {
                for (String l : Files.readAllLines(Paths.get("/proc/" + pid + "/status"))) {
                    if (l.startsWith(key)) return Long.parseLong(l.substring(key.length()).trim().split("\\s+")[0]);
                }
            } catch (Exception e) {
                // The broker is gone: 0, and the script reports it.
            }
            return 0;
        }
    }
}
