//! The period and its unlock request: a state machine driven by credited time.
//!
//! Everything here is pure: methods take the served seconds and return what
//! happened. [`super::Period`] feeds them from the clocks and writes the result.
//!
//! ```text
//!            ncd unlock               delay served                window served
//!   (none) ─────────────▶ waiting ───────────────▶ confirmable ───────────────▶ expired
//!     ▲                      │ --cancel                │ passage typed              │
//!     └──────────────────────┴─────────────────────────┤                            │
//!                                                      ▼                            │
//!                                      period ends / held changes apply ◀── (nothing changes)
//! ```

use ncd_config::Config;
use ncd_config::control::{UnlockScope, UnlockState};
use serde::{Deserialize, Serialize};

/// Requests closer together than this (in credited time) double the delay.
pub const ESCALATION_WINDOW_SECS: u64 = 30 * 86_400;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commitment {
    pub reason: String,
    pub owner_uid: u32,
    pub started_unix: i64,
    pub length_secs: u64,
    pub served_secs: u64,
    /// The config the period holds the file to: the config at start plus every
    /// tightening since (see `ncd_config::ratchet`).
    pub locked: Config,
    pub unlock: Option<UnlockRequest>,
    /// The served time and delay of the last request, for escalation.
    pub last_request: Option<(u64, u64)>,
    /// Names the lists' locked copies (see [`super::Period::list_hold`]): new at
    /// the start and at each confirmed `pending` unlock, which drops the copies
    /// kept under the old one. `None` (a period assumed after damage, or saved by
    /// an older ncdd) adopts whatever copies are on disk: damage never opens them.
    #[serde(default)]
    pub lists_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnlockRequest {
    pub scope: UnlockScope,
    pub why: String,
    /// Served seconds when the request was made.
    pub requested_at: u64,
    pub delay_secs: u64,
    pub window_secs: u64,
    /// The passage issued for confirmation, if one was asked for.
    pub passage: Option<String>,
    /// The expiry has been logged (it is logged once).
    #[serde(default)]
    pub expiry_noted: bool,
    /// For `Pending`: the config file and the lock as they were when asked, so a
    /// confirmation opens exactly what was held then (see `ratchet::rebase`).
    #[serde(default)]
    pub target: Option<Box<(Config, Config)>>,
}

impl UnlockRequest {
    pub fn opens_at(&self) -> u64 {
        self.requested_at.saturating_add(self.delay_secs)
    }

    pub fn closes_at(&self) -> u64 {
        self.opens_at().saturating_add(self.window_secs)
    }

    pub fn state(&self, served: u64) -> UnlockState {
        if served < self.opens_at() {
            UnlockState::Waiting
        } else if served < self.closes_at() {
            UnlockState::Confirmable
        } else {
            UnlockState::Expired
        }
    }

    /// Seconds until the window opens (waiting) or closes (confirmable).
    pub fn remaining(&self, served: u64) -> u64 {
        match self.state(served) {
            UnlockState::Waiting => self.opens_at() - served,
            UnlockState::Confirmable => self.closes_at() - served,
            _ => 0,
        }
    }
}

impl Commitment {
    pub fn remaining_secs(&self) -> u64 {
        self.length_secs.saturating_sub(self.served_secs)
    }

    pub fn is_complete(&self) -> bool {
        self.served_secs >= self.length_secs
    }

    /// The delay a new request gets: the base delay, doubled for each request
    /// that came within [`ESCALATION_WINDOW_SECS`] of the one before.
    pub fn next_delay(&self, base_delay: u64) -> u64 {
        match self.last_request {
            Some((at, delay)) if self.served_secs.saturating_sub(at) < ESCALATION_WINDOW_SECS => {
                delay.saturating_mul(2).max(base_delay)
            }
            _ => base_delay,
        }
    }

    /// Starts a request. Refused while another is waiting or confirmable.
    pub fn request_unlock(
        &mut self,
        scope: UnlockScope,
        why: String,
        file: &Config,
        base_delay: u64,
        window: u64,
    ) -> Result<&UnlockRequest, String> {
        if let Some(existing) = &self.unlock
            && existing.state(self.served_secs) != UnlockState::Expired
        {
            return Err("An unlock request is already open. `ncd unlock --cancel` withdraws it.".into());
        }
        let delay_secs = self.next_delay(base_delay);
        self.last_request = Some((self.served_secs, delay_secs));
        Ok(self.unlock.insert(UnlockRequest {
            scope,
            why,
            requested_at: self.served_secs,
            delay_secs,
            window_secs: window,
            passage: None,
            expiry_noted: false,
            target: (scope == UnlockScope::Pending).then(|| Box::new((file.clone(), self.locked.clone()))),
        }))
    }
}
