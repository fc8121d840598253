//! The listeners and the per-request path.
//!
//! Each accepted connection: the client must be loopback (or in the caller's
//! allow list); the ClientHello is peeked (rustls `LazyConfigAcceptor`); a name
//! outside the current rules or the CA's constraints, or no SNI at all, is closed
//! without an answer (the DNS side only steers names in scope, so anything else is
//! misrouted; relaying it would need a name we could not vouch for). In scope, TLS
//! is terminated with a cached leaf and HTTP/1.1 or HTTP/2 served (hyper-util
//! auto, upgrades on). Each request is judged against the rules current at that
//! moment: blocked navigations get the block page, blocked API calls the site's
//! "not found", batched calls lose the profile's entries, the rest is forwarded.
//!
//! Request bodies (forms and JSON on a site with rules) are read up to
//! [`MAX_INSPECTED_BODY`] and judged whole. The rule for a longer one: on an
//! endpoint where a body can name a profile ([`ProfileRules::body_relevant`]: the
//! API, GraphQL and route-definition paths) the first bytes are judged, and a
//! prefix that names the profile is blocked like any request; otherwise the
//! request is refused with a plain `413` (not the site's "not found": nothing says
//! it was the profile, so it is not counted as a block). Anywhere else the body is
//! forwarded unchanged, the bytes read first and then the rest as a stream.
//!
//! Slow and idle clients are cut off, so a flood or a slowloris holds little:
//! the TLS handshake (ClientHello included) must end within [`HANDSHAKE_TIMEOUT`],
//! an HTTP/1.1 request head must arrive within [`HEADER_TIMEOUT`], and a
//! connection with no request in flight that starts none for [`IDLE_TIMEOUT`]
//! (or [`BUSY_IDLE_TIMEOUT`] once three quarters of the connection slots are taken)
//! is closed, whatever bytes it trickles (an HTTP/2 request that never completes). The slots ([`connection_slots`]) follow the open-files limit, as each
//! client connection may need one to the origin; past them new connections wait in
//! the listen backlog.
//!
//! An origin that cannot be reached (refused, no address, no answer within
//! [`OriginOptions::answer_timeout`] of the request's last byte sent, reset
//! before its answer, a certificate that does not verify) gets the client a calm
//! page naming the site and what went wrong ([`block_page::origin_error_html`]): 504 for a timeout, 502 otherwise,
//! never cached. An answer whose body stalls for
//! [`OriginOptions::body_idle_timeout`] or breaks off mid-way is cut: the client
//! sees an incomplete transfer (the head is already sent), and nothing of it is
//! learned.
//!
//! Answers are forwarded as they stream. When a [`LearnedIds`] store is given,
//! allowed non-navigation answers of a JSON kind, not compressed, no longer than
//! [`MAX_LEARNED_BODY`], are also copied aside as they pass and read for ids
//! once complete (on a blocking thread); see [`crate::learn`]. So that API answers
//! can be read at all (the crate has no decoders), API requests are sent with
//! `Accept-Encoding: identity` while learning is on.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ipnet::IpNet;
use ncd_config::{Config, ProfileSite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::sync::CancellationToken;

use crate::block_page::{self, PageContext};
use crate::ca::{CaError, CaEvent, CertAuthority};
use crate::learn::{LearnedIds, MAX_LEARNED_BODY, learnable_content_type};
use crate::origin::{Body, BoxError, Origin, OriginFault, OriginOptions, OriginResolver};
use crate::sites::{Judgement, Kind, ProfileRules, RequestView, normalize_host};

/// Request bodies up to this size are buffered and judged whole; for longer
/// ones see the module's body rule.
pub const MAX_INSPECTED_BODY: usize = 1 << 20;
/// After refusing a long body, at most this much more of it is read (and thrown
/// away) so the client sees the answer rather than a reset.
const MAX_DRAINED_BODY: usize = 64 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole TLS handshake, from the first byte of the ClientHello.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1.1 request head, from its first byte (or from the end of the last
/// answer on a kept-alive connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// A connection with no request in flight that starts none this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The same once three quarters of the connection slots are taken.
pub const BUSY_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Open files kept for everything else in the process: ncdd's DNS TCP connections
/// (256 at most), its sockets, lists and state.
const RESERVED_FILES: u64 = 384;

/// One generation of what the proxy enforces: the profile rules and a CA that
/// covers their sites. The daemon swaps it with each rebuild.
#[derive(Debug, Clone)]
pub struct ProxyRules {
    pub profiles: ProfileRules,
    pub ca: Arc<CertAuthority>,
}

impl ProxyRules {
    /// Compiles `config`'s profiles and makes sure the CA in `ca_dir` covers them
    /// (reusing `previous`'s when it does). Returns `None` when no profile names
    /// anything: there is nothing to serve and no CA is made.
    pub fn build(
        config: &Config,
        ca_dir: &Path,
        previous: Option<&ProxyRules>,
    ) -> Result<Option<(Self, Vec<CaEvent>)>, CaError> {
        let profiles = ProfileRules::compile(config);
        if profiles.is_empty() {
            return Ok(None);
        }
        let domains = profiles.registrable_domains();
        if let Some(prev) = previous
            && domains.iter().all(|d| prev.ca.permitted_domains().contains(d))
        {
            return Ok(Some((
                Self {
                    profiles,
                    ca: prev.ca.clone(),
                },
                Vec::new(),
            )));
        }
        let (ca, events) = CertAuthority::load_or_create(ca_dir, &domains)?;
        Ok(Some((
            Self {
                profiles,
                ca: Arc::new(ca),
            },
            events,
        )))
    }
}

/// Where the proxy finds the rules in force. The daemon answers from its current
/// generation, so the proxy and the DNS side swap together; `None` means no
/// profile names anything now (connections are closed, requests misdirected).
pub trait RulesSource: Send + Sync + 'static {
    fn current(&self) -> Option<Arc<ProxyRules>>;
}

impl RulesSource for ArcSwap<ProxyRules> {
    fn current(&self) -> Option<Arc<ProxyRules>> {
        Some(self.load_full())
    }
}

impl RulesSource for arc_swap::ArcSwapOption<ProxyRules> {
    fn current(&self) -> Option<Arc<ProxyRules>> {
        self.load_full()
    }
}

/// What the daemon hears from the proxy, and what it tells the block page.
pub trait ProxyHooks: Send + Sync + 'static {
    /// A request was blocked (for the urge ledger). No URL, no handle.
    fn on_block(&self, site: ProfileSite, kind: Kind);
    /// Day N of M and the reason, for the block page.
    fn page_context(&self) -> PageContext {
        PageContext::default()
    }
}

