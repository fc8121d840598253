//! The TOML schema: every table and key, its type and its documented default.
//!
//! Unknown keys are errors (a typo must not silently weaken a block), and every
//! error names `path:line:col`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

use crate::catalog;
use crate::domain::DomainRule;
use crate::duration::HumanDuration;
use crate::error::ConfigError;
use crate::profile::Profile;
use crate::upstream::UpstreamEntry;

/// Where `ncd` and `ncdd` look for the config when not told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ncd/ncd.toml";
/// The control socket of a system install (on macOS, where launchd creates it and
/// /var/run is emptied at boot, directly in /var/run).
#[cfg(not(target_os = "macos"))]
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/ncd/control.sock";
#[cfg(target_os = "macos")]
pub const DEFAULT_CONTROL_SOCKET: &str = "/var/run/ncd.sock";

/// The embedded config behind `ncdd --dev`: loopback on port 5353, every catalog
/// service blocked, upstreams from the system.
pub const DEV_CONFIG: &str = include_str!("../defaults/dev.toml");

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub dns: DnsConfig,
    pub block: BlockConfig,
    pub guard: GuardConfig,
    pub control: ControlConfig,
    pub period: PeriodConfig,
    pub unlock: UnlockConfig,
    /// `[[profile]]` tables: one person's handles per site, blocked by the proxy.
    #[serde(rename = "profile", deserialize_with = "crate::profile::profiles")]
    pub profiles: Vec<Profile>,
    /// How the profile proxy serves.
    pub proxy: ProxyConfig,
}

/// How a blocked name is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlockAnswer {
    /// A → 0.0.0.0, AAAA → ::, other types → no data. Clients fail fast and do not
    /// retry another resolver, as some do after NXDOMAIN.
    #[default]
    Null,
    /// NXDOMAIN with an SOA.
    Nxdomain,
    /// REFUSED.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Addresses to serve on, UDP and TCP. Default: `127.0.0.1:53` and `[::1]:53`.
    #[serde(deserialize_with = "checks::listen")]
    pub listen: Vec<SocketAddr>,
    /// Where allowed queries go, tried in order. Default `["system"]`: the
    /// resolvers the network hands out, followed as they change (an empty list
    /// means the same); `"system"` can be mixed with resolvers of one's own, and
    /// takes its place in the order. With `"system"` listed, names under a link's
    /// own domains, `.local`/`.lan`/`home.arpa` and private reverse zones go to
    /// that link's servers; without it, exactly the listed resolvers are asked.
    pub upstreams: Vec<UpstreamEntry>,
    /// Trust anchors (PEM files) for `tls://` and `https://` upstreams, besides
    /// the built-in web roots: a resolver with a private CA, or a test CA.
    pub upstream_roots: Vec<PathBuf>,
    /// How blocked names are answered. Default `null`.
    pub answer: BlockAnswer,
    /// TTL of blocked answers. Default 10 s: short, so an unlock is felt soon.
    pub blocked_ttl: HumanDuration,
    /// The longest TTL handed to clients for allowed answers, so that a new block
    /// reaches their caches soon. Default 1 h.
    pub max_ttl: HumanDuration,
    /// How long to wait for the upstreams, all attempts together. Default 2 s.
    #[serde(deserialize_with = "checks::upstream_timeout")]
    pub upstream_timeout: HumanDuration,
    /// Answers kept in the cache. Default 10000; 0 turns the cache off.
    pub cache_size: usize,
    /// Networks, besides loopback, that may query (LAN mode). Default none.
    pub allow_clients: Vec<IpNet>,
    /// Queries per second one LAN client may send before the rest of that second
    /// is dropped, so one noisy device cannot starve the others. Loopback is never
    /// limited. Default 500; 0 turns the limit off.
    pub client_rate_limit: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                SocketAddr::from(([127, 0, 0, 1], 53)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 53)),
            ],
            upstreams: vec![UpstreamEntry::System],
            upstream_roots: Vec::new(),
            answer: BlockAnswer::Null,
            blocked_ttl: HumanDuration::from_secs(10),
            max_ttl: HumanDuration::from_secs(3600),
            upstream_timeout: HumanDuration::from_secs(2),
            cache_size: 10_000,
            allow_clients: Vec::new(),
            client_rate_limit: 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlockConfig {
    /// Services from the built-in catalog (`ncd services` lists them).
    pub services: Vec<ServiceName>,
    /// Domains blocked with their subdomains; `=name` for the exact name only.
    pub domains: Vec<DomainRule>,
    /// Blocklist files (plain, hosts or adblock format) or http(s) URLs.
    pub lists: Vec<ListSource>,
    /// Exceptions: names that stay reachable even when a rule above covers them.
    pub allow: Vec<DomainRule>,
    /// How often URL lists are fetched again. Default 24 h.
    #[serde(deserialize_with = "checks::refresh")]
    pub refresh: HumanDuration,
}

