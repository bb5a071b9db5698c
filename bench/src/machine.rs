//! Facts about where and when the benchmark ran: CPU, memory, kernel, load, git commit, date.
//! Read-only; every fact degrades to "unknown" rather than failing the run.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The machine and source tree a run measured.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// CPUs online.
    pub cpus: usize,
    /// MemTotal, human readable.
    pub memory: String,
    /// `uname -r`.
    pub kernel: String,
    /// `git rev-parse --short HEAD`, with a dirty-tree note.
    pub commit: String,
}

impl Machine {
    /// Reads the facts (`root` is the workspace, for git).
    pub fn describe(root: &Path) -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or_else(
                || "unknown".into(),
                |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0),
            );
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        Self {
            cpu_model,
            cpus,
            memory,
            kernel,
            commit: git_commit(root),
        }
    }
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        // Only the end is trimmed: `status --porcelain` lines start with a significant space.
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// `abc1234`, or `abc1234 (dirty: 5 files changed or untracked)`.
fn git_commit(root: &Path) -> String {
    let Some(hash) = git(root, &["rev-parse", "--short", "HEAD"]) else {
        return "unknown (not a git checkout?)".into();
    };
    match git(root, &["status", "--porcelain"]) {
        Some(s) if s.is_empty() => hash,
        Some(s) => {
            let paths: Vec<&str> = s.lines().filter_map(|l| l.get(3..)).collect();
            let shown = paths.iter().take(6).copied().collect::<Vec<_>>().join(", ");
            let more = paths.len().saturating_sub(6);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("{hash} (dirty: {shown}{more})")
        }
        None => format!("{hash} (tree state unknown)"),
    }
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> Option<[f64; 3]> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// How many cores' worth of the given CPUs were busy over `window` (0 on an idle machine).
pub fn busy_cores(cpus: &[usize], window: std::time::Duration) -> Option<f64> {
    let before: Option<Vec<_>> = cpus.iter().map(|&c| crate::procs::cpu_jiffies(c)).collect();
    std::thread::sleep(window);
    let after: Option<Vec<_>> = cpus.iter().map(|&c| crate::procs::cpu_jiffies(c)).collect();
    let mut sum = 0.0;
    for ((b0, t0), (b1, t1)) in before?.into_iter().zip(after?) {
        if t1 <= t0 {
            return None;
        }
        sum += (b1 - b0) as f64 / (t1 - t0) as f64;
    }
    Some(sum)
}

/// `0.12 0.34 0.56`.
pub fn fmt_load(load: Option<[f64; 3]>) -> String {
    load.map_or_else(
        || "unknown".into(),
        |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"),
    )
}

/// Now as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    fmt_utc(secs)
}

/// Formats seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian).
pub fn fmt_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(fmt_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(fmt_utc(1_795_271_045), "2026-11-21 14:24:05 UTC");
    }
}
