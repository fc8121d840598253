//! The control-socket client: finds the socket (`--socket`, `NCD_SOCKET`, the
//! config's `[control] socket`, or /run/ncd/control.sock), sends one request line,
//! reads one response line, and turns every failure into plain words.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ncd_config::Config;
use ncd_config::control::{
    Challenge, Confirmed, Done, ErrorCode, Explanation, Extended, MAX_LINE_BYTES, Method, PROTOCOL_VERSION, Request,
    Response, Started, Status, UnlockScope, UnlockStatus,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long one request may take, connecting, writing and waiting for the answer.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// The socket to talk to: the explicit one (`--socket` or `NCD_SOCKET`), else the
/// config file's `[control] socket` when the file parses, else the default; and
/// when that one is not there, the per-user socket of `ncdd --dev` if it is.
pub(crate) fn resolve_socket(explicit: Option<&Path>, config: &Path) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    let system = match Config::load(config) {
        Ok(config) => config.control.socket,
        Err(_) => PathBuf::from(ncd_config::DEFAULT_CONTROL_SOCKET),
    };
    let dev = ncd_state::dev_control_socket();
    if !system.exists() && is_ours(&dev) { dev } else { system }
}

/// True when `socket` exists in a folder this user owns (another user's
/// look-alike under /tmp is never talked to).
fn is_ours(socket: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    socket.exists()
        && socket
            .parent()
            .and_then(|d| d.metadata().ok())
            .is_some_and(|m| m.uid() == me)
}