/// How to serve, besides the rules.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Networks besides loopback whose clients are served.
    pub allow_clients: Vec<IpNet>,
    pub origin: OriginOptions,
    /// Ids learned from allowed answers: consulted with the rules on every request
    /// and fed from answers. `None`: no learning, the config alone. The daemon
    /// passes one store for the process (`LearnedIds::open(state.proxy_learned_ids())`),
    /// kept across rule swaps.
    pub learned: Option<Arc<LearnedIds>>,
}

struct Shared {
    rules: Arc<dyn RulesSource>,
    origin: Origin,
    answer_timeout: Duration,
    body_idle_timeout: Duration,
    hooks: Arc<dyn ProxyHooks>,
    allow: Vec<IpNet>,
    learned: Option<Arc<LearnedIds>>,
    slots: Arc<Semaphore>,
    slot_count: usize,
}

/// How many client connections the proxy serves at once: half of what the
/// open-files limit leaves after [`RESERVED_FILES`] (each client connection may
/// need one to the origin), at least 64. 320 under systemd's default of 1024.
pub fn connection_slots() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let slots = limit.saturating_sub(RESERVED_FILES) / 2;
    usize::try_from(slots.clamp(64, 1 << 20)).unwrap_or(64)
}

/// Serves on `listeners` until `shutdown` is cancelled. Rules are read per
/// connection and per request from `rules`, so a swap applies at once.
pub async fn serve(
    listeners: Vec<TcpListener>,
    rules: Arc<dyn RulesSource>,
    resolver: Arc<dyn OriginResolver>,
    hooks: Arc<dyn ProxyHooks>,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let own: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let never_trust: Vec<_> = rules.current().map(|r| r.ca.cert_der().clone()).into_iter().collect();
    let origin = Origin::new(resolver, &options.origin, own, &never_trust)?;
    let slot_count = connection_slots();
    let shared = Arc::new(Shared {
        rules,
        origin,
        answer_timeout: options.origin.answer_timeout,
        body_idle_timeout: options.origin.body_idle_timeout,
        hooks,
        allow: options.allow_clients,
        learned: options.learned,
        slots: Arc::new(Semaphore::new(slot_count)),
        slot_count,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        tasks.spawn(accept_loop(listener, shared.clone(), shutdown.clone()));
    }
    shutdown.cancelled().await;
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut full_reported = false;
    loop {
        // A free slot first: past the cap, new connections wait in the backlog.
        let slot = match shared.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !full_reported {
                    tracing::warn!(
                        slots = shared.slot_count,
                        "proxy connection slots all taken; new ones wait"
                    );
                    full_reported = true;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    slot = shared.slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if shared.slots.available_permits() > shared.slot_count / 2 {
            full_reported = false;
        }
        if !client_allowed(peer.ip(), &shared.allow) {
            tracing::debug!(%peer, "proxy client not allowed");
            continue;
        }
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = connection(tcp, shared) => {}
            }
            drop(slot);
        });
    }
}

