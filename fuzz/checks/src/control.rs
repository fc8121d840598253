//! The control socket: `ncd_config::control`'s protocol as
//! `ncd_daemon::control::serve` speaks it, and who may call which verb.
//!
//! Input: one flag byte, then bytes sent as request lines.
//!
//! 1. The real `serve` loop, on a real Unix socket, with a recording handler in
//!    place of the daemon (bit 0 of the flag byte: does it authorise privileged
//!    verbs). The bytes are sent on one connection; then:
//!    - each line (up to `MAX_LINE_BYTES`) gets exactly one response, which parses,
//!      has protocol version 1 and the request's id (or the id found in a line
//!      that is JSON but not a request, else 0);
//!    - a line that is not a version-1 request is answered `bad_request` and never
//!      reaches the handler (not even `authorize`);
//!    - `handle` gets exactly the authorised requests, in order, with the method
//!      as parsed; a privileged verb refused by `authorize` never reaches it.
//! 2. The daemon's own `authorize` (in requests.rs), on two real `Daemon`s — one
//!    with no period, one with a period started by [`OWNER`] — for every request
//!    that parsed, as the uid bits 1-2 of the flag byte pick (root, the owner,
//!    nobody, another user): reading is open to all; `guard_report` is root's
//!    alone; during a period the other verbs are for root and the owner only;
//!    with none, `start` is for root, the daemon's user and the config's owner.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ncd_config::control::{
    Answer, ErrorCode, Explanation, MAX_LINE_BYTES, Method, PROTOCOL_VERSION, Request, Response,
};
use ncd_daemon::control::Handler;
use ncd_daemon::daemon::{Daemon, Options};
use ncd_daemon::generation::ConfigSource;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::fixture::fixture;
use crate::runtime::runtime;

/// The uid that starts the period of the daemon that has one.
pub const OWNER: u32 = 4242;
/// Uids the flag byte picks from for the daemon's `authorize`.
const UIDS: [u32; 4] = [0, OWNER, 65_534, 1000];
/// How long one input may take before the check calls it a hang.
const HANG: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
struct Session {
    allow_privileged: bool,
    authorize_calls: Vec<Method>,
    handled: Vec<Method>,
    violations: Vec<String>,
}

/// Records what reaches it; refuses privileged verbs unless told otherwise.
#[derive(Debug, Default)]
struct Recorder {
    session: Mutex<Session>,
}

impl Recorder {
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl Handler for Recorder {
    fn authorize(&self, _uid: u32, method: &Method) -> Result<(), String> {
        let mut s = self.session();
        s.authorize_calls.push(method.clone());
        if method.is_privileged() && !s.allow_privileged {
            Err("not for you".into())
        } else {
            Ok(())
        }
    }

    async fn handle(&self, _uid: u32, method: Method) -> Result<Answer, (ErrorCode, String)> {
        let mut s = self.session();
        if method.is_privileged() && !s.allow_privileged {
            s.violations
                .push(format!("{method:?} was dispatched though authorize refused it"));
        }
        s.handled.push(method.clone());
        Ok(echo(&method))
    }
}

/// The recorder's answer: the request itself, in a typed answer's text field, so a
/// response can be matched to the request it answers.
fn echo(method: &Method) -> Answer {
    Answer::Explanation(Explanation {
        name: serde_json::to_string(method).unwrap_or_default(),
        blocked: false,
        by: None,
        allowed_by: None,
        steered: false,
    })
}

struct Server {
    socket: PathBuf,
    recorder: Arc<Recorder>,
    /// One input at a time: the recorder's session is shared.
    turn: tokio::sync::Mutex<()>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let socket = fixture().dir().join("control.sock");
        let recorder = Arc::new(Recorder::default());
        let handler: Arc<dyn Handler> = recorder.clone();
        runtime().block_on(async {
            let listener = ncd_daemon::control::bind(&socket)
                .await
                .expect("bind the control socket");
            tokio::spawn(ncd_daemon::control::serve(listener, handler, socket.clone()));
        });
        Server {
            socket,
            recorder,
            turn: tokio::sync::Mutex::new(()),
        }
    })
}

