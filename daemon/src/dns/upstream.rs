//! Forwarding to the upstream resolvers: routed, in order, with fallback, inside
//! one deadline.
//!
//! [`Upstreams`] is built from `[dns] upstreams` and the network's resolvers
//! ([`NetworkDns`]). A query is sent to one ordered list:
//!
//! - every name goes to the `[dns] upstreams` in the order written, `"system"`
//!   standing for the network's default servers in its place: `["system"]` is the
//!   network's alone; `["tls://…", "system"]` the configured resolver first, and
//!   the network's when it fails or is slow (a captive portal's login page, a
//!   network that blocks outside DNS);
//! - with `"system"` listed, a name under a link's own domains, or under
//!   [`LOCAL_ZONES`] (`.lan`, `home.arpa`, private reverse zones …), goes to that
//!   link's servers (local zones: the network's default servers) and nowhere else.
//!   Without it, ncdd asks exactly the resolvers listed and reads nothing of the
//!   network.
//!
//! Each server gets its own hickory `NameServerPool` (connection reuse, UDP→TCP
//! on truncation, TLS and HTTPS). The first in the list is asked; when it fails —
//! or has not answered within a fair share of the timeout — the next is asked too,
//! and the first good answer wins. After `upstream_timeout` in all, the caller
//! answers SERVFAIL. The system resolver is never used: it may be ncdd.
//! Blocked names never get here: the policy answers them first.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::xfer::{DnsHandle, FirstAnswer};
use hickory_net::{DnsError, NetError};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Query, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverOpts, ServerOrderingStrategy};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};
use ncd_config::upstream::{UpstreamHost, UpstreamProtocol};
use ncd_config::{DomainName, Upstream, UpstreamEntry};
use tokio::task::JoinSet;

use crate::network::{LOCAL_ZONES, NetworkDns, server_words};

/// An answer from upstream, reduced to what ncd serves and caches.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamAnswer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream answered within {0:?}")]
    Timeout(Duration),
    #[error("every upstream failed; last error: {0}")]
    AllFailed(String),
    #[error("no upstreams are configured")]
    NoUpstreams,
}

/// Whose server it is: the config's, or the network's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Configured,
    Network,
}

struct Client {
    label: String,
    origin: Origin,
    /// For an encrypted upstream, how to ask it for its certificate when it
    /// fails: hickory reports only "no connections available".
    tls_check: Option<TlsCheck>,
    pool: NameServerPool<TokioRuntimeProvider>,
    /// True after a failure until the next answer: each change is logged once.
    failing: AtomicBool,
}

/// What a TLS handshake with an encrypted upstream needs.
struct TlsCheck {
    addr: std::net::SocketAddr,
    name: String,
    config: Arc<rustls::ClientConfig>,
    /// DoH speaks HTTP/2.
    alpn: Vec<Vec<u8>>,
}

impl TlsCheck {
    /// Shakes hands once and says, in plain words, why TLS failed (or that it works).
    async fn diagnose(&self) -> String {
        let name = match rustls::pki_types::ServerName::try_from(self.name.clone()) {
            Ok(name) => name,
            Err(e) => return format!("its TLS name {:?} is not valid: {e}", self.name),
        };
        let mut config = (*self.config).clone();
        config.alpn_protocols.clone_from(&self.alpn);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let handshake = async {
            let tcp = tokio::net::TcpStream::connect(self.addr).await?;
            connector.connect(name, tcp).await
        };
        match tokio::time::timeout(Duration::from_secs(3), handshake).await {
            Err(_) => "its TLS handshake did not finish within 3 s".to_string(),
            Ok(Ok(_)) => "TLS works; the DNS exchange itself failed".to_string(),
            Ok(Err(error)) => tls_words(&error),
        }
    }
}

