//! Pieces of one measured run: the measurement window, and the first error of many tasks.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Waits `length` (or until `stopped()`), sampling `progress()` every `interval` and
/// calling `on_sample()` after each sample; returns the longest time `progress()` did
/// not change (a stall: no delivery, no connection).
pub async fn window(
    length: Duration,
    interval: Duration,
    mut progress: impl FnMut() -> u64,
    stopped: impl Fn() -> bool,
    mut on_sample: impl FnMut(),
) -> Duration {
    let start = Instant::now();
    let end = start + length;
    let (mut last, mut last_change, mut stall_max) = (progress(), start, Duration::ZERO);
    while Instant::now() < end && !stopped() {
        tokio::time::sleep(interval).await;
        let now = Instant::now();
        let p = progress();
        if p != last {
            last = p;
            last_change = now;
        }
        stall_max = stall_max.max(now - last_change);
        on_sample();
    }
    stall_max
}

/// Waits until `done()`, or until `progress()` has not changed for `idle_max`, checking
/// every `interval` (the drain after a run: everything arrives, or nothing more will).
/// Returns whether `done()` became true.
pub async fn drain(
    idle_max: Duration,
    interval: Duration,
    mut progress: impl FnMut() -> u64,
    mut done: impl FnMut() -> bool,
) -> bool {
    let (mut last, mut last_change) = (progress(), Instant::now());
    loop {
        if done() {
            return true;
        }
        let p = progress();
        if p != last {
            last = p;
            last_change = Instant::now();
        }
        if last_change.elapsed() > idle_max {
            return false;
        }
        tokio::time::sleep(interval).await;
    }
}

/// The first of the errors reported by any task (later ones are usually its echoes).
#[derive(Default, Debug)]
pub struct FirstError(Mutex<Option<String>>);

impl FirstError {
    /// Keeps `e` unless an error was reported before.
    pub fn set(&self, e: String) {
        let mut first = self.0.lock().expect("no panics while held");
        if first.is_none() {
            *first = Some(e);
        }
    }

    /// The first error, if any.
    pub fn get(&self) -> Option<String> {
        self.0.lock().expect("no panics while held").clone()
    }

    /// The first error as the value of an `error=` field: quoted, or `none`.
    pub fn field(&self) -> String {
        self.get()
            .map(|e| format!("{e:?}"))
            .unwrap_or_else(|| "none".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_error() {
        let e = FirstError::default();
        assert_eq!(e.field(), "none");
        e.set("a \"b\"".into());
        e.set("c".into());
        assert_eq!(e.get().as_deref(), Some("a \"b\""));
        assert_eq!(e.field(), r#""a \"b\"""#);
    }

    #[tokio::test(start_paused = true)]
    async fn window_reports_the_longest_stall() {
        let calls = std::cell::Cell::new(0u64);
        // Progress at 200, 300 and 400 ms, then none until the end at 1 s.
        let stall = window(
            Duration::from_secs(1),
            Duration::from_millis(100),
            || calls.get().min(3),
            || false,
            || calls.set(calls.get() + 1),
        )
        .await;
        assert_eq!(stall, Duration::from_millis(600));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_ends_when_done_or_when_progress_stops() {
        let n = std::cell::Cell::new(0u64);
        let step = || {
            n.set(n.get() + 1);
            n.get()
        };
        assert!(
            drain(
                Duration::from_secs(1),
                Duration::from_millis(10),
                step,
                || n.get() >= 5
            )
            .await
        );
        let start = Instant::now();
        let stuck = drain(
            Duration::from_secs(1),
            Duration::from_millis(10),
            || 7,
            || false,
        )
        .await;
        assert!(!stuck);
        assert!(start.elapsed() >= Duration::from_secs(1));
    }
}
