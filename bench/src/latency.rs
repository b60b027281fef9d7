//! Fixed-rate latency measurement: a pacer that publishes on a schedule and a histogram
//! of the delays from each message's due time (which its body carries, in the header
//! of [`crate::tally`]) to its delivery.
//!
//! Producer and consumer run in one process, so both read the same clock: [`now_ns`] is
//! nanoseconds since a process-wide origin (a monotonic `Instant` taken on first use).
//!
//! # Coordinated omission
//! Message `i` is *due* at `start + i / rate`, and its body is stamped with that due
//! time, not with the moment it was actually handed to the client. When the broker (or
//! the client) pushes back and the pacer falls behind, the messages it sends late still
//! count from when they should have left, so a stall shows as the delay every waiting
//! message saw, not as one slow message. A pacer that is late sends what is due at once
//! (it catches up, it does not skip). Its own lateness (when it handed a message over,
//! against when it was due) and the time each hand-over took are recorded too
//! ([`Pacing`]), so a slow load generator can be told from a slow broker, and
//! back-pressure from a pacing thread that did not get a core.
//!
//! # Use from a load generator
//! [`pace`] blocks: run it on its own thread (`tokio::task::spawn_blocking`) and, in its
//! `send` callback, hand the message to the async client with
//! `tokio::runtime::Handle::block_on`, its body stamped with the tick's sequence number
//! and due time ([`crate::tally::stamp`]). A blocking thread wakes at the due time to within
//! tens of microseconds, where tokio's timer wheel rounds up to whole milliseconds,
//! which at 10,000 msg/s would be ten messages' worth. Consumers call
//! [`Recorder::record`] with the due time of each fresh delivery
//! ([`crate::tally::Received::record`] returns it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Nanoseconds since the process's clock origin (the first call of this function).
pub fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Linear sub-buckets per power of two, as a power of two: 2^8 values are exact, and
/// above them every bucket is at most 1/128 (0.8 %) of its value wide.
const SUB_BITS: u32 = 8;
/// Half the sub-buckets: the number of buckets per power of two above 2^SUB_BITS.
const HALF: u64 = 1 << (SUB_BITS - 1);
/// Buckets for every `u64`: 2^SUB_BITS exact ones, then HALF per power of two up to 2^63.
const BUCKETS: usize = ((64 - SUB_BITS + 1) as u64 * HALF + HALF) as usize;

/// The bucket of value `v`.
fn bucket(v: u64) -> usize {
    if v < 1 << SUB_BITS {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - (SUB_BITS - 1);
    (u64::from(shift) * HALF + (v >> shift)) as usize
}

/// The lowest and highest value that fall into bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < 1 << SUB_BITS {
        return (i, i);
    }
    let shift = i / HALF - 1;
    let sub = i - shift * HALF;
    let low = sub << shift;
    let high = ((u128::from(sub) + 1) << shift) - 1;
    (low, u64::try_from(high).unwrap_or(u64::MAX))
}

/// A log-bucketed histogram of `u64` values (nanoseconds here), in the manner of HDR
/// histograms: exact below 256, within 0.8 % above. Recording is one relaxed atomic add
/// (and a `fetch_max`), so any number of threads may record into one histogram at once
/// without a lock.
///
/// # Invariants
/// `counts[bucket(v)]` was incremented once for every recorded `v`; `total` is the sum
/// of `counts` once every `record` has returned; `max` is the largest value recorded.
pub struct Histogram {
    counts: Box<[AtomicU64]>,
    total: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one value.
    pub fn record(&self, v: u64) {
        self.counts[bucket(v)].fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The largest value recorded (0 if none).
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The value at quantile `q` (0.5 for the median): the highest value of the bucket
    /// that holds the `ceil(q × count)`-th smallest value, at most [`Histogram::max`];
    /// so the true value is at most this, and less by at most 0.8 %. 0 if empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                return bucket_range(i).1.min(self.max());
            }
        }
        self.max()
    }

    /// The usual percentiles, read once recording has stopped.
    pub fn summary(&self) -> Summary {
        Summary {
            count: self.count(),
            p50_ns: self.quantile(0.5),
            p99_ns: self.quantile(0.99),
            p999_ns: self.quantile(0.999),
            max_ns: self.max(),
        }
    }
}