/// A failed handshake in plain words, with rustls's own words after them.
fn tls_words(error: &std::io::Error) -> String {
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(cert)) => {
            let words = match cert {
                rustls::CertificateError::UnknownIssuer => {
                    "its certificate is not signed by a CA ncdd trusts (a private CA goes in [dns] upstream_roots)"
                }
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. } => {
                    "its certificate is for another name than the one after # in the upstream"
                }
                rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                    "its certificate has expired (or this machine's clock is wrong)"
                }
                _ => "its certificate was refused",
            };
            format!("TLS refused: {words} ({cert:?})")
        }
        _ => format!("TLS failed: {error}"),
    }
}

/// Names under `suffix` go to `clients` only.
struct Route {
    suffix: String,
    clients: Vec<Arc<Client>>,
}

/// What the upstreams were built from: equal inputs reuse the connections.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamInputs {
    pub entries: Vec<UpstreamEntry>,
    pub network: NetworkDns,
    pub roots: Vec<PathBuf>,
    pub timeout: Duration,
}

/// The routed, ordered upstreams.
pub struct Upstreams {
    /// For names no route claims, in order.
    general: Vec<Arc<Client>>,
    /// The network's servers among `general`, in order: asked first while the
    /// configured ones are cut off, and the owners of the local zones.
    network: Vec<Arc<Client>>,
    /// Longest suffix first.
    routes: Vec<Route>,
    timeout: Duration,
    /// What these were built from, to reuse them across rebuilds.
    pub inputs: UpstreamInputs,
    health: Arc<Health>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<_> = self.general.iter().map(|c| c.label.as_str()).collect();
        let routes: Vec<_> = self.routes.iter().map(|r| r.suffix.as_str()).collect();
        f.debug_struct("Upstreams")
            .field("general", &labels)
            .field("routes", &routes)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Fallback upstreams when neither the config nor the network names any: Quad9.
pub const FALLBACK_UPSTREAMS: &[&str] = &["udp://9.9.9.9:53", "udp://149.112.112.112:53"];

/// How long an answer from the configured resolvers may be missing before
/// `ncd status` says they cannot be reached from this network.
const UNREACHABLE_AFTER: Duration = Duration::from_secs(3);

/// When the configured resolvers and the network's last answered (milliseconds
/// since ncdd started; 0 = never), for `ncd status`.
#[derive(Debug, Default)]
struct Health {
    configured_answered: AtomicU64,
    /// A general query the configured resolvers did not answer.
    configured_missed: AtomicU64,
    configured_first_missed: AtomicU64,
    network_answered: AtomicU64,
    /// A probe of the configured resolvers is out (see `probe_configured`).
    probing: AtomicBool,
}

fn millis_now() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Upstreams {
    /// Builds the clients. Upstreams named by host name (DoH/DoT) are looked up once
    /// through the upstreams given by address; one that cannot be found is skipped
    /// with a warning. A `roots` file that cannot be read is reported, and the
    /// built-in roots alone are trusted.
    pub async fn build(inputs: UpstreamInputs) -> Self {
        let tls = match tls_config(&inputs.roots) {
            Ok(tls) => Some(tls),
            Err(error) => {
                tracing::error!(%error, "[dns] upstream_roots: cannot use these trust anchors; only the built-in roots are trusted");
                tls_config(&[]).ok()
            }
        };
        let make = |upstream: &Upstream, ip: IpAddr, origin: Origin| {
            client(
                upstream,
                ip,
                origin,
                inputs.timeout,
                tls.as_ref().map(|t| Arc::new(t.clone())),
            )
        };
        let network: Vec<Upstream> = inputs
            .network
            .default_servers()
            .into_iter()
            .map(Upstream::udp)
            .collect();
        let entries: &[UpstreamEntry] = if inputs.entries.is_empty() {
            &[UpstreamEntry::System]
        } else {
            &inputs.entries
        };
        // In order: each configured server, the network's in place of "system".
        let mut wanted: Vec<(Upstream, Origin)> = Vec::new();
        for entry in entries {
            let servers = match entry {
                UpstreamEntry::System => network.iter().map(|u| (u.clone(), Origin::Network)).collect(),
                UpstreamEntry::Server(upstream) => vec![(upstream.clone(), Origin::Configured)],
            };
            for (upstream, origin) in servers {
                if !wanted.iter().any(|(u, _)| *u == upstream) {
                    wanted.push((upstream, origin));
                }
            }
        }
        if wanted.is_empty() {
            // Counted as the network's: `ncd status` must not call them the config's.
            tracing::warn!("the network hands out no resolver and the config names none; asking Quad9");
            wanted = FALLBACK_UPSTREAMS
                .iter()
                .filter_map(|s| s.parse().ok())
                .map(|u| (u, Origin::Network))
                .collect();
        }

        let mut upstreams = Upstreams {
            general: Vec::new(),
            network: Vec::new(),
            routes: Vec::new(),
            timeout: inputs.timeout,
            inputs: inputs.clone(),
            health: Arc::new(Health::default()),
        };
        // First those given by address, to look up those given by name.
        for (upstream, origin) in &wanted {
            if let UpstreamHost::Ip(ip) = upstream.host {
                upstreams.push(make(upstream, ip, *origin));
            }
        }
        if wanted.iter().any(|(u, _)| matches!(u.host, UpstreamHost::Name(_))) {
            let mut general = Vec::new();
            for (upstream, origin) in &wanted {
                let ip = match &upstream.host {
                    UpstreamHost::Ip(ip) => Some(*ip),
                    UpstreamHost::Name(name) => upstreams.bootstrap(name).await,
                };
                match ip {
                    Some(ip) => general.extend(keep(make(upstream, ip, *origin))),
                    None => tracing::warn!(
                        %upstream,
                        "cannot find the address of this upstream through the plain upstreams; skipping it"
                    ),
                }
            }
            upstreams.general = general;
        }
        upstreams.network = upstreams
            .general
            .iter()
            .filter(|c| c.origin == Origin::Network)
            .cloned()
            .collect();

        // Local names, when the network is followed: each link's domains to its
        // servers, then the local zones to the network's default servers.
        if !entries.contains(&UpstreamEntry::System) {
            return upstreams;
        }
        for link in &inputs.network.links {
            let clients: Vec<Arc<Client>> = link
                .servers
                .iter()
                .filter_map(|s| keep(make(&Upstream::udp(*s), s.ip(), Origin::Network)))
                .collect();
            for domain in &link.domains {
                upstreams.route(domain, &clients);
            }
        }
        let local = upstreams.network.clone();
        for zone in LOCAL_ZONES {
            upstreams.route(zone, &local);
        }
        upstreams.routes.sort_by_key(|r| std::cmp::Reverse(r.suffix.len()));
        upstreams
    }

    fn push(&mut self, client: Result<Client, String>) {
        self.general.extend(keep(client));
    }

    /// Adds a route for `suffix` unless one is there already (the first link wins).
    fn route(&mut self, suffix: &str, clients: &[Arc<Client>]) {
        if !clients.is_empty() && !self.routes.iter().any(|r| r.suffix == suffix) {
            self.routes.push(Route {
                suffix: suffix.to_string(),
                clients: clients.to_vec(),
            });
        }
    }

    /// The route that owns `name` (normal form), if any.
    fn route_for(&self, name: &[u8]) -> Option<&Route> {
        self.routes.iter().find(|r| {
            let suffix = r.suffix.as_bytes();
            name.ends_with(suffix) && (name.len() == suffix.len() || name[name.len() - suffix.len() - 1] == b'.')
        })
    }

    async fn bootstrap(&self, name: &DomainName) -> Option<IpAddr> {
        let name = hickory_proto::rr::Name::from_ascii(name.as_str()).ok()?;
        for rtype in [RecordType::A, RecordType::AAAA] {
            if let Ok(answer) = self.query(Query::query(name.clone(), rtype)).await {
                let ip = answer.answers.iter().find_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                });
                if ip.is_some() {
                    return ip;
                }
            }
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.general.is_empty()
    }

