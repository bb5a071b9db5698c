//! Child processes the runner starts and the scratch directory they write into.
//!
//! Every child is pinned with `taskset`, put in its own process group (so a terminal Ctrl-C
//! reaches only the runner, which then stops its children in order), asked to die with the
//! runner (`PR_SET_PDEATHSIG`, in case the runner itself is killed) and stopped on drop: on
//! success, on error paths and after Ctrl-C alike. It must never signal a process it did not
//! start.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::BenchError;

/// How long a child gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often waits look at the child and at the interrupt flag.
const POLL: Duration = Duration::from_millis(20);

/// Set by SIGINT/SIGTERM; every wait loop checks it.
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Routes SIGINT and SIGTERM to the interrupt flag. A second signal exits at once (the
/// children then die through `PR_SET_PDEATHSIG`).
pub fn install_signal_handlers() -> io::Result<()> {
    let flag = INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(flag))?;
        signal_hook::flag::register(signal, Arc::clone(flag))?;
    }
    Ok(())
}

/// Whether the user asked the runner to stop.
pub fn interrupted() -> bool {
    INTERRUPTED
        .get()
        .is_some_and(|flag| flag.load(Ordering::Relaxed))
}

/// Fails with [`BenchError::Interrupted`] once the user asked to stop.
pub fn check_interrupted() -> Result<(), BenchError> {
    if interrupted() {
        Err(BenchError::Interrupted)
    } else {
        Ok(())
    }
}

/// A free loopback port: bound to port 0, read, released. Another process could take it in
/// between; on a quiet benchmark machine that does not happen.
pub fn free_port() -> Result<u16, BenchError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| BenchError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| BenchError::io("reading a bound port", e))?
        .port();
    Ok(port)
}

/// Raises the soft open-file limit to the hard one (first lifting the hard one to at least
/// `want` when allowed) so the runner and every child it starts can hold many sockets.
/// Returns the resulting soft limit.
pub fn raise_nofile_limit(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_max != libc::RLIM_INFINITY && lim.rlim_max < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        // SAFETY: `raised` is a valid rlimit; failure (no privilege) leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(want);
        }
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit whose soft value does not exceed its hard value.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}

// === Scratch ===

/// The run's scratch directory (configs, logs, loadgen output). Removed on drop unless
/// [`Scratch::keep`] was called, so logs survive a failed run for inspection.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Scratch {
    /// Creates a fresh directory under the system temp dir.
    pub fn create() -> Result<Self, BenchError> {
        let path = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path)
                .map_err(|e| BenchError::io(format!("clearing {}", path.display()), e))?;
        }
        fs::create_dir_all(&path)
            .map_err(|e| BenchError::io(format!("creating {}", path.display()), e))?;
        Ok(Self { path, keep: false })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep the directory after the run (for its logs).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// === Proc ===

/// What to start: a program, its arguments, and the CPU it is pinned to.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// Short name for logs and messages (also the log file stem).
    pub name: String,
    /// CPU for `taskset -c`, or none to run unpinned.
    pub cpu: Option<usize>,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Working directory (default: the directory [`Proc::start`] writes the logs into).
    pub cwd: Option<PathBuf>,
}

impl Spawn {
    /// A spawn description with no extra environment.
    pub fn new(
        name: impl Into<String>,
        cpu: Option<usize>,
        program: &Path,
        args: Vec<String>,
    ) -> Self {
        Self {
            name: name.into(),
            cpu,
            program: program.to_path_buf(),
            args,
            env: Vec::new(),
            cwd: None,
        }
    }