/// What the server must answer to one line.
#[derive(Debug)]
enum Expect {
    TooLong,
    Bad { id: u64 },
    Forbidden { request: Request },
    Handled { request: Request },
}

/// The lines as the server reads them (`read_until` newline, at most
/// `MAX_LINE_BYTES + 1` bytes at a time), and what each must get.
fn expectations(bytes: &[u8], allow_privileged: bool) -> Vec<Expect> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let window = &rest[..rest.len().min(MAX_LINE_BYTES + 1)];
        let end = window.iter().position(|&b| b == b'\n').map_or(window.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        if line.len() > MAX_LINE_BYTES {
            out.push(Expect::TooLong);
            break;
        }
        let expect = match serde_json::from_slice::<Request>(line) {
            Err(_) => Expect::Bad {
                id: serde_json::from_slice::<Value>(line)
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_u64))
                    .unwrap_or(0),
            },
            Ok(request) if request.v != PROTOCOL_VERSION => Expect::Bad { id: request.id },
            Ok(request) if request.method.is_privileged() && !allow_privileged => Expect::Forbidden { request },
            Ok(request) => Expect::Handled { request },
        };
        out.push(expect);
    }
    out
}

pub fn check_control(data: &[u8]) {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    check_serve(flags & 1 != 0, bytes);
    check_authorize(UIDS[usize::from((flags >> 1) & 3)], bytes);
}

fn check_serve(allow_privileged: bool, bytes: &[u8]) {
    let server = server();
    let rt = runtime();
    let _turn = rt.block_on(server.turn.lock());
    *server.recorder.session() = Session {
        allow_privileged,
        ..Session::default()
    };
    let lines = rt.block_on(async {
        tokio::time::timeout(HANG, exchange(&server.socket, bytes))
            .await
            .unwrap_or_else(|_| panic!("no end of the responses within {HANG:?}"))
    });
    let session = std::mem::take(&mut *server.recorder.session());
    assert!(session.violations.is_empty(), "{:?}", session.violations);

    let expected = expectations(bytes, allow_privileged);
    assert_eq!(
        lines.len(),
        expected.len(),
        "one response per line: got {lines:?} for {expected:?}"
    );
    let mut authorized = Vec::new();
    let mut handled = Vec::new();
    for (line, expect) in lines.iter().zip(&expected) {
        let response: Response =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("response {line:?} does not parse: {e}"));
        assert_eq!(response.v, PROTOCOL_VERSION, "{line}");
        let code = response.error.as_ref().map(|e| e.code);
        let (id, ok, want_code) = match expect {
            Expect::TooLong => (0, false, Some(ErrorCode::BadRequest)),
            Expect::Bad { id } => (*id, false, Some(ErrorCode::BadRequest)),
            Expect::Forbidden { request } => {
                authorized.push(request.method.clone());
                (request.id, false, Some(ErrorCode::Forbidden))
            }
            Expect::Handled { request } => {
                authorized.push(request.method.clone());
                handled.push(request.method.clone());
                let echoed = serde_json::to_value(echo(&request.method)).expect("encode the echo");
                assert_eq!(response.result, Some(echoed), "{line}");
                (request.id, true, None)
            }
        };
        assert_eq!(
            (response.id, response.ok, code),
            (id, ok, want_code),
            "{line} for {expect:?}"
        );
        assert_eq!(response.ok, response.result.is_some(), "{line}");
        assert_eq!(response.ok, response.error.is_none(), "{line}");
    }
    assert_eq!(
        session.authorize_calls, authorized,
        "authorize saw other requests than those that parsed"
    );
    assert_eq!(
        session.handled, handled,
        "the handler got other requests than the authorised ones"
    );
}