    /// The network's resolvers these follow.
    pub fn network(&self) -> &NetworkDns {
        &self.inputs.network
    }

    /// In plain words, when the resolvers the config names have not answered from
    /// this network for a while (a network that blocks outside DNS, a hotel's
    /// portal): what answers instead, if anything.
    pub fn unreachable(&self) -> Option<String> {
        if !self.cut_off() {
            return None;
        }
        let h = &self.health;
        let since = h.configured_first_missed.load(Ordering::Relaxed);
        let configured: Vec<&str> = self
            .general
            .iter()
            .filter(|c| c.origin == Origin::Configured)
            .map(|c| c.label.as_str())
            .collect();
        let network: Vec<String> = self.network().default_servers().into_iter().map(server_words).collect();
        let follows_network = self.general.iter().any(|c| c.origin == Origin::Network);
        let network_answers = h.network_answered.load(Ordering::Relaxed) > since;
        let configured = configured.join(", ");
        Some(
            if !follows_network && network.is_empty() && !self.inputs.entries.contains(&UpstreamEntry::System) {
                format!(
                    "The resolvers in your config ({configured}) cannot be reached from this network, so allowed names do not resolve. \
                 With \"system\" in [dns] upstreams the network's own resolvers would answer when these cannot (a hotel's or café's login page needs them)."
                )
            } else if network.is_empty() {
                format!(
                    "The resolvers in your config ({configured}) cannot be reached from this network, and the network hands out none of its own: allowed names do not resolve."
                )
            } else if network_answers {
                format!(
                    "The resolvers in your config ({configured}) cannot be reached from this network. Allowed names resolve through the network's own ({}) until they can; blocked names stay blocked.",
                    network.join(", ")
                )
            } else {
                format!(
                    "No resolver answers from this network: neither the ones in your config ({configured}) nor the network's own ({}).",
                    network.join(", ")
                )
            },
        )
    }