fn client_allowed(ip: IpAddr, allow: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || allow.iter().any(|net| net.contains(&ip))
}

/// The TLS handshake: the SNI judged, a leaf for it, the session. `None` closes
/// the connection without an answer.
async fn handshake(tcp: TcpStream, shared: &Shared) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, String)> {
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
        .await
        .ok()?;
    let Some(rules) = shared.rules.current() else {
        tracing::debug!("proxy closed a connection: no profile rules are in force");
        return None;
    };
    let host = start.client_hello().server_name().map(normalize_host);
    let Some(host) = host.filter(|h| rules.profiles.site_for_host(h).is_some() && rules.ca.permits(h)) else {
        tracing::debug!("proxy closed a connection for a name out of scope");
        return None;
    };
    let config = match rules.ca.server_config(&host) {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!(error = %e, "proxy cannot mint a leaf");
            return None;
        }
    };
    match start.into_stream(config).await {
        Ok(tls) => Some((tls, host)),
        Err(e) => {
            tracing::debug!(error = %e, "proxy TLS handshake failed");
            None
        }
    }
}

async fn connection(tcp: TcpStream, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let activity = Arc::new(Activity::default());
    let (tls, host) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(tcp, &shared)).await {
        Ok(Some(done)) => done,
        Ok(None) => return,
        Err(_) => {
            tracing::debug!("proxy closed a connection whose TLS handshake took too long");
            return;
        }
    };
    let host: Arc<str> = host.into();
    let service = {
        let shared = shared.clone();
        let activity = activity.clone();
        service_fn(move |req| {
            let shared = shared.clone();
            let host = host.clone();
            let in_flight = InFlight::start(activity.clone());
            async move {
                // In flight until the answer's body is sent (or dropped).
                let resp = handle(req, &host, &shared).await.map(|body| {
                    Flight {
                        inner: body,
                        _in_flight: in_flight,
                    }
                    .boxed()
                });
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let serve = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::select! {
        served = serve => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "proxy connection ended with an error");
            }
        }
        () = idle_watch(&activity, &shared) => {
            tracing::debug!("proxy closed an idle connection");
        }
    }
}