impl Default for BlockConfig {
    fn default() -> Self {
        Self {
            services: Vec::new(),
            domains: Vec::new(),
            lists: Vec::new(),
            allow: Vec::new(),
            refresh: HumanDuration::from_secs(86_400),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Blocks the ways browsers and phones slip past a local resolver: the Firefox
    /// DoH canary, iCloud Private Relay, DDR, and public DoH/DoT endpoints. Default on.
    pub encrypted_dns: bool,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self { encrypted_dns: true }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// The control socket `ncd` talks to. Default /run/ncd/control.sock.
    pub socket: PathBuf,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeriodConfig {
    /// The length `ncd start` uses when `--for` is not given. Default 60 days.
    #[serde(deserialize_with = "checks::period_length")]
    pub length: HumanDuration,
}

impl Default for PeriodConfig {
    fn default() -> Self {
        Self {
            length: HumanDuration::from_secs(60 * 86_400),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnlockConfig {
    /// The cooling-off time between asking to unlock and being able to confirm,
    /// in credited time. It doubles with each request within 30 days. Default 24 h.
    pub delay: HumanDuration,
    /// How long the confirmation stays open once the delay is over. Default 2 h.
    #[serde(deserialize_with = "checks::confirm_within")]
    pub confirm_within: HumanDuration,
    /// Characters of the passage to type to confirm. Default 200.
    #[serde(deserialize_with = "checks::challenge_chars")]
    pub challenge_chars: usize,
}

impl Default for UnlockConfig {
    fn default() -> Self {
        Self {
            delay: HumanDuration::from_secs(86_400),
            confirm_within: HumanDuration::from_secs(2 * 3600),
            challenge_chars: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Addresses the HTTPS proxy serves on (TCP). Default `127.0.0.1:443` and `[::1]:443`.
    #[serde(deserialize_with = "checks::proxy_listen")]
    pub listen: Vec<SocketAddr>,
    /// Extra trust anchors (PEM files) for the origins the proxy forwards to, besides
    /// the platform roots: a corporate root, or a test origin's CA. Relative paths are
    /// taken from the config file's directory.
    pub origin_roots: Vec<PathBuf>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                SocketAddr::from(([127, 0, 0, 1], 443)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 443)),
            ],
            origin_roots: Vec::new(),
        }
    }
}

/// A catalog service name, checked against the catalog when the file is read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ServiceName(String);

impl ServiceName {
    pub fn parse(text: &str) -> Result<Self, String> {
        match catalog::service(text) {
            Some(service) => Ok(Self(service.name.to_string())),
            None => Err(format!(
                "unknown service {text:?}; the catalog has: {}",
                catalog::service_names().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    pub fn service(&self) -> &'static catalog::Service {
        // Invariant: a ServiceName is only made by `parse`, which found it.
        catalog::service(&self.0).unwrap_or(&catalog::SERVICES[0])
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::error::parse_str(deserializer, Self::parse)
    }
}

/// A blocklist: a local file, or a URL fetched in the background.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub enum ListSource {
    File(PathBuf),
    Url(String),
}

impl ListSource {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            let host = text.split_once("://").map(|(_, r)| r).unwrap_or_default();
            if host.is_empty() || host.starts_with('/') {
                return Err(format!("list URL {text:?} has no host"));
            }
            Ok(Self::Url(text.to_string()))
        } else if let Some(path) = text.strip_prefix("file://") {
            Ok(Self::File(PathBuf::from(path)))
        } else if text.contains("://") {
            Err(format!("list {text:?}: only files and http(s) URLs are supported"))
        } else if text.is_empty() {
            Err("empty list path".into())
        } else {
            Ok(Self::File(PathBuf::from(text)))
        }
    }
}

impl std::fmt::Display for ListSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url(url) => f.write_str(url),
        }
    }
}

impl From<ListSource> for String {
    fn from(source: ListSource) -> String {
        source.to_string()
    }
}

impl<'de> Deserialize<'de> for ListSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::error::parse_str(deserializer, Self::parse)
    }
}

