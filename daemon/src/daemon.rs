//! The running daemon: load the config, build the chain, serve, and rebuild the
//! chain whenever the config file changes (notify, debounced) or SIGHUP arrives.
//!
//! Every reload goes through [`Daemon::reload`], one path: parse → compile → swap.
//! A config that fails to parse changes nothing: the last good chain keeps serving
//! and the error is logged with its `path:line:col`. The last good config text is
//! also kept in the state dir, so a config broken while ncdd was stopped still
//! starts with the rules that were last in force (fail closed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use ncd_config::{Config, ConfigError};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::dns::Chain;
use crate::dns::handler::DnsHandler;
use crate::dns::listen;
use crate::dns::upstream::{Upstreams, effective_upstreams};
use crate::policy::Policy;

/// How long file events must be quiet before a reload: editors write in bursts.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// The copy of the last config that loaded, inside the state dir.
const LAST_GOOD_CONFIG: &str = "config.last-good.toml";

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
    pub listen: Option<Vec<std::net::SocketAddr>>,
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct Daemon {
    options: Options,
    /// The config the current chain was built from.
    config: ArcSwap<Config>,
    chain: Arc<ArcSwap<Chain>>,
}

impl Daemon {
    /// Loads the config (or the last good one) and builds the first chain.
    pub async fn start(options: Options) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&options.state_dir)
            .with_context(|| format!("cannot create the state dir {}", options.state_dir.display()))?;
        let config = match &options.config {
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
        let chain = build_chain(&config, &options.state_dir, None).await;
        Ok(Arc::new(Self {
            options,
            config: ArcSwap::from_pointee(config),
            chain: Arc::new(ArcSwap::from_pointee(chain)),
        }))
    }

    /// The config the daemon serves now, re-read from its source.
    fn read_config(&self) -> Result<Config, ConfigError> {
        match &self.options.config {
            ConfigSource::Dev => Ok(Config::dev()),
            ConfigSource::File(path) => load_and_remember(path, &self.options.state_dir),
        }
    }

    /// The one reload path: parse, compile, swap. On a parse error, nothing changes.
    pub async fn reload(&self, why: &str) {
        match self.read_config() {
            Ok(config) => {
                let current = self.chain.load_full();
                let chain = build_chain(&config, &self.options.state_dir, Some(&current)).await;
                tracing::info!(
                    why,
                    rules = chain.policy.block_rules(),
                    exceptions = chain.policy.allow_rules(),
                    "policy reloaded; cache flushed"
                );
                self.chain.store(Arc::new(chain));
                self.config.store(Arc::new(config));
            }
            Err(error) => tracing::error!("{error} — keeping the last good config"),
        }
    }

    pub fn chain(&self) -> Arc<Chain> {
        self.chain.load_full()
    }

    /// Serves until SIGTERM or SIGINT. `on_ready` gets the bound addresses.
    pub async fn serve(self: Arc<Self>, on_ready: impl FnOnce(&[std::net::SocketAddr])) -> anyhow::Result<()> {
        let listen_on = self.options.listen.clone().unwrap_or_else(|| self.config.load().dns.listen.clone());
        let mut listeners = listen::bind(&listen_on, DnsHandler::new(self.chain.clone())).await?;
        for address in &listeners.bound {
            tracing::info!(%address, "serving DNS over UDP and TCP");
        }
        on_ready(&listeners.bound);

        let (reload_tx, reload_rx) = mpsc::channel::<&'static str>(16);
        let _watcher = match &self.options.config {
            ConfigSource::File(path) => Some(watch_config(path, reload_tx.clone())?),
            ConfigSource::Dev => None,
        };
        tokio::spawn(self.clone().reload_loop(reload_rx));
        tokio::spawn(crate::fetch::fetch_loop(self.clone(), reload_tx.clone()));
        tokio::spawn(forward_sighup(reload_tx));

        wait_for_shutdown().await;
        tracing::info!("shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(5), listeners.server.shutdown_gracefully()).await;
        Ok(())
    }

    async fn reload_loop(self: Arc<Self>, mut requests: mpsc::Receiver<&'static str>) {
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
        }
    }
}

impl crate::fetch::FetchContext for Daemon {
    fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    fn upstreams(&self) -> Arc<Upstreams> {
        self.chain.load().upstreams.clone()
    }

    fn state_dir(&self) -> &Path {
        &self.options.state_dir
    }
}

/// Loads `path` and, when it is good, keeps a copy as the last good config.
fn load_and_remember(path: &Path, state_dir: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::file(path, format!("cannot read config: {e}")))?;
    let config = Config::parse(&text, path)?;
    let last_good = state_dir.join(LAST_GOOD_CONFIG);
    if std::fs::read_to_string(&last_good).ok().as_deref() != Some(text.as_str()) {
        if let Err(error) = crate::policy::lists::write_atomically(&last_good, text.as_bytes()) {
            tracing::warn!(%error, "cannot keep a copy of the last good config");
        }
    }
    Ok(config)
}

/// Compiles `config` into a new chain, reusing the current upstream connections
/// when the upstream list did not change.
async fn build_chain(config: &Config, state_dir: &Path, current: Option<&Chain>) -> Chain {
    let wanted = effective_upstreams(&config.dns.upstreams);
    let upstreams = match current {
        Some(chain) if chain.upstreams.source == wanted => chain.upstreams.clone(),
        _ => Arc::new(Upstreams::build(&wanted, config.dns.upstream_timeout.0).await),
    };
    let policy = {
        let config = config.clone();
        let state_dir = state_dir.to_path_buf();
        // Compiling a million-rule list takes a moment: keep it off the DNS threads.
        tokio::task::spawn_blocking(move || Policy::build(&config, &state_dir)).await.unwrap_or_default()
    };
    let max_ttl = u32::try_from(config.dns.max_ttl.as_secs()).unwrap_or(u32::MAX);
    Chain::new(Arc::new(policy), upstreams, config.dns.cache_size, config.dns.allow_clients.clone(), max_ttl)
}

/// Watches the config file's directory (editors replace files rather than write
/// them) and asks for a reload when the file or a local list changes.
fn watch_config(path: &Path, reload: mpsc::Sender<&'static str>) -> anyhow::Result<notify::RecommendedWatcher> {
    let file_name = path.file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if event.paths.iter().any(|p| p.file_name().map(|n| n.to_os_string()) == file_name) {
            let _ = reload.try_send("config file changed");
        }
    })
    .context("cannot watch the config file")?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok(watcher)
}

async fn forward_sighup(reload: mpsc::Sender<&'static str>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        let _ = reload.send("SIGHUP").await;
    }
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