/// Why a request got no useful answer. `Display` is the sentence the person reads.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// No socket file, or nothing listening on it.
    NotRunning {
        socket: PathBuf,
        stale: bool,
    },
    PermissionDenied(PathBuf),
    Timeout,
    Io(PathBuf, io::Error),
    /// The answer was not a response to this request.
    Protocol(String),
    /// The daemon answered with an error.
    Daemon {
        code: ErrorCode,
        message: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const START: &str = "Start it with `sudo systemctl start ncd` or `ncdd --dev`.";
        match self {
            ClientError::NotRunning { socket, stale: false } => {
                write!(f, "ncdd is not running (no socket at {}). {START}", socket.display())
            }
            ClientError::NotRunning { socket, stale: true } => write!(
                f,
                "ncdd is not running (nothing answers at {}). {START}",
                socket.display()
            ),
            ClientError::PermissionDenied(socket) => write!(
                f,
                "Permission denied opening {}. Your user may not use this socket: try again with sudo, \
                 or check the socket's permissions.",
                socket.display()
            ),
            ClientError::Timeout => write!(
                f,
                "ncdd did not answer within {} seconds. It may be busy or stuck; `systemctl status ncd` shows how it is.",
                TIMEOUT.as_secs()
            ),
            ClientError::Io(socket, error) => write!(f, "Could not talk to ncdd at {}: {error}.", socket.display()),
            ClientError::Protocol(what) => write!(f, "ncdd answered in a way this ncd does not understand: {what}."),
            // The daemon's words say who may do what (they differ by verb).
            ClientError::Daemon { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for ClientError {}

/// One control socket; each request uses its own connection.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    socket: PathBuf,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Client {
    pub(crate) fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    /// Sends `method` and returns the daemon's `result` (`null` when it sent none).
    pub(crate) fn call(&self, method: Method) -> Result<Value, ClientError> {
        let stream = UnixStream::connect(&self.socket).map_err(|e| self.connect_error(e))?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
            .map_err(|e| ClientError::Io(self.socket.clone(), e))?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let request = Request {
            v: PROTOCOL_VERSION,
            id,
            method,
        };
        let mut line = serde_json::to_vec(&request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        (&stream).write_all(&line).map_err(|e| self.io_error(e))?;

        let mut reader = BufReader::new((&stream).take(MAX_LINE_BYTES as u64 + 1));
        let mut answer = Vec::new();
        reader.read_until(b'\n', &mut answer).map_err(|e| self.io_error(e))?;
        if answer.is_empty() {
            return Err(ClientError::Protocol(
                "it closed the connection without an answer".into(),
            ));
        }
        if answer.last() != Some(&b'\n') {
            return Err(ClientError::Protocol(if answer.len() > MAX_LINE_BYTES {
                format!("the answer is longer than {MAX_LINE_BYTES} bytes")
            } else {
                "the answer was cut off".into()
            }));
        }
        let response: Response =
            serde_json::from_slice(&answer).map_err(|e| ClientError::Protocol(format!("not a response ({e})")))?;
        if response.v != PROTOCOL_VERSION {
            return Err(ClientError::Protocol(format!(
                "it speaks protocol version {}, this ncd speaks {PROTOCOL_VERSION}; update ncd and ncdd together",
                response.v
            )));
        }
        if response.id != id {
            return Err(ClientError::Protocol(format!(
                "the answer is for request {}, not {id}",
                response.id
            )));
        }
        if response.ok {
            Ok(response.result.unwrap_or(Value::Null))
        } else {
            let error = response
                .error
                .ok_or_else(|| ClientError::Protocol("an error without a message".into()))?;
            Err(ClientError::Daemon {
                code: error.code,
                message: error.message,
            })
        }
    }

    /// Sends `method` and reads its answer as `T`: the type the daemon builds the
    /// answer from, shared through `ncd_config::control`.
    fn ask<T: DeserializeOwned>(&self, method: Method) -> Result<T, ClientError> {
        let kind = method.answer();
        let value = self.call(method)?;
        serde_json::from_value(value).map_err(|e| {
            ClientError::Protocol(format!(
                "its answer ({kind:?}) has a shape this ncd does not know ({e})"
            ))
        })
    }

    /// The daemon's status, parsed.
    pub(crate) fn status(&self) -> Result<Status, ClientError> {
        self.ask(Method::Status)
    }

    /// Whether `name` is blocked under the policy in force.
    pub(crate) fn check(&self, name: &str) -> Result<Explanation, ClientError> {
        self.ask(Method::Check { name: name.into() })
    }

    pub(crate) fn start(&self, length_secs: Option<u64>, reason: String) -> Result<Started, ClientError> {
        self.ask(Method::Start { length_secs, reason })
    }

    pub(crate) fn extend(&self, by_secs: u64) -> Result<Extended, ClientError> {
        self.ask(Method::Extend { by_secs })
    }

    /// Asks for an unlock; the answer is the request as it now stands.
    pub(crate) fn unlock(&self, scope: UnlockScope, why: String) -> Result<UnlockStatus, ClientError> {
        self.ask(Method::Unlock { scope, why })
    }

    pub(crate) fn unlock_cancel(&self) -> Result<Done, ClientError> {
        self.ask(Method::UnlockCancel)
    }

    pub(crate) fn unlock_challenge(&self) -> Result<Challenge, ClientError> {
        self.ask(Method::UnlockChallenge)
    }

    /// Hands back the part just typed; the answer is the next part, or `done`.
    pub(crate) fn unlock_chunk(&self, typed: String) -> Result<Challenge, ClientError> {
        self.ask(Method::UnlockChunk { typed })
    }

    pub(crate) fn unlock_confirm(&self, typed: String) -> Result<Confirmed, ClientError> {
        self.ask(Method::UnlockConfirm { typed })
    }

    pub(crate) fn guard_report(&self, drift: Vec<String>) -> Result<Done, ClientError> {
        self.ask(Method::GuardReport { drift })
    }

    fn connect_error(&self, error: io::Error) -> ClientError {
        let socket = self.socket.clone();
        match error.kind() {
            io::ErrorKind::NotFound => ClientError::NotRunning { socket, stale: false },
            io::ErrorKind::ConnectionRefused => ClientError::NotRunning { socket, stale: true },
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied(socket),
            _ => ClientError::Io(socket, error),
        }
    }

    fn io_error(&self, error: io::Error) -> ClientError {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            _ => ClientError::Io(self.socket.clone(), error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_words_pass_through() {
        let forbidden = ClientError::Daemon {
            code: ErrorCode::Forbidden,
            message: "Only root or the person who started this period can do that.".into(),
        };
        assert_eq!(
            forbidden.to_string(),
            "Only root or the person who started this period can do that."
        );
    }

    #[test]
    fn a_missing_socket_says_how_to_start_the_daemon() {
        let client = Client::new(PathBuf::from("/nonexistent/ncd-test/control.sock"));
        let error = client.call(Method::Status).unwrap_err();
        assert_eq!(
            error.to_string(),
            "ncdd is not running (no socket at /nonexistent/ncd-test/control.sock). \
             Start it with `sudo systemctl start ncd` or `ncdd --dev`."
        );
    }

    #[test]
    fn the_explicit_socket_wins_and_a_broken_config_falls_back_to_the_default() {
        let explicit = Path::new("/tmp/x.sock");
        assert_eq!(resolve_socket(Some(explicit), Path::new("/nonexistent")), explicit);
        assert_eq!(
            resolve_socket(None, Path::new("/nonexistent/ncd.toml")),
            PathBuf::from(ncd_config::DEFAULT_CONTROL_SOCKET)
        );
    }
}