/// Sends `bytes` on a new connection (then half-closes) and reads every response
/// line until the server closes.
async fn exchange(socket: &std::path::Path, bytes: &[u8]) -> Vec<String> {
    let stream = UnixStream::connect(socket)
        .await
        .expect("connect to the control socket");
    let (read, mut write) = stream.into_split();
    let send = async move {
        // The server hangs up after an over-long line: the rest may not go out.
        if write.write_all(bytes).await.is_ok() {
            let _ = write.shutdown().await;
        }
    };
    let receive = async move {
        let mut lines = Vec::new();
        let mut reader = BufReader::new(read);
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line).await {
                Ok(0) => return lines,
                Ok(_) => {
                    assert!(line.ends_with('\n'), "a response without its newline: {line:?}");
                    lines.push(line);
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return lines,
                Err(e) => panic!("reading responses: {e}"),
            }
        }
    };
    tokio::join!(send, receive).1
}

struct Daemons {
    /// No period runs.
    idle: Arc<Daemon>,
    /// A period started by [`OWNER`] runs.
    owned: Arc<Daemon>,
    /// Who owns the config file (and whom ncdd runs as: this process made it).
    config_owner: u32,
}

fn daemons() -> &'static Daemons {
    static DAEMONS: OnceLock<Daemons> = OnceLock::new();
    DAEMONS.get_or_init(|| {
        let dir = fixture().dir().join("daemons");
        std::fs::create_dir_all(&dir).expect("create the daemons' directory");
        let config = dir.join("ncd.toml");
        std::fs::write(
            &config,
            "[dns]\nlisten = [\"127.0.0.1:0\"]\nupstreams = [\"udp://127.0.0.1:1\"]\n\
             [block]\nservices = [\"instagram\"]\n",
        )
        .expect("write the daemons' config");
        let config_owner = std::fs::metadata(&config).expect("stat the config").uid();
        let start = |name: &str| {
            let options = Options {
                config: ConfigSource::File(config.clone()),
                state_dir: dir.join(name),
                listen: None,
                control_socket: Some(dir.join(format!("{name}.sock"))),
            };
            runtime().block_on(Daemon::start(options)).expect("start a daemon")
        };
        let idle = start("idle");
        let owned = start("owned");
        let effective = owned.generations().current().config.clone();
        owned
            .period()
            .start(OWNER, 86_400, "fuzzing".into(), &effective)
            .expect("start a period");
        Daemons {
            idle,
            owned,
            config_owner,
        }
    })
}

/// The rules of requests.rs, as its module docs and ARCHITECTURE.md state them.
fn may(uid: u32, method: &Method, owner: Option<u32>, config_owner: u32) -> bool {
    match method {
        Method::GuardReport { .. } => uid == 0,
        m if !m.is_privileged() => true,
        _ if uid == 0 => true,
        _ => match owner {
            Some(owner) => uid == owner,
            None => !matches!(method, Method::Start { .. }) || uid == config_owner,
        },
    }
}

fn check_authorize(uid: u32, bytes: &[u8]) {
    let daemons = daemons();
    for line in bytes.split(|&b| b == b'\n') {
        let Ok(request) = serde_json::from_slice::<Request>(line) else {
            continue;
        };
        let method = &request.method;
        for (daemon, owner) in [(&daemons.idle, None), (&daemons.owned, Some(OWNER))] {
            assert_eq!(daemon.period().owner(), owner);
            let got = Handler::authorize(daemon.requests().as_ref(), uid, method);
            let want = may(uid, method, owner, daemons.config_owner);
            assert_eq!(
                got.is_ok(),
                want,
                "uid {uid}, period owner {owner:?}, {method:?}: {got:?}"
            );
            if let Err(message) = got {
                assert!(!message.trim().is_empty(), "a refusal without words");
            }
        }
    }
}
