//! The period commands of `ncd` against a fake daemon: a Unix socket server in a
//! thread that records every request and answers from a script. The typing of
//! `ncd unlock --confirm` is driven through a pseudo-terminal.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ncd_config::control::{
    BlockedStatus, ConfigStatus, DaemonStatus, EndedHow, EndedPeriod, ErrorCode, EventKind, GuardStatus, Method,
    PeriodStatus, Request, Response, Status, TamperEvent, UnlockScope, UnlockState, UnlockStatus,
};
use rustix::termios::LocalModes;
use serde_json::{Value, json};
use tempfile::TempDir;

const DAY: u64 = 86_400;

/// What the fake daemon answers: a result, or an error.
type Answer = Result<Value, (ErrorCode, String)>;

/// A control socket in a temp dir, served by a thread.
struct FakeDaemon {
    dir: TempDir,
    socket: PathBuf,
    requests: Arc<Mutex<Vec<Method>>>,
}

impl FakeDaemon {
    fn start(script: impl Fn(&Method) -> Answer + Send + Sync + 'static) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ncd-period-test-")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("control.sock");
        let listener = UnixListener::bind(&socket).expect("bind the fake control socket");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let recorded = Arc::clone(&requests);
        // The thread outlives the test's interest in it; it ends with the process.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let script = Arc::clone(&script);
                let recorded = Arc::clone(&recorded);
                std::thread::spawn(move || serve(stream, &*script, &recorded));
            }
        });
        Self { dir, socket, requests }
    }

    /// Answers `status` with `status`, and the other verbs with results shaped
    /// like ncdd's.
    fn with_status(status: Status) -> Self {
        Self::start(move |method| match method {
            Method::Status => Ok(serde_json::to_value(&status).unwrap()),
            Method::Start { length_secs, .. } => Ok(json!({ "length_secs": length_secs.unwrap_or(60 * DAY) })),
            Method::Extend { by_secs } => Ok(json!({ "extended_by_secs": by_secs })),
            Method::Unlock { .. } => Ok(serde_json::to_value(&status.unlock).unwrap()),
            Method::UnlockCancel => Ok(json!({})),
            _ => Err((ErrorCode::BadRequest, "not scripted".into())),
        })
    }

    fn methods(&self) -> Vec<Method> {
        self.requests.lock().unwrap().clone()
    }

    /// `ncd --socket SOCKET ARGS…`, stdin not a terminal.
    fn ncd(&self, args: &[&str]) -> Run {
        let mut all = vec!["--socket", self.socket.to_str().unwrap()];
        all.extend_from_slice(args);
        ncd(&all, &[])
    }
}

