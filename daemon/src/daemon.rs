//! The running daemon: load the config and the period, build the first
//! generation, serve, and rebuild whenever the config file or a list changes
//! (notify, debounced), SIGHUP arrives, a list download lands, the period ends or
//! an unlock is confirmed.
//!
//! Every rebuild goes through [`Generations`], one path: parse → ratchet →
//! compile → swap. A config that fails to parse changes nothing: the last good
//! generation keeps serving and the error is logged with its `path:line:col` and
//! shown by `ncd status`. The last good config text is also kept in the state
//! dir, so a config broken while ncdd was stopped still starts with the rules that
//! were last in force (fail closed).
//!
//! [`Daemon::serve`] is a row of small `spawn_*` steps. Each background loop runs
//! on one [`TaskTracker`] and stops on one [`CancellationToken`], so shutdown
//! stops them in order: the control socket and the loops first, then the last
//! tick and save, then the DNS listeners.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ncd_config::Config;
use ncd_period::Period;
use ncd_period::clock::SystemClock;
use ncd_period::stop_guard::DaemonGuard;
use ncd_state::StateDir;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control;
use crate::dns::listen;
use crate::generation::{ConfigSource, Generations, load_and_remember};
use crate::network;
use crate::proxy::ProxyRunner;
use crate::requests::Requests;
use crate::stats::Ledger;
use crate::system::notify as service_manager;
use crate::watch::ConfigWatcher;

/// How long file events must be quiet before a reload: editors write in bursts.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// How often the watcher checks that its folders are still the ones watched.
const REARM: Duration = Duration::from_secs(5);
/// How often the clocks are read.
const TICK: Duration = Duration::from_secs(1);
/// How long shutdown waits for the background loops to stop.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Options {
    pub config: ConfigSource,
    pub state_dir: PathBuf,
    /// Replaces `[dns] listen` (used by `--listen`, e.g. port 0 in tests).
    pub listen: Option<Vec<SocketAddr>>,
    /// Replaces `[control] socket`.
    pub control_socket: Option<PathBuf>,
}

/// The daemon: what it was started with, and the parts its loops share.
#[derive(Debug)]
pub struct Daemon {
    options: Options,
    generations: Arc<Generations>,
    requests: Arc<Requests>,
    proxy: Arc<ProxyRunner>,
    period: Arc<Period>,
    ledger: Arc<Ledger>,
    /// SIGHUP is caught from the very start: its default action would kill ncdd
    /// while a big list is still loading.
    hangup: std::sync::Mutex<Option<tokio::signal::unix::Signal>>,
}

impl Daemon {
    /// Loads the config (or the last good one) and the period, and builds the
    /// first generation.
    pub async fn start(options: Options) -> anyhow::Result<Arc<Self>> {
        let hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot catch SIGHUP")?;
        std::fs::create_dir_all(&options.state_dir)
            .with_context(|| format!("cannot create the state dir {}", options.state_dir.display()))?;
        let state_dir = StateDir::new(&options.state_dir);
        let (file, start_error) = match &options.config {
            ConfigSource::Dev => (Config::dev(), None),
            ConfigSource::File(path) => match load_and_remember(path, &state_dir) {
                Ok(config) => (config, None),
                Err(error) => {
                    let fallback = Config::load(&state_dir.last_good_config())
                        .map_err(|_| anyhow::anyhow!("{error}"))
                        .with_context(|| "the config has an error and no earlier good config is kept")?;
                    tracing::error!(%error, "config has an error; serving the last good config until it is fixed");
                    (fallback, Some(error))
                }
            },
        };
        let period = Arc::new(Period::open(&state_dir, Arc::new(SystemClock), &file));
        let ledger = Arc::new(Ledger::open(&state_dir));
        let generations =
            Arc::new(Generations::first(options.config.clone(), state_dir, file, period.clone(), ledger.clone()).await);
        if let Some(error) = &start_error {
            generations.note_start_error(error);
        }
        let proxy = Arc::new(ProxyRunner::new(generations.clone(), period.clone(), ledger.clone()));
        let requests = Arc::new(Requests::new(
            period.clone(),
            ledger.clone(),
            generations.clone(),
            proxy.clone(),
        ));
        Ok(Arc::new(Self {
            options,
            generations,
            requests,
            proxy,
            period,
            ledger,
            hangup: std::sync::Mutex::new(Some(hangup)),
        }))
    }

    pub fn generations(&self) -> &Arc<Generations> {
        &self.generations
    }

    /// What the control socket answers with.
    pub fn requests(&self) -> &Arc<Requests> {
        &self.requests
    }

    pub fn period(&self) -> &Period {
        &self.period
    }

    /// The control socket: `--control-socket`, else the per-user dev socket
    /// under `--dev` (which `ncd` finds by itself), else `[control] socket`.
    fn control_socket(&self) -> PathBuf {
        match (&self.options.control_socket, &self.options.config) {
            (Some(path), _) => path.clone(),
            (None, ConfigSource::Dev) => ncd_state::dev_control_socket(),
            (None, ConfigSource::File(_)) => self.generations.current().config.control.socket.clone(),
        }
    }

