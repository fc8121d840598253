//! What each control-socket verb does, and who may call it.
//!
//! Reading is open to every local user. Changing the commitment is for root and
//! the person who started the period; starting one (which only ever tightens) is
//! for root, the user ncdd runs as, and the owner of the config file.

use std::os::unix::fs::MetadataExt;

use async_trait::async_trait;
use ncd_config::DomainName;
use ncd_config::control::{DaemonStatus, ErrorCode, Method, Status, UnlockScope};
use serde_json::{Value, json};

use crate::control::Handler;
use crate::daemon::{ConfigSource, Daemon};
use crate::period::Refusal;
use crate::policy::{Match, Policy, Verdict};

/// How many passage characters the CLI shows at a time.
const CHUNK_CHARS: usize = 40;

#[async_trait]
impl Handler for Daemon {
    fn authorize(&self, uid: u32, method: &Method) -> Result<(), String> {
        if matches!(method, Method::GuardReport { .. }) {
            return if uid == 0 {
                Ok(())
            } else {
                Err("Only the root guard reports drift.".into())
            };
        }
        if !method.is_privileged() || uid == 0 {
            return Ok(());
        }
        match (self.period().owner(), method) {
            (Some(owner), _) if owner == uid => Ok(()),
            (Some(_), _) => Err("Only root or the person who started this period can do that.".into()),
            (None, Method::Start { .. }) if self.may_start(uid) => Ok(()),
            (None, Method::Start { .. }) => Err(
                "Starting a period here is for root, the user ncdd runs as, or the owner of the config file.".into(),
            ),
            // No period: the verb will say so itself.
            (None, _) => Ok(()),
        }
    }

    async fn handle(&self, uid: u32, method: Method) -> Result<Value, (ErrorCode, String)> {
        let period = self.period();
        let effective = self.effective_config();
        let result = match method {
            Method::Status => return Ok(json!(self.status())),
            Method::Check { name } => {
                let name = DomainName::parse(&name).map_err(|e| (ErrorCode::BadRequest, e))?;
                return Ok(explain(&self.chain().policy, &name));
            }
            Method::Start { length_secs, reason } => {
                let length = length_secs.unwrap_or(effective.period.length.as_secs());
                period
                    .start(uid, length, reason, &effective)
                    .map(|()| json!({ "length_secs": length }))
            }
            Method::Extend { by_secs } => period.extend(by_secs).map(|()| json!({ "extended_by_secs": by_secs })),
            Method::Unlock { scope, why } => period
                .request_unlock(
                    scope,
                    why,
                    &self.file_config(),
                    effective.unlock.delay.as_secs(),
                    effective.unlock.confirm_within.as_secs(),
                )
                .map(|()| json!(period.status().1)),
            Method::UnlockCancel => period.cancel_unlock().map(|()| json!({})),
            Method::GuardReport { drift } => {
                for detail in drift {
                    period.record("drift", detail);
                }
                Ok(json!({}))
            }
            Method::UnlockChallenge => period
                .challenge(effective.unlock.challenge_chars)
                .map(|passage| json!({ "passage": passage, "chunk_chars": CHUNK_CHARS })),
            Method::UnlockConfirm { typed } => match period.confirm(&typed) {
                Ok(scope) => {
                    let why = match scope {
                        UnlockScope::End => "the period ended by unlock",
                        UnlockScope::Pending => "held changes applied by unlock",
                    };
                    self.rebuild(why).await;
                    Ok(json!({ "scope": scope }))
                }
                Err(refusal) => Err(refusal),
            },
        };
        result.map_err(|refusal| match refusal {
            Refusal::Forbidden(m) => (ErrorCode::Forbidden, m),
            Refusal::Conflict(m) => (ErrorCode::Conflict, m),
            Refusal::Mismatch(m) => (ErrorCode::Mismatch, m),
            Refusal::Internal(m) => (ErrorCode::Internal, m),
        })
    }
}

impl Daemon {
    fn may_start(&self, uid: u32) -> bool {
        let own = rustix::process::geteuid().as_raw();
        let config_owner = match &self.options().config {
            ConfigSource::File(path) => std::fs::metadata(path).ok().map(|m| m.uid()),
            ConfigSource::Dev => None,
        };
        uid == own || config_owner == Some(uid)
    }

    /// Everything `ncd status` shows.
    pub fn status(&self) -> Status {
        let (period, unlock, pending, tamper, damage) = self.period().status();
        let chain = self.chain();
        Status {
            period,
            unlock,
            pending,
            tamper,
            blocked: self.ledger().status(),
            daemon: DaemonStatus {
                version: env!("CARGO_PKG_VERSION").to_string(),
                uptime_secs: self.uptime().as_secs(),
                listening: self.listening().iter().map(ToString::to_string).collect(),
                rules: chain.policy.block_rules(),
                damage,
            },
        }
    }
}

/// Whether `name` is blocked and by which rule, as `ncd check --json` prints it.
pub fn explain(policy: &Policy, name: &DomainName) -> Value {
    let rule = |m: &Match<'_>| json!({ "rule": m.to_string(), "source": policy.source_name(m.source) });
    match policy.verdict(name.as_str().as_bytes()) {
        Verdict::Pass => json!({ "name": name.as_str(), "blocked": false }),
        Verdict::Blocked(m) => json!({ "name": name.as_str(), "blocked": true, "by": rule(&m) }),
        Verdict::Allowed { rule: r, exception } => json!({
            "name": name.as_str(), "blocked": false, "by": rule(&r), "allowed_by": rule(&exception),
        }),
    }
}
