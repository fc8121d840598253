//! One generation: everything a rebuild produces, swapped in once.
//!
//! A [`Generation`] is the effective config (the file, held by the period's
//! ratchet), the policy compiled from it, and the DNS chain that answers with it
//! (the proxy's rules will join them here). [`Generations`] owns the one rebuild
//! path and the one `ArcSwap` every reader loads, so the DNS listeners, the
//! control socket and the list fetcher always see one consistent generation.
//!
//! A new generation starts with empty caches: a new block bites at once, with no
//! flush to forget.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use ncd_config::control::EventKind;
use ncd_config::{Config, ConfigError};
use ncd_period::Period;
use ncd_policy::Policy;
use ncd_policy::lists::Hold;
use ncd_proxy::{CaEvent, ProxyRules};
use ncd_state::StateDir;

use crate::dns::Chain;
use crate::dns::upstream::{UpstreamInputs, Upstreams};
use crate::stats::Ledger;

/// What one rebuild produced.
#[derive(Debug)]
pub struct Generation {
    /// The config in force: the file as written, or held by the ratchet while a
    /// period runs.
    pub config: Config,
    /// The DNS side: ACL, policy, caches, upstreams.
    pub chain: Chain,
    /// The proxy side: the profile rules and the CA covering their sites; `None`
    /// when no `[[profile]]` names anything (or the CA could not be made).
    pub proxy: Option<Arc<ProxyRules>>,
    /// Why there are profile rules but no proxy rules (the CA could not be made).
    pub proxy_error: Option<String>,
}

impl Generation {
    /// The rules compiled from `config`: the ones the chain answers with.
    pub fn policy(&self) -> &Policy {
        &self.chain.policy
    }
}

/// Where the config comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file, watched for changes.
    File(PathBuf),
    /// The embedded `--dev` config.
    Dev,
}

/// What a reload did with the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file loaded and a new generation is in force.
    Applied,
    /// The file has an error: nothing changed, the last good config keeps applying.
    Rejected(String),
}

/// The current generation, and the one path that makes the next.
#[derive(Debug)]
pub struct Generations {
    source: ConfigSource,
    state_dir: StateDir,
    /// The last config read from the file that parsed.
    file: ArcSwap<Config>,
    current: Arc<ArcSwap<Generation>>,
    period: Arc<Period>,
    ledger: Arc<Ledger>,
    /// Why the file's last edit is not in force, until an edit loads.
    last_error: Mutex<Option<String>>,
    /// Serialises rebuilds, so two reloads never race to swap.
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Generations {
    /// Builds the first generation from `file` (already read: the caller decides
    /// between the file and the last good copy).
    pub async fn first(
        source: ConfigSource,
        state_dir: StateDir,
        file: Config,
        period: Arc<Period>,
        ledger: Arc<Ledger>,
    ) -> Self {
        let config = period.effective(&file);
        let generation = build(config, &state_dir, None, ledger.clone(), &period).await;
        Self {
            source,
            state_dir,
            file: ArcSwap::from_pointee(file),
            current: Arc::new(ArcSwap::from_pointee(generation)),
            period,
            ledger,
            last_error: Mutex::new(None),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// The generation in force now.
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// The swap itself, for readers on the hot path (one atomic load a query).
    pub fn shared(&self) -> Arc<ArcSwap<Generation>> {
        self.current.clone()
    }

    /// The last config read from the file that parsed (before the ratchet).
    pub fn file_config(&self) -> Arc<Config> {
        self.file.load_full()
    }

    pub fn source(&self) -> &ConfigSource {
        &self.source
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.state_dir
    }

    /// Why the config file's last edit is not in force, if it is not.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    /// Re-reads the config file and rebuilds. On an error nothing changes, and
    /// the error is kept for `ncd status` until an edit loads.
    pub async fn reload(&self, why: &str) -> ReloadOutcome {
        let read = match &self.source {
            ConfigSource::Dev => Ok(Config::dev()),
            ConfigSource::File(path) => load_and_remember(path, &self.state_dir),
        };
        let outcome = match read {
            Ok(file) => {
                self.file.store(Arc::new(file));
                self.rebuild(why).await;
                ReloadOutcome::Applied
            }
            Err(error) => {
                tracing::error!("{error} — keeping the last good config");
                ReloadOutcome::Rejected(error.to_string())
            }
        };
        if let Ok(mut last) = self.last_error.lock() {
            *last = match &outcome {
                ReloadOutcome::Applied => None,
                ReloadOutcome::Rejected(error) => Some(error.clone()),
            };
        }
        outcome
    }

    /// Records that the file could not be read at start (the last good copy serves).
    pub fn note_start_error(&self, error: &ConfigError) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_string());
        }
    }

    /// The one path to a new generation: the last good file config, held by the
    /// period's ratchet, compiled and swapped in (with empty caches).
    pub async fn rebuild(&self, why: &str) {
        let _one_at_a_time = self.one_at_a_time.lock().await;
        let config = self.period.effective(&self.file.load());
        let current = self.current.load_full();
        let generation = build(
            config,
            &self.state_dir,
            Some(&current),
            self.ledger.clone(),
            &self.period,
        )
        .await;
        tracing::info!(
            why,
            rules = generation.policy().block_rules(),
            exceptions = generation.policy().allow_rules(),
            "policy reloaded; cache flushed"
        );
        self.current.store(Arc::new(generation));
    }
}