    /// Serves until SIGTERM or SIGINT. `on_ready` gets the bound addresses.
    pub async fn serve(self: Arc<Self>, on_ready: impl FnOnce(&[SocketAddr])) -> anyhow::Result<()> {
        let activated = crate::system::activation::from_env().context("reading the sockets systemd passed")?;
        let (sockets, inherited_control) = match activated {
            Some(a) if !a.udp.is_empty() || !a.tcp.is_empty() => {
                self.proxy.adopt(a.proxy);
                (listen::Sockets::Inherited { udp: a.udp, tcp: a.tcp }, a.control)
            }
            other => {
                let addresses = self
                    .options
                    .listen
                    .clone()
                    .unwrap_or_else(|| self.generations.current().config.dns.listen.clone());
                let (control, proxy) = other.map(|a| (a.control, a.proxy)).unwrap_or_default();
                self.proxy.adopt(proxy);
                (listen::Sockets::Bind(addresses), control)
            }
        };
        let lan_clients = !self.generations.current().config.dns.allow_clients.is_empty();
        let listeners = listen::bind(sockets, lan_clients, self.generations.shared()).await?;
        self.requests.set_listening(&listeners.bound);
        network::set_own_addresses(&listeners.bound);

        // Everything that reacts to the outside world is in place before "ready":
        // an edit, a request or a signal that follows readiness must never be missed.
        let shutdown = shutdown_signal()?;
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let (reload_tx, reload_rx) = mpsc::channel::<&'static str>(16);
        let control = self.spawn_control(inherited_control, &tasks, &cancel).await;
        self.spawn_reload_loop(reload_rx, reload_tx.clone(), &tasks, &cancel)?;
        self.spawn_tick_loop(&tasks, &cancel);
        self.spawn_fetch_loop(reload_tx, &tasks, &cancel);
        self.spawn_network_loop(&tasks, &cancel);
        self.proxy.ensure_running();

        for address in &listeners.bound {
            tracing::info!(%address, "serving DNS over UDP and TCP");
        }
        on_ready(&listeners.bound);
        service_manager::ready();
        if let (Some(interval), Some(&dns)) = (service_manager::watchdog_interval(), listeners.bound.first()) {
            tasks.spawn(cancel.clone().run_until_cancelled_owned(watchdog(interval, dns)));
        }

        shutdown.await;
        service_manager::stopping();
        tracing::info!("shutting down");
        cancel.cancel();
        tasks.close();
        if tokio::time::timeout(DRAIN, tasks.wait()).await.is_err() {
            tracing::warn!("a background task did not stop in time");
        }
        let proxy = self.proxy.clone();
        let _ = tokio::task::spawn_blocking(move || proxy.stop()).await;
        self.period.tick();
        self.ledger.save();
        let _ = tokio::time::timeout(DRAIN, listeners.shutdown()).await;
        if let Some(ours) = control {
            let _ = std::fs::remove_file(ours);
        }
        Ok(())
    }

    /// Binds (or adopts) the control socket and serves it. Returns the socket's
    /// path when ncdd bound it itself (a socket systemd made is systemd's to remove).
    async fn spawn_control(
        &self,
        inherited: Option<std::os::unix::net::UnixListener>,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Option<PathBuf> {
        let mut socket = self.control_socket();
        let bound_ourselves = inherited.is_none();
        let listener = match inherited {
            Some(listener) => tokio::net::UnixListener::from_std(listener).context("adopting the control socket"),
            None => match (control::bind(&socket).await, &self.options) {
                // A second `ncdd --dev` (or a folder not ours): its own socket, in its state dir.
                (
                    Err(error),
                    Options {
                        config: ConfigSource::Dev,
                        control_socket: None,
                        ..
                    },
                ) => {
                    let own = StateDir::new(&self.options.state_dir).dev_control_socket();
                    tracing::warn!("{error:#}; this ncdd --dev answers on {} instead", own.display());
                    socket = own;
                    control::bind(&socket).await
                }
                (bound, _) => bound,
            },
        };
        match listener {
            Ok(listener) => {
                tracing::info!(socket = %socket.display(), "control socket ready");
                let handler: Arc<dyn control::Handler> = self.requests.clone();
                tasks.spawn(cancel.clone().run_until_cancelled_owned(control::serve(
                    listener,
                    handler,
                    socket.clone(),
                )));
                bound_ourselves.then_some(socket)
            }
            // DNS blocking does not depend on the control socket: keep serving.
            Err(error) => {
                tracing::error!("{error:#}; `ncd status` and the period commands will not reach ncdd");
                None
            }
        }
    }

    /// The file watcher and SIGHUP feed one debounced reload loop.
    fn spawn_reload_loop(
        &self,
        requests: mpsc::Receiver<&'static str>,
        reload: mpsc::Sender<&'static str>,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        let watcher = match &self.options.config {
            ConfigSource::File(path) => Some(Arc::new(ConfigWatcher::new(path, reload.clone())?)),
            ConfigSource::Dev => None,
        };
        if let Some(watcher) = &watcher {
            watcher.follow_lists(&self.generations.file_config());
        }
        let hangup = self.hangup.lock().ok().and_then(|mut h| h.take());
        if let Some(hangup) = hangup {
            tasks.spawn(cancel.clone().run_until_cancelled_owned(forward_sighup(hangup, reload)));
        }
        let (generations, proxy) = (self.generations.clone(), self.proxy.clone());
        tasks.spawn(
            cancel
                .clone()
                .run_until_cancelled_owned(reload_loop(generations, proxy, requests, watcher)),
        );
        Ok(())
    }

