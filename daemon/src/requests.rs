//! What each control-socket verb does, and who may call it.
//!
//! Reading is open to every local user. Changing the commitment is for root and
//! the person who started the period; starting one (which only ever tightens) is
//! for root, the user ncdd runs as, and the owner of the config file.
//!
//! [`Requests`] holds only what the verbs need: the period, the ledger, the
//! generations (to read the current one, and to rebuild after a confirmed
//! unlock), and a few facts about the running daemon for `status`.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use ncd_config::DomainName;
use ncd_config::control::{
    Answer, ConfigStatus, Confirmed, DaemonStatus, Done, ErrorCode, EventKind, Explanation, Extended, GuardStatus,
    Method, RuleRef, Started, Status, UnlockScope, UpstreamStatus,
};
use ncd_period::{Period, Refusal, Report};

use crate::control::Handler;
use crate::generation::{ConfigSource, Generation, Generations};
use crate::proxy::ProxyRunner;
use crate::stats::Ledger;

/// The control verbs' view of the daemon.
#[derive(Debug)]
pub struct Requests {
    period: Arc<Period>,
    ledger: Arc<Ledger>,
    generations: Arc<Generations>,
    proxy: Arc<ProxyRunner>,
    started: Instant,
    /// The DNS addresses served, once bound.
    listening: Mutex<Vec<SocketAddr>>,
}

impl Requests {
    pub fn new(
        period: Arc<Period>,
        ledger: Arc<Ledger>,
        generations: Arc<Generations>,
        proxy: Arc<ProxyRunner>,
    ) -> Self {
        Self {
            period,
            ledger,
            generations,
            proxy,
            started: Instant::now(),
            listening: Mutex::new(Vec::new()),
        }
    }

    /// Tells `status` which addresses are served.
    pub fn set_listening(&self, addresses: &[SocketAddr]) {
        if let Ok(mut listening) = self.listening.lock() {
            listening.clear();
            listening.extend_from_slice(addresses);
        }
    }

    pub fn period(&self) -> &Period {
        &self.period
    }

    fn may_start(&self, uid: u32) -> bool {
        let own = rustix::process::geteuid().as_raw();
        let config_owner = match self.generations.source() {
            ConfigSource::File(path) => std::fs::metadata(path).ok().map(|m| m.uid()),
            ConfigSource::Dev => None,
        };
        uid == own || config_owner == Some(uid)
    }

    /// `status` as `uid` may see it: whole for root and the period's owner,
    /// otherwise without the private words ([`Status::redacted`]). Once a period
    /// has ended its owner is no longer recorded, so the ended period's reason
    /// goes to those who could start the next one here (root, ncdd's user, the
    /// config file's owner).
    pub fn status_for(&self, uid: u32) -> Status {
        let status = self.status();
        let whole = match self.period.owner() {
            _ if uid == 0 => true,
            Some(owner) => owner == uid,
            None => self.may_start(uid),
        };
        if whole { status } else { status.redacted() }
    }

    /// The root guard's last report, if it wrote one (a damaged one says so).
    fn guard_report(&self) -> Option<GuardStatus> {
        let path = self.generations.state_dir().guard_report();
        let bytes = std::fs::read(&path).ok()?;
        Some(serde_json::from_slice(&bytes).unwrap_or_else(|error| GuardStatus {
            problems: vec![format!(
                "the guard's report {} cannot be read ({error})",
                path.display()
            )],
            ..GuardStatus::default()
        }))
    }

