//! The companion proxy inside ncdd: its sockets, its own runtime, and the
//! generation it reads its rules from.
//!
//! The proxy (`ncd-proxy`) terminates TLS for the hosts of sites a `[[profile]]`
//! names; the DNS chain steers those hosts to it. It runs on a runtime of its own
//! (two worker threads), so TLS handshakes and page forwarding never delay a DNS
//! answer, and it reads the same [`Generation`] the DNS side does: one rebuild,
//! one ratchet, one swap. Its sockets come from the service manager (named
//! `proxy`) or are bound here from `[proxy] listen` when the first profile rule
//! is in force. When they cannot be bound, the steered sites do not open at all
//! (fail closed) and `ncd status` says why.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use ncd_config::ProfileSite;
use ncd_config::control::EventKind;
use ncd_config::control::{CaStatus, ProxyStatus};
use ncd_period::Period;
use ncd_proxy::{Kind, LearnedIds, OriginOptions, PageContext, ProxyHooks, ProxyRules, RulesSource, ServeOptions};
use tokio_util::sync::CancellationToken;

use crate::generation::{Generation, Generations};
use crate::stats::Ledger;

/// The proxy's listeners and whether it runs.
#[derive(Debug)]
pub struct ProxyRunner {
    generations: Arc<Generations>,
    period: Arc<Period>,
    ledger: Arc<Ledger>,
    /// Numeric ids learned for the profiles' handles (kept in the state dir, across
    /// generations: they only ever add blocks).
    learned: Arc<LearnedIds>,
    /// Sockets the service manager handed over, until the proxy takes them.
    inherited: Mutex<Vec<std::net::TcpListener>>,
    state: Mutex<RunState>,
    shutdown: CancellationToken,
}

#[derive(Debug, Default)]
struct RunState {
    thread: Option<std::thread::JoinHandle<()>>,
    listening: Vec<SocketAddr>,
    error: Option<String>,
}

impl ProxyRunner {
    pub fn new(generations: Arc<Generations>, period: Arc<Period>, ledger: Arc<Ledger>) -> Self {
        let (learned, problem) = LearnedIds::open(generations.state_dir().proxy_learned_ids());
        if let Some(problem) = problem {
            period.record(EventKind::Proxy, problem);
        }
        Self {
            learned: Arc::new(learned),
            generations,
            period,
            ledger,
            inherited: Mutex::new(Vec::new()),
            state: Mutex::new(RunState::default()),
            shutdown: CancellationToken::new(),
        }
    }

    /// Takes the proxy sockets the service manager handed over.
    pub fn adopt(&self, listeners: Vec<std::net::TcpListener>) {
        if let Ok(mut inherited) = self.inherited.lock() {
            inherited.extend(listeners);
        }
    }

    /// Stops the proxy and waits for its thread.
    pub fn stop(&self) {
        self.shutdown.cancel();
        let thread = self.state.lock().ok().and_then(|mut s| s.thread.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Starts the proxy once the current generation has profile rules (or the
    /// service manager handed over its sockets). Called after every rebuild; a
    /// running proxy picks up new rules by itself.
    pub fn ensure_running(&self) {
        let generation = self.generations.current();
        let Ok(mut state) = self.state.lock() else { return };
        if state.thread.is_some() {
            return;
        }
        let inherited: Vec<_> = self
            .inherited
            .lock()
            .map(|mut i| i.drain(..).collect())
            .unwrap_or_default();
        if generation.proxy.is_none() && inherited.is_empty() {
            return;
        }
        let listeners = if inherited.is_empty() {
            match bind(&generation.config.proxy.listen) {
                Ok(listeners) => listeners,
                Err(error) => {
                    tracing::error!(
                        "{error}; the sites your profile rules name will not open until the proxy can serve"
                    );
                    state.error = Some(error);
                    return;
                }
            }
        } else {
            inherited
        };
        state.listening = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
        state.error = None;
        match self.spawn(listeners, &generation) {
            Ok(thread) => {
                for address in &state.listening {
                    tracing::info!(%address, "companion proxy serving HTTPS");
                }
                state.thread = Some(thread);
            }
            Err(error) => {
                tracing::error!("cannot start the companion proxy: {error:#}");
                state.error = Some(format!("cannot start the proxy: {error:#}"));
                state.listening.clear();
            }
        }
    }

    /// Runs `ncd_proxy::serve` on a runtime of its own, on its own thread.
    fn spawn(
        &self,
        listeners: Vec<std::net::TcpListener>,
        generation: &Generation,
    ) -> anyhow::Result<std::thread::JoinHandle<()>> {
        let roots = ncd_proxy::load_roots(&generation.config.proxy.origin_roots)?;
        let options = ServeOptions {
            allow_clients: generation.config.dns.allow_clients.clone(),
            origin: OriginOptions {
                extra_roots: roots,
                ..OriginOptions::default()
            },
            learned: Some(self.learned.clone()),
        };
        let rules: Arc<dyn RulesSource> = self.generations.clone();
        let resolver = Arc::new(UpstreamResolver {
            generations: self.generations.clone(),
            main: tokio::runtime::Handle::current(),
        });
        let hooks = Arc::new(Hooks {
            period: self.period.clone(),
            ledger: self.ledger.clone(),
        });
        let shutdown = self.shutdown.clone();
        // The runtime is made (and dropped) on its own thread, never inside ncdd's.
        let thread = std::thread::Builder::new().name("ncd-proxy".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("ncd-proxy")
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "cannot start the companion proxy's runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let listeners: Vec<_> = listeners
                    .into_iter()
                    .filter_map(|l| {
                        let _ = l.set_nonblocking(true);
                        tokio::net::TcpListener::from_std(l).ok()
                    })
                    .collect();
                if let Err(error) = ncd_proxy::serve(listeners, rules, resolver, hooks, options, shutdown).await {
                    tracing::error!("the companion proxy stopped: {error:#}");
                }
            });
        })?;
        Ok(thread)
    }

