//! The nginx baseline: finding (or installing) nginx, rendering `bench/nginx.conf.template`
//! into the scratch directory, and starting it pinned. Never touches `/etc/nginx` or the
//! system's nginx service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::procs::{self, Proc, Spawn};
use crate::BenchError;

/// The configuration template (see the file for what it sets and why).
const TEMPLATE: &str = include_str!("../nginx.conf.template");

/// Whether nginx can be measured.
#[derive(Debug, Clone)]
pub enum Availability {
    /// Found (or installed) at this path, with this version string.
    Ready {
        /// The binary.
        bin: PathBuf,
        /// `nginx -v` output, e.g. `nginx/1.22.1`.
        version: String,
    },
    /// Not measured, and why.
    Unavailable(String),
}

/// A running nginx with its two listening addresses.
#[derive(Debug)]
pub struct Nginx {
    /// The process (stopped on drop).
    pub proc: Proc,
    /// Default (buffered) proxying, for non-streaming scenarios.
    pub buffered: SocketAddr,
    /// `proxy_buffering off`, for streaming.
    pub streaming: SocketAddr,
    /// How it was started.
    pub command_line: String,
}

/// Finds nginx; when it is missing, installs it with apt-get (saying so on stderr). Returns
/// why it is unavailable if that fails.
pub fn ensure() -> Availability {
    if let Some(bin) = find() {
        return ready(bin);
    }
    eprintln!("tollgate-bench: nginx is not installed; running `apt-get update && apt-get install -y nginx`");
    for args in [&["update"][..], &["install", "-y", "nginx"][..]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(stderr_handle())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                return Availability::Unavailable(format!(
                    "nginx is not installed and `apt-get {}` failed ({s})",
                    args.join(" ")
                ))
            }
            Err(e) => {
                return Availability::Unavailable(format!(
                    "nginx is not installed and apt-get could not run: {e}"
                ))
            }
        }
    }
    match find() {
        Some(bin) => ready(bin),
        None => Availability::Unavailable(
            "apt-get install -y nginx succeeded but no nginx binary was found".into(),
        ),
    }
}

/// apt-get's stdout goes to our stderr so stdout stays the summary.
fn stderr_handle() -> Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::null(),
    }
}

fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/local/sbin".into(),
            "/usr/local/nginx/sbin".into(),
        ])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
}

fn ready(bin: PathBuf) -> Availability {
    // `nginx -v` prints "nginx version: nginx/1.22.1" on stderr.
    let version = Command::new(&bin)
        .arg("-v")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            text.strip_prefix("nginx version: ")
                .map(str::to_owned)
                .unwrap_or(text)
        })
        .unwrap_or_else(|e| format!("unknown ({e})"));
    Availability::Ready { bin, version }
}

/// Renders the template for a mock on `mock_port` and two listening ports.
pub fn render(prefix: &Path, mock_port: u16, buffered_port: u16, stream_port: u16) -> String {
    TEMPLATE
        .replace("{{PREFIX}}", &prefix.display().to_string())
        .replace("{{MOCK_PORT}}", &mock_port.to_string())
        .replace("{{BUFFERED_PORT}}", &buffered_port.to_string())
        .replace("{{STREAM_PORT}}", &stream_port.to_string())
}

/// Writes the configuration into `<dir>/<name>/`, checks it with `nginx -t`, starts nginx
/// pinned to `cpu` and waits until both ports accept connections.
pub fn start(
    bin: &Path,
    dir: &Path,
    name: &str,
    cpu: usize,
    mock_port: u16,
) -> Result<Nginx, BenchError> {
    let prefix = dir.join(name);
    std::fs::create_dir_all(&prefix)
        .map_err(|e| BenchError::io(format!("creating {}", prefix.display()), e))?;
    let (buffered_port, stream_port) = (procs::free_port()?, procs::free_port()?);
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        render(&prefix, mock_port, buffered_port, stream_port),
    )
    .map_err(|e| BenchError::io(format!("writing {}", conf.display()), e))?;
    let error_log = prefix.join("nginx-error.log");
    let args = |test: bool| {
        let mut a = Vec::new();
        if test {
            a.push("-t".to_owned());
        }
        // `-e` keeps nginx from opening its built-in error log path before it reads the file.
        a.extend([
            "-e".to_owned(),
            error_log.display().to_string(),
            "-c".to_owned(),
            conf.display().to_string(),
            "-p".to_owned(),
            prefix.display().to_string(),
        ]);
        a
    };
    let check = Command::new(bin)
        .args(args(true))
        .output()
        .map_err(|e| BenchError::io("running nginx -t", e))?;
    if !check.status.success() {
        return Err(BenchError::Failed(format!(
            "nginx -t rejected {}: {}",
            conf.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        )));
    }
    let spawn = Spawn::new(name, Some(cpu), bin, args(false));
    let mut proc = Proc::start(&spawn, dir)?;
    let buffered = SocketAddr::from(([127, 0, 0, 1], buffered_port));
    let streaming = SocketAddr::from(([127, 0, 0, 1], stream_port));
    for addr in [buffered, streaming] {
        procs::wait_for_port(&mut proc, addr, Duration::from_secs(10))?;
    }
    Ok(Nginx {
        proc,
        buffered,
        streaming,
        command_line: spawn.command_line(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn template_renders_every_placeholder() {
        let conf = render(Path::new("/tmp/x"), 18000, 18001, 18002);
        assert!(!conf.contains("{{"), "{conf}");
        assert!(conf.contains("server 127.0.0.1:18000;"));
        assert!(conf.contains("listen 127.0.0.1:18001;"));
        assert!(conf.contains("listen 127.0.0.1:18002;"));
        assert!(conf.contains("pid /tmp/x/nginx.pid;"));
        // The streaming server is the one without buffering.
        let stream_block = conf.split("listen 127.0.0.1:18002;").nth(1).unwrap();
        assert!(stream_block.contains("proxy_buffering off;"));
        let buffered_block = conf
            .split("listen 127.0.0.1:18001;")
            .nth(1)
            .unwrap()
            .split("server {")
            .next()
            .unwrap();
        assert!(!buffered_block.contains("proxy_buffering"));
    }
}
