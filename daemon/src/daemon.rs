//! The running daemon: load the config, build the chain, serve, and rebuild the
//! chain whenever the config file changes (notify, debounced) or SIGHUP arrives.
//!
//! Every reload goes through [`Daemon::reload`], one path: parse → compile → swap.
//! A config that fails to parse changes nothing: the last good chain keeps serving
//! and the error is logged with its `path:line:col`. The last good config text is
//! also kept in the state dir, so a config broken while ncdd was stopped still
//! starts with the rules that were last in force (fail closed).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use ncd_config::{Config, ConfigError};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::control;
use crate::dns::Chain;
use crate::dns::listen;
use crate::dns::upstream::{Upstreams, effective_upstreams};
use crate::period::Period;
use crate::period::clock::SystemClock;
use crate::policy::Policy;
use crate::stats::Ledger;
use crate::system::notify as service_manager;

/// How long file events must be quiet before a reload: editors write in bursts.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// The copy of the last config that loaded, inside the state dir.
const LAST_GOOD_CONFIG: &str = "config.last-good.toml";
/// How often the clocks are read.
const TICK: Duration = Duration::from_secs(1);

/// Where the config comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file, watched for changes.
    File(PathBuf),
    /// The embedded `--dev` config.
    Dev,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub config: ConfigSource,
    pub state_dir: PathBuf,
    /// Replaces `[dns] listen` (used by `--listen`, e.g. port 0 in tests).
    pub listen: Option<Vec<SocketAddr>>,
    /// Replaces `[control] socket`.
    pub control_socket: Option<PathBuf>,
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct Daemon {
    options: Options,
    /// The last config read from the file that parsed.
    file: ArcSwap<Config>,
    /// The config the current chain enforces: the file, held by the ratchet
    /// while a period runs.
    effective: ArcSwap<Config>,
    chain: Arc<ArcSwap<Chain>>,
    period: Period,
    ledger: Arc<Ledger>,
    started: std::time::Instant,
    bound: std::sync::Mutex<Vec<SocketAddr>>,
    /// Serialises rebuilds, so two reloads never race to swap.
    rebuilding: tokio::sync::Mutex<()>,
    /// SIGHUP is caught from the very start: its default action would kill ncdd
    /// while a big list is still loading.
    hangup: std::sync::Mutex<Option<tokio::signal::unix::Signal>>,
}

impl Daemon {
    /// Loads the config (or the last good one) and the period, and builds the
    /// first chain.
    pub async fn start(options: Options) -> anyhow::Result<Arc<Self>> {
        let hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot catch SIGHUP")?;
        std::fs::create_dir_all(&options.state_dir)
            .with_context(|| format!("cannot create the state dir {}", options.state_dir.display()))?;
        let file = match &options.config {
            ConfigSource::Dev => Config::dev(),
            ConfigSource::File(path) => match load_and_remember(path, &options.state_dir) {
                Ok(config) => config,
                Err(error) => {
                    let last_good = options.state_dir.join(LAST_GOOD_CONFIG);
                    let fallback = Config::load(&last_good)
                        .map_err(|_| anyhow::anyhow!("{error}"))
                        .with_context(|| "the config has an error and no earlier good config is kept")?;
                    tracing::error!(%error, "config has an error; serving the last good config until it is fixed");
                    fallback
                }
            },
        };
        let period = Period::open(&options.state_dir, Arc::new(SystemClock), &file);
        let ledger = Arc::new(Ledger::open(&options.state_dir));
        let effective = period.effective(&file);
        let chain = build_chain(&effective, &options.state_dir, None, ledger.clone()).await;
        Ok(Arc::new(Self {
            options,
            file: ArcSwap::from_pointee(file),
            effective: ArcSwap::from_pointee(effective),
            chain: Arc::new(ArcSwap::from_pointee(chain)),
            period,
            ledger,
            started: std::time::Instant::now(),
            bound: std::sync::Mutex::new(Vec::new()),
            rebuilding: tokio::sync::Mutex::new(()),
            hangup: std::sync::Mutex::new(Some(hangup)),
        }))
    }

    /// The config file, re-read.
    fn read_config(&self) -> Result<Config, ConfigError> {
        match &self.options.config {
            ConfigSource::Dev => Ok(Config::dev()),
            ConfigSource::File(path) => load_and_remember(path, &self.options.state_dir),
        }
    }