impl Config {
    /// Parses config text; `path` names it in errors. Relative list paths are taken
    /// from the config file's directory.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::from_toml(path, text, &e))?;
        if let Some(dir) = path.parent() {
            for list in &mut config.block.lists {
                if let ListSource::File(file) = list
                    && file.is_relative()
                    && !dir.as_os_str().is_empty()
                {
                    *file = dir.join(&*file);
                }
            }
            for root in config
                .proxy
                .origin_roots
                .iter_mut()
                .chain(&mut config.dns.upstream_roots)
            {
                if root.is_relative() && !dir.as_os_str().is_empty() {
                    *root = dir.join(&*root);
                }
            }
        }
        Ok(config)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::file(path, format!("cannot read config: {e}")))?;
        Self::parse(&text, path)
    }

    /// The embedded `--dev` config.
    pub fn dev() -> Self {
        // Invariant: DEV_CONFIG is tested to parse (`tests::embedded_dev_config_parses`).
        Self::parse(DEV_CONFIG, Path::new("<embedded dev config>")).unwrap_or_default()
    }
}

/// Range checks, run while the value is read so errors carry its line and column.
mod checks {
    use std::net::SocketAddr;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    use crate::duration::HumanDuration;
    use crate::error::parse_str;

    pub(super) fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
        let listen = Vec::<SocketAddr>::deserialize(d)?;
        if listen.is_empty() {
            return Err(serde::de::Error::custom(
                "listen is empty: ncdd needs at least one address to serve on",
            ));
        }
        Ok(listen)
    }

    pub(super) fn proxy_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
        let listen = Vec::<SocketAddr>::deserialize(d)?;
        if listen.is_empty() {
            return Err(serde::de::Error::custom(
                "listen is empty: the proxy needs at least one address to serve on",
            ));
        }
        if let Some(addr) = listen.iter().find(|a| a.port() == 0) {
            return Err(serde::de::Error::custom(format!(
                "{addr}: the proxy needs a fixed port (DNS steers browsers to it)"
            )));
        }
        Ok(listen)
    }

    fn at_least(text: &str, min: Duration, what: &str) -> Result<HumanDuration, String> {
        let d: HumanDuration = text.parse()?;
        if d.0 < min {
            return Err(format!("{what} must be at least {}", HumanDuration(min)));
        }
        Ok(d)
    }

    fn at_least_because(text: &str, min: Duration, what: &str, because: &str) -> Result<HumanDuration, String> {
        let d: HumanDuration = text.parse()?;
        if d.0 < min {
            return Err(format!("{what} must be at least {} ({because})", HumanDuration(min)));
        }
        Ok(d)
    }

    pub(super) fn upstream_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
        parse_str(d, |t| {
            let d: HumanDuration = t.parse()?;
            if d.0.is_zero() {
                return Err("upstream_timeout must be longer than 0s".into());
            }
            Ok(d)
        })
    }

    pub(super) fn refresh<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
        parse_str(d, |t| {
            at_least_because(t, Duration::from_secs(60), "refresh", "list servers deserve some peace")
        })
    }

    pub(super) fn period_length<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
        parse_str(d, |t| at_least(t, Duration::from_secs(1), "a period's length"))
    }

    pub(super) fn confirm_within<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
        parse_str(d, |t| at_least(t, Duration::from_secs(1), "confirm_within"))
    }

    pub(super) fn challenge_chars<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        let chars = usize::deserialize(d)?;
        if !(1..=10_000).contains(&chars) {
            return Err(serde::de::Error::custom("challenge_chars must be between 1 and 10000"));
        }
        Ok(chars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/ncd/ncd.toml"))
    }

    #[test]
    fn system_mixes_with_resolvers_and_upstream_roots_are_relative_to_the_config() {
        let config = Config::parse(
            "[dns]\nupstreams = [\"tls://9.9.9.9:853#dns.quad9.net\", \"system\"]\nupstream_roots = [\"ca/test.pem\"]\n",
            Path::new("/etc/ncd/ncd.toml"),
        )
        .unwrap();
        assert_eq!(config.dns.upstreams[1], UpstreamEntry::System);
        assert_eq!(config.dns.upstream_roots, [PathBuf::from("/etc/ncd/ca/test.pem")]);
        assert_eq!(Config::default().dns.upstreams, [UpstreamEntry::System]);
        let error = Config::parse("[dns]\nupstreams = [\"sytem\"]\n", Path::new("x.toml")).unwrap_err();
        assert!(error.to_string().starts_with("x.toml:2:"), "{error}");
    }

    #[test]
    fn embedded_dev_config_parses() {
        let config = Config::parse(DEV_CONFIG, Path::new("dev.toml")).unwrap();
        assert_eq!(config.block.services.len(), catalog::SERVICES.len());
        assert!(
            config
                .dns
                .listen
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 5353)
        );
    }

    #[test]
    fn an_empty_file_is_the_documented_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.dns.blocked_ttl.as_secs(), 10);
        assert!(config.guard.encrypted_dns);
    }

    #[test]
    fn the_issue_example_parses() {
        let config = parse(
            r#"
[dns]
listen = ["127.0.0.1:53", "[::1]:53"]
upstreams = ["udp://9.9.9.9:53", "tcp://9.9.9.9:53", "tls://1.1.1.1:853#cloudflare-dns.com", "https://dns.quad9.net/dns-query"]
answer = "null"
blocked_ttl = "10s"
upstream_timeout = "2s"
cache_size = 10000
allow_clients = ["192.168.1.0/24"]

[block]
services = ["instagram", "facebook", "x", "tiktok", "snapchat", "threads"]
domains = ["example.com", "=exact.example.org"]
lists = ["lists/social.hosts", "https://example.org/list.txt"]
allow = ["business.facebook.com"]

[guard]
encrypted_dns = true
"#,
        )
        .unwrap();
        assert_eq!(config.dns.upstreams.len(), 4);
        assert_eq!(
            config.block.lists[0],
            ListSource::File("/etc/ncd/lists/social.hosts".into())
        );
        assert_eq!(config.block.domains[1].to_string(), "=exact.example.org");
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = parse("[dns]\nblocked_ttl = \"10 parsecs\"\n").unwrap_err();
        assert_eq!(err.position, Some((2, 15)), "{err}");
        assert!(err.to_string().starts_with("/etc/ncd/ncd.toml:2:15: "), "{err}");

        let err = parse("[block]\nservices = [\"instagram\", \"myspace\"]\n").unwrap_err();
        assert_eq!(err.position, Some((2, 26)), "{err}");
        assert!(err.message.contains("unknown service \"myspace\""), "{err}");

        let err = parse("[block]\ndomains = [\"ok.example\", \"bad..example\"]\n").unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(2), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_in_every_table() {
        for table in [
            "",
            "[dns]\n",
            "[block]\n",
            "[guard]\n",
            "[control]\n",
            "[period]\n",
            "[unlock]\n",
        ] {
            let text = format!("{table}typo_key = 1\n");
            let err = parse(&text).unwrap_err();
            let line = if table.is_empty() { 1 } else { 2 };
            assert_eq!(err.position, Some((line, 1)), "{table:?}: {err}");
            assert!(err.message.contains("typo_key"), "{err}");
        }
        let err = parse("[blok]\n").unwrap_err();
        assert!(err.message.contains("blok"), "{err}");
    }
}
