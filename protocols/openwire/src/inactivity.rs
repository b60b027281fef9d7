//! The inactivity monitor, timed as ActiveMQ's `InactivityMonitor` times it, so that a
//! 5.x client and this broker never disagree about whether the other is alive.
//!
//! Both sides announce `MaxInactivityDuration` and `MaxInactivityDurationInitalDelay`
//! (ActiveMQ's spelling) in their WireFormatInfo; each takes the lower of the two values of
//! each (a duration of 0 on either side turns monitoring off). From negotiation the
//! monitor waits the initial delay, then:
//! - reads are checked every duration: a check that finds nothing read since the previous
//!   one (or since the monitor started, for the first) ends the connection. A peer that
//!   goes silent is therefore closed between one and two durations after its last byte
//!   (plus the initial delay if it never sent anything after negotiation);
//! - KeepAliveInfo is written whenever nothing has been written for a third of the
//!   duration (ActiveMQ checks every third and writes when that third was silent, so its
//!   gaps reach two thirds; these never exceed one), so any window of one duration, which
//!   is what the client checks, holds a write.
//!
//! The 5.x client sends nothing for its first check period after the initial delay when
//! it has written since negotiation (its write check finds the setup traffic and only
//! resets its flag): a broker that expects bytes within one duration of negotiation
//! closes a client whose initial delay is not shorter than the duration (10 s and 10 s).
//!
//! No clock is read here: the caller passes the time in milliseconds.

/// What the monitor wants done now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing (yet).
    Nothing,
    /// Write a KeepAliveInfo.
    KeepAlive,
    /// The peer sent nothing for a whole read-check period: close the connection.
    Inactive,
}

/// One connection's inactivity monitor.
///
/// # Invariants
/// - `read_check_ms == 0` means off: no deadline, `poll` answers `Nothing`.
/// - `write_check_ms` is a third of `read_check_ms` (all of it below 4 ms, as ActiveMQ).
/// - `next_read_check_ms >= start_ms`.
#[derive(Clone, Debug)]
pub struct Monitor {
    read_check_ms: u64,
    write_check_ms: u64,
    /// Negotiation plus the initial delay: nothing is checked or sent before.
    start_ms: u64,
    next_read_check_ms: u64,
    read_since_check: bool,
    last_write_ms: u64,
}

/// A value announced in a WireFormatInfo: absent or negative counts as `absent`.
fn announced(v: Option<i64>) -> Option<u64> {
    v.map(|v| v.max(0) as u64)
}

impl Monitor {
    /// Monitoring off (before negotiation, or when a side announced 0).
    pub fn off() -> Self {
        Monitor {
            read_check_ms: 0,
            write_check_ms: 0,
            start_ms: 0,
            next_read_check_ms: 0,
            read_since_check: false,
            last_write_ms: 0,
        }
    }

    /// The monitor after negotiation at `now_ms`: ours are the values the broker
    /// announced, theirs the client's (`None` when its WireFormatInfo lacks them; an
    /// absent duration turns monitoring off, an absent delay leaves ours).
    pub fn negotiated(
        ours_ms: u64,
        our_delay_ms: u64,
        theirs_ms: Option<i64>,
        their_delay_ms: Option<i64>,
        now_ms: u64,
    ) -> Self {
        let read_check_ms = ours_ms.min(announced(theirs_ms).unwrap_or(0));
        if read_check_ms == 0 {
            return Self::off();
        }
        let delay_ms = our_delay_ms.min(announced(their_delay_ms).unwrap_or(our_delay_ms));
        let start_ms = now_ms.saturating_add(delay_ms);
        Monitor {
            read_check_ms,
            write_check_ms: if read_check_ms > 3 {
                read_check_ms / 3
            } else {
                read_check_ms
            },
            start_ms,
            next_read_check_ms: start_ms,
            // The WireFormatInfo just read counts for the check at the start.
            read_since_check: true,
            last_write_ms: now_ms,
        }
    }

    /// The negotiated read-check period in milliseconds (0: off).
    pub fn read_check_ms(&self) -> u64 {
        self.read_check_ms
    }

    /// Bytes arrived.
    pub fn on_read(&mut self) {
        self.read_since_check = true;
    }

    /// Bytes were written at `now_ms`.
    pub fn on_write(&mut self, now_ms: u64) {
        self.last_write_ms = now_ms;
    }

    fn keep_alive_due_ms(&self) -> u64 {
        self.last_write_ms.max(self.start_ms) + self.write_check_ms
    }