    /// Re-reads the config file and rebuilds. On a parse error nothing changes.
    pub async fn reload(&self, why: &str) {
        match self.read_config() {
            Ok(file) => {
                self.file.store(Arc::new(file));
                self.rebuild(why).await;
            }
            Err(error) => tracing::error!("{error} — keeping the last good config"),
        }
    }

    /// The one path to a new chain: the last good file config, held by the period's
    /// ratchet, compiled and swapped in (with an empty cache).
    pub async fn rebuild(&self, why: &str) {
        let _one_at_a_time = self.rebuilding.lock().await;
        let file = self.file.load_full();
        let effective = self.period.effective(&file);
        let current = self.chain.load_full();
        let chain = build_chain(&effective, &self.options.state_dir, Some(&current), self.ledger.clone()).await;
        tracing::info!(
            why,
            rules = chain.policy.block_rules(),
            exceptions = chain.policy.allow_rules(),
            "policy reloaded; cache flushed"
        );
        self.chain.store(Arc::new(chain));
        self.effective.store(Arc::new(effective));
    }

    pub fn chain(&self) -> Arc<Chain> {
        self.chain.load_full()
    }

    pub fn period(&self) -> &Period {
        &self.period
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn effective_config(&self) -> Arc<Config> {
        self.effective.load_full()
    }

    pub fn file_config(&self) -> Arc<Config> {
        self.file.load_full()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn listening(&self) -> Vec<SocketAddr> {
        self.bound.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// The control socket: `--control-socket`, else inside the state dir under
    /// `--dev`, else `[control] socket`.
    fn control_socket(&self) -> PathBuf {
        match (&self.options.control_socket, &self.options.config) {
            (Some(path), _) => path.clone(),
            (None, ConfigSource::Dev) => self.options.state_dir.join("control.sock"),
            (None, ConfigSource::File(_)) => self.effective.load().control.socket.clone(),
        }
    }

    /// Serves until SIGTERM or SIGINT. `on_ready` gets the bound addresses.
    pub async fn serve(self: Arc<Self>, on_ready: impl FnOnce(&[SocketAddr])) -> anyhow::Result<()> {
        let activated = crate::system::activation::from_env().context("reading the sockets systemd passed")?;
        let (sockets, inherited_control) = match activated {
            Some(a) if !a.udp.is_empty() || !a.tcp.is_empty() => {
                (listen::Sockets::Inherited { udp: a.udp, tcp: a.tcp }, a.control)
            }
            other => {
                let addresses = self
                    .options
                    .listen
                    .clone()
                    .unwrap_or_else(|| self.effective.load().dns.listen.clone());
                (listen::Sockets::Bind(addresses), other.and_then(|a| a.control))
            }
        };
        let lan_clients = !self.effective.load().dns.allow_clients.is_empty();
        let listeners = listen::bind(sockets, lan_clients, self.chain.clone()).await?;
        if let Ok(mut bound) = self.bound.lock() {
            bound.clone_from(&listeners.bound);
        }

        // Everything that reacts to the outside world is in place before "ready":
        // an edit, a request or a signal that follows readiness must never be missed.
        let shutdown = shutdown_signal()?;
        let (reload_tx, reload_rx) = mpsc::channel::<&'static str>(16);
        let watcher = match &self.options.config {
            ConfigSource::File(path) => Some(ConfigWatcher::new(path, reload_tx.clone())?),
            ConfigSource::Dev => None,
        };
        if let Some(watcher) = &watcher {
            watcher.follow_lists(&self.file.load());
        }
        let socket = self.control_socket();
        // A socket systemd made is systemd's to remove; only one we bound is ours.
        let bound_control_ourselves = inherited_control.is_none();
        let control_listener = match inherited_control {
            Some(listener) => tokio::net::UnixListener::from_std(listener).context("adopting the control socket"),
            None => control::bind(&socket).await,
        };
        match control_listener {
            Ok(listener) => {
                tracing::info!(socket = %socket.display(), "control socket ready");
                tokio::spawn(control::serve(listener, self.clone(), socket.clone()));
            }
            // DNS blocking does not depend on the control socket: keep serving.
            Err(error) => tracing::error!("{error:#}; `ncd status` and the period commands will not reach ncdd"),
        }
        tokio::spawn(self.clone().reload_loop(reload_rx, watcher));
        tokio::spawn(self.clone().tick_loop());
        tokio::spawn(crate::fetch::fetch_loop(self.clone(), reload_tx.clone()));
        let hangup = self.hangup.lock().ok().and_then(|mut h| h.take());
        if let Some(hangup) = hangup {
            tokio::spawn(forward_sighup(hangup, reload_tx));
        }

        for address in &listeners.bound {
            tracing::info!(%address, "serving DNS over UDP and TCP");
        }
        on_ready(&listeners.bound);
        service_manager::ready();
        if let (Some(interval), Some(&dns)) = (service_manager::watchdog_interval(), listeners.bound.first()) {
            tokio::spawn(watchdog(interval, dns));
        }

        shutdown.await;
        service_manager::stopping();
        tracing::info!("shutting down");
        self.period.tick();
        self.ledger.save();
        let _ = tokio::time::timeout(Duration::from_secs(5), listeners.shutdown()).await;
        if bound_control_ourselves {
            let _ = std::fs::remove_file(&socket);
        }
        Ok(())
    }

    /// Reads the clocks every second. Time served comes from the clocks, never from
    /// this interval (it stops while the machine sleeps); the interval only says
    /// when to look.
    async fn tick_loop(self: Arc<Self>) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let stop_guard = crate::system::stop_guard::StopGuard::from_env();
        let mut last_active = None;
        loop {
            interval.tick().await;
            ticks += 1;
            if self.period.tick().ended {
                tracing::info!("the period is complete: the lock lifts and the config applies as written");
                self.rebuild("the period ended").await;
            }
            if ticks.is_multiple_of(60) {
                self.ledger.save();
            }
            let active = self.period.is_active();
            if last_active != Some(active) || ticks.is_multiple_of(30) {
                if let Some(guard) = &stop_guard {
                    guard.set(active);
                }
                let (period, ..) = self.period.status();
                service_manager::status(&status_line(&period, self.chain().policy.block_rules()));
                last_active = Some(active);
            }
        }
    }

    async fn reload_loop(self: Arc<Self>, mut requests: mpsc::Receiver<&'static str>, watcher: Option<ConfigWatcher>) {
        while let Some(why) = requests.recv().await {
            // Debounce: wait until the burst of events is over, then reload once.
            loop {
                match tokio::time::timeout(DEBOUNCE, requests.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            self.reload(why).await;
            if let Some(watcher) = &watcher {
                watcher.follow_lists(&self.file.load());
            }
        }
    }
}

impl crate::fetch::FetchContext for Daemon {
    fn config(&self) -> Arc<Config> {
        self.effective.load_full()
    }

    fn upstreams(&self) -> Arc<Upstreams> {
        self.chain.load().upstreams.clone()
    }

    fn state_dir(&self) -> &Path {
        &self.options.state_dir
    }
}

/// Pings the service manager's watchdog at half its interval, each time only
/// after a real query to ncdd's own socket came back.
async fn watchdog(interval: Duration, dns: SocketAddr) {
    let mut every = tokio::time::interval(interval / 2);
    loop {
        every.tick().await;
        let serving = tokio::task::spawn_blocking(move || service_manager::ping_if_serving(dns))
            .await
            .unwrap_or(false);
        if !serving {
            tracing::warn!(%dns, "self-query failed; not pinging the watchdog");
        }
    }
}

/// The one line `systemctl status ncd` shows.
fn status_line(period: &ncd_config::control::PeriodStatus, rules: usize) -> String {
    if period.active {
        let day = period.served_secs / 86_400 + 1;
        let of = period.length_secs.div_ceil(86_400).max(1);
        format!("Day {day} of {of}; blocking {rules} names")
    } else {
        format!("No period running; blocking {rules} names")
    }
}

/// Loads `path` and, when it is good, keeps a copy as the last good config.
fn load_and_remember(path: &Path, state_dir: &Path) -> Result<Config, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::file(path, format!("cannot read config: {e}")))?;
    let config = Config::parse(&text, path)?;
    let last_good = state_dir.join(LAST_GOOD_CONFIG);
    if std::fs::read_to_string(&last_good).ok().as_deref() != Some(text.as_str())
        && let Err(error) = crate::policy::lists::write_atomically(&last_good, text.as_bytes())
    {
        tracing::warn!(%error, "cannot keep a copy of the last good config");
    }
    Ok(config)
}

/// Compiles `config` into a new chain, reusing the current upstream connections
/// when the upstream list did not change.
async fn build_chain(config: &Config, state_dir: &Path, current: Option<&Chain>, ledger: Arc<Ledger>) -> Chain {
    let wanted = effective_upstreams(&config.dns.upstreams);
    let upstreams = match current {
        Some(chain) if chain.upstreams.source == wanted => chain.upstreams.clone(),
        _ => Arc::new(Upstreams::build(&wanted, config.dns.upstream_timeout.0).await),
    };
    let policy = compile_policy(config.clone(), state_dir.to_path_buf()).await;
    let max_ttl = u32::try_from(config.dns.max_ttl.as_secs()).unwrap_or(u32::MAX);
    Chain::new(
        Arc::new(policy),
        upstreams,
        config.dns.cache_size,
        config.dns.allow_clients.clone(),
        max_ttl,
    )
    .with_rate_limit(config.dns.client_rate_limit)
    .with_ledger(ledger)
}

/// Compiles a policy on one long-lived thread. Compiling a million-rule list takes
/// a moment, so it stays off the DNS threads; and doing it always on the same
/// thread lets the allocator reuse the memory of the policy it replaces, so
/// repeated reloads do not grow the daemon.
async fn compile_policy(config: Config, state_dir: PathBuf) -> Policy {
    type Job = (Config, PathBuf, tokio::sync::oneshot::Sender<Policy>);
    static COMPILER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> = std::sync::OnceLock::new();
    let sender = COMPILER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name("ncd-policy".into()).spawn(move || {
            for (config, state_dir, reply) in rx {
                let _ = reply.send(Policy::build(&config, &state_dir));
            }
        });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the policy thread");
        }
        std::sync::Mutex::new(tx)
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = sender
        .lock()
        .map(|s| s.send((config.clone(), state_dir.clone(), tx)).is_ok())
        .unwrap_or(false);
    match (sent, rx.await) {
        (true, Ok(policy)) => policy,
        // The thread is gone: compile here rather than serve without rules.
        _ => tokio::task::block_in_place(|| Policy::build(&config, &state_dir)),
    }
}

/// Watches the config file and the local list files. It watches their directories,
/// not the files, because editors replace a file rather than write into it.
struct ConfigWatcher {
    watcher: std::sync::Mutex<notify::RecommendedWatcher>,
    /// File names whose change means "reload": the config and each local list.
    names: Arc<std::sync::Mutex<std::collections::HashSet<std::ffi::OsString>>>,
    watched: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

impl ConfigWatcher {
    fn new(config_path: &Path, reload: mpsc::Sender<&'static str>) -> anyhow::Result<Self> {
        let names = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let matching = names.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            let Ok(names) = matching.lock() else { return };
            if event
                .paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| names.contains(n)))
            {
                let _ = reload.try_send("a watched file changed");
            }
        })
        .context("cannot watch the config file")?;
        let this = Self {
            watcher: std::sync::Mutex::new(watcher),
            names,
            watched: std::sync::Mutex::new(std::collections::HashSet::new()),
        };
        this.follow(config_path)?;
        Ok(this)
    }

    fn follow(&self, file: &Path) -> anyhow::Result<()> {
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let (Some(name), Ok(mut names)) = (file.file_name(), self.names.lock()) {
            names.insert(name.to_os_string());
        }
        let mut watched = self.watched.lock().map_err(|_| anyhow::anyhow!("watcher poisoned"))?;
        if watched.insert(dir.to_path_buf()) {
            let mut watcher = self.watcher.lock().map_err(|_| anyhow::anyhow!("watcher poisoned"))?;
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .with_context(|| format!("cannot watch {}", dir.display()))?;
        }
        Ok(())
    }

    /// Starts following the local lists `config` names (lists only ever get added
    /// to the watch set; a stale entry costs one needless reload at most).
    fn follow_lists(&self, config: &Config) {
        for list in &config.block.lists {
            if let ncd_config::ListSource::File(path) = list
                && let Err(error) = self.follow(path)
            {
                tracing::warn!("{error:#}; edits to this list need SIGHUP");
            }
        }
    }
}

async fn forward_sighup(mut hangup: tokio::signal::unix::Signal, reload: mpsc::Sender<&'static str>) {
    while hangup.recv().await.is_some() {
        let _ = reload.send("SIGHUP").await;
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}