fn serve(stream: UnixStream, script: &(dyn Fn(&Method) -> Answer + Send + Sync), recorded: &Mutex<Vec<Method>>) {
    let mut writer = stream.try_clone().expect("clone the stream");
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let request: Request = serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad request {line:?}: {e}"));
        assert_eq!(request.v, ncd_config::control::PROTOCOL_VERSION);
        recorded.lock().unwrap().push(request.method.clone());
        let response = match script(&request.method) {
            Ok(result) => Response::ok(request.id, result),
            Err((code, message)) => Response::err(request.id, code, message),
        };
        let mut text = serde_json::to_string(&response).unwrap();
        text.push('\n');
        if writer.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

/// What one run of `ncd` did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `ncd ARGS` with stdin from /dev/null, `NCD_SOCKET` and `NO_COLOR` unset
/// unless `env` sets them.
fn ncd(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_ncd"))
        .args(args)
        .env_remove("NCD_SOCKET")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run ncd");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

const REASON: &str = "I want my mornings back, and my attention.";

/// Day 12 of 60, with a reason, attempts, a held change, a waiting unlock, seven
/// tamper events and state damage.
fn sample_status() -> Status {
    Status {
        period: PeriodStatus {
            active: true,
            length_secs: 60 * DAY,
            served_secs: 11 * DAY + 20 * 3600 + 50 * 60,
            remaining_secs: 48 * DAY + 3 * 3600 + 10 * 60,
            reason: Some(REASON.into()),
            started_unix: Some(1_767_225_600),
            ended: None,
        },
        unlock: UnlockStatus {
            state: UnlockState::Waiting,
            scope: Some(UnlockScope::End),
            remaining_secs: 23 * 3600 + 10 * 60,
            why: Some("It is late and I keep thinking about them.".into()),
            delay_secs: 24 * 3600,
        },
        pending: vec!["remove service tiktok".into()],
        tamper: (0..7)
            .map(|i| TamperEvent {
                unix: 1_767_225_600 + i * 7200,
                kind: if i % 2 == 0 {
                    EventKind::Clock
                } else {
                    EventKind::Downtime
                },
                detail: format!("event number {i}"),
            })
            .collect(),
        blocked: BlockedStatus {
            today: 5,
            last_14_days: vec![0, 0, 1, 3, 0, 8, 5, 2, 0, 0, 3, 2, 0, 5],
            today_by_service: vec![("instagram".into(), 3), ("tiktok".into(), 2)],
            peak_hour: Some(23),
        },
        daemon: DaemonStatus {
            version: "0.1.0".into(),
            uptime_secs: 3 * DAY + 2 * 3600,
            listening: vec!["127.0.0.1:53".into(), "[::1]:53".into()],
            rules: 1234,
            damage: vec!["commitment copy B: checksum mismatch".into()],
        },
        config: ConfigStatus::default(),
        proxy: Default::default(),
        redacted: false,
        lists: Vec::new(),
        guard: None,
        upstreams: Default::default(),
    }
}

#[track_caller]
fn assert_contains(text: &str, phrases: &[&str]) {
    for phrase in phrases {
        assert!(text.contains(phrase), "{phrase:?} missing from:\n{text}");
    }
}

// ----- status -----------------------------------------------------------------------

#[test]
fn status_json_prints_the_daemons_result() {
    let daemon = FakeDaemon::with_status(sample_status());
    let run = daemon.ncd(&["status", "--json"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    let printed: Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    assert_eq!(printed, serde_json::to_value(sample_status()).unwrap());
    assert!(
        run.stdout.contains("\n  \"period\": {"),
        "pretty-printed:\n{}",
        run.stdout
    );
    assert_eq!(daemon.methods(), [Method::Status]);
}

#[test]
fn status_screen_shows_the_period_calmly_and_without_colour_off_a_terminal() {
    let daemon = FakeDaemon::with_status(sample_status());
    for env in [&[][..], &[("NO_COLOR", "1")][..]] {
        let run = ncd(&["--socket", daemon.socket.to_str().unwrap(), "status"], env);
        assert_eq!(run.code, Some(0), "{run:#?}");
        let text = &run.stdout;
        assert!(text.starts_with("Day 12 of 60\n"), "{text}");
        assert_contains(
            text,
            &[
                "  █████░░░░░░░░░░░░░░░░░░░░░░░░░   19%   48 days 3 hours left",
                &format!("You wrote: “{REASON}”"),
                "Blocked today: 5 (instagram 3, tiktok 2)",
                "Last 14 days:  ▁▁▂▄▁█▆▃▁▁▄▃▁▆  (today last)",
                "Urges come most around 23:00.",
                "An unlock request is cooling off: 23 hours 10 minutes to go. `ncd unlock --cancel` withdraws it.",
                "Held until the period ends or an unlock: remove service tiktok",
                "Things ncdd noticed (most recent last):",
                "clock jump: event number 6",
                "downtime: event number 5",
                "commitment copy B: checksum mismatch",
                "so the boundary holds",
                "ncdd 0.1.0 · up 3 days 2 hours · 1234 rules · listening on 127.0.0.1:53, [::1]:53",
            ],
        );
        assert!(
            !text.contains("event number 1"),
            "only the 5 most recent events:\n{text}"
        );
        assert!(
            !text.contains('\x1b'),
            "no ANSI escapes off a terminal ({env:?}):\n{text}"
        );
        let lower = text.to_lowercase();
        for banned in ["slip", "failed", "weak"] {
            assert!(!lower.contains(banned), "{banned:?} in:\n{text}");
        }
    }
}

#[test]
fn the_end_of_a_period_shows_the_reason_once_more_and_the_offer() {
    let mut status = sample_status();
    status.period = PeriodStatus {
        ended: Some(EndedPeriod {
            reason: REASON.into(),
            length_secs: 60 * DAY,
            served_secs: 60 * DAY,
            how: EndedHow::Completed,
            ended_unix: 1_772_409_600,
        }),
        ..PeriodStatus::default()
    };
    status.unlock = UnlockStatus::default();
    status.pending.clear();
    let daemon = FakeDaemon::with_status(status);
    let run = daemon.ncd(&["status"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.starts_with("Your period has ended\n"), "{}", run.stdout);
    assert_contains(
        &run.stdout,
        &[
            "It ran its full 60 days",
            &format!("When you started, you wrote: “{REASON}”"),
            "Start another with `ncd start --for 30d`, or open up at your own pace by editing the config.",
        ],
    );
}

#[test]
fn no_daemon_says_it_is_not_running_and_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("missing.sock");
    let run = ncd(&["--socket", socket.to_str().unwrap(), "status"], &[]);
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert_contains(
        &run.stderr,
        &[&format!(
            "ncdd is not running (no socket at {}). Start it with `sudo systemctl start ncd` or `ncdd --dev`.",
            socket.display()
        )],
    );
}

#[test]
fn the_socket_comes_from_ncd_socket_or_else_from_the_config() {
    let daemon = FakeDaemon::with_status(sample_status());
    let run = ncd(
        &["status", "--json"],
        &[("NCD_SOCKET", daemon.socket.to_str().unwrap())],
    );
    assert_eq!(run.code, Some(0), "{run:#?}");

    let config = daemon.dir.path().join("ncd.toml");
    std::fs::write(
        &config,
        format!("[control]\nsocket = {:?}\n", daemon.socket.to_str().unwrap()),
    )
    .unwrap();
    let run = ncd(&["--config", config.to_str().unwrap(), "status", "--json"], &[]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(daemon.methods(), [Method::Status, Method::Status]);
}

// ----- start, extend ------------------------------------------------------------------

#[test]
fn start_sends_the_length_and_the_reason() {
    let daemon = FakeDaemon::with_status(sample_status());
    let run = daemon.ncd(&["start", "--for", "30s", "--reason", REASON]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        daemon.methods().first(),
        Some(&Method::Start {
            length_secs: Some(30),
            reason: REASON.into()
        })
    );
    assert_contains(&run.stdout, &["Your period has begun: 30 seconds."]);
}

/// Under the service, `ncd start` returns once the root guard reports the stop
/// refusal in force for this period (the live test: `systemctl stop` right after
/// `ncd start` was allowed, the guard a second behind).
#[test]
fn start_waits_for_the_guard_to_refuse_stopping() {
    let started = 1_767_225_600;
    let asked = Arc::new(Mutex::new(0));
    let count = Arc::clone(&asked);
    let daemon = FakeDaemon::start(move |method| match method {
        Method::Start { .. } => Ok(json!({ "length_secs": 30 })),
        Method::Status => {
            let mut n = count.lock().unwrap();
            *n += 1;
            let mut status = sample_status();
            status.period.started_unix = Some(started);
            // The guard's report from before the period, until the third look.
            status.guard = Some(GuardStatus {
                checked_unix: if *n < 3 { started - 40 } else { started + 1 },
                stop_refusal: *n >= 3,
                ..GuardStatus::default()
            });
            Ok(serde_json::to_value(&status).unwrap())
        }
        _ => Err((ErrorCode::BadRequest, "not scripted".into())),
    });
    let run = daemon.ncd(&["start", "--for", "30s", "--reason", REASON]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(*asked.lock().unwrap(), 3, "{run:#?}");
    assert_contains(
        &run.stdout,
        &["Stopping ncd (`systemctl stop`) is refused until the period ends."],
    );

    // ncdd run by hand: no guard, no wait, nothing said about it.
    let daemon = FakeDaemon::with_status(sample_status());
    let run = daemon.ncd(&["start", "--for", "30s", "--reason", REASON]);
    assert_eq!(daemon.methods().len(), 2, "start, and one look at the status");
    assert!(!run.stdout.contains("systemctl stop"), "{run:#?}");
}

#[test]
fn start_without_length_leaves_it_to_the_daemon() {
    let daemon = FakeDaemon::with_status(sample_status());
    let run = daemon.ncd(&["start", "--reason", REASON]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        daemon.methods().first(),
        Some(&Method::Start {
            length_secs: None,
            reason: REASON.into()
        })
    );
    assert_contains(&run.stdout, &["Your period has begun: 60 days."]);
}

#[test]
fn start_without_a_reason_and_no_terminal_is_refused_and_sends_nothing() {
    let daemon = FakeDaemon::with_status(sample_status());
    let run = daemon.ncd(&["start", "--for", "30s"]);
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert_contains(&run.stderr, &["--reason", "No period was started."]);
    assert_eq!(daemon.methods(), []);
}

#[test]
fn a_bad_duration_is_refused_by_the_parser() {
    let daemon = FakeDaemon::with_status(sample_status());
    let run = daemon.ncd(&["start", "--for", "60", "--reason", REASON]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_contains(&run.stderr, &["a number needs a unit"]);
    assert_eq!(daemon.methods(), []);
}

#[test]
fn extend_sends_the_extra_time() {
    let daemon = FakeDaemon::with_status(sample_status());
    let run = daemon.ncd(&["extend", "2w"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(daemon.methods().first(), Some(&Method::Extend { by_secs: 14 * DAY }));
    assert_contains(&run.stdout, &["Extended by 14 days."]);
}

#[test]
fn forbidden_passes_on_the_daemons_words_and_exits_non_zero() {
    let daemon = FakeDaemon::start(|_| {
        Err((
            ErrorCode::Forbidden,
            "Only root or the person who started this period can do that.".into(),
        ))
    });
    let run = daemon.ncd(&["extend", "7d"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_contains(
        &run.stderr,
        &["Only root or the person who started this period can do that."],
    );
}

#[test]
fn other_daemon_errors_are_shown_in_its_own_words() {
    let daemon = FakeDaemon::start(|_| Err((ErrorCode::Conflict, "A request is already pending.".into())));
    let run = daemon.ncd(&["unlock", "--scope", "end", "--why", "I need to message about the flat."]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_contains(&run.stderr, &["A request is already pending."]);
}

// ----- unlock ------------------------------------------------------------------------

#[test]
fn unlock_with_scope_and_why_sends_the_request_and_explains_the_delay() {
    let daemon = FakeDaemon::with_status(sample_status());
    let why = "I need facebook.com for the work group this week.";
    let run = daemon.ncd(&["unlock", "--scope", "pending", "--why", why]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        daemon.methods().first(),
        Some(&Method::Unlock {
            scope: UnlockScope::Pending,
            why: why.into()
        })
    );
    assert_contains(
        &run.stdout,
        &[
            "Your request is in.",
            "It cools off for 1 day first.",
            "`ncd unlock --confirm`",
            "`ncd unlock --cancel` withdraws the request",
        ],
    );
}

#[test]
fn unlock_without_a_terminal_needs_scope_and_a_real_why() {
    let daemon = FakeDaemon::with_status(sample_status());
    let run = daemon.ncd(&["unlock"]);
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert_contains(&run.stderr, &["--scope end|pending", "--why"]);
    let run = daemon.ncd(&["unlock", "--scope", "end", "--why", "just because"]);
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert_contains(&run.stderr, &["at least 20 characters"]);
    assert_eq!(daemon.methods(), []);
}

#[test]
fn unlock_cancel_withdraws() {
    let daemon = FakeDaemon::with_status(sample_status());
    let run = daemon.ncd(&["unlock", "--cancel"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(daemon.methods(), [Method::UnlockCancel]);
    assert_eq!(run.stdout.trim(), "Withdrawn. Nothing changed.");
}

#[test]
fn confirm_without_a_terminal_is_refused_and_sends_nothing() {
    let daemon = FakeDaemon::with_status(sample_status());
    let run = daemon.ncd(&["unlock", "--confirm"]);
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert_contains(
        &run.stderr,
        &["Confirming needs you at a keyboard: stdin is not a terminal."],
    );
    assert_eq!(daemon.methods(), []);
}

// ----- completions, man --------------------------------------------------------------

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let run = ncd(&["completions", shell], &[]);
        assert_eq!(run.code, Some(0), "{run:#?}");
        assert!(run.stdout.contains("unlock"), "{shell}: {}", run.stdout);
    }
    let run = ncd(&["man"], &[]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(
        run.stdout.starts_with(".ie") || run.stdout.contains(".TH ncd"),
        "{}",
        run.stdout
    );
}

// ----- typing the passage at a (pseudo-)terminal --------------------------------------

/// 24 characters in three chunks of 8.
const PASSAGE: &str = "calm sea and a warm moon";
const CHUNKS: [&str; 3] = ["calm sea", " and a w", "arm moon"];
/// Between typed characters: a person at 200 words a minute, just slower than the
/// daemon's limit of 50 ms a character.
const KEY_GAP: Duration = Duration::from_millis(60);
/// The longest any expected output may take to show.
const DEADLINE: Duration = Duration::from_secs(20);

/// The answer handing out part `index` (0-based) of [`CHUNKS`], or `done`.
fn part_answer(index: usize) -> Value {
    json!({
        "passage": CHUNKS.get(index).copied().unwrap_or(""),
        "chunk_chars": 8,
        "part": (index + 1).min(CHUNKS.len()),
        "parts": CHUNKS.len(),
        "min_ms_per_char": 50,
        "done": index >= CHUNKS.len(),
    })
}

/// A confirmable unlock: the challenge hands out [`CHUNKS`] one at a time (the
/// next only when the last came back right), and the confirmation is accepted
/// only with [`PASSAGE`] once every part came back. With `refuse_first`, the first
/// return of part 2 is refused as too fast, as ncdd does.
fn confirm_daemon_with(refuse_first: bool) -> FakeDaemon {
    let mut status = sample_status();
    status.unlock.state = UnlockState::Confirmable;
    status.unlock.remaining_secs = 3600 + 40 * 60;
    let typed_parts = Mutex::new(0usize);
    let refused = Mutex::new(!refuse_first);
    FakeDaemon::start(move |method| {
        let mut index = typed_parts.lock().unwrap();
        match method {
            Method::Status => Ok(serde_json::to_value(&status).unwrap()),
            Method::UnlockChallenge => {
                *index = 0;
                Ok(part_answer(0))
            }
            Method::UnlockChunk { typed } if CHUNKS.get(*index) == Some(&typed.as_str()) => {
                let mut refused = refused.lock().unwrap();
                if *index == 1 && !*refused {
                    *refused = true;
                    return Err((
                        ErrorCode::Conflict,
                        "Part 2 of 3 came back too fast to be typed. Type it again, at a person's pace.".into(),
                    ));
                }
                *index += 1;
                Ok(part_answer(*index))
            }
            Method::UnlockChunk { .. } => Err((ErrorCode::Mismatch, "That part did not match.".into())),
            Method::UnlockConfirm { typed } if typed == PASSAGE && *index == CHUNKS.len() => {
                Ok(json!({ "scope": "end" }))
            }
            Method::UnlockConfirm { .. } => Err((ErrorCode::Conflict, "Type every part first.".into())),
            _ => Err((ErrorCode::BadRequest, "unexpected".into())),
        }
    })
}

fn confirm_daemon() -> FakeDaemon {
    confirm_daemon_with(false)
}

/// `ncd` with a pseudo-terminal as stdin, stdout and stderr.
struct Session {
    child: Child,
    master: File,
    slave: OwnedFd,
    output: Arc<(Mutex<Vec<u8>>, Condvar)>,
    /// How far [`Session::expect`] has read.
    seen: usize,
}

impl Session {
    /// `ncd --socket SOCKET unlock --confirm`.
    fn start(socket: &Path) -> Self {
        Self::ncd(socket, &["unlock", "--confirm"])
    }

    /// `ncd --socket SOCKET ARGS…`.
    fn ncd(socket: &Path, args: &[&str]) -> Self {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        // openpty's fds are inheritable: without this, ncd would hold its own master
        // open and never see the terminal hang up when a test ends early.
        for fd in [&pty.master, &pty.slave] {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC).expect("set FD_CLOEXEC");
        }
        let stdio = || Stdio::from(pty.slave.try_clone().expect("clone the pty slave"));
        let child = Command::new(env!("CARGO_BIN_EXE_ncd"))
            .args(["--socket", socket.to_str().unwrap()])
            .args(args)
            .env_remove("NCD_SOCKET")
            .env("NO_COLOR", "1")
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio())
            .spawn()
            .expect("spawn ncd");
        let master = File::from(pty.master);
        let output = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut reader = master.try_clone().expect("clone the pty master");
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                let (text, changed) = &*sink;
                text.lock().unwrap().extend_from_slice(&buf[..n]);
                changed.notify_all();
            }
        });
        Self {
            child,
            master,
            slave: pty.slave,
            output,
            seen: 0,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.0.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` shows after what was already expected, and moves past it.
    #[track_caller]
    fn expect(&mut self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        let (text, changed) = &*self.output;
        let mut bytes = text.lock().unwrap();
        loop {
            let found = bytes[self.seen..]
                .windows(needle.len())
                .position(|w| w == needle.as_bytes());
            if let Some(at) = found {
                self.seen += at + needle.len();
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "{needle:?} did not show within {DEADLINE:?}; output so far:\n{}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            bytes = changed.wait_timeout(bytes, deadline - now).unwrap().0;
        }
    }

    /// Writes `text` all at once, as a paste does.
    fn paste(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Writes `text` in pieces of `piece` bytes, each at once, `pause` apart: a
    /// program that stays under any run-length paste detection.
    fn paste_in_pieces(&mut self, text: &str, piece: usize, pause: Duration) {
        for bytes in text.as_bytes().chunks(piece) {
            std::thread::sleep(pause);
            self.master.write_all(bytes).unwrap();
        }
    }

    /// Writes `text` one byte at a time, each [`KEY_GAP`] after the one before (or
    /// after the prompt), as a person types: nobody answers a prompt within 5 ms.
    fn type_slowly(&mut self, text: &str) {
        for byte in text.bytes() {
            std::thread::sleep(KEY_GAP);
            self.master.write_all(&[byte]).unwrap();
        }
    }

    fn local_modes(&self) -> LocalModes {
        rustix::termios::tcgetattr(self.slave.as_fd())
            .expect("tcgetattr on the slave")
            .local_modes
    }

    #[track_caller]
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("ncd did not exit; output:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Session {
    /// A test that fails half-way leaves no `ncd` behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The parts handed back to the daemon.
fn parts_sent(daemon: &FakeDaemon) -> Vec<Method> {
    daemon
        .methods()
        .into_iter()
        .filter(|m| matches!(m, Method::UnlockChunk { .. }))
        .collect()
}

fn chunk(text: &str) -> Method {
    Method::UnlockChunk { typed: text.into() }
}

fn confirmations(daemon: &FakeDaemon) -> Vec<Method> {
    daemon
        .methods()
        .into_iter()
        .filter(|m| matches!(m, Method::UnlockConfirm { .. }))
        .collect()
}

#[test]
fn typing_the_passage_chunk_by_chunk_confirms_it() {
    let daemon = confirm_daemon();
    let mut session = Session::start(&daemon.socket);
    for (i, chunk) in CHUNKS.iter().enumerate() {
        session.expect(&format!("Part {} of 3:  “{chunk}”", i + 1));
        session.type_slowly(chunk);
    }
    let status = session.wait();
    assert!(status.success(), "{status}; output:\n{}", session.text());
    session.expect("Confirmed. The period has ended and the lock is lifted.");
    let text = session.text();
    assert!(!text.contains("faster than typing"), "{text}");
    assert_contains(&text, &[&format!("When you started, you wrote: “{REASON}”")]);
    assert_eq!(parts_sent(&daemon), CHUNKS.map(chunk));
    assert_eq!(
        confirmations(&daemon),
        [Method::UnlockConfirm { typed: PASSAGE.into() }]
    );
}

#[test]
fn small_pieces_a_little_apart_are_refused_as_a_paste_and_nothing_is_sent() {
    let daemon = confirm_daemon();
    let mut session = Session::start(&daemon.socket);
    session.expect("Part 1 of 3");
    // 7 bytes at once, 6 ms apart: never 8 fast bytes in a row, but the part
    // came far faster than 50 ms a character.
    session.paste_in_pieces(CHUNKS[0], 7, Duration::from_millis(6));
    session.expect("That came in faster than typing — please type it.");
    session.expect("Part 1 of 3");
    assert_eq!(parts_sent(&daemon), []);
    session.type_slowly(CHUNKS[0]);
    session.expect("Part 2 of 3");
    assert_eq!(parts_sent(&daemon), [chunk(CHUNKS[0])]);
}

#[test]
fn a_part_the_daemon_refuses_as_too_fast_is_typed_again() {
    let daemon = confirm_daemon_with(true);
    let mut session = Session::start(&daemon.socket);
    session.expect("Part 1 of 3");
    session.type_slowly(CHUNKS[0]);
    session.expect("Part 2 of 3");
    session.type_slowly(CHUNKS[1]);
    session.expect("came back too fast to be typed");
    session.expect("Part 2 of 3");
    session.type_slowly(CHUNKS[1]);
    session.expect("Part 3 of 3");
    session.type_slowly(CHUNKS[2]);
    let status = session.wait();
    assert!(status.success(), "{status}; output:\n{}", session.text());
    assert_eq!(
        parts_sent(&daemon),
        [chunk(CHUNKS[0]), chunk(CHUNKS[1]), chunk(CHUNKS[1]), chunk(CHUNKS[2])]
    );
    assert_eq!(
        confirmations(&daemon),
        [Method::UnlockConfirm { typed: PASSAGE.into() }]
    );
}

#[test]
fn a_pasted_chunk_is_refused_until_it_is_typed() {
    let daemon = confirm_daemon();
    let mut session = Session::start(&daemon.socket);
    session.expect("Part 1 of 3");
    session.paste(CHUNKS[0]);
    session.expect("That came in faster than typing — please type it.");
    session.expect("Part 1 of 3");
    assert!(!session.text().contains("Part 2 of 3"), "{}", session.text());
    assert_eq!(parts_sent(&daemon), []);
    assert_eq!(confirmations(&daemon), []);

    session.type_slowly(CHUNKS[0]);
    session.expect("Part 2 of 3");
    session.type_slowly(CHUNKS[1]);
    session.expect("Part 3 of 3");
    session.type_slowly(CHUNKS[2]);
    let status = session.wait();
    assert!(status.success(), "{status}; output:\n{}", session.text());
    assert_eq!(
        confirmations(&daemon),
        [Method::UnlockConfirm { typed: PASSAGE.into() }]
    );
}

#[test]
fn ctrl_c_cancels_restores_the_terminal_and_sends_nothing() {
    let daemon = confirm_daemon();
    let mut session = Session::start(&daemon.socket);
    let cooked = LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG;
    assert!(session.local_modes().contains(cooked), "a fresh pty is cooked");
    session.expect("Part 1 of 3");
    let raw = session.local_modes();
    assert!(!raw.intersects(cooked), "raw mode while typing: {raw:?}");
    session.type_slowly("calm");
    session.paste("\x03");
    let status = session.wait();
    assert_eq!(status.code(), Some(130), "output:\n{}", session.text());
    session.expect("Nothing was confirmed.");
    assert!(
        session.local_modes().contains(cooked),
        "the terminal is restored: {:?}",
        session.local_modes()
    );
    assert_eq!(daemon.methods(), [Method::Status, Method::UnlockChallenge]);
}

#[test]
fn sigterm_while_typing_restores_the_terminal_and_sends_nothing() {
    let daemon = confirm_daemon();
    let mut session = Session::start(&daemon.socket);
    session.expect("Part 1 of 3");
    session.type_slowly("cal");
    let pid = nix::unistd::Pid::from_raw(session.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = session.wait();
    assert_eq!(status.code(), Some(128 + 15), "output:\n{}", session.text());
    let cooked = LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG;
    assert!(session.local_modes().contains(cooked), "{:?}", session.local_modes());
    session.expect("Nothing was confirmed.");
    assert_eq!(confirmations(&daemon), []);
}

// ----- questions at a terminal (cooked mode) ------------------------------------------

#[test]
fn start_at_a_terminal_asks_for_the_reason() {
    let daemon = FakeDaemon::with_status(sample_status());
    let mut session = Session::ncd(&daemon.socket, &["start", "--for", "30s"]);
    session.expect("In a sentence, why are you doing this? You'll see it again when it matters.");
    session.paste(&format!("{REASON}\n"));
    let status = session.wait();
    assert!(status.success(), "{status}; output:\n{}", session.text());
    session.expect("Your period has begun: 30 seconds.");
    assert_eq!(
        daemon.methods().first(),
        Some(&Method::Start {
            length_secs: Some(30),
            reason: REASON.into()
        })
    );
}

#[test]
fn unlock_at_a_terminal_asks_what_to_open_shows_the_reason_and_asks_why() {
    let mut status = sample_status();
    status.unlock = UnlockStatus::default();
    status.pending = vec!["remove service tiktok".into(), "remove domain facebook.com".into()];
    let daemon = FakeDaemon::with_status(status);
    let mut session = Session::ncd(&daemon.socket, &["unlock"]);
    session.expect("What would you like to open?");
    session.expect("1. End the period now (48 days 3 hours left).");
    session.expect("- remove domain facebook.com");
    session.expect("Choose 1 or 2: ");
    session.paste("2\n");
    session.expect(&format!("When you started, you wrote: “{REASON}”"));
    session.expect("In your own words, why now?");
    session.paste("work\n");
    session.expect("a sentence or so");
    let why = "The work group moved to facebook and I need it for the project.";
    session.paste(&format!("{why}\n"));
    let exit = session.wait();
    assert!(exit.success(), "{exit}; output:\n{}", session.text());
    session.expect("Your request is in.");
    assert_eq!(
        daemon.methods()[..2],
        [
            Method::Status,
            Method::Unlock {
                scope: UnlockScope::Pending,
                why: why.into()
            }
        ]
    );
}
