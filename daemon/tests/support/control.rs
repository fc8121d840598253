//! A small client of ncdd's control socket: newline-delimited JSON, one request per
//! line, one response line per request (the protocol is `ncd_config::control`).
//! It writes the JSON by hand rather than through the shared types, so a test sees
//! the wire format the way any other client would.

// Each test binary uses its own part of the shared harness.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ncd_config::control::Status;
use serde_json::{Value, json};

/// How long one exchange may take.
pub(crate) const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One control socket; every request uses a connection of its own.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    pub path: PathBuf,
}

impl Control {
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Polls the status until `ready` holds; panics with the last status seen
    /// after `deadline`. A status that cannot be read yet (ncdd restarting) is
    /// polled again.
    #[allow(dead_code)] // each test binary uses its own part of the harness
    #[track_caller]
    pub(crate) fn wait_status(&self, what: &str, deadline: Duration, ready: impl Fn(&Status) -> bool) -> Status {
        let mut last = None;
        let found = super::eventually(deadline, || {
            let status = self.try_status()?;
            if ready(&status) {
                Some(status)
            } else {
                last = Some(status);
                None
            }
        });
        found.unwrap_or_else(|| panic!("{what}: not within {deadline:?}; the last status was {last:#?}"))
    }

    /// The socket of an ncdd started by the harness (`STATE_DIR/control.sock`).
    pub(crate) fn in_state_dir(state_dir: &Path) -> Self {
        Self::new(state_dir.join("control.sock"))
    }

    /// A connection with read and write timeouts.
    pub(crate) fn connect(&self) -> io::Result<UnixStream> {
        let stream = UnixStream::connect(&self.path)?;
        stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
        stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
        Ok(stream)
    }

    /// Writes `bytes` on a new connection and reads one line back (without the
    /// newline). `Ok(None)` when the daemon closed the connection without a line.
    pub(crate) fn exchange(&self, bytes: &[u8]) -> io::Result<Option<String>> {
        let mut stream = self.connect()?;
        stream.write_all(bytes)?;
        read_line(&stream)
    }

    /// Sends `{"v":1,"id":N,"method":METHOD[,"params":PARAMS]}` and returns the whole
    /// response; checks that it carries the version and the request's id.
    pub(crate) fn request(&self, method: &str, params: Option<Value>) -> Value {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut request = json!({ "v": 1, "id": id, "method": method });
        if let Some(params) = params {
            request["params"] = params;
        }
        let line = format!("{request}\n");
        let answer = match self.exchange(line.as_bytes()) {
            Ok(Some(answer)) => answer,
            Ok(None) => panic!("ncdd closed the control connection without answering {request}"),
            Err(error) => panic!("control request {request} to {}: {error}", self.path.display()),
        };
        let response: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("response to {request} is not JSON ({e}): {answer}"));
        assert_eq!(response["v"], 1, "response to {request}: {response}");
        assert_eq!(response["id"], id, "response to {request}: {response}");
        response
    }

    /// A request that must succeed; returns its `result`.
    #[track_caller]
    pub(crate) fn ok(&self, method: &str, params: Option<Value>) -> Value {
        let response = self.request(method, params);
        assert_eq!(response["ok"], true, "{method} was refused: {response}");
        response["result"].clone()
    }

    /// A request that must be refused; returns the error's (code, message).
    #[track_caller]
    pub(crate) fn refused(&self, method: &str, params: Option<Value>) -> (String, String) {
        let response = self.request(method, params);
        assert_eq!(response["ok"], false, "{method} was not refused: {response}");
        let code = response["error"]["code"].as_str().unwrap_or_default().to_string();
        let message = response["error"]["message"].as_str().unwrap_or_default().to_string();
        (code, message)
    }

    /// `status`, as the shared `Status` type (so its shape is checked too).
    #[track_caller]
    pub(crate) fn status(&self) -> Status {
        let result = self.ok("status", None);
        serde_json::from_value(result.clone()).unwrap_or_else(|e| panic!("status has an unknown shape ({e}): {result}"))
    }

    /// Asks for a passage and types it back part by part, as a person at a
    /// keyboard would: each part `unlock_chunk`ed no sooner than the pace the
    /// daemon names (`min_ms_per_char` a character, and a little more). Returns
    /// the whole passage, for `unlock_confirm`.
    #[track_caller]
    pub(crate) fn type_passage(&self) -> String {
        let mut part = self.ok("unlock_challenge", None);
        let mut passage = String::new();
        while part["done"] != true {
            let text = part["passage"].as_str().expect("a part of the passage").to_string();
            let per_char = part["min_ms_per_char"].as_u64().expect("the pace") + 10;
            std::thread::sleep(Duration::from_millis(per_char * text.chars().count() as u64));
            part = self.ok("unlock_chunk", Some(json!({ "typed": text })));
            passage.push_str(&text);
        }
        passage
    }

    /// `status`, or `None` when the socket does not answer (yet).
    pub(crate) fn try_status(&self) -> Option<Status> {
        let line = format!("{}\n", json!({ "v": 1, "id": 0, "method": "status" }));
        let answer = self.exchange(line.as_bytes()).ok()??;
        let response: Value = serde_json::from_str(&answer).ok()?;
        serde_json::from_value(response.get("result")?.clone()).ok()
    }
}

/// Reads one line from `stream`; `Ok(None)` at end of stream before any byte.
pub(crate) fn read_line(stream: &UnixStream) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    BufReader::new(stream).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}
