//! Scenario i's fixed inputs and what it reads back: the `[server]` lines that switch metrics
//! and the access log off (the quiet gateway) or on (the observed one), and the observed
//! gateway's access log, counted once the gateway has stopped. Touches only the one access log
//! file it is given, in the scratch directory, and removes it when done: at full load it grows
//! by a few hundred MB per run, and a failed run keeps its logs, not the gateway's output.

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::BenchError;

/// What the quiet gateway adds to its `[server]` section: no per-core metrics (`GET /metrics`
/// answers 404) and no access log. Both are spelled out: metrics are on by default.
pub const QUIET_SERVER_LINES: &str = "# Scenario i, quiet: no metrics, no access log.
metrics = false
access_log = \"off\"
";

/// What the observed gateway adds to its `[server]` section: metrics counted per core and
/// served at `GET /metrics`, and one JSON line per request appended to `access_log`.
pub fn observed_server_lines(access_log: &Path) -> String {
    format!(
        "# Scenario i, observed: metrics, and a JSON access log line per request in a file.\nmetrics = true\naccess_log = {}\n",
        crate::toml_path(access_log)
    )
}

/// What an access log file held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLogContents {
    /// Lines (a last line without its line feed counts).
    pub lines: u64,
    /// Bytes.
    pub bytes: u64,
    /// Whether the first line is an access log entry ([`is_entry`]); false when empty.
    pub first_is_entry: bool,
}

/// Whether `line` is one of the gateway's access log entries: a JSON object with the request's
/// id and status. Tracing's lines are plain text, so they never are.
pub fn is_entry(line: &str) -> bool {
    let line = line.trim();
    if !line.starts_with('{') {
        return false;
    }
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| {
        v.get("request_id")
            .is_some_and(serde_json::Value::is_string)
            && v.get("status").is_some_and(serde_json::Value::is_u64)
    })
}

/// Access log entries among the lines of `text` (a gateway's stdout or stderr).
pub fn entries_in(text: &str) -> u64 {
    text.lines().filter(|l| is_entry(l)).count() as u64
}

/// The observed gateway's access log file: absent once created (a stale one is removed, so
/// the gateway starts a new one), removed on drop, also when the run fails or is interrupted.
#[derive(Debug)]
pub struct AccessLogFile {
    path: PathBuf,
}

impl AccessLogFile {
    /// Claims `path` for a fresh access log.
    pub fn create(path: PathBuf) -> Result<Self, BenchError> {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(BenchError::io(format!("clearing {}", path.display()), e)),
        }
        Ok(Self { path })
    }

    /// Where the gateway is to write it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts the file's lines without holding it in memory. A missing file is an empty log:
    /// the gateway creates the file at start, so missing means it never opened it.
    pub fn read(&self) -> std::io::Result<AccessLogContents> {
        /// The first line is read up to this length to tell whether it is an entry (entries
        /// are a few hundred bytes).
        const FIRST_LINE_MAX: usize = 64 << 10;

        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(AccessLogContents {
                    lines: 0,
                    bytes: 0,
                    first_is_entry: false,
                })
            }
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; 64 << 10];
        let (mut newlines, mut bytes, mut last) = (0u64, 0u64, b'\n');
        let mut first = Vec::new();
        let mut first_done = false;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let chunk = &buf[..n];
            if !first_done {
                let end = chunk.iter().position(|&b| b == b'\n');
                first.extend_from_slice(&chunk[..end.unwrap_or(n)]);
                first_done = end.is_some() || first.len() >= FIRST_LINE_MAX;
            }
            newlines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            bytes += n as u64;
            last = chunk[n - 1];
        }
        Ok(AccessLogContents {
            lines: newlines + u64::from(last != b'\n'),
            bytes,
            first_is_entry: is_entry(&String::from_utf8_lossy(&first)),
        })
    }
}

impl Drop for AccessLogFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "tollgate-bench: could not remove the observed gateway's access log {}: {e}",
                self.path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// An entry as the gateway writes it (`access_log::format_line`).
    const ENTRY: &str = r#"{"time":"2026-11-21T14:00:00.123Z","request_id":"0a1b2c3d4e5f","key":"bench","key_prefix":"sk-tollgate-...demo","team":"","model":"gpt-4o-mini","deployment":"mock/gpt-4o-mini","status":200,"input_tokens":12,"output_tokens":9,"cached_tokens":0,"cost_usd":0,"latency_ms":0.412,"ttft_ms":null,"attempts":1}"#;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tollgate-bench-observability-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn entries_are_told_from_tracing_lines() {
        assert!(is_entry(ENTRY));
        assert!(is_entry(&format!("  {ENTRY}\r")));
        for line in [
            "",
            "2026-11-21T14:00:00Z  INFO tollgate_engine: tollgate listening addr=127.0.0.1:1",
            r#"{"request_id":"x"}"#,
            r#"{"status":200}"#,
            r#"{"request_id":7,"status":200}"#,
            &ENTRY[..ENTRY.len() - 1],
            "[1, 2]",
        ] {
            assert!(!is_entry(line), "{line:?}");
        }
        let stderr = format!(
            "2026-11-21T14:00:00Z  INFO tollgate_engine: tollgate listening\n{ENTRY}\n2026-11-21T14:00:01Z  INFO tollgate_engine: stopped\n{ENTRY}\n"
        );
        assert_eq!(entries_in(&stderr), 2);
        assert_eq!(
            entries_in("2026-11-21T14:00:00Z  INFO tollgate_engine: stopped\n"),
            0
        );
    }

    #[test]
    fn access_log_is_counted_and_removed() {
        let dir = scratch("count");
        let path = dir.join("access-run1.log");
        std::fs::write(&path, "stale\n").unwrap();
        let log = AccessLogFile::create(path.clone()).unwrap();
        assert!(
            !path.exists(),
            "a stale log is removed before the gateway starts"
        );
        assert_eq!(
            log.read().unwrap(),
            AccessLogContents {
                lines: 0,
                bytes: 0,
                first_is_entry: false
            },
            "missing: empty"
        );

        // More lines than one read holds, to count across reads.
        let text = format!("{ENTRY}\n").repeat(1_000);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(
            log.read().unwrap(),
            AccessLogContents {
                lines: 1_000,
                bytes: text.len() as u64,
                first_is_entry: true
            }
        );
        // A last line cut short (the gateway killed mid-write) still counts.
        std::fs::write(&path, format!("{ENTRY}\n{}", &ENTRY[..40])).unwrap();
        let c = log.read().unwrap();
        assert_eq!((c.lines, c.first_is_entry), (2, true));
        // Something else in the file.
        std::fs::write(&path, format!("not an entry\n{ENTRY}\n")).unwrap();
        let c = log.read().unwrap();
        assert_eq!((c.lines, c.first_is_entry), (2, false));

        drop(log);
        assert!(!path.exists(), "removed on drop");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn server_lines_name_the_log_file() {
        let lines = observed_server_lines(Path::new("/tmp/tollgate-bench-1/access \"run1\".log"));
        assert_eq!(
            lines.lines().skip(1).collect::<Vec<_>>(),
            [
                "metrics = true",
                r#"access_log = "/tmp/tollgate-bench-1/access \"run1\".log""#
            ]
        );
        assert!(lines.starts_with('#') && lines.ends_with('\n'));
        assert!(QUIET_SERVER_LINES.ends_with("metrics = false\naccess_log = \"off\"\n"));
    }
}
