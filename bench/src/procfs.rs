//! What a process costs, read from Linux's `/proc`: CPU seconds (user + system, all
//! threads), resident memory now and at its peak, the whole machine's busy time, and the
//! open-file limit. Used to report a broker's CPU and RSS per run next to its message
//! rate, and how much of the two cores the load generator and everything else took.

use std::io;

/// Seconds per clock tick of `/proc/*/stat` and `/proc/stat`.
fn tick_s() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1.0 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// CPU seconds (user + system, every thread) that process `pid` has used; `None` for this
/// process.
pub fn cpu_s(pid: Option<u32>) -> io::Result<f64> {
    let stat = std::fs::read_to_string(proc_path(pid, "stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the
    // last ')'. Fields 14 and 15 are utime and stime.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| bad("no ')' in stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        // `rest` starts at field 3.
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad("short stat"))
    };
    Ok((field(14)? + field(15)?) as f64 * tick_s())
}

/// Resident set size of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: Option<u32>) -> io::Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// Peak resident set size of `pid` in KiB (`VmHWM`), since start or [`reset_peak`].
pub fn peak_rss_kib(pid: Option<u32>) -> io::Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// Resets the peak RSS of `pid` to its current RSS (writes 5 to `clear_refs`; needs to
/// own the process). Returns whether it worked.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Busy CPU seconds of the whole machine, summed over its cores (`/proc/stat`: every
/// column of the `cpu` line except idle and iowait), and the number of cores.
pub fn machine_busy_s() -> io::Result<(f64, usize)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let mut lines = stat.lines();
    let cpu = lines.next().ok_or_else(|| bad("empty /proc/stat"))?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if ticks.len() < 5 {
        return Err(bad("short cpu line"));
    }
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = ticks.iter().take(8).sum::<u64>() - ticks[3] - ticks[4];
    let cores = lines.filter(|l| l.starts_with("cpu")).count();
    Ok((busy as f64 * tick_s(), cores))
}

/// Raises this process's soft open-file limit to the hard limit; returns the new soft
/// limit.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(p) => format!("/proc/{p}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

fn status_kib(pid: Option<u32>, key: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(proc_path(pid, "status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| bad(key))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("/proc: {what}"))
}

/// CPU and memory of a broker over one run, plus what the load generator and the rest
/// of the machine used meanwhile (the load generator and the broker share the cores).
pub struct Usage {
    pid: u32,
    peak_reset: bool,
    peak_sampled_kib: u64,
    cpu0_s: f64,
    own_cpu0_s: f64,
    busy0_s: f64,
}

/// What [`Usage::finish`] reports.
#[derive(Debug, Clone, Copy)]
pub struct UsageReport {
    /// Broker CPU seconds since [`Usage::start`] (or the last [`Usage::mark`]).
    pub broker_cpu_s: f64,
    /// Load generator CPU seconds over the same time.
    pub loadgen_cpu_s: f64,
    /// Busy CPU seconds of the whole machine over the same time, all cores.
    pub machine_busy_s: f64,
    /// Cores of the machine.
    pub cores: usize,
    /// Broker RSS at the end, KiB.
    pub rss_kib: u64,
    /// Highest broker RSS since start, KiB.
    pub rss_peak_kib: u64,
}

impl Usage {
    /// Starts watching broker `pid`: resets its peak RSS when allowed, else samples.
    pub fn start(pid: u32) -> io::Result<Self> {
        let peak_reset = reset_peak(pid);
        let mut u = Self {
            pid,
            peak_reset,
            peak_sampled_kib: rss_kib(Some(pid))?,
            cpu0_s: 0.0,
            own_cpu0_s: 0.0,
            busy0_s: 0.0,
        };
        u.mark()?;
        Ok(u)
    }

    /// Starts the CPU counts from now (the peak RSS keeps counting from `start`).
    pub fn mark(&mut self) -> io::Result<()> {
        self.cpu0_s = cpu_s(Some(self.pid))?;
        self.own_cpu0_s = cpu_s(None)?;
        self.busy0_s = machine_busy_s()?.0;
        Ok(())
    }

    /// Samples the broker's RSS (for the peak when the kernel's cannot be reset); call it
    /// now and then during the run. Returns the RSS in KiB.
    pub fn sample(&mut self) -> io::Result<u64> {
        let rss = rss_kib(Some(self.pid))?;
        self.peak_sampled_kib = self.peak_sampled_kib.max(rss);
        Ok(rss)
    }

    /// CPU since [`Self::mark`], RSS now and at its peak.
    pub fn finish(&mut self) -> io::Result<UsageReport> {
        let rss = self.sample()?;
        let mut peak = self.peak_sampled_kib;
        if self.peak_reset {
            peak = peak.max(peak_rss_kib(Some(self.pid))?);
        }
        let (busy, cores) = machine_busy_s()?;
        Ok(UsageReport {
            broker_cpu_s: cpu_s(Some(self.pid))? - self.cpu0_s,
            loadgen_cpu_s: cpu_s(None)? - self.own_cpu0_s,
            machine_busy_s: busy - self.busy0_s,
            cores,
            rss_kib: rss,
            rss_peak_kib: peak,
        })
    }
}

/// Starts watching broker `pid`, if one was given.
pub fn watch(pid: Option<u32>) -> io::Result<Option<Usage>> {
    pid.map(Usage::start).transpose()
}

/// Samples the broker's RSS, if it is being watched (errors are left to [`fields`]).
pub fn sample(usage: &mut Option<Usage>) {
    if let Some(u) = usage.as_mut() {
        let _ = u.sample();
    }
}

/// The `key=value` fields of a usage report, or nothing when no broker is watched.
pub fn fields(usage: Option<&mut Usage>) -> String {
    match usage.map(Usage::finish) {
        Some(Ok(r)) => r.fields(),
        Some(Err(e)) => format!("usage_error={:?}", e.to_string()),
        None => String::new(),
    }
}

impl UsageReport {
    /// `key=value` pairs for a result line.
    pub fn fields(&self) -> String {
        format!(
            "broker_cpu_s={:.2} loadgen_cpu_s={:.2} other_cpu_s={:.2} cores={} \
             broker_rss_kib={} broker_rss_peak_kib={}",
            self.broker_cpu_s,
            self.loadgen_cpu_s,
            (self.machine_busy_s - self.broker_cpu_s - self.loadgen_cpu_s).max(0.0),
            self.cores,
            self.rss_kib,
            self.rss_peak_kib,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_the_machine() {
        let pid = std::process::id();
        // Parses (a format change would fail here) and is plausible.
        assert!(cpu_s(Some(pid)).unwrap() < 1e6);
        let rss = rss_kib(Some(pid)).unwrap();
        assert!(rss > 0);
        assert!(peak_rss_kib(None).unwrap() >= rss / 2);
        let (busy, cores) = machine_busy_s().unwrap();
        assert!(busy > 0.0 && cores >= 1);
    }
}
