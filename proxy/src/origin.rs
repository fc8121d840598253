//! The way to the real origins: a pooled HTTP/1.1 + HTTP/2 client over rustls.
//!
//! Names are resolved only through the [`OriginResolver`] the caller injects (the
//! daemon's upstreams; the system resolver may be ncdd itself, and a steered name
//! resolves to this proxy). Addresses the proxy itself listens on are refused, so
//! a misrouted name can never loop. Origins are verified against the platform
//! roots (webpki-roots) plus the configured `origin_roots` — never against ncd's
//! own CA, which is filtered out even if someone lists it.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::ca;

/// A request or response body as the proxy passes it on.
pub type Body = BoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves an origin's host name to addresses, never through the system resolver.
#[async_trait::async_trait]
pub trait OriginResolver: Send + Sync + 'static {
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>>;
}

/// The resolver as hyper-util's connector asks for it.
#[derive(Clone)]
pub(crate) struct ResolveWith {
    resolver: Arc<dyn OriginResolver>,
    port: u16,
    own: Arc<Vec<SocketAddr>>,
}

impl tower_service::Service<Name> for ResolveWith {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            // Whatever went wrong in the resolver, the page says the address was not found.
            let ips = this
                .resolver
                .resolve(name.as_str())
                .await
                .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e))?;
            let addrs: Vec<SocketAddr> = ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, this.port))
                .filter(|a| {
                    !this
                        .own
                        .iter()
                        .any(|own| own == a || (own.ip().is_unspecified() && own.port() == a.port()))
                })
                .collect();
            if addrs.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    "the origin resolved to no address but the proxy's own",
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// How long a TCP connection to an origin may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an origin may take to answer a request (connection, TLS and the
/// answer's head), unless [`OriginOptions::answer_timeout`] says otherwise.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an answer's body may go without a single byte before it is cut.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How to reach origins.
#[derive(Debug, Clone)]
pub struct OriginOptions {
    /// Trust anchors besides the platform roots (`[proxy] origin_roots`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The port origins serve on: 443, or a test origin's.
    pub port: u16,
    /// How long an origin may take to answer ([`ANSWER_TIMEOUT`]); past it the
    /// client gets a 504 page.
    pub answer_timeout: Duration,
    /// How long an answer's body may stall ([`BODY_IDLE_TIMEOUT`]); past it the
    /// answer is cut (the client sees an incomplete transfer, not a hang).
    pub body_idle_timeout: Duration,
}

impl Default for OriginOptions {
    fn default() -> Self {
        Self {
            extra_roots: Vec::new(),
            port: 443,
            answer_timeout: ANSWER_TIMEOUT,
            body_idle_timeout: BODY_IDLE_TIMEOUT,
        }
    }
}

/// What went wrong on the way to an origin, in words a person can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginFault {
    /// Nothing listens there: the site is down, or the network is.
    Refused,
    /// No address for the name (the resolver failed, or only the proxy's own).
    NoAddress,
    /// No connection or no answer within the timeout.
    TimedOut,
    /// The connection closed or was reset before a full answer.
    Closed,
    /// The certificate has expired (or is not valid yet).
    CertificateExpired,
    /// The certificate is for another name.
    CertificateWrongName,
    /// The certificate comes from an authority nobody vouches for.
    CertificateUnknownIssuer,
    /// Any other certificate or TLS failure.
    Tls,
    /// Anything else.
    Other,
}

