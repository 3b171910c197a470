//! What `/proc` says of the target process: resident memory, threads, CPU time.

/// A field of `/proc/<pid>/status` holding a number (`VmRSS` in KiB, `Threads`).
fn status_number(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resident memory of `pid` in KiB (0 when it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    status_number(pid, "VmRSS").unwrap_or(0)
}

/// Threads of `pid`.
pub fn threads(pid: u32) -> u64 {
    status_number(pid, "Threads").unwrap_or(0)
}

/// User + system CPU time of `pid`, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name (field 2) may hold spaces; the fields after its `)` are plain.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// MiB from KiB, for reports.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Samples the peak RSS of `pid` every 20 ms on a thread until the guard is finished.
pub struct PeakSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl PeakSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> PeakSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut peak, mut peak_threads) = (rss_kib(pid), threads(pid));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(rss_kib(pid));
                    peak_threads = peak_threads.max(threads(pid));
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                (peak.max(rss_kib(pid)), peak_threads)
            })
        };
        PeakSampler { stop, thread }
    }

    /// Stops sampling: the peak RSS in KiB and the peak thread count.
    pub fn finish(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}