/// Percentiles of a latency histogram, in nanoseconds.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest.
    pub max_ns: u64,
}

impl Summary {
    /// `key=value` fields in microseconds, each key starting with `prefix`:
    /// `{prefix}_n`, `{prefix}_p50_us`, `{prefix}_p99_us`, `{prefix}_p999_us`,
    /// `{prefix}_max_us`.
    pub fn fields(&self, prefix: &str) -> String {
        let us = |ns: u64| ns as f64 / 1_000.0;
        format!(
            "{prefix}_n={} {prefix}_p50_us={:.1} {prefix}_p99_us={:.1} {prefix}_p999_us={:.1} \
             {prefix}_max_us={:.1}",
            self.count,
            us(self.p50_ns),
            us(self.p99_ns),
            us(self.p999_ns),
            us(self.max_ns),
        )
    }
}

/// The latencies of the messages *due* inside the measurement window: a delivery counts
/// if its due time is in `[open, close)`, whenever it arrives (so the slowest
/// messages of the window, still in flight when it closes, count too). Messages from
/// the warm-up and the drain do not.
pub struct Recorder {
    hist: Histogram,
    open_ns: AtomicU64,
    close_ns: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            hist: Histogram::default(),
            open_ns: AtomicU64::new(u64::MAX),
            close_ns: AtomicU64::new(u64::MAX),
        }
    }
}

impl Recorder {
    /// Starts the window at `at_ns` ([`now_ns`] time).
    pub fn open(&self, at_ns: u64) {
        self.open_ns.store(at_ns, Ordering::Relaxed);
    }

    /// Ends the window at `at_ns`.
    pub fn close(&self, at_ns: u64) {
        self.close_ns.store(at_ns, Ordering::Relaxed);
    }

    /// Records the delivery at `at_ns` of a message due at `due_ns`, if it was due
    /// inside the window.
    pub fn record(&self, due_ns: u64, at_ns: u64) {
        self.record_value(due_ns, at_ns.saturating_sub(due_ns));
    }

    /// Records `value` for a message due at `due_ns`, if that is inside the window.
    pub fn record_value(&self, due_ns: u64, value: u64) {
        if due_ns >= self.open_ns.load(Ordering::Relaxed)
            && due_ns < self.close_ns.load(Ordering::Relaxed)
        {
            self.hist.record(value);
        }
    }

    /// The percentiles so far.
    pub fn summary(&self) -> Summary {
        self.hist.summary()
    }
}

/// One message the pacer asks to send.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tick {
    /// Its sequence number, from 0.
    pub seq: u64,
    /// When it is due, in [`now_ns`] nanoseconds: what its body should carry.
    pub due_ns: u64,
}

/// What the pacer's clock should do next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    /// Send this message now.
    Send(Tick),
    /// Nothing is due for this long.
    Wait(Duration),
}

/// The schedule of a fixed rate: message `i` is due at `start + i / rate` (computed from
/// `i`, not by adding intervals, so it does not drift at rates that do not divide a
/// second). No I/O and no clock: [`pace`] drives it, tests drive it with numbers.
#[derive(Clone, Debug)]
pub struct Pacer {
    start_ns: u64,
    rate_per_s: u64,
    next: u64,
}

impl Pacer {
    /// A schedule of `rate_per_s` messages a second from `start_ns`.
    ///
    /// # Panics
    /// If `rate_per_s` is 0.
    pub fn new(rate_per_s: u64, start_ns: u64) -> Self {
        assert!(rate_per_s > 0, "a rate of 0 never sends");
        Self {
            start_ns,
            rate_per_s,
            next: 0,
        }
    }

    /// When message `seq` is due.
    pub fn due_ns(&self, seq: u64) -> u64 {
        let offset = u128::from(seq) * 1_000_000_000 / u128::from(self.rate_per_s);
        u64::try_from(u128::from(self.start_ns) + offset).unwrap_or(u64::MAX)
    }

    /// Messages handed out so far.
    pub fn sent(&self) -> u64 {
        self.next
    }

    /// At `now_ns`: the next message if it is due (even long overdue), or how long until
    /// it is.
    pub fn step(&mut self, now_ns: u64) -> Step {
        let due_ns = self.due_ns(self.next);
        if due_ns > now_ns {
            return Step::Wait(Duration::from_nanos(due_ns - now_ns));
        }
        let tick = Tick {
            seq: self.next,
            due_ns,
        };
        self.next += 1;
        Step::Send(tick)
    }
}