/// Milliseconds since the first call: a clock cheap enough to read on every read.
fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(tokio::time::Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// When a connection last started or finished a request, and how many it has in
/// flight (from the request's head to the end of its answer's body).
struct Activity {
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            last_ms: AtomicU64::new(now_ms()),
            in_flight: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// A request being answered: the connection is not idle meanwhile.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// An answer's body that keeps its request [`InFlight`] until it is sent or dropped.
struct Flight {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Flight {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Returns once the connection has been idle too long: no request in flight and
/// none started or finished for [`IDLE_TIMEOUT`], or [`BUSY_IDLE_TIMEOUT`] while
/// the slots are three quarters taken. Bytes alone do not count: a client that
/// trickles an HTTP/2 request that never completes (or pings) is closed too.
async fn idle_watch(activity: &Activity, shared: &Shared) {
    loop {
        let busy = shared.slots.available_permits() < shared.slot_count / 4;
        let limit = if busy { BUSY_IDLE_TIMEOUT } else { IDLE_TIMEOUT };
        let idle = Duration::from_millis(now_ms().saturating_sub(activity.last_ms.load(Ordering::Relaxed)));
        if idle >= limit && activity.in_flight.load(Ordering::Relaxed) == 0 {
            return;
        }
        // Look again when the limit would be reached, or within a second (the
        // slots may fill meanwhile and shorten it).
        let wait = limit
            .saturating_sub(idle)
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        tokio::time::sleep(wait).await;
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn is_navigation(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok()) {
        Some(mode) => mode.eq_ignore_ascii_case("navigate"),
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html")),
    }
}

async fn handle(mut req: Request<Incoming>, host: &str, shared: &Shared) -> Response<Body> {
    // The request must be for the name the TLS session was made for.
    let authority = req.uri().authority().map(|a| a.as_str().to_string()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    });
    if authority.is_some_and(|a| normalize_host(&a) != host) {
        return text(StatusCode::MISDIRECTED_REQUEST, "misdirected request\n");
    }
    let Some(rules) = shared.rules.current() else {
        return text(StatusCode::MISDIRECTED_REQUEST, "no profile rules are in force\n");
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let navigation = is_navigation(req.headers());
    let learned = shared.learned.as_ref().map(|l| l.snapshot());
    let relevant = rules.profiles.body_relevant(host, req.uri().path());
    let wants_body = rules.profiles.wants_body(host, content_type.as_deref())
        && req.method() != http::Method::GET
        && req.method() != http::Method::HEAD;
    // A long body where it cannot name a profile is not held up at all.
    let read_first = wants_body && (relevant || declared_len.is_none_or(|n| n <= MAX_INSPECTED_BODY as u64));
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let body: Body = body.map_err(|e| Box::new(e) as BoxError).boxed();
    let (buffered, mut forward_body): (Option<Bytes>, Option<Body>) = if !read_first {
        (None, Some(body))
    } else {
        match read_prefix(body, MAX_INSPECTED_BODY).await {
            Err(e) => {
                tracing::debug!(error = %e, "proxy could not read a request body");
                return text(StatusCode::BAD_REQUEST, "the request body could not be read\n");
            }
            Ok(Read::Whole(bytes)) => (Some(bytes), None),
            Ok(Read::Longer { prefix, rest }) if relevant => {
                tokio::spawn(drain(rest));
                let view = RequestView {
                    method: parts.method.as_str(),
                    host,
                    path: parts.uri.path(),
                    query: parts.uri.query(),
                    content_type: content_type.as_deref(),
                    body: Some(&prefix),
                    navigation,
                };
                return match rules.profiles.judge_prefix(&view, learned.as_deref()) {
                    Judgement::Block { profile, site, kind } => block(shared, &profile, site, kind),
                    _ => text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large to inspect\n"),
                };
            }
            Ok(Read::Longer { prefix, rest }) => (None, Some(Prefixed::new(prefix, rest).boxed())),
        }
    };

    let view = RequestView {
        method: parts.method.as_str(),
        host,
        path: parts.uri.path(),
        query: parts.uri.query(),
        content_type: content_type.as_deref(),
        body: buffered.as_deref(),
        navigation,
    };
    let mut query = parts.uri.query().map(str::to_string);
    let mut body_bytes = buffered.clone();
    match rules.profiles.judge_with(&view, learned.as_deref()) {
        Judgement::Pass => {}
        Judgement::Block { profile, site, kind } => return block(shared, &profile, site, kind),
        Judgement::Rewrite {
            query: new_query,
            body: new_body,
        } => {
            if new_query.is_some() {
                query = new_query;
            }
            if let Some(b) = new_body {
                body_bytes = Some(Bytes::from(b));
            }
        }
    }
    // Answers to data calls (not page loads, not upgrades) are read for ids.
    let learn_from = shared.learned.clone().filter(|_| !navigation && !upgrade);

    // Forward to the origin named by the SNI.
    let path_and_query = match &query {
        Some(q) => format!("{}?{q}", parts.uri.path()),
        None => parts.uri.path().to_string(),
    };
    let Ok(uri) = Uri::builder()
        .scheme("https")
        .authority(host)
        .path_and_query(path_and_query)
        .build()
    else {
        return text(StatusCode::BAD_REQUEST, "bad request\n");
    };
    let mut out = Request::builder().method(parts.method.clone()).uri(uri);
    if let Some(headers) = out.headers_mut() {
        copy_end_to_end(&parts.headers, headers, upgrade);
        headers.remove(header::HOST);
        if let Some(b) = &body_bytes {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
        }
        // The crate has no decoders: an API answer must come uncompressed to be read.
        if learn_from.is_some() && relevant {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
    }
    // The answer timeout runs from the last byte of the request body sent, so a
    // long upload on a slow link is not cut while it still moves.
    let sending = Arc::new(AtomicU64::new(now_ms()));
    let body = match body_bytes {
        Some(b) => full(b),
        None => match forward_body.take() {
            Some(streamed) => Sending {
                inner: streamed,
                last_ms: sending.clone(),
            }
            .boxed(),
            None => full(Bytes::new()),
        },
    };
    let Ok(out) = out.body(body) else {
        return text(StatusCode::BAD_REQUEST, "bad request\n");
    };
    let client = if upgrade {
        &shared.origin.upgrade_client
    } else {
        &shared.origin.client
    };
    let mut answer = std::pin::pin!(client.request(out));
    let mut resp = loop {
        let quiet = Duration::from_millis(now_ms().saturating_sub(sending.load(Ordering::Relaxed)));
        let left = shared.answer_timeout.saturating_sub(quiet);
        if left.is_zero() {
            return origin_error(host, &rules, OriginFault::TimedOut);
        }
        match tokio::time::timeout(left, &mut answer).await {
            Ok(Ok(resp)) => break resp,
            Ok(Err(e)) => return origin_error(host, &rules, OriginFault::of(&e)),
            // Look again: the request body may have moved meanwhile.
            Err(_) => {}
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let origin_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(a), Ok(b)) = (client_upgrade.await, origin_upgrade.await) {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b)).await;
            }
        });
        let mut back = Response::new(full(Bytes::new()));
        *back.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *back.headers_mut() = resp.headers().clone();
        return back;
    }
    let (mut parts, body) = resp.into_parts();
    let mut headers = HeaderMap::new();
    copy_end_to_end(&parts.headers, &mut headers, false);
    // No HTTP/3 advertisements: browsers would try QUIC to the real site.
    headers.remove(header::ALT_SVC);
    parts.headers = headers;
    let body: Body = IdleCut::new(
        body.map_err(|e| Box::new(e) as BoxError).boxed(),
        shared.body_idle_timeout,
    )
    .boxed();
    let body = match learn_from {
        Some(store) if learnable(&parts) => {
            let site = rules.profiles.site_for_host(host);
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let rules = rules.clone();
            let on_complete = move |bytes: Bytes| {
                let Some(site) = site else { return };
                // Most answers name none of the handles: nothing to parse.
                if !rules.profiles.may_name_handle(site, &bytes) {
                    return;
                }
                // Parsing and the file write stay off the async workers.
                tokio::task::spawn_blocking(move || {
                    store.learn(&rules.profiles, site, content_type.as_deref(), &bytes);
                });
            };
            Tee::new(body, MAX_LEARNED_BODY, Box::new(on_complete)).boxed()
        }
        _ => body,
    };
    Response::from_parts(parts, body)
}

/// True for an answer worth copying aside for ids: a success of a JSON kind, not
/// compressed, not declared longer than the cap.
fn learnable(parts: &http::response::Parts) -> bool {
    let h = &parts.headers;
    let str_of = |name: HeaderName| h.get(name).and_then(|v| v.to_str().ok());
    parts.status.is_success()
        && str_of(header::CONTENT_TYPE).is_some_and(learnable_content_type)
        && str_of(header::CONTENT_ENCODING).is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"))
        && str_of(header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .is_none_or(|n| n <= MAX_LEARNED_BODY as u64)
}

/// The calm page for a site the proxy could not reach. Logged with the site and
/// the fault only (no host, no URL).
fn origin_error(host: &str, rules: &ProxyRules, fault: OriginFault) -> Response<Body> {
    let site = rules.profiles.site_for_host(host);
    tracing::warn!(
        site = site.map_or("unknown", ProfileSite::key),
        fault = fault.key(),
        "proxy could not reach a site"
    );
    let status = StatusCode::from_u16(fault.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let Some(site) = site else {
        return text(status, "the site could not be reached\n");
    };
    let mut resp = Response::new(full(Bytes::from(block_page::origin_error_html(host, site, fault))));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

fn block(shared: &Shared, profile: &str, site: ProfileSite, kind: Kind) -> Response<Body> {
    tracing::info!(site = site.key(), kind = ?kind, "proxy blocked a profile request");
    shared.hooks.on_block(site, kind);
    blocked(profile, site, kind, &shared.hooks.page_context())
}

/// A request body read up to a limit.
enum Read {
    /// All of it, no longer than the limit.
    Whole(Bytes),
    /// Longer: what was read (just over the limit) and the rest, unread.
    Longer { prefix: Bytes, rest: Body },
}

async fn read_prefix(mut body: Body, max: usize) -> Result<Read, BoxError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > max {
                return Ok(Read::Longer {
                    prefix: buf.freeze(),
                    rest: body,
                });
            }
        }
    }
    Ok(Read::Whole(buf.freeze()))
}

/// Reads and drops what is left of a refused body (bounded in size and time), so
/// an HTTP/1.1 client still sending it reads the answer instead of a reset.
async fn drain(mut rest: Body) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = rest.frame().await {
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(data.len());
                if seen > MAX_DRAINED_BODY {
                    return;
                }
            }
        }
    })
    .await;
}