/// Reads the config at `path` and, when it is good, keeps a copy of its text as
/// the last good config.
pub fn load_and_remember(path: &std::path::Path, state_dir: &StateDir) -> Result<Config, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::file(path, format!("cannot read config: {e}")))?;
    let config = Config::parse(&text, path)?;
    let last_good = state_dir.last_good_config();
    if std::fs::read_to_string(&last_good).ok().as_deref() != Some(text.as_str())
        && let Err(error) = ncd_state::write_atomically(&last_good, text.as_bytes(), None)
    {
        tracing::warn!(%error, "cannot keep a copy of the last good config");
    }
    Ok(config)
}

/// Compiles `config` into a generation, reusing the current upstream connections
/// when the upstream list did not change, and the current CA while it covers the
/// sites the profiles name.
async fn build(
    config: Config,
    state_dir: &StateDir,
    current: Option<&Generation>,
    ledger: Arc<Ledger>,
    period: &Period,
) -> Generation {
    let wanted = upstream_inputs(&config);
    let upstreams = match current {
        Some(generation) if generation.chain.upstreams.inputs == wanted => generation.chain.upstreams.clone(),
        _ => {
            let network = wanted.network.describe();
            if !network.is_empty() {
                tracing::info!(source = %wanted.network.source, links = ?network, "following the network's resolvers");
            }
            Arc::new(Upstreams::build(wanted).await)
        }
    };
    // Read here, after `Period::effective`, under the rebuild's one-at-a-time lock:
    // a confirmed unlock changes the key before the rebuild that follows it.
    let hold = period.list_hold();
    let policy = Arc::new(compile_policy(config.clone(), state_dir.clone(), hold).await);
    period.set_held_lists(policy.held().map(|(list, n)| (list.to_string(), n)).collect());
    let previous = current.and_then(|g| g.proxy.as_deref());
    let (proxy, proxy_error) = match ProxyRules::build(&config, &state_dir.proxy_ca_dir(), previous) {
        Ok(Some((rules, events))) => {
            for event in events {
                period.record(EventKind::Proxy, ca_event_words(&event));
            }
            (Some(Arc::new(rules)), None)
        }
        Ok(None) => (None, None),
        Err(error) => {
            tracing::error!(%error, "cannot make the proxy's CA; the sites your profile rules name will not open");
            (None, Some(format!("cannot make the proxy's CA: {error}")))
        }
    };
    let chain = Chain::new(policy, upstreams, &config.dns)
        .steer_to(proxy_addresses(&config))
        .with_ledger(ledger);
    Generation {
        config,
        chain,
        proxy,
        proxy_error,
    }
}

/// What the upstreams of `config` are built from: its `[dns]` and the network's
/// resolvers as they are now.
pub fn upstream_inputs(config: &Config) -> UpstreamInputs {
    UpstreamInputs {
        entries: config.dns.upstreams.clone(),
        // The network is read only when followed: otherwise ncdd asks exactly
        // the resolvers listed.
        network: if config.dns.upstreams.is_empty() || config.dns.upstreams.contains(&ncd_config::UpstreamEntry::System)
        {
            crate::network::discover(&config.dns.listen)
        } else {
            crate::network::NetworkDns::default()
        },
        roots: config.dns.upstream_roots.clone(),
        timeout: config.dns.upstream_timeout.0,
    }
}

/// The addresses steered hosts are answered with: those the proxy listens on
/// (an unspecified address stands for loopback).
fn proxy_addresses(config: &Config) -> Vec<std::net::IpAddr> {
    let mut ips: Vec<std::net::IpAddr> = config
        .proxy
        .listen
        .iter()
        .map(|a| match a.ip() {
            std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        })
        .collect();
    ips.dedup();
    ips
}

/// A CA event in the journal's words.
fn ca_event_words(event: &CaEvent) -> String {
    match event {
        CaEvent::Created { domains } => format!(
            "made the proxy's CA for {}; trust it with `sudo ncd ca install`",
            domains.join(", ")
        ),
        CaEvent::Reissued { domains } => format!(
            "made a new proxy CA, now for {}; browsers must trust it again: `sudo ncd ca install`",
            domains.join(", ")
        ),
        CaEvent::Replaced { why } => {
            format!("the proxy's CA was damaged ({why}) and was replaced; trust the new one: `sudo ncd ca install`")
        }
    }
}

/// Compiles a policy on one long-lived thread. Compiling a million-rule list takes
/// a moment, so it stays off the DNS threads; and doing it always on the same
/// thread lets the allocator reuse the memory of the policy it replaces, so
/// repeated reloads do not grow the daemon.
/// `hold` is the period's key while one runs (see `Period::list_hold`).
async fn compile_policy(config: Config, state_dir: StateDir, hold: Option<Option<String>>) -> Policy {
    type Job = (
        Config,
        StateDir,
        Option<Option<String>>,
        tokio::sync::oneshot::Sender<Policy>,
    );
    static COMPILER: std::sync::OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> = std::sync::OnceLock::new();
    let sender = COMPILER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name("ncd-policy".into()).spawn(move || {
            for (config, state_dir, hold, reply) in rx {
                let _ = reply.send(Policy::build_keeping_copies(
                    &config,
                    &state_dir,
                    to_hold(hold.as_ref()),
                ));
            }
        });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the policy thread");
        }
        Mutex::new(tx)
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = sender
        .lock()
        .map(|s| s.send((config.clone(), state_dir.clone(), hold.clone(), tx)).is_ok())
        .unwrap_or(false);
    match (sent, rx.await) {
        (true, Ok(policy)) => policy,
        // The thread is gone: compile here rather than serve without rules.
        _ => tokio::task::block_in_place(|| Policy::build_keeping_copies(&config, &state_dir, to_hold(hold.as_ref()))),
    }
}

fn to_hold(hold: Option<&Option<String>>) -> Hold<'_> {
    match hold {
        Some(key) => Hold::Period { key: key.as_deref() },
        None => Hold::None,
    }
}
