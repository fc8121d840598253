//! The control protocol between `ncd` and `ncdd`: newline-delimited JSON over a
//! Unix socket, one request per line, each answered by one response with the same
//! `id`. Both sides use these types, so they cannot drift apart: every verb's
//! answer is a type here ([`Status`], [`Explanation`], [`Started`], [`Extended`],
//! [`UnlockStatus`], [`Done`], [`Challenge`], [`Confirmed`]); [`Method::answer`]
//! names which one a verb gets, and the daemon can only send an [`Answer`].
//!
//! ```text
//! → {"v":1,"id":7,"method":"status"}
//! ← {"v":1,"id":7,"ok":true,"result":{…}}
//! → {"v":1,"id":8,"method":"start","params":{"length_secs":5184000,"reason":"…"}}
//! ← {"v":1,"id":8,"ok":false,"error":{"code":"forbidden","message":"…"}}
//! ```

use serde::{Deserialize, Serialize};

/// The protocol version. A request with another version is refused, not guessed.
pub const PROTOCOL_VERSION: u32 = 1;
/// The longest request line the daemon reads; longer lines close the connection.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub v: u32,
    pub id: u64,
    #[serde(flatten)]
    pub method: Method,
}

/// What a client asks for. Reading (`status`, `check`) is open to every local user;
/// the rest needs root or the user who started the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Method {
    Status,
    Check {
        name: String,
    },
    Start {
        length_secs: Option<u64>,
        reason: String,
    },
    Extend {
        by_secs: u64,
    },
    /// Ask to open something: starts the cooling-off delay.
    Unlock {
        scope: UnlockScope,
        why: String,
    },
    /// Withdraw the pending unlock request.
    UnlockCancel,
    /// Get a fresh passage, once the request is confirmable: the answer is its
    /// first part only. Typing starts over from part 1.
    UnlockChallenge,
    /// Hand back the part of the passage just typed; the answer is the next part
    /// (or `done`). A part is taken only if it came back right and no sooner than
    /// [`MIN_MS_PER_CHAR`] per character after it was handed out.
    UnlockChunk {
        typed: String,
    },
    /// Confirm with the whole passage, once every part was typed (`unlock_chunk`).
    UnlockConfirm {
        typed: String,
    },
    /// From the root guard: resolver settings that drifted and were put back.
    /// Root only; recorded in the journal `ncd status` shows.
    GuardReport {
        drift: Vec<String>,
    },
}

impl Method {
    /// Which answer a verb gets when it succeeds.
    pub fn answer(&self) -> AnswerKind {
        match self {
            Method::Status => AnswerKind::Status,
            Method::Check { .. } => AnswerKind::Explanation,
            Method::Start { .. } => AnswerKind::Started,
            Method::Extend { .. } => AnswerKind::Extended,
            Method::Unlock { .. } => AnswerKind::Unlock,
            Method::UnlockCancel | Method::GuardReport { .. } => AnswerKind::Done,
            Method::UnlockChallenge | Method::UnlockChunk { .. } => AnswerKind::Challenge,
            Method::UnlockConfirm { .. } => AnswerKind::Confirmed,
        }
    }

    /// True for the verbs that change the commitment.
    pub fn is_privileged(&self) -> bool {
        !matches!(self, Method::Status | Method::Check { .. })
    }