/// A body that sends `first`, then `rest` as it comes.
struct Prefixed {
    first: Option<Bytes>,
    rest: Body,
}

impl Prefixed {
    fn new(first: Bytes, rest: Body) -> Self {
        Self {
            first: Some(first),
            rest,
        }
    }
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let first = self.first.as_ref().map_or(0, |b| b.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(first));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(first));
        }
        hint
    }
}

/// A request body on its way to the origin that notes when a frame last went.
struct Sending {
    inner: Body,
    last_ms: Arc<AtomicU64>,
}

impl hyper::body::Body for Sending {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            self.last_ms.store(now_ms(), Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer body that ends in an error when no frame comes for `limit`: a
/// stalled origin cuts the answer instead of holding the client forever.
struct IdleCut {
    inner: Body,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl IdleCut {
    fn new(inner: Body, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl hyper::body::Body for IdleCut {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    tracing::debug!("proxy cut an answer whose origin stalled");
                    return Poll::Ready(Some(Err("the origin stopped sending its answer".into())));
                }
                Poll::Pending
            }
            ready => {
                let next = tokio::time::Instant::now() + this.limit;
                this.deadline.as_mut().reset(next);
                ready
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body passed through frame by frame while a copy of up to `cap` bytes is
/// kept; when it ends complete and within the cap, the copy goes to `on_complete`.
/// Nothing waits for the copy: the client gets each frame as the origin sends it.
struct Tee {
    inner: Body,
    copy: Option<BytesMut>,
    cap: usize,
    on_complete: Option<Box<dyn FnOnce(Bytes) + Send + Sync>>,
}

impl Tee {
    fn new(inner: Body, cap: usize, on_complete: Box<dyn FnOnce(Bytes) + Send + Sync>) -> Self {
        Self {
            inner,
            copy: Some(BytesMut::new()),
            cap,
            on_complete: Some(on_complete),
        }
    }

    fn complete(&mut self) {
        if let (Some(copy), Some(f)) = (self.copy.take(), self.on_complete.take()) {
            f(copy.freeze());
        }
    }
}

impl hyper::body::Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(copy)) = (frame.data_ref(), this.copy.as_mut()) {
                    if copy.len().saturating_add(data.len()) > this.cap {
                        this.copy = None;
                    } else {
                        copy.extend_from_slice(data);
                    }
                }
                // The server may stop polling once the body says it has ended.
                if this.inner.is_end_stream() {
                    this.complete();
                }
            }
            Poll::Ready(None) => this.complete(),
            Poll::Ready(Some(Err(_))) => this.copy = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn blocked(profile: &str, site: ProfileSite, kind: Kind, ctx: &PageContext) -> Response<Body> {
    let (status, content_type, body) = match kind {
        Kind::Navigation => (
            StatusCode::FORBIDDEN,
            "text/html; charset=utf-8",
            Bytes::from(block_page::html(profile, site, ctx)),
        ),
        Kind::Api => {
            let (status, ct, body) = block_page::not_found(site);
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND),
                ct,
                Bytes::from_static(body.as_bytes()),
            )
        }
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) stay on their hop.
fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap, keep_upgrade: bool) {
    let mut named_in_connection: Vec<HeaderName> = Vec::new();
    for value in from.get_all(header::CONNECTION) {
        if let Ok(v) = value.to_str() {
            named_in_connection.extend(v.split(',').filter_map(|n| HeaderName::try_from(n.trim()).ok()));
        }
    }
    for (name, value) in from {
        let hop = matches!(
            name.as_str(),
            "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade"
        ) || name == header::PROXY_AUTHENTICATE
            || name == header::PROXY_AUTHORIZATION
            || named_in_connection.contains(name);
        if !hop {
            to.append(name.clone(), value.clone());
        }
    }
    if keep_upgrade && let Some(up) = from.get(header::UPGRADE) {
        to.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        to.insert(header::UPGRADE, up.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_allowed_networks_are_served() {
        let allow: Vec<IpNet> = vec!["192.168.1.0/24".parse().unwrap()];
        for ip in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "192.168.1.7"] {
            assert!(client_allowed(ip.parse().unwrap(), &allow), "{ip}");
        }
        for ip in ["192.168.2.1", "10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1"] {
            assert!(!client_allowed(ip.parse().unwrap(), &allow), "{ip}");
        }
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut from = HeaderMap::new();
        from.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-hop"));
        from.insert("x-hop", HeaderValue::from_static("1"));
        from.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        from.insert(header::COOKIE, HeaderValue::from_static("a=b"));
        let mut to = HeaderMap::new();
        copy_end_to_end(&from, &mut to, false);
        assert_eq!(to.len(), 1);
        assert!(to.contains_key(header::COOKIE));
    }

    #[test]
    fn navigation_is_read_from_fetch_metadata_then_accept() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html,*/*"));
        assert!(is_navigation(&h));
        h.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
        assert!(!is_navigation(&h));
        h.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
        assert!(is_navigation(&h));
        assert!(!is_navigation(&HeaderMap::new()));
    }
}
