//! Runs the real `ncdd` binary: a config file and a state dir in a temp dir,
//! `--listen ADDR:0`, and waits for `ncdd: ready` on stdout. Its stderr is kept
//! (and printed when a test fails); the child is killed when dropped.

// Each test binary uses its own part of the shared harness.
#![allow(dead_code)]

use std::cell::Cell;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long ncdd may take from spawn to `ncdd: ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The config file name inside the temp dir.
const CONFIG_FILE: &str = "ncd.toml";
/// The default log filter of ncdd, set explicitly so that a `NCD_LOG` in the
/// environment of the test run cannot hide the warnings the tests look for.
const LOG_FILTER: &str = "info,hickory_server=warn,hickory_net=warn,hickory_resolver=warn";

/// What to run: a config, extra files next to it, and where to listen.
#[derive(Debug)]
pub(crate) struct Setup {
    dir: TempDir,
    listen: SocketAddr,
    launch: Launch,
}

/// How the process is launched, beyond the config and the state dir.
#[derive(Debug, Clone, Default)]
struct Launch {
    /// A command that runs ncdd (e.g. `nsenter … --`); empty runs it directly.
    prefix: Vec<OsString>,
    /// The control socket; `None` puts it in the state dir.
    control_socket: Option<PathBuf>,
    /// Leave `NCD_LOG` unset, so ncdd logs at its built-in default level.
    default_log: bool,
}

/// Why ncdd did not become ready.
#[derive(Debug)]
pub(crate) struct StartFailure {
    pub status: Option<ExitStatus>,
    pub stderr: String,
}

impl Setup {
    /// A temp dir holding `config` as `ncd.toml`; ncdd will listen on 127.0.0.1:0.
    pub(crate) fn new(config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ncdd-test-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join(CONFIG_FILE), config).expect("write the config");
        Self {
            dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            launch: Launch::default(),
        }
    }

    /// The temp dir (list paths in the config are relative to it).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to `name` (relative to the temp dir; parent dirs are created).
    pub(crate) fn file(self, name: &str, text: &str) -> Self {
        write_file(self.dir.path(), name, text);
        self
    }

    /// Listen on `addr` instead of 127.0.0.1:0.
    pub(crate) fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Runs ncdd through `prefix` (a command that ends by exec-ing its arguments,
    /// such as `nsenter --target PID --mount --`), so the pid stays ncdd's.
    pub(crate) fn command_prefix<S: Into<OsString>>(mut self, prefix: impl IntoIterator<Item = S>) -> Self {
        self.launch.prefix = prefix.into_iter().map(Into::into).collect();
        self
    }

    /// The control socket at `path` rather than in the state dir.
    pub(crate) fn control_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.launch.control_socket = Some(path.into());
        self
    }

    /// Leaves `NCD_LOG` unset: ncdd logs at the level it picks by itself.
    pub(crate) fn default_log(mut self) -> Self {
        self.launch.default_log = true;
        self
    }

    /// Spawns ncdd and waits until it is ready; panics with its stderr if it is not.
    pub(crate) fn spawn(self) -> Ncdd {
        match self.try_spawn() {
            Ok(ncdd) => ncdd,
            Err(failure) => {
                panic!(
                    "ncdd did not become ready (exit: {:?}); its stderr:\n{}",
                    failure.status, failure.stderr
                )
            }
        }
    }

    /// Spawns ncdd; `Err` when it exits or is not ready in time.
    pub(crate) fn try_spawn(self) -> Result<Ncdd, StartFailure> {
        let mut ncdd = Ncdd {
            dir: self.dir,
            listen: self.listen,
            launch: self.launch,
            child: None,
            addr: self.listen,
            stderr: Arc::new(Mutex::new(String::new())),
            stdout: Arc::new(Mutex::new(String::new())),
            settled: Cell::new(false),
        };
        match ncdd.launch() {
            Ok(()) => Ok(ncdd),
            Err(status) => Err(StartFailure {
                status,
                stderr: ncdd.stderr(),
            }),
        }
    }
}

/// A running ncdd.
#[derive(Debug)]
pub(crate) struct Ncdd {
    dir: TempDir,
    listen: SocketAddr,
    launch: Launch,
    child: Option<Child>,
    /// Where it serves DNS (UDP and TCP), as announced on stdout.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    /// True once a reload was seen to work (see [`Ncdd::settle`]).
    settled: Cell<bool>,
}

impl Ncdd {
    /// Starts ncdd on `config` (a shorthand for `Setup::new(config).spawn()`).
    pub(crate) fn start(config: &str) -> Self {
        Setup::new(config).spawn()
    }

    /// Spawns the process and reads stdout until `ncdd: ready`. On failure, the
    /// exit status if it exited.
    fn launch(&mut self) -> Result<(), Option<ExitStatus>> {
        let ncdd = Path::new(env!("CARGO_BIN_EXE_ncdd"));
        let mut command = match self.launch.prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(ncdd);
                command
            }
            None => Command::new(ncdd),
        };
        command
            .arg("--config")
            .arg(self.config_path())
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--listen")
            .arg(self.listen.to_string())
            // Each daemon gets its own control socket, never the system's.
            .arg("--control-socket")
            .arg(self.control_socket())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.launch.default_log {
            command.env_remove("NCD_LOG");
        } else {
            command.env("NCD_LOG", LOG_FILTER);
        }
        let mut child = command.spawn().expect("spawn ncdd");

        let stderr = child.stderr.take().expect("ncdd stderr");
        let log = self.stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });

        let stdout = child.stdout.take().expect("ncdd stdout");
        let (lines, seen) = mpsc::channel::<String>();
        let kept = self.stdout.clone();
        std::thread::spawn(move || {
            // Keeps draining stdout after `ready`, so ncdd never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                {
                    let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                    kept.push_str(&line);
                    kept.push('\n');
                }
                // Once nobody listens any more, the lines are just dropped.
                let _ = lines.send(line);
            }
        });

        let deadline = Instant::now() + READY_TIMEOUT;
        let mut addr = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match seen.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) if line == "ncdd: ready" => break,
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("ncdd: listening on ") {
                        addr = addr.or_else(|| a.trim().parse::<SocketAddr>().ok());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: ncdd exited before it was ready.
                    let status = wait_with_deadline(&mut child, Duration::from_secs(5));
                    self.settle_stderr();
                    return Err(status);
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                self.settle_stderr();
                return Err(Some(status));
            }
            if left.is_zero() {
                let _ = child.kill();
                let _ = child.wait();
                self.settle_stderr();
                return Err(None);
            }
        }
        self.addr = addr.expect("ncdd said it was ready but announced no address");
        self.child = Some(child);
        Ok(())
    }

    /// Gives the stderr reader a moment to take the last lines of an exited child.
    fn settle_stderr(&self) {
        let mut last = usize::MAX;
        let _ = super::eventually(Duration::from_millis(500), || {
            let now = self.stderr().len();
            let stable = now == last;
            last = now;
            stable.then_some(())
        });
    }

    pub(crate) fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("ncdd is running");
        Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"))
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join(CONFIG_FILE)
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The temp dir holding the config (and, by default, the state dir).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The control socket it was told to use.
    pub(crate) fn control_socket(&self) -> PathBuf {
        self.launch
            .control_socket
            .clone()
            .unwrap_or_else(|| self.state_dir().join("control.sock"))
    }

    /// True while the process runs (it has not exited and was not stopped).
    pub(crate) fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits until ncdd really reloads on a config change.
    ///
    /// ncdd prints `ready` before it installs its config watcher and its SIGHUP and
    /// SIGTERM handlers (see `an_edit_made_right_after_ready_is_applied`), so an edit
    /// or a signal right after `ready` can be lost. This rewrites the config with
    /// its own text until a reload shows in the log: after that the watcher and the
    /// signal handlers are in place.
    pub(crate) fn settle(&self) {
        if self.settled.get() {
            return;
        }
        let reloads = |log: &str| {
            log.lines()
                .filter(|l| l.contains("policy reloaded") || l.contains("keeping the last good config"))
                .count()
        };
        let text = std::fs::read_to_string(self.config_path()).expect("read the config");
        let settled = super::eventually(Duration::from_secs(15), || {
            let before = reloads(&self.stderr());
            self.replace_config(&text);
            super::eventually(Duration::from_secs(1), || {
                (reloads(&self.stderr()) > before).then_some(())
            })
        });
        assert!(
            settled.is_some(),
            "ncdd never reloaded its config; stderr:\n{}",
            self.stderr()
        );
        self.settled.set(true);
    }

    /// Replaces the config file the way editors do: write a temp file, rename it
    /// over (after [`Ncdd::settle`], so that the change cannot be missed).
    pub(crate) fn rewrite_config(&self, text: &str) {
        self.settle();
        self.replace_config(text);
    }

    /// Replaces the config file at once, settled or not.
    pub(crate) fn replace_config(&self, text: &str) {
        let tmp = self.dir.path().join(".ncd.toml.test-tmp");
        std::fs::write(&tmp, text).expect("write the new config");
        std::fs::rename(&tmp, self.config_path()).expect("replace the config");
    }

    /// Writes a file relative to the temp dir (parent dirs are created).
    pub(crate) fn write_file(&self, name: &str, text: &str) {
        write_file(self.dir.path(), name, text);
    }

    /// Sends SIGHUP (after [`Ncdd::settle`]).
    pub(crate) fn sighup(&self) {
        self.settle();
        self.sighup_now();
    }

    /// Sends SIGHUP at once, settled or not.
    pub(crate) fn sighup_now(&self) {
        kill(self.pid(), Signal::SIGHUP).expect("send SIGHUP");
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; `None` if it is still running.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.settle();
        kill(self.pid(), Signal::SIGTERM).expect("send SIGTERM");
        let child = self.child.as_mut().expect("ncdd is running");
        let status = wait_with_deadline(child, timeout);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// The exit status if ncdd has exited (without waiting).
    pub(crate) fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Kills ncdd (SIGKILL) and waits until it is gone, leaving it stopped (so a
    /// test can change its files); [`Ncdd::restart`] starts it again.
    #[allow(dead_code)] // not every test binary stops ncdd this way
    pub(crate) fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills ncdd (SIGKILL) and starts it again with the same config file, state dir
    /// and listen argument (with port 0 it gets a new port: see `addr`).
    pub(crate) fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stderr
            .lock()
            .unwrap()
            .push_str("----- ncdd restarted by the test -----\n");
        self.settled.set(false);
        if let Err(status) = self.launch() {
            panic!(
                "ncdd did not come back after a restart (exit: {status:?}); stderr:\n{}",
                self.stderr()
            );
        }
    }

    /// Everything ncdd wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Everything ncdd wrote to stdout so far.
    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until stderr contains `needle`; true if it did within `timeout`.
    pub(crate) fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        super::eventually(timeout, || self.stderr().contains(needle).then_some(())).is_some()
    }
}

impl Drop for Ncdd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- ncdd stderr ({}) -----\n{}-----",
                self.dir.path().display(),
                self.stderr()
            );
        }
    }
}

fn write_file(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create the file's dir");
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    super::eventually(timeout, || child.try_wait().ok().flatten())
}
