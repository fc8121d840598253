//! Runs the real `ncd` command line (built next to `ncdd`, by `cargo build -p ncd`
//! or `cargo test --workspace`) against a daemon's control socket: as this user, as
//! another user, or at a pseudo-terminal made by util-linux `script`.

// Each test binary uses its own part of the shared harness.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The uid and gid of `nobody`.
pub(crate) const NOBODY: u32 = 65_534;

/// The `ncd` binary next to `ncdd`; panics with what to do when it was not built.
pub(crate) fn ncd_path() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_ncdd")).with_file_name("ncd");
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build -p ncd` (or run `cargo test --workspace`)",
        path.display()
    );
    path
}

/// What one run of `ncd` did.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// `ncd --socket SOCKET ARGS…` with stdin from /dev/null, no colour, and no
/// `NCD_SOCKET` from the environment.
pub(crate) fn ncd(socket: &Path, args: &[&str]) -> Run {
    run(command(&ncd_path(), socket, args))
}

/// `ncd` as another user (`uid`, with the same gid and no supplementary groups).
/// `binary` must be reachable by that user (see [`copy_for_others`]).
pub(crate) fn ncd_as(uid: u32, binary: &Path, socket: &Path, args: &[&str]) -> Run {
    let mut command = command(binary, socket, args);
    command.uid(uid).gid(uid).env("HOME", "/");
    run(command)
}

/// The `ncd` binary as another user can run it: where it was built when every
/// directory above it lets others through, else a copy in `dir` (mode 0755), for a
/// build tree in a directory only root may enter.
pub(crate) fn ncd_for_others(dir: &Path) -> PathBuf {
    let built = ncd_path();
    let others_may = |path: &Path| std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
    if built.ancestors().all(|p| p.as_os_str().is_empty() || others_may(p)) {
        return built;
    }
    let target = dir.join("ncd");
    std::fs::copy(ncd_path(), &target).expect("copy the ncd binary");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod the ncd copy");
    target
}

fn command(binary: &Path, socket: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("NCD_SOCKET")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

fn run(mut command: Command) -> Run {
    let output = command.output().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Sends one raw protocol line to `socket` as user `uid` (through Python's
/// standard library, the only ready-made Unix-socket client around) and returns
/// the response line.
pub(crate) fn protocol_as(uid: u32, socket: &Path, line: &str) -> String {
    const CLIENT: &str = "import socket, sys\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
        s.settimeout(10)\n\
        s.connect(sys.argv[1])\n\
        s.sendall(sys.argv[2].encode() + b'\\n')\n\
        sys.stdout.write(s.makefile('rb').readline().decode())\n";
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let output = Command::new(python)
        .args(["-I", "-c", CLIENT])
        .arg(socket)
        .arg(line)
        .uid(uid)
        .gid(uid)
        .current_dir("/")
        .env("HOME", "/")
        .output()
        .unwrap_or_else(|e| panic!("run {python} as uid {uid}: {e}"));
    assert!(
        output.status.success(),
        "the Python control client failed as uid {uid}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim_end().to_string()
}

/// `ncd ARGS…` at a pseudo-terminal: `script` runs it on a pty and copies what this
/// test writes to the terminal's input, byte for byte as it comes, so the rhythm of
/// the writes is what `ncd` sees. Killed when dropped.
#[derive(Debug)]
pub(crate) struct TtySession {
    child: Child,
    input: Option<ChildStdin>,
    output: Arc<Mutex<Vec<u8>>>,
}

impl TtySession {
    pub(crate) fn start(socket: &Path, args: &[&str]) -> Self {
        let mut line = format!("exec '{}' --socket '{}'", ncd_path().display(), socket.display());
        for arg in args {
            line.push_str(&format!(" '{arg}'"));
        }
        let mut child = Command::new("script")
            .args(["--quiet", "--flush", "--return", "--command", &line, "/dev/null"])
            .env("SHELL", "/bin/sh")
            .env("NO_COLOR", "1")
            .env("TERM", "dumb")
            .env_remove("NCD_SOCKET")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run script(1)");
        let output = Arc::new(Mutex::new(Vec::new()));
        for mut stream in [
            Box::new(child.stdout.take().expect("script stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("script stderr")),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        let input = child.stdin.take();
        Self { child, input, output }
    }

    /// Everything the terminal showed so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal has shown `needle`; returns the screen. Panics with
    /// the screen after `timeout`.
    #[track_caller]
    pub(crate) fn expect(&self, needle: &str, timeout: Duration) -> String {
        let seen = super::eventually(timeout, || {
            let text = self.text();
            text.contains(needle).then_some(text)
        });
        seen.unwrap_or_else(|| panic!("the terminal never showed {needle:?}; it shows:\n{}", self.text()))
    }

    /// Writes `bytes` in one go, as a paste does.
    pub(crate) fn paste(&mut self, bytes: &[u8]) {
        let input = self.input.as_mut().expect("terminal input open");
        input.write_all(bytes).expect("write to the terminal");
        input.flush().expect("flush the terminal input");
    }

    /// Writes `bytes` one at a time, `gap` apart, as a person types.
    pub(crate) fn type_slowly(&mut self, bytes: &[u8], gap: Duration) {
        for &byte in bytes {
            std::thread::sleep(gap);
            self.paste(&[byte]);
        }
    }

    /// Waits for the exit; `None` if it is still running after `timeout`.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        super::eventually(timeout, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for TtySession {
    fn drop(&mut self) {
        drop(self.input.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