    /// One request of every kind (both unlock scopes), for tests that must cover
    /// each verb. A new variant does not compile until it is listed here.
    pub fn examples() -> Vec<Method> {
        let why = "An example reason, long enough to be taken as one.".to_string();
        let all = vec![
            Method::Status,
            Method::Check {
                name: "example.com".into(),
            },
            Method::Start {
                length_secs: Some(86_400),
                reason: why.clone(),
            },
            Method::Extend { by_secs: 86_400 },
            Method::Unlock {
                scope: UnlockScope::End,
                why: why.clone(),
            },
            Method::Unlock {
                scope: UnlockScope::Pending,
                why,
            },
            Method::UnlockCancel,
            Method::UnlockChallenge,
            Method::UnlockChunk {
                typed: "river quiet".into(),
            },
            Method::UnlockConfirm {
                typed: "river quiet morning".into(),
            },
            Method::GuardReport {
                drift: vec!["an example drift".into()],
            },
        ];
        for method in &all {
            // Exhaustive on purpose: a new verb must be added to the list above.
            match method {
                Method::Status
                | Method::Check { .. }
                | Method::Start { .. }
                | Method::Extend { .. }
                | Method::Unlock { .. }
                | Method::UnlockCancel
                | Method::UnlockChallenge
                | Method::UnlockChunk { .. }
                | Method::UnlockConfirm { .. }
                | Method::GuardReport { .. } => {}
            }
        }
        all
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnlockScope {
    /// End the period now.
    End,
    /// Apply the loosenings held back during the period.
    Pending,
}

/// A verb's successful answer, as the daemon sends it. On the wire it is the inner
/// value alone (untagged); the client reads it back as the type
/// [`Method::answer`] names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Status(Box<Status>),
    Explanation(Explanation),
    Started(Started),
    Extended(Extended),
    Unlock(UnlockStatus),
    Done(Done),
    Challenge(Challenge),
    Confirmed(Confirmed),
}

impl Answer {
    pub fn kind(&self) -> AnswerKind {
        match self {
            Answer::Status(_) => AnswerKind::Status,
            Answer::Explanation(_) => AnswerKind::Explanation,
            Answer::Started(_) => AnswerKind::Started,
            Answer::Extended(_) => AnswerKind::Extended,
            Answer::Unlock(_) => AnswerKind::Unlock,
            Answer::Done(_) => AnswerKind::Done,
            Answer::Challenge(_) => AnswerKind::Challenge,
            Answer::Confirmed(_) => AnswerKind::Confirmed,
        }
    }
}

/// The kinds of [`Answer`], one per answer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    Status,
    Explanation,
    Started,
    Extended,
    Unlock,
    Done,
    Challenge,
    Confirmed,
}

/// `check`: whether a name is blocked and by which rule (`ncd check --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub name: String,
    pub blocked: bool,
    /// The rule that covers the name (blocking it, or excepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<RuleRef>,
    /// The exception that lets it through, when a rule covers it but it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_by: Option<RuleRef>,
    /// Not blocked, but answered with the proxy's addresses: a host of a site that
    /// a `[[profile]]` names (`by` says which). The proxy blocks the profile there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub steered: bool,
}

/// One rule, in words: the rule as written and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    pub rule: String,
    pub source: String,
}

/// `start`: the period began with this length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub length_secs: u64,
}

/// `extend`: the period grew by this much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extended {
    pub extended_by_secs: u64,
}

/// A verb that has nothing to say but "done" (`unlock_cancel`, `guard_report`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Done {}

/// How many passage characters make one part (the daemon hands out one at a time).
pub const CHUNK_CHARS: usize = 40;

/// The least time a part must take, per character, from when ncdd handed it out
/// to when it comes back: 50 ms, i.e. 20 characters (4 words) a second, 240 words
/// a minute. That is faster than anyone types: in a study of 168,000 typists the
/// average was 52 wpm and the fastest few were near 120 wpm (Dhakal et al.,
/// "Observations on Typing from 136 Million Keystrokes", CHI 2018); the record
/// for sustained typing is 150 wpm and the highest burst ever measured 212–216 wpm
/// (Barbara Blackburn, Stella Pajunas; Guinness). So a person never waits, and no
/// client, however it talks to the socket, confirms faster than a person types.
pub const MIN_MS_PER_CHAR: u64 = 50;

/// `unlock_challenge` and `unlock_chunk`: the part of the passage to type now.
///
/// (Before parts, `passage` was the whole passage. It is now the part to type,
/// so the field names stay those of protocol v1.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The part to type now; empty once `done`.
    pub passage: String,
    /// The most characters a part has.
    pub chunk_chars: usize,
    /// This part, counting from 1 (`parts` once `done`).
    #[serde(default)]
    pub part: usize,
    /// How many parts the passage has (0 from a daemon before parts).
    #[serde(default)]
    pub parts: usize,
    /// See [`MIN_MS_PER_CHAR`].
    #[serde(default)]
    pub min_ms_per_char: u64,
    /// Every part was typed: `unlock_confirm` with the whole passage confirms.
    #[serde(default)]
    pub done: bool,
}

/// `unlock_confirm`: what the confirmed unlock opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmed {
    pub scope: UnlockScope,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub id: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line was not a request (bad JSON, unknown method, wrong version).
    BadRequest,
    /// The caller may not do this.
    Forbidden,
    /// Not possible now (no period, a request already pending, too early …).
    Conflict,
    /// The typed passage (or part of it) did not match.
    Mismatch,
    /// Something went wrong inside the daemon; nothing was changed.
    Internal,
}

impl Response {
    /// A verb's answer, as the daemon sends it.
    pub fn answer(id: u64, answer: &Answer) -> Self {
        match serde_json::to_value(answer) {
            Ok(result) => Self::ok(id, result),
            Err(error) => Self::err(id, ErrorCode::Internal, format!("cannot encode the answer: {error}")),
        }
    }