    /// The next moment `poll` may have something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        (self.read_check_ms > 0).then(|| self.next_read_check_ms.min(self.keep_alive_due_ms()))
    }

    /// Runs the checks due at `now_ms`. After `KeepAlive` the caller writes one and
    /// reports it through `on_write`.
    pub fn poll(&mut self, now_ms: u64) -> Due {
        if self.read_check_ms == 0 {
            return Due::Nothing;
        }
        if now_ms >= self.next_read_check_ms {
            if !self.read_since_check {
                return Due::Inactive;
            }
            self.read_since_check = false;
            // Like ActiveMQ's timer (fixed delay): the next check is a period after this one.
            self.next_read_check_ms = now_ms + self.read_check_ms;
        }
        if now_ms >= self.keep_alive_due_ms() {
            self.last_write_ms = now_ms;
            return Due::KeepAlive;
        }
        Due::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the monitor from `from` to `to` (ms), stepping to each deadline, with the peer
    /// sending at the times in `reads`; returns the keep-alive times and when it gave up.
    fn run(m: &mut Monitor, from: u64, to: u64, reads: &[u64]) -> (Vec<u64>, Option<u64>) {
        let mut keep_alives = Vec::new();
        let mut now = from;
        let mut reads = reads.iter().copied().peekable();
        loop {
            let next = m.next_deadline_ms().expect("monitor on");
            let read = reads.peek().copied();
            match read {
                Some(r) if r <= next => {
                    reads.next();
                    now = r;
                    m.on_read();
                    continue;
                }
                _ => {}
            }
            now = now.max(next);
            if now > to {
                return (keep_alives, None);
            }
            match m.poll(now) {
                Due::KeepAlive => {
                    keep_alives.push(now);
                    m.on_write(now);
                }
                Due::Inactive => return (keep_alives, Some(now)),
                Due::Nothing => {}
            }
        }
    }

    #[test]
    fn lower_of_both_sides_wins() {
        let m = Monitor::negotiated(30_000, 10_000, Some(10_000), Some(20_000), 0);
        assert_eq!(m.read_check_ms(), 10_000);
        assert_eq!(m.start_ms, 10_000);
        let m = Monitor::negotiated(5_000, 10_000, Some(30_000), Some(500), 100);
        assert_eq!(m.read_check_ms(), 5_000);
        assert_eq!(m.start_ms, 600);
        assert_eq!(m.write_check_ms, 1_666);
        let m = Monitor::negotiated(30_000, 10_000, Some(30_000), None, 0);
        assert_eq!(m.start_ms, 10_000);
        let m = Monitor::negotiated(3, 0, Some(30_000), Some(0), 0);
        assert_eq!(m.write_check_ms, 3);
    }

    #[test]
    fn off_when_either_side_says_zero_or_nothing() {
        for theirs in [Some(0), Some(-5), None] {
            let mut m = Monitor::negotiated(30_000, 10_000, theirs, Some(10_000), 0);
            assert_eq!(m.next_deadline_ms(), None);
            assert_eq!(m.poll(u64::MAX / 2), Due::Nothing);
        }
        let m = Monitor::negotiated(0, 10_000, Some(30_000), Some(10_000), 0);
        assert_eq!(m.next_deadline_ms(), None);
    }

    /// The 5.x client's write check, as it runs: every third of the period from the
    /// initial delay, a keep-alive when it sent nothing since the previous check. Its
    /// setup traffic at negotiation makes its first check send nothing.
    fn client_writes(delay: u64, period: u64, until: u64) -> Vec<u64> {
        let third = period / 3;
        let mut sent_since_check = true;
        let mut out = Vec::new();
        let mut t = delay;
        while t <= until {
            if !sent_since_check {
                out.push(t);
            }
            sent_since_check = false;
            t += third;
        }
        out
    }

    #[test]
    fn a_healthy_client_is_never_closed() {
        let cases: [(u64, u64); 4] = [(30_000, 10_000), (10_000, 10_000), (1_000, 500), (2_000, 0)];
        for (period, delay) in cases {
            let mut m =
                Monitor::negotiated(30_000, 10_000, Some(period as i64), Some(delay as i64), 0);
            let reads = client_writes(delay, period, 20 * period + delay);
            let (_, closed) = run(&mut m, 0, 20 * period + delay, &reads);
            assert_eq!(closed, None, "period {period} delay {delay}");
        }
    }

    #[test]
    fn keep_alives_start_after_the_delay_and_leave_no_period_silent() {
        let (period, delay): (u64, u64) = (10_000, 10_000);
        let mut m = Monitor::negotiated(30_000, 10_000, Some(10_000), Some(10_000), 0);
        let reads = client_writes(delay, period, 100_000);
        let (keep_alives, closed) = run(&mut m, 0, 100_000, &reads);
        assert_eq!(closed, None);
        assert!(
            keep_alives[0] > delay,
            "first keep-alive at {}",
            keep_alives[0]
        );
        assert!(keep_alives[0] <= delay + period / 3);
        // The client checks a window of one period at a time: each holds a keep-alive.
        for w in keep_alives.windows(2) {
            assert!(w[1] - w[0] <= period / 3, "gap {:?}", w);
        }
        assert!(*keep_alives.last().unwrap() > 100_000 - period / 3);
    }

    #[test]
    fn writes_postpone_keep_alives() {
        let mut m = Monitor::negotiated(3_000, 0, Some(3_000), Some(0), 0);
        m.on_write(900);
        assert_eq!(m.poll(1_000), Due::Nothing);
        assert_eq!(m.next_deadline_ms(), Some(1_900));
        assert_eq!(m.poll(1_900), Due::KeepAlive);
    }

    #[test]
    fn a_silent_peer_is_closed_within_delay_plus_two_periods() {
        // Silent from negotiation: the check at the start passes (the WireFormatInfo),
        // the next one fails.
        let mut m = Monitor::negotiated(30_000, 10_000, Some(1_000), Some(500), 0);
        let (_, closed) = run(&mut m, 0, 10_000, &[]);
        assert_eq!(closed, Some(1_500));
        // Silent after a while: closed at the first check that follows a silent period.
        let mut m = Monitor::negotiated(30_000, 10_000, Some(1_000), Some(500), 0);
        let reads: Vec<u64> = (1..=10).map(|i| i * 300).collect();
        let (_, closed) = run(&mut m, 0, 10_000, &reads);
        let closed = closed.expect("closed");
        assert!(
            closed > 3_000 + 1_000 && closed <= 3_000 + 2_000,
            "closed at {closed}"
        );
    }

    #[test]
    fn nothing_is_checked_during_the_initial_delay() {
        let mut m = Monitor::negotiated(30_000, 10_000, Some(1_000), Some(10_000), 0);
        assert_eq!(m.next_deadline_ms(), Some(10_000));
        assert_eq!(m.poll(9_999), Due::Nothing);
        let (_, closed) = run(&mut m, 0, 20_000, &[]);
        assert_eq!(closed, Some(11_000));
    }
}