    /// Reads the clocks every second. Time served comes from the clocks, never from
    /// this interval (it stops while the machine sleeps); the interval only says
    /// when to look.
    fn spawn_tick_loop(&self, tasks: &TaskTracker, cancel: &CancellationToken) {
        let (period, ledger, generations) = (self.period.clone(), self.ledger.clone(), self.generations.clone());
        let proxy = self.proxy.clone();
        let stop_guard = DaemonGuard::from_env(&StateDir::new(&self.options.state_dir));
        let tick_loop = async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ticks: u64 = 0;
            let mut last_active = None;
            loop {
                interval.tick().await;
                ticks += 1;
                if period.tick().ended {
                    tracing::info!("the period is complete: the lock lifts and the config applies as written");
                    generations.rebuild("the period ended").await;
                    proxy.ensure_running();
                }
                if ticks.is_multiple_of(60) {
                    ledger.save();
                }
                let active = period.is_active();
                if last_active != Some(active) || ticks.is_multiple_of(30) {
                    stop_guard.set(active);
                    let rules = generations.current().policy().block_rules();
                    service_manager::status(&status_line(&period.report().period, rules));
                    crate::system::return_freed_memory();
                    last_active = Some(active);
                }
            }
        };
        tasks.spawn(cancel.clone().run_until_cancelled_owned(tick_loop));
    }

    /// Looks at the network's resolvers every [`network::POLL`]; when they change
    /// (the laptop moved, a VPN came up), rebuilds: new upstreams and routes, and
    /// empty caches, so a name of the last network is not answered on this one.
    fn spawn_network_loop(&self, tasks: &TaskTracker, cancel: &CancellationToken) {
        let generations = self.generations.clone();
        let network_loop = async move {
            let mut interval = tokio::time::interval(network::POLL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let current = generations.current();
                let config = current.config.clone();
                let Ok(wanted) = tokio::task::spawn_blocking(move || crate::generation::upstream_inputs(&config)).await
                else {
                    continue;
                };
                let before = current.chain.upstreams.network();
                if wanted.network != *before {
                    tracing::info!(
                        before = ?before.describe(),
                        now = ?wanted.network.describe(),
                        "the network's resolvers changed"
                    );
                    generations.rebuild("the network's resolvers changed").await;
                }
            }
        };
        tasks.spawn(cancel.clone().run_until_cancelled_owned(network_loop));
    }

    /// Downloads URL lists in the background; each download asks for a reload.
    fn spawn_fetch_loop(&self, reload: mpsc::Sender<&'static str>, tasks: &TaskTracker, cancel: &CancellationToken) {
        let context: Arc<dyn crate::fetch::FetchContext> = self.generations.clone();
        tasks.spawn(
            cancel
                .clone()
                .run_until_cancelled_owned(crate::fetch::fetch_loop(context, reload)),
        );
    }
}

/// Debounces reload requests (editors write in bursts), then reloads once. Between
/// requests, re-arms the watcher every [`REARM`] (a watched folder may have been
/// moved away or made anew; re-arming asks for the reload itself).
async fn reload_loop(
    generations: Arc<Generations>,
    proxy: Arc<ProxyRunner>,
    mut requests: mpsc::Receiver<&'static str>,
    watcher: Option<Arc<ConfigWatcher>>,
) {
    let mut rearm = tokio::time::interval(REARM);
    rearm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            why = requests.recv() => match why {
                Some(why) => why,
                None => return,
            },
            _ = rearm.tick() => {
                if let Some(watcher) = &watcher {
                    follow(watcher.clone(), None).await;
                }
                continue;
            }
        };
        loop {
            match tokio::time::timeout(DEBOUNCE, requests.recv()).await {
                Ok(Some(_)) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        generations.reload(why).await;
        proxy.ensure_running();
        if let Some(watcher) = &watcher {
            follow(watcher.clone(), Some(generations.file_config())).await;
        }
    }
}

/// Follows the lists of `config` and re-arms the watcher, off the runtime's
/// threads (a folder on a hung file system must not stop the reload loop).
async fn follow(watcher: Arc<ConfigWatcher>, config: Option<Arc<Config>>) {
    let work = tokio::task::spawn_blocking(move || {
        if let Some(config) = config {
            watcher.follow_lists(&config);
        }
        watcher.rearm();
    });
    if tokio::time::timeout(DEBOUNCE * 10, work).await.is_err() {
        tracing::warn!("watching the list folders is slow (a hung file system?); edits may need SIGHUP");
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