    /// A success with any result value (the wire shape; see [`Response::answer`]).
    pub fn ok(id: u64, result: serde_json::Value) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: u64, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id,
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }
}

/// `ncd status --json`: everything the status screen shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Status {
    pub period: PeriodStatus,
    pub unlock: UnlockStatus,
    /// Loosenings held back by the ratchet, in words.
    pub pending: Vec<String>,
    /// Clock jumps, downtime, recovered state …, most recent last.
    pub tamper: Vec<TamperEvent>,
    pub blocked: BlockedStatus,
    pub daemon: DaemonStatus,
    /// The config file as ncdd last read it. (Absent from older daemons' answers.)
    #[serde(default)]
    pub config: ConfigStatus,
    /// The companion proxy. (Absent from older daemons' answers.)
    #[serde(default)]
    pub proxy: ProxyStatus,
    /// Lists that were skipped (not a file, too big, unreadable, too slow) or are
    /// blocking from their last good copy. (Absent from older daemons' answers.)
    #[serde(default)]
    pub lists: Vec<ListProblem>,
    /// What the root guard (`ncd guard`) last found and put back, from its report
    /// in the state dir. `None`: it has not run here. (Absent from older daemons' answers.)
    #[serde(default)]
    pub guard: Option<GuardStatus>,
    /// Where allowed names are resolved. (Absent from older daemons' answers.)
    #[serde(default)]
    pub upstreams: UpstreamStatus,
    /// True when the caller is neither root nor the period's owner: the private
    /// words (see [`Status::redacted`]) were left out.
    #[serde(default)]
    pub redacted: bool,
}

/// The root guard's report (`StateDir::guard_report`): written by `ncd guard`,
/// served by ncdd in [`Status`], shown by `ncd status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardStatus {
    /// When the guard last ran (Unix seconds).
    pub checked_unix: i64,
    /// Whether the period's stop refusal was in force after that run.
    #[serde(default)]
    pub stop_refusal: bool,
    /// What stands around the boundary now and was not (or could not be) put
    /// back, in words: each is a way around the block until it is undone.
    #[serde(default)]
    pub problems: Vec<String>,
    /// What the guard put back during this period, oldest first (the last few).
    #[serde(default)]
    pub repairs: Vec<GuardRepair>,
}

/// One thing the guard put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardRepair {
    pub unix: i64,
    /// What had changed and what was done, in words.
    pub what: String,
}

/// The resolvers ncdd asks for allowed names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UpstreamStatus {
    /// The network's resolvers ncdd follows, one line per link
    /// (`wlan0: 192.168.1.1 (lan)`); empty when the network hands out none.
    pub network: Vec<String>,
    /// In plain words, when the resolvers the config names cannot be reached from
    /// this network (a network that blocks outside DNS, a captive portal).
    pub unreachable: Option<String>,
}

/// A list that could not be read as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListProblem {
    /// The list as the config names it (a path or a URL).
    pub list: String,
    /// Why, in plain words; says so when its last good copy blocks in its place.
    pub why: String,
}

impl Status {
    /// What a local user who is neither root nor the period's owner may see: the
    /// day count, the lock and its unlock state, ncdd's health — not the reason,
    /// the why of an unlock, the urge ledger, what the held changes name, the
    /// profile labels, or the journal's details (each entry keeps its kind and
    /// time: that the clock jumped or ncdd was down is no one's secret).
    pub fn redacted(mut self) -> Self {
        self.period.reason = None;
        if let Some(ended) = &mut self.period.ended {
            ended.reason = String::new();
        }
        self.unlock.why = None;
        if !self.pending.is_empty() {
            let n = self.pending.len();
            self.pending = vec![format!("{n} change{} to the config", if n == 1 { "" } else { "s" })];
        }
        for event in &mut self.tamper {
            event.detail = String::new();
        }
        self.blocked = BlockedStatus::default();
        self.proxy.profiles = Vec::new();
        // A list's path can name a person too: only that some list is not read.
        for problem in &mut self.lists {
            problem.list = "a list".into();
            problem.why = "could not be read as configured".into();
        }
        // What was changed can name a site: only that something was.
        if let Some(guard) = &mut self.guard {
            for problem in &mut guard.problems {
                *problem = "a setting around the boundary was changed".into();
            }
            for repair in &mut guard.repairs {
                repair.what = "a changed setting was put back".into();
            }
        }
        self.redacted = true;
        self
    }
}

