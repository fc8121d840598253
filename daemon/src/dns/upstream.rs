//! Forwarding to the upstream resolvers: in order, with fallback, inside one deadline.
//!
//! Each configured upstream gets its own hickory `NameServerPool` (connection reuse,
//! UDP→TCP on truncation, TLS and HTTPS). [`Upstreams::query`] asks the first; when
//! it fails — or has not answered within a fair share of the timeout — the next is
//! asked too, and the first good answer wins. After `upstream_timeout` in all, the
//! caller answers SERVFAIL. The system resolver is never used: it may be ncdd.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::xfer::{DnsHandle, FirstAnswer};
use hickory_net::{DnsError, NetError};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Query, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverOpts, ServerOrderingStrategy};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};
use ncd_config::upstream::{UpstreamHost, UpstreamProtocol};
use ncd_config::{DomainName, Upstream};
use tokio::task::JoinSet;

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

struct Client {
    label: String,
    pool: NameServerPool<TokioRuntimeProvider>,
}

/// The ordered upstream list.
pub struct Upstreams {
    clients: Vec<Arc<Client>>,
    timeout: Duration,
    /// The configuration these were built from, to reuse them across reloads.
    pub source: Vec<Upstream>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<_> = self.clients.iter().map(|c| c.label.as_str()).collect();
        f.debug_struct("Upstreams")
            .field("clients", &labels)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Fallback upstreams when neither the config nor the system names any: Quad9.
pub const FALLBACK_UPSTREAMS: &[&str] = &["udp://9.9.9.9:53", "udp://149.112.112.112:53"];

/// The system's resolvers from resolv.conf text, skipping loopback and unspecified
/// addresses (ncdd may be the system's resolver and must never ask itself).
pub fn system_upstreams(resolv_conf: &str) -> Vec<Upstream> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some("nameserver")).then(|| fields.next()).flatten()
        })
        .filter_map(|addr| addr.split('%').next()?.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .map(|ip| Upstream::udp(SocketAddr::new(ip, 53)))
        .collect()
}

/// The upstreams a config means: its own list, else the system's, else Quad9.
pub fn effective_upstreams(configured: &[Upstream]) -> Vec<Upstream> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let system = std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| system_upstreams(&t))
        .unwrap_or_default();
    if !system.is_empty() {
        return system;
    }
    FALLBACK_UPSTREAMS.iter().filter_map(|s| s.parse().ok()).collect()
}

impl Upstreams {
    /// Builds the clients. Upstreams named by host name (DoH/DoT) are looked up once
    /// through the upstreams given by address; one that cannot be found is skipped
    /// with a warning.
    pub async fn build(upstreams: &[Upstream], timeout: Duration) -> Self {
        let mut by_ip = Upstreams {
            clients: Vec::new(),
            timeout,
            source: upstreams.to_vec(),
        };
        for upstream in upstreams {
            if let UpstreamHost::Ip(ip) = upstream.host {
                by_ip.push(client(upstream, ip, timeout));
            }
        }
        if upstreams.iter().all(|u| matches!(u.host, UpstreamHost::Ip(_))) {
            return by_ip;
        }
        // Second pass, keeping the configured order.
        let mut all = Upstreams {
            clients: Vec::new(),
            timeout,
            source: upstreams.to_vec(),
        };
        for upstream in upstreams {
            match &upstream.host {
                UpstreamHost::Ip(ip) => all.push(client(upstream, *ip, timeout)),
                UpstreamHost::Name(name) => match by_ip.bootstrap(name).await {
                    Some(ip) => all.push(client(upstream, ip, timeout)),
                    None => tracing::warn!(
                        %upstream,
                        "cannot find the address of this upstream through the plain upstreams; skipping it"
                    ),
                },
            }
        }
        all
    }

    fn push(&mut self, client: Result<Client, String>) {
        match client {
            Ok(client) => self.clients.push(Arc::new(client)),
            Err(error) => tracing::warn!(%error, "upstream skipped"),
        }
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
        self.clients.is_empty()
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

    /// Asks the upstreams, in order with fallback, for `query`.
    pub async fn query(&self, query: Query) -> Result<UpstreamAnswer, UpstreamError> {
        if self.clients.is_empty() {
            return Err(UpstreamError::NoUpstreams);
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        // Give each upstream a fair share before asking the next one alongside it.
        let hedge_after = self.timeout / (self.clients.len() as u32 + 1);
        let mut in_flight = JoinSet::new();
        let mut next = 0;
        let mut last_error = String::from("no answer");
        loop {
            if next < self.clients.len() && (in_flight.is_empty() || next == 0) {
                let client = self.clients[next].clone();
                let query = query.clone();
                in_flight.spawn(async move { client.ask(query).await });
                next += 1;
                continue;
            }
            tokio::select! {
                done = in_flight.join_next() => match done {
                    Some(Ok(Ok(answer))) => return Ok(answer),
                    Some(Ok(Err(error))) => last_error = error,
                    Some(Err(join_error)) => last_error = join_error.to_string(),
                    None => return Err(UpstreamError::AllFailed(last_error)),
                },
                () = tokio::time::sleep(hedge_after), if next < self.clients.len() => {
                    let client = self.clients[next].clone();
                    let query = query.clone();
                    in_flight.spawn(async move { client.ask(query).await });
                    next += 1;
                }
                () = tokio::time::sleep_until(deadline) => return Err(UpstreamError::Timeout(self.timeout)),
            }
        }
    }
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
        match result {
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
            Err(error) => {
                tracing::debug!(upstream = %self.label, %error, "upstream failed");
                Err(format!("{}: {error}", self.label))
            }
        }
    }
}

fn client(upstream: &Upstream, ip: IpAddr, timeout: Duration) -> Result<Client, String> {
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
    let tls = TlsConfig::new().map_err(|e| format!("{upstream}: cannot set up TLS: {e}"))?;
    let context = Arc::new(PoolContext::new(options, tls));
    Ok(Client {
        label: upstream.to_string(),
        pool: NameServerPool::from_config([server], context, TokioRuntimeProvider::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_upstreams_skip_loopback_and_keep_order() {
        let conf = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.1\nnameserver ::1\n\
                    nameserver fe80::1%eth0\nnameserver 0.0.0.0\nsearch lan\nnameserver 192.0.2.7\n";
        let got: Vec<String> = system_upstreams(conf).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["udp://10.0.0.1:53", "udp://[fe80::1]:53", "udp://192.0.2.7:53"]);
    }
}