    /// The command as a shell would run it (for RESULTS.md and error messages).
    pub fn command_line(&self) -> String {
        let mut words = Vec::new();
        if let Some(cpu) = self.cpu {
            words.extend(["taskset".to_owned(), "-c".to_owned(), cpu.to_string()]);
        }
        words.push(self.program.display().to_string());
        words.extend(self.args.iter().cloned());
        let env = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)));
        env.chain(words.iter().map(|w| shell_quote(w)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@+%".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A running child, stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `spec` with stdout and stderr going to `<dir>/<name>.stdout` and `.stderr`. The
    /// child runs in `spec.cwd`, else in `dir`: whatever it writes relative to its working
    /// directory (a gateway's default `tollgate-data` store) stays out of the workspace and goes
    /// with the scratch directory.
    pub fn start(spec: &Spawn, dir: &Path) -> Result<Self, BenchError> {
        let stdout = dir.join(format!("{}.stdout", spec.name));
        let stderr = dir.join(format!("{}.stderr", spec.name));
        let open = |p: &Path| {
            File::create(p).map_err(|e| BenchError::io(format!("creating {}", p.display()), e))
        };
        let mut cmd = match spec.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&spec.program);
                c
            }
            None => Command::new(&spec.program),
        };
        cmd.args(&spec.args)
            .current_dir(spec.cwd.as_deref().unwrap_or(dir))
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(open(&stdout)?)
            .stderr(open(&stderr)?)
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
        // is async-signal-safe; it touches no memory shared with the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| BenchError::io(format!("starting `{}`", spec.command_line()), e))?;
        Ok(Self {
            name: spec.name.clone(),
            child,
            stdout,
            stderr,
            exited: None,
        })
    }

    /// The child's pid (`taskset` execs the program, so this is the program's pid).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name it was started under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its exit status once it has exited.
    pub fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// An error naming the exit status and the tail of stderr if the child has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.poll_exit() {
            None => Ok(()),
            Some(status) => Err(format!(
                "{} exited ({status}); stderr ends with: {}",
                self.name,
                self.stderr_tail(600)
            )),
        }
    }

    /// Waits for the child to exit by itself, up to `limit`, watching for interrupts.
    pub fn wait(&mut self, limit: Duration) -> Result<ExitStatus, BenchError> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.poll_exit() {
                return Ok(status);
            }
            check_interrupted()?;
            if Instant::now() >= end {
                return Err(BenchError::Failed(format!(
                    "{} did not finish within {:.0?}",
                    self.name, limit
                )));
            }
            thread::sleep(POLL);
        }
    }

    /// Everything the child wrote to stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The last `max` bytes of stderr, on one line.
    pub fn stderr_tail(&self, max: usize) -> String {
        tail(&self.stderr, max).replace('\n', " | ")
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; reaps the child.
    pub fn stop(&mut self) {
        if self.poll_exit().is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: plain syscall on our own child, which has not been reaped (poll_exit
            // returned None), so the pid cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let end = Instant::now() + STOP_GRACE;
        while Instant::now() < end {
            if self.poll_exit().is_some() {
                return;
            }
            thread::sleep(POLL);
        }
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `max` bytes of a file, lossily decoded.
pub fn tail(path: &Path, max: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max as u64);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim().to_owned()
}

/// Waits until `addr` accepts TCP connections, the child stays alive, and no interrupt came.
pub fn wait_for_port(proc: &mut Proc, addr: SocketAddr, limit: Duration) -> Result<(), BenchError> {
    let end = Instant::now() + limit;
    loop {
        proc.check_alive().map_err(BenchError::Failed)?;
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        check_interrupted()?;
        if Instant::now() >= end {
            return Err(BenchError::Failed(format!(
                "{} did not accept connections on {addr} within {limit:?}; stderr: {}",
                proc.name(),
                proc.stderr_tail(600)
            )));
        }
        thread::sleep(POLL);
    }
}

/// CPU time (user + system) a process has used, from `/proc/PID/stat`.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|&t| t > 0)?;
    Some(Duration::from_micros((utime + stime) * 1_000_000 / ticks))
}

/// CPU time (user + system) of every child this process has reaped so far.
pub fn reaped_children_cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid and writable for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Busy and total jiffies of one CPU, from `/proc/stat`.
pub fn cpu_jiffies(cpu: usize) -> Option<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let label = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle + iowait
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// `VmRSS` and `VmHWM` of a process in KiB, from `/proc/PID/status`.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