/// The companion proxy: what it blocks, where it serves, the CA browsers trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProxyStatus {
    /// The labels of the `[[profile]]` tables in force.
    pub profiles: Vec<String>,
    /// The sites whose hosts are steered to the proxy.
    pub sites: Vec<String>,
    /// Where the proxy serves; empty when it does not.
    pub listening: Vec<String>,
    /// Why the proxy is not serving though profile rules are in force. The steered
    /// sites then do not open at all (fail closed).
    pub error: Option<String>,
    /// The local CA the browsers must trust, once one was made.
    pub ca: Option<CaStatus>,
}

/// The proxy's local CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaStatus {
    /// SHA-256 of the certificate (`AB:CD:…`): `ncd ca install` records it.
    pub fingerprint_sha256: String,
    /// The domains its name constraints permit (it can sign for nothing else).
    pub domains: Vec<String>,
    /// The certificate file (`ncd ca show` prints it).
    pub path: String,
}

/// Whether the config file's last edit is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConfigStatus {
    /// Why the last edit of the config file is not in force (`path:line:col: …`),
    /// until an edit that loads clears it. The last good config keeps applying.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PeriodStatus {
    pub active: bool,
    pub length_secs: u64,
    pub served_secs: u64,
    pub remaining_secs: u64,
    pub reason: Option<String>,
    /// Unix seconds when the period began (wall clock; for display only).
    pub started_unix: Option<i64>,
    /// The last period that ended, so the end can be shown with its reason once.
    pub ended: Option<EndedPeriod>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndedPeriod {
    pub reason: String,
    pub length_secs: u64,
    pub served_secs: u64,
    pub how: EndedHow,
    pub ended_unix: i64,
}

/// How a period ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedHow {
    /// It ran its length.
    Completed,
    /// A confirmed unlock ended it.
    Unlocked,
}

impl EndedHow {
    pub fn as_str(self) -> &'static str {
        match self {
            EndedHow::Completed => "completed",
            EndedHow::Unlocked => "unlocked",
        }
    }
}

/// `how == "completed"`: the wire name.
impl PartialEq<&str> for EndedHow {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for EndedHow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnlockState {
    #[default]
    None,
    Waiting,
    Confirmable,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UnlockStatus {
    pub state: UnlockState,
    pub scope: Option<UnlockScope>,
    /// Seconds of credited time until the window opens (waiting) or closes (confirmable).
    pub remaining_secs: u64,
    pub why: Option<String>,
    /// The delay this request was given (it doubles with each request within 30 days).
    pub delay_secs: u64,
}

/// One entry of the journal `ncd status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TamperEvent {
    pub unix: i64,
    pub kind: EventKind,
    pub detail: String,
}

/// What a journal entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The wall clock jumped, or the boot clock went back.
    Clock,
    /// The machine restarted.
    Reboot,
    /// ncdd was not running for a while within one boot.
    Downtime,
    /// The state files: damage found, repaired, or a write that failed.
    State,
    /// A step of an unlock request.
    Unlock,
    /// The period began or ended.
    Period,
    /// The root guard found resolver settings changed and put them back.
    Drift,
    /// The companion proxy: a new CA to trust, a listener that failed.
    Proxy,
    /// A kind this version does not know (written by a newer one): kept, shown as is.
    #[serde(other)]
    Other,
}

/// The wire name (`clock`, `unlock` …), as in `ncd status --json`.
impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => f.write_str(self.word()),
        }
    }
}

impl EventKind {
    /// Whether the event is the person's own doing (logged at info) rather than
    /// something that went wrong or around the boundary (logged as a warning).
    pub fn is_routine(self) -> bool {
        matches!(self, EventKind::Unlock | EventKind::Period)
    }

    /// The word `ncd status` shows.
    pub fn word(self) -> &'static str {
        match self {
            EventKind::Clock => "clock jump",
            EventKind::Reboot => "reboot",
            EventKind::Downtime => "downtime",
            EventKind::State => "state",
            EventKind::Unlock => "unlock",
            EventKind::Period => "period",
            EventKind::Drift => "drift",
            EventKind::Proxy => "proxy",
            EventKind::Other => "event",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BlockedStatus {
    /// Blocked attempts today (bursts from one client within a few minutes count once).
    pub today: u64,
    /// The last 14 days, oldest first, today last.
    pub last_14_days: Vec<u64>,
    /// Today's attempts per service.
    pub today_by_service: Vec<(String, u64)>,
    /// The hour of day (0-23, local time of the daemon) when most attempts came, if any.
    pub peak_hour: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DaemonStatus {
    pub version: String,
    pub uptime_secs: u64,
    pub listening: Vec<String>,
    pub rules: usize,
    /// State damage found at start, if any (the strictest readable policy is in force).
    pub damage: Vec<String>,
}