/// What the pacer measures about itself, for the messages due inside the window.
#[derive(Default)]
pub struct Pacing {
    /// When `send` was called, against when the message was due. Large values mean the
    /// pacing thread was held up: by earlier `send`s (see `send`) or by not getting a
    /// core in time.
    pub late: Recorder,
    /// How long each `send` took: the time the client or the broker pushed back.
    pub send: Recorder,
}

impl Pacing {
    /// Starts the window at `at_ns`.
    pub fn open(&self, at_ns: u64) {
        self.late.open(at_ns);
        self.send.open(at_ns);
    }

    /// Ends the window at `at_ns`.
    pub fn close(&self, at_ns: u64) {
        self.late.close(at_ns);
        self.send.close(at_ns);
    }

    /// `pace_late_*` and `pace_send_*` fields, in microseconds.
    pub fn fields(&self) -> String {
        format!(
            "{} {}",
            self.late.summary().fields("pace_late"),
            self.send.summary().fields("pace_send")
        )
    }
}

/// The ` rate=… lat_… pace_…` fields of a result line for a fixed-rate run, or nothing
/// when `rate` is 0 (a throughput run).
pub fn rate_fields(rate: u64, latency: &Recorder, pacing: &Pacing) -> String {
    if rate == 0 {
        return String::new();
    }
    format!(
        " rate={} {} {}",
        rate,
        latency.summary().fields("lat"),
        pacing.fields()
    )
}

/// Calls `send` with each message of a `rate_per_s` schedule at its due time, on the
/// calling thread, until `keep_going()` says no (checked before every message); returns
/// how many it sent. Blocks; `send` may block too (that is back-pressure, and it shows
/// in the latencies of the messages due meanwhile). What it measures about itself goes
/// to `pacing`.
pub fn pace(
    rate_per_s: u64,
    pacing: &Pacing,
    mut keep_going: impl FnMut() -> bool,
    mut send: impl FnMut(Tick),
) -> u64 {
    sharpen_sleeps();
    let mut pacer = Pacer::new(rate_per_s, now_ns());
    while keep_going() {
        let now = now_ns();
        match pacer.step(now) {
            Step::Send(tick) => {
                pacing.late.record_value(tick.due_ns, now - tick.due_ns);
                send(tick);
                pacing
                    .send
                    .record_value(tick.due_ns, now_ns().saturating_sub(now));
            }
            Step::Wait(d) => std::thread::sleep(d),
        }
    }
    pacer.sent()
}