    /// True when the configured resolvers have missed every general query for a
    /// while (misses since the last answer, over [`UNREACHABLE_AFTER`]: one lost
    /// packet says nothing).
    fn cut_off(&self) -> bool {
        let h = &self.health;
        let answered = h.configured_answered.load(Ordering::Relaxed);
        let (first, last) = (
            h.configured_first_missed.load(Ordering::Relaxed),
            h.configured_missed.load(Ordering::Relaxed),
        );
        last > answered && Duration::from_millis(last - first) >= UNREACHABLE_AFTER
    }

    /// The A and AAAA addresses of `host`, asked of the upstreams (never the
    /// system resolver, which may be ncdd): how the list fetcher and the proxy
    /// find the real hosts behind names ncdd itself blocks or steers.
    pub async fn addresses(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let name = hickory_proto::rr::Name::from_ascii(host)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut addresses = Vec::new();
        for rtype in [RecordType::A, RecordType::AAAA] {
            if let Ok(answer) = self.query(Query::query(name.clone(), rtype)).await {
                addresses.extend(answer.answers.iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                }));
            }
        }
        if addresses.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("cannot resolve {host} through the upstreams"),
            ));
        }
        Ok(addresses)
    }

    /// Asks the upstreams that own `query`'s name, in order with fallback.
    pub async fn query(&self, query: Query) -> Result<UpstreamAnswer, UpstreamError> {
        let mut buf = [0u8; 256];
        let route = self.route_for(super::name_bytes(query.name(), &mut buf));
        match route {
            Some(route) => {
                let hedge = self.timeout / (route.clients.len() as u32 + 1);
                self.ask_in_order(&route.clients, query, hedge).await.0
            }
            None => {
                if !self.network.is_empty() && self.cut_off() {
                    // Cut off (a captive portal, a network that blocks outside
                    // DNS): the network's servers answer at once, so pages do not
                    // wait out the configured resolvers' share each time; one
                    // probe at a time asks a configured resolver the same question,
                    // so their return is noticed (a fast LAN server would always
                    // win a race against them).
                    self.probe_configured(&query);
                    let hedge = self.timeout / (self.network.len() as u32 + 1);
                    let (result, answered_by, _) = self.ask_in_order(&self.network, query, hedge).await;
                    self.note_health(answered_by, false);
                    return result;
                }
                let hedge = self.timeout / (self.general.len() as u32 + 1);
                let (result, answered_by, asked_configured) = self.ask_in_order(&self.general, query, hedge).await;
                self.note_health(answered_by, asked_configured);
                result
            }
        }
    }

    /// Asks the first configured resolver `query` in the background, unless a
    /// probe is out already; an answer ends the cut-off.
    fn probe_configured(&self, query: &Query) {
        let Some(client) = self.general.iter().find(|c| c.origin == Origin::Configured).cloned() else {
            return;
        };
        if self.health.probing.swap(true, Ordering::Relaxed) {
            return;
        }
        let (health, query) = (self.health.clone(), query.clone());
        tokio::spawn(async move {
            if client.ask(query).await.is_ok() {
                health.configured_answered.store(millis_now(), Ordering::Relaxed);
            }
            health.probing.store(false, Ordering::Relaxed);
        });
    }

    fn note_health(&self, answered_by: Option<Origin>, asked_configured: bool) {
        let h = &self.health;
        let now = millis_now();
        match answered_by {
            Some(Origin::Configured) => h.configured_answered.store(now, Ordering::Relaxed),
            Some(Origin::Network) => h.network_answered.store(now, Ordering::Relaxed),
            None => {}
        }
        if asked_configured && answered_by != Some(Origin::Configured) {
            // The first miss since the last answer starts the clock.
            if h.configured_missed.load(Ordering::Relaxed) <= h.configured_answered.load(Ordering::Relaxed) {
                h.configured_first_missed.store(now, Ordering::Relaxed);
            }
            h.configured_missed.store(now, Ordering::Relaxed);
        }
    }

    /// Asks `clients` in order, each joining after `hedge_after` (a fair share of
    /// the timeout) or at once when the one before failed. The result, whose
    /// server answered, and whether a configured server was asked.
    async fn ask_in_order(
        &self,
        clients: &[Arc<Client>],
        query: Query,
        hedge_after: Duration,
    ) -> (Result<UpstreamAnswer, UpstreamError>, Option<Origin>, bool) {
        if clients.is_empty() {
            return (Err(UpstreamError::NoUpstreams), None, false);
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut in_flight = JoinSet::new();
        let mut next = 0;
        let mut asked_configured = false;
        let mut last_error = String::from("no answer");
        let mut start = |next: &mut usize, in_flight: &mut JoinSet<_>| {
            let client: Arc<Client> = clients[*next].clone();
            asked_configured |= client.origin == Origin::Configured;
            let query = query.clone();
            in_flight.spawn(async move { (client.origin, client.ask(query).await) });
            *next += 1;
        };
        loop {
            if next < clients.len() && (in_flight.is_empty() || next == 0) {
                start(&mut next, &mut in_flight);
                continue;
            }
            tokio::select! {
                done = in_flight.join_next() => match done {
                    Some(Ok((origin, Ok(answer)))) => return (Ok(answer), Some(origin), asked_configured),
                    Some(Ok((_, Err(error)))) => last_error = error,
                    Some(Err(join_error)) => last_error = join_error.to_string(),
                    None => return (Err(UpstreamError::AllFailed(last_error)), None, asked_configured),
                },
                () = tokio::time::sleep(hedge_after), if next < clients.len() => start(&mut next, &mut in_flight),
                () = tokio::time::sleep_until(deadline) => {
                    return (Err(UpstreamError::Timeout(self.timeout)), None, asked_configured);
                }
            }
        }
    }
}