impl OriginFault {
    /// The fault behind a client error, found by walking its sources (hyper-util
    /// wraps the connector's `io::Error`, which wraps rustls's error).
    pub fn of(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut next = Some(error);
        let mut found = Self::Other;
        while let Some(e) = next {
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                return Self::of_tls(tls);
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                match io.kind() {
                    io::ErrorKind::ConnectionRefused => return Self::Refused,
                    io::ErrorKind::TimedOut => return Self::TimedOut,
                    io::ErrorKind::AddrNotAvailable | io::ErrorKind::NotFound => return Self::NoAddress,
                    io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof => found = Self::Closed,
                    _ => {}
                }
                // io::Error::source skips the error it wraps (itself often an
                // io::Error around rustls's): go into it instead.
                if let Some(inner) = io.get_ref() {
                    next = Some(inner as &(dyn std::error::Error + 'static));
                    continue;
                }
            }
            if let Some(h) = e.downcast_ref::<hyper::Error>()
                && (h.is_incomplete_message() || h.is_canceled() || h.is_closed())
            {
                found = Self::Closed;
            }
            next = e.source();
        }
        found
    }

    fn of_tls(error: &rustls::Error) -> Self {
        use rustls::CertificateError as C;
        match error {
            rustls::Error::InvalidCertificate(c) => match c {
                C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
                    Self::CertificateExpired
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => Self::CertificateWrongName,
                // A bad signature: signed by someone else under a trusted name.
                C::UnknownIssuer | C::BadSignature => Self::CertificateUnknownIssuer,
                _ => Self::Tls,
            },
            _ => Self::Tls,
        }
    }

    /// A short key for the log: no URL, no name.
    pub fn key(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::NoAddress => "no-address",
            Self::TimedOut => "timed-out",
            Self::Closed => "closed",
            Self::CertificateExpired => "certificate-expired",
            Self::CertificateWrongName => "certificate-wrong-name",
            Self::CertificateUnknownIssuer => "certificate-unknown-issuer",
            Self::Tls => "tls",
            Self::Other => "other",
        }
    }

    /// 504 when the origin did not answer in time, 502 for everything else.
    pub fn status(self) -> u16 {
        match self {
            Self::TimedOut => 504,
            _ => 502,
        }
    }
}

/// Reads PEM trust anchors (the `origin_roots` files).
pub fn load_roots(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let mut roots = Vec::new();
    for path in paths {
        let mut found = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read certificates: {e}", path.display()))?
        {
            roots.push(cert.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?);
            found += 1;
        }
        if found == 0 {
            anyhow::bail!("{}: no certificate in the file", path.display());
        }
    }
    Ok(roots)
}

pub(crate) type Connector = HttpsConnector<HttpConnector<ResolveWith>>;

/// Pooled clients to the origins: one for HTTP/1.1 and HTTP/2 by ALPN, one
/// HTTP/1.1-only for upgrades (WebSocket).
#[derive(Clone)]
pub struct Origin {
    pub(crate) client: Client<Connector, Body>,
    pub(crate) upgrade_client: Client<Connector, Body>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin").finish_non_exhaustive()
    }
}

impl Origin {
    /// `own` are the proxy's listen addresses (never connected to); `never_trust`
    /// are certificates (ncd's CA) removed from the trust anchors whatever the config says.
    pub fn new(
        resolver: Arc<dyn OriginResolver>,
        options: &OriginOptions,
        own: Vec<SocketAddr>,
        never_trust: &[CertificateDer<'static>],
    ) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for root in options.extra_roots.iter().filter(|r| !never_trust.contains(r)) {
            roots.add(root.clone())?;
        }
        let roots = Arc::new(roots);
        let tls = || -> anyhow::Result<rustls::ClientConfig> {
            Ok(rustls::ClientConfig::builder_with_provider(ca::provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots.clone())
                .with_no_client_auth())
        };
        let resolve = ResolveWith {
            resolver,
            port: options.port,
            own: Arc::new(own),
        };
        let http = || {
            let mut http = HttpConnector::new_with_resolver(resolve.clone());
            http.enforce_http(false);
            http.set_connect_timeout(Some(CONNECT_TIMEOUT));
            http.set_nodelay(true);
            http
        };
        let both = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls()?)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http());
        let h1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls()?)
            .https_only()
            .enable_http1()
            .wrap_connector(http());
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(both);
        let upgrade_client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(h1);
        Ok(Self { client, upgrade_client })
    }
}