    /// Everything `ncd status` shows.
    pub fn status(&self) -> Status {
        let Report {
            period,
            unlock,
            pending,
            journal,
            damage,
        } = self.period.report();
        let generation = self.generations.current();
        Status {
            period,
            unlock,
            pending,
            tamper: journal,
            blocked: self.ledger.status(),
            daemon: DaemonStatus {
                version: env!("CARGO_PKG_VERSION").to_string(),
                uptime_secs: self.started.elapsed().as_secs(),
                listening: self
                    .listening
                    .lock()
                    .map(|l| l.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
                rules: generation.policy().block_rules(),
                damage,
            },
            config: ConfigStatus {
                last_error: self.generations.last_error(),
            },
            proxy: self.proxy.status(),
            guard: self.guard_report(),
            redacted: false,
            lists: generation.policy().list_problems(),
            upstreams: UpstreamStatus {
                network: generation.chain.upstreams.network().describe(),
                unreachable: generation.chain.upstreams.unreachable(),
            },
        }
    }
}

#[async_trait]
impl Handler for Requests {
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
        match (self.period.owner(), method) {
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

    async fn handle(&self, uid: u32, method: Method) -> Result<Answer, (ErrorCode, String)> {
        let period = &self.period;
        let generation = self.generations.current();
        let effective = &generation.config;
        let result = match method {
            Method::Status => return Ok(Answer::Status(Box::new(self.status_for(uid)))),
            Method::Check { name } if name.contains("://") => {
                let learned = self.proxy.learned();
                let explanation = explain_url(&generation, &learned, &name).map_err(|e| (ErrorCode::BadRequest, e))?;
                return Ok(Answer::Explanation(explanation));
            }
            Method::Check { name } => {
                let name = DomainName::parse(&name).map_err(|e| (ErrorCode::BadRequest, e))?;
                return Ok(Answer::Explanation(ncd_policy::explain(generation.policy(), &name)));
            }
            Method::Start { length_secs, reason } => {
                let length_secs = length_secs.unwrap_or(effective.period.length.as_secs());
                match period.start(uid, length_secs, reason, effective) {
                    Ok(()) => {
                        // Locks the lists' contents as they are now (their locked copies),
                        // before the answer: an edit made after it is held.
                        self.generations.rebuild("the period started").await;
                        Ok(Answer::Started(Started { length_secs }))
                    }
                    Err(refusal) => Err(refusal),
                }
            }
            Method::Extend { by_secs } => period.extend(by_secs).map(|()| {
                Answer::Extended(Extended {
                    extended_by_secs: by_secs,
                })
            }),
            Method::Unlock { scope, why } => period
                .request_unlock(
                    scope,
                    why,
                    &self.generations.file_config(),
                    effective.unlock.delay.as_secs(),
                    effective.unlock.confirm_within.as_secs(),
                )
                .map(|()| Answer::Unlock(period.report().unlock)),
            Method::UnlockCancel => period.cancel_unlock().map(|()| Answer::Done(Done {})),
            Method::GuardReport { drift } => {
                for detail in drift {
                    period.record(EventKind::Drift, detail);
                }
                Ok(Answer::Done(Done {}))
            }
            Method::UnlockChallenge => period
                .challenge(effective.unlock.challenge_chars)
                .map(Answer::Challenge),
            Method::UnlockChunk { typed } => period.type_part(&typed).map(Answer::Challenge),
            Method::UnlockConfirm { typed } => match period.confirm(&typed) {
                Ok(scope) => {
                    let why = match scope {
                        UnlockScope::End => "the period ended by unlock",
                        UnlockScope::Pending => "held changes applied by unlock",
                    };
                    self.generations.rebuild(why).await;
                    self.proxy.ensure_running();
                    Ok(Answer::Confirmed(Confirmed { scope }))
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

/// `ncd check URL`: the DNS verdict for the URL's host, and for a host steered to
/// the proxy, the proxy's verdict for the page (as a navigation would reach it).
fn explain_url(generation: &Generation, learned: &ncd_proxy::Learned, url: &str) -> Result<Explanation, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("{url:?} names no host"))?;
    let name = DomainName::parse(host)?;
    let dns = ncd_policy::explain(generation.policy(), &name);
    let url = url.to_string();
    if !dns.steered {
        return Ok(Explanation { name: url, ..dns });
    }
    let Some(proxy) = &generation.proxy else {
        // Steered, but the proxy has no rules (its CA could not be made): the
        // connection is closed, so the page does not open.
        return Ok(Explanation {
            name: url,
            blocked: true,
            ..dns
        });
    };
    let request = ncd_proxy::RequestView {
        method: "GET",
        host,
        path: uri.path(),
        query: uri.query(),
        navigation: true,
        ..ncd_proxy::RequestView::default()
    };
    Ok(match proxy.profiles.judge_with(&request, Some(learned)) {
        ncd_proxy::Judgement::Block { profile, site, .. } => Explanation {
            name: url,
            blocked: true,
            by: Some(RuleRef {
                rule: format!("the profile rule {profile:?}"),
                source: format!("profile rules: {site}"),
            }),
            allowed_by: None,
            steered: true,
        },
        _ => Explanation { name: url, ..dns },
    })
}