fn keep(client: Result<Client, String>) -> Option<Arc<Client>> {
    match client {
        Ok(client) => Some(Arc::new(client)),
        Err(error) => {
            tracing::warn!(%error, "upstream skipped");
            None
        }
    }
}

/// TLS for encrypted upstreams: the built-in web roots plus `roots` (PEM files).
fn tls_config(roots: &[PathBuf]) -> Result<rustls::ClientConfig, String> {
    let mut store = rustls::RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in ncd_proxy::load_roots(roots).map_err(|e| format!("{e:#}"))? {
        store
            .add(cert)
            .map_err(|e| format!("a certificate in upstream_roots: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(config)
}

impl Client {
    async fn ask(&self, query: Query) -> Result<UpstreamAnswer, String> {
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = true;
        options.use_edns = true;
        let result = self
            .pool
            .send(DnsRequest::from_query(query, options))
            .first_answer()
            .await;
        let answer = match result {
            Ok(response) => {
                let message = response.into_message();
                Ok(UpstreamAnswer {
                    rcode: message.metadata.response_code,
                    answers: message.answers,
                    authorities: message.authorities,
                })
            }
            // hickory reports "no records" (NXDOMAIN, or NOERROR with no data) as an
            // error; for a forwarder it is an answer like any other.
            Err(NetError::Dns(DnsError::NoRecordsFound(no_records))) => Ok(UpstreamAnswer {
                rcode: no_records.response_code,
                answers: Vec::new(),
                authorities: match (no_records.authorities, no_records.soa) {
                    (Some(authorities), _) => authorities.to_vec(),
                    (None, Some(soa)) => vec![soa.into_record_of_rdata()],
                    (None, None) => Vec::new(),
                },
            }),
            Err(error) => Err(error.to_string()),
        };
        // Each change is logged once: a TLS certificate that is refused, a server
        // that stops answering, and when it answers again. The error names no
        // query name (hickory's connection errors do not carry one).
        match &answer {
            Ok(_) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(upstream = %self.label, "upstream answers again");
            }
            Err(error) if !self.failing.swap(true, Ordering::Relaxed) => {
                let error = match &self.tls_check {
                    Some(check) => format!("{error}; {}", check.diagnose().await),
                    None => error.clone(),
                };
                tracing::warn!(upstream = %self.label, %error, "upstream failed; the next one is asked");
            }
            _ => {}
        }
        answer.map_err(|error| format!("{}: {error}", self.label))
    }
}

fn client(
    upstream: &Upstream,
    ip: IpAddr,
    origin: Origin,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Client, String> {
    let mut connections = Vec::new();
    let mut connection = |protocol: ConnectionConfig| {
        let mut protocol = protocol;
        protocol.port = upstream.port;
        connections.push(protocol);
    };
    let tls_name: Arc<str> = Arc::from(upstream.tls_name.as_deref().unwrap_or_default());
    match upstream.protocol {
        UpstreamProtocol::Udp => {
            connection(ConnectionConfig::udp());
            connection(ConnectionConfig::tcp());
        }
        UpstreamProtocol::Tcp => connection(ConnectionConfig::tcp()),
        UpstreamProtocol::Tls => connection(ConnectionConfig::tls(tls_name)),
        UpstreamProtocol::Https => {
            connection(ConnectionConfig::https(
                tls_name,
                upstream.path.as_deref().map(Arc::from),
            ));
        }
    }
    let mut server = NameServerConfig::udp_and_tcp(ip);
    server.connections = connections;
    let mut options = ResolverOpts::default();
    options.timeout = timeout;
    options.attempts = 1;
    options.num_concurrent_reqs = 1;
    options.server_ordering_strategy = ServerOrderingStrategy::UserProvidedOrder;
    options.cache_size = 0;
    let tls_check = match (&tls, upstream.protocol) {
        (Some(config), UpstreamProtocol::Tls | UpstreamProtocol::Https) => Some(TlsCheck {
            addr: std::net::SocketAddr::new(ip, upstream.port),
            name: upstream.tls_name.clone().unwrap_or_default(),
            config: config.clone(),
            alpn: match upstream.protocol {
                UpstreamProtocol::Https => vec![b"h2".to_vec()],
                _ => Vec::new(),
            },
        }),
        _ => None,
    };
    let tls = match tls {
        Some(config) => TlsConfig {
            config: (*config).clone(),
        },
        None => TlsConfig::new().map_err(|e| format!("{upstream}: cannot set up TLS: {e}"))?,
    };
    let context = Arc::new(PoolContext::new(options, tls));
    Ok(Client {
        label: upstream.to_string(),
        origin,
        tls_check,
        pool: NameServerPool::from_config([server], context, TokioRuntimeProvider::new()),
        failing: AtomicBool::new(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Link;
    use std::net::SocketAddr;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Which route a name takes: the first server's label, or "general".
    fn taken(upstreams: &Upstreams, name: &str) -> String {
        upstreams
            .route_for(name.as_bytes())
            .map_or_else(|| "general".to_string(), |r| r.clients[0].label.clone())
    }

    #[tokio::test]
    async fn local_names_go_to_the_link_that_owns_them() {
        let network = NetworkDns {
            source: "test".into(),
            links: vec![
                Link {
                    name: "wg0".into(),
                    servers: vec![addr("10.8.0.1:53")],
                    domains: vec!["corp.example".into(), "lan".into()],
                    default_route: false,
                },
                Link {
                    name: "wlan0".into(),
                    servers: vec![addr("192.168.1.1:53")],
                    domains: vec!["lan".into(), "home.example".into()],
                    default_route: true,
                },
            ],
        };
        let upstreams = Upstreams::build(UpstreamInputs {
            entries: vec!["tls://192.0.2.53#dns.example".parse().unwrap(), UpstreamEntry::System],
            network,
            roots: Vec::new(),
            timeout: Duration::from_secs(2),
        })
        .await;
        let general: Vec<&str> = upstreams.general.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            general,
            ["tls://192.0.2.53:853#dns.example", "udp://192.168.1.1:53"],
            "the network's servers in the place of \"system\""
        );
        assert_eq!(
            taken(&upstreams, "printer.lan"),
            "udp://10.8.0.1:53",
            "the first link to claim a domain has it"
        );
        assert_eq!(taken(&upstreams, "git.corp.example"), "udp://10.8.0.1:53");
        assert_eq!(taken(&upstreams, "nas.home.example"), "udp://192.168.1.1:53");
        assert_eq!(taken(&upstreams, "printer.home.arpa"), "udp://192.168.1.1:53");
        assert_eq!(taken(&upstreams, "7.1.168.192.in-addr.arpa"), "udp://192.168.1.1:53");
        assert_eq!(taken(&upstreams, "7.1.16.172.in-addr.arpa"), "udp://192.168.1.1:53");
        assert_eq!(taken(&upstreams, "1.1.1.1.in-addr.arpa"), "general");
        assert_eq!(taken(&upstreams, "notcorp.example"), "general");
        assert_eq!(taken(&upstreams, "example.com"), "general");
    }

    #[tokio::test]
    async fn system_takes_its_place_in_the_order() {
        let network = NetworkDns {
            source: "test".into(),
            links: vec![Link {
                name: "eth0".into(),
                servers: vec![addr("192.168.1.1:53")],
                domains: Vec::new(),
                default_route: true,
            }],
        };
        let build = |entries: &[&str]| {
            Upstreams::build(UpstreamInputs {
                entries: entries.iter().map(|e| e.parse().unwrap()).collect(),
                network: network.clone(),
                roots: Vec::new(),
                timeout: Duration::from_secs(2),
            })
        };
        let labels = |u: &Upstreams| u.general.iter().map(|c| c.label.clone()).collect::<Vec<_>>();
        assert_eq!(
            labels(&build(&["system", "9.9.9.9"]).await),
            ["udp://192.168.1.1:53", "udp://9.9.9.9:53"]
        );
        assert_eq!(
            labels(&build(&["9.9.9.9", "system"]).await),
            ["udp://9.9.9.9:53", "udp://192.168.1.1:53"]
        );
        assert_eq!(labels(&build(&[]).await), ["udp://192.168.1.1:53"]);
        let exactly = build(&["9.9.9.9"]).await;
        assert_eq!(labels(&exactly), ["udp://9.9.9.9:53"]);
        assert!(
            exactly.route_for(b"printer.lan").is_none(),
            "without \"system\", no local routes"
        );
    }
}
