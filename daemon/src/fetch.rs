//! Background downloads of URL blocklists.
//!
//! A list is fetched when its cached copy is missing or older than `[block]
//! refresh`; a failure is retried with backoff and the last good copy keeps
//! blocking meanwhile. A download that does not look like a list (no rule on any
//! line, e.g. an HTML error page) is refused. Host names are looked up through
//! ncdd's own upstreams, never the system resolver, which may be ncdd itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ncd_config::lists::parse_list;
use ncd_config::{Config, ListSource};
use tokio::sync::mpsc;

use ncd_state::{StateDir, write_atomically};

use crate::dns::upstream::Upstreams;
use crate::generation::Generations;

/// How often the loop looks at which lists are due.
const TICK: Duration = Duration::from_secs(60);
/// The first retry after a failed download; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// The largest list accepted: the same cap as a local list's.
const MAX_LIST_BYTES: usize = ncd_policy::lists::MAX_LIST_BYTES as usize;
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the loop learns the current config and upstreams.
pub trait FetchContext: Send + Sync + 'static {
    fn config(&self) -> Arc<Config>;
    fn upstreams(&self) -> Arc<Upstreams>;
    fn state_dir(&self) -> &StateDir;
}

/// The fetcher follows the generation in force: its lists, its upstreams.
impl FetchContext for Generations {
    fn config(&self) -> Arc<Config> {
        Arc::new(self.current().config.clone())
    }

    fn upstreams(&self) -> Arc<Upstreams> {
        self.current().chain.upstreams.clone()
    }

    fn state_dir(&self) -> &StateDir {
        Generations::state_dir(self)
    }
}

/// Runs forever: downloads due lists and asks for a reload after each success.
pub async fn fetch_loop(context: Arc<dyn FetchContext>, reload: mpsc::Sender<&'static str>) {
    let resolver = Arc::new(UpstreamResolver {
        context: context.clone(),
    });
    let client = match reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .user_agent(concat!("ncd/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(resolver)
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot set up the HTTP client; URL lists will not be refreshed");
            return;
        }
    };
    let mut backoff: HashMap<String, (Duration, SystemTime)> = HashMap::new();
    loop {
        let config = context.config();
        let refresh = config.block.refresh.0;
        let mut changed = false;
        for source in &config.block.lists {
            let ListSource::Url(url) = source else { continue };
            let path = context.state_dir().url_list_copy(url);
            let now = SystemTime::now();
            if backoff.get(url).is_some_and(|(_, retry_at)| now < *retry_at) {
                continue;
            }
            let age = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok());
            if age.is_some_and(|age| age < refresh) {
                continue;
            }
            match download(&client, url).await {
                Ok(bytes) => match write_atomically(&path, &bytes, None) {
                    Ok(()) => {
                        tracing::info!(%url, bytes = bytes.len(), "blocklist downloaded");
                        backoff.remove(url);
                        changed = true;
                    }
                    Err(error) => tracing::warn!(%url, %error, "cannot store the downloaded list"),
                },
                Err(error) => {
                    let delay = backoff
                        .get(url)
                        .map_or(FIRST_BACKOFF, |(d, _)| (*d * 2).min(MAX_BACKOFF));
                    tracing::warn!(%url, %error, retry_in = ?delay, "blocklist download failed; the last good copy keeps blocking");
                    backoff.insert(url.clone(), (delay, now + delay));
                }
            }
        }
        if changed {
            let _ = reload.send("blocklist downloaded").await;
        }
        tokio::time::sleep(TICK).await;
    }
}

async fn download(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut response = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_LIST_BYTES {
            return Err(format!("larger than {} MiB", MAX_LIST_BYTES / (1024 * 1024)));
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body);
    looks_like_a_list(&text)?;
    Ok(body)
}

/// Refuses what is not a blocklist — an HTML error or login page, a captive
/// portal — so it never replaces the last good copy (that would unblock its names).
fn looks_like_a_list(text: &str) -> Result<(), String> {
    let start = text
        .trim_start()
        .get(..256)
        .unwrap_or(text.trim_start())
        .to_ascii_lowercase();
    if start.starts_with("<!doctype") || start.starts_with("<html") || start.starts_with("<?xml") {
        return Err("not a blocklist: the server sent a web page".into());
    }
    let stats = parse_list(text, |_| {}, |_| {});
    if stats.rules == 0 || stats.errors > stats.rules {
        return Err(format!(
            "not a blocklist: {} of {} lines are not rules",
            stats.errors,
            stats.rules + stats.errors
        ));
    }
    Ok(())
}

/// Resolves list hosts through ncdd's upstreams.
struct UpstreamResolver {
    context: Arc<dyn FetchContext>,
}

impl reqwest::dns::Resolve for UpstreamResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let upstreams = self.context.upstreams();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = upstreams
                .addresses(&host)
                .await?
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