/// Asks Linux to wake this thread's sleeps within 1 µs of the deadline instead of the
/// default 50 µs of timer slack (which would add up to 50 µs to every message).
fn sharpen_sleeps() {
    const TIMER_SLACK_NS: libc::c_ulong = 1_000;
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and changes only the calling
    // thread's timer slack; no memory is passed. A failure leaves the default, which is
    // only less precise.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, TIMER_SLACK_NS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_and_are_narrow() {
        let mut v = 0u64;
        while v < u64::MAX / 3 {
            let (low, high) = bucket_range(bucket(v));
            assert!(low <= v && v <= high, "{v} in [{low}, {high}]");
            assert!(
                high - low <= v / HALF,
                "bucket of {v} too wide: [{low}, {high}]"
            );
            v = v * 3 / 2 + 1;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_range(BUCKETS - 1).1, u64::MAX);
        for i in 1..BUCKETS {
            assert_eq!(bucket_range(i).0, bucket_range(i - 1).1 + 1, "gap at {i}");
        }
    }

    #[test]
    fn small_values_are_exact() {
        let h = Histogram::default();
        for v in [3, 1, 2, 200, 255] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.0), 1);
        assert_eq!(h.quantile(0.4), 2);
        assert_eq!(h.quantile(0.5), 3);
        assert_eq!(h.quantile(0.7), 200);
        assert_eq!(h.quantile(1.0), 255);
        assert_eq!(h.summary().max_ns, 255);
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let h = Histogram::default();
        // 1 µs .. 100 ms in 1 µs steps, in nanoseconds.
        for us in 1..=100_000u64 {
            h.record(us * 1_000);
        }
        let s = h.summary();
        assert_eq!(s.count, 100_000);
        let within = |got: u64, want: u64| got >= want && got <= want + want / HALF;
        assert!(within(s.p50_ns, 50_000_000), "{s:?}");
        assert!(within(s.p99_ns, 99_000_000), "{s:?}");
        assert!(within(s.p999_ns, 99_900_000), "{s:?}");
        assert_eq!(s.max_ns, 100_000_000);
        assert_eq!(
            s.fields("lat"),
            format!(
                "lat_n=100000 lat_p50_us={:.1} lat_p99_us={:.1} lat_p999_us={:.1} \
                 lat_max_us=100000.0",
                s.p50_ns as f64 / 1e3,
                s.p99_ns as f64 / 1e3,
                s.p999_ns as f64 / 1e3
            )
        );
    }

    #[test]
    fn a_rare_outlier_shows_in_the_tail_only() {
        let h = Histogram::default();
        for _ in 0..9_995 {
            h.record(100_000);
        }
        for _ in 0..5 {
            h.record(40_000_000);
        }
        let s = h.summary();
        assert!(s.p50_ns >= 100_000 && s.p50_ns < 101_000, "{s:?}");
        assert!(s.p99_ns >= 100_000 && s.p99_ns < 101_000, "{s:?}");
        assert!(s.p999_ns >= 100_000 && s.p999_ns < 101_000, "{s:?}");
        assert_eq!(h.quantile(0.9997), 40_000_000);
        assert_eq!(s.max_ns, 40_000_000);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        assert_eq!(Histogram::default().summary(), Summary::default());
    }

    #[test]
    fn recorder_counts_only_messages_due_inside_the_window() {
        let r = Recorder::default();
        r.record(5, 10); // before the window opened
        r.open(100);
        r.record(99, 150); // due during the warm-up
        r.record(100, 130);
        r.record(150, 200);
        r.close(200);
        r.record(199, 1_000); // due inside, arrives late: counts
        r.record(200, 210); // due after the window
        let s = r.summary();
        assert_eq!(s.count, 3);
        assert_eq!((s.p50_ns, s.max_ns), (50, 801));
    }

    #[test]
    fn pacer_sends_on_schedule_and_catches_up_without_skipping() {
        let mut p = Pacer::new(10_000, 1_000);
        let send = |seq, due_ns| Step::Send(Tick { seq, due_ns });
        assert_eq!(p.step(0), Step::Wait(Duration::from_nanos(1_000)));
        assert_eq!(p.step(1_000), send(0, 1_000));
        assert_eq!(p.step(1_000), Step::Wait(Duration::from_micros(100)));
        // 250 µs late: the two overdue messages go at once, stamped with their due times.
        assert_eq!(p.step(251_000), send(1, 101_000));
        assert_eq!(p.step(251_000), send(2, 201_000));
        assert_eq!(p.step(251_000), Step::Wait(Duration::from_micros(50)));
        assert_eq!(p.sent(), 3);
    }

    #[test]
    fn pacer_schedule_does_not_drift() {
        let p = Pacer::new(3, 0);
        assert_eq!(p.due_ns(1), 333_333_333);
        assert_eq!(p.due_ns(2), 666_666_666);
        assert_eq!(p.due_ns(3), 1_000_000_000);
        assert_eq!(p.due_ns(3_000_000), 1_000_000_000_000_000);
        // A schedule far beyond u64 nanoseconds saturates instead of wrapping.
        assert_eq!(Pacer::new(1, 1).due_ns(u64::MAX), u64::MAX);
    }

    #[test]
    fn pace_sends_in_order_until_told_to_stop() {
        // A real thread and real sleeps, but no timing is asserted: only that it sends
        // in order, stops when asked, and reports what it sent.
        let seqs = std::cell::RefCell::new(Vec::new());
        let pacing = Pacing::default();
        pacing.open(0);
        let sent = pace(
            100_000,
            &pacing,
            || seqs.borrow().len() < 5,
            |t| seqs.borrow_mut().push(t.seq),
        );
        assert_eq!(sent, 5);
        assert_eq!(pacing.late.summary().count, 5);
        assert_eq!(pacing.send.summary().count, 5);
        assert_eq!(seqs.into_inner(), vec![0, 1, 2, 3, 4]);
    }
}