    /// The ids learned so far (for `ncd check URL`, which judges as the proxy does).
    pub fn learned(&self) -> Arc<ncd_proxy::Learned> {
        self.learned.snapshot()
    }

    /// The proxy part of `ncd status`.
    pub fn status(&self) -> ProxyStatus {
        let generation = self.generations.current();
        let (listening, error) = self
            .state
            .lock()
            .map(|s| (s.listening.iter().map(ToString::to_string).collect(), s.error.clone()))
            .unwrap_or_default();
        let config = &generation.config;
        ProxyStatus {
            profiles: config.profiles.iter().map(|p| p.name.clone()).collect(),
            sites: ProfileSite::ALL
                .into_iter()
                .filter(|site| config.profiles.iter().any(|p| !p.handles(*site).is_empty()))
                .map(|site| site.key().to_string())
                .collect(),
            listening,
            error: generation
                .proxy_error
                .clone()
                .or_else(|| generation.proxy.as_ref().and(error)),
            ca: generation.proxy.as_ref().map(|rules| CaStatus {
                fingerprint_sha256: rules.ca.fingerprint_sha256(),
                domains: rules.ca.permitted_domains().to_vec(),
                path: self.generations.state_dir().proxy_ca_cert().display().to_string(),
            }),
        }
    }
}

/// Binds `[proxy] listen` (TCP only: never UDP 443, so browsers fall back from
/// QUIC to TCP, where the proxy sees them). An address that cannot be bound (no
/// IPv6 here, say) is reported and the others serve; none at all is an error.
fn bind(addresses: &[SocketAddr]) -> Result<Vec<std::net::TcpListener>, String> {
    let mut listeners = Vec::new();
    let mut failures = Vec::new();
    for address in addresses {
        match std::net::TcpListener::bind(address) {
            Ok(listener) => listeners.push(listener),
            Err(e) => failures.push(format!("the proxy cannot listen on {address}: {e}")),
        }
    }
    for failure in &failures {
        tracing::warn!("{failure}");
    }
    if listeners.is_empty() {
        return Err(failures.join("; "));
    }
    Ok(listeners)
}

/// The proxy reads the rules of the generation in force.
impl RulesSource for Generations {
    fn current(&self) -> Option<Arc<ProxyRules>> {
        Generations::current(self).proxy.clone()
    }
}

/// Origins are resolved through the configured upstreams, on the main runtime
/// (where their connections live) — never through ncdd's own answers, which
/// steer these very names to the proxy.
struct UpstreamResolver {
    generations: Arc<Generations>,
    main: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl ncd_proxy::OriginResolver for UpstreamResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let upstreams = self.generations.current().chain.upstreams.clone();
        let host = host.to_string();
        self.main
            .spawn(async move { upstreams.addresses(&host).await })
            .await
            .map_err(std::io::Error::other)?
    }
}

/// What the proxy tells ncdd, and what it asks of it.
struct Hooks {
    period: Arc<Period>,
    ledger: Arc<Ledger>,
}

impl ProxyHooks for Hooks {
    fn on_block(&self, site: ProfileSite, _kind: Kind) {
        // The proxy serves the machine it runs on: one client, counted once a burst.
        self.ledger
            .record(IpAddr::from([127, 0, 0, 1]), &format!("{}: profile", site.key()));
    }

    fn page_context(&self) -> PageContext {
        let period = self.period.report().period;
        PageContext {
            day: period.active.then(|| {
                (
                    period.served_secs / 86_400 + 1,
                    period.length_secs.div_ceil(86_400).max(1),
                )
            }),
            reason: period.reason.filter(|_| period.active),
        }
    }
}
