//! Origin faults, end to end on loopback: the proxy in front of a local origin
//! that can be made to refuse connections (down), answer after 3 s, never answer,
//! reset before or in the middle of its answer, stall mid-body, or present a
//! certificate for another name, from an unknown CA, or expired.
//!
//! What a person would notice: a calm page naming the site and what went wrong
//! (502, or 504 for a timeout) instead of a hang or a bare drop; no wait past the
//! documented timeouts; and the next request after the origin recovers works —
//! nothing of the fault is kept (no pooled dead connection, no id learned from a
//! cut answer). Each case runs over HTTP/1.1 and HTTP/2 from the client.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ncd_config::{Config, ProfileSite};
use ncd_proxy::block_page::{BLOCK_MARKER, ORIGIN_ERROR_MARKER};
use ncd_proxy::{Kind, LearnedIds, OriginOptions, OriginResolver, ProxyHooks, ProxyRules, ServeOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[[profile]]
name = "ex"
instagram = ["exname"]
"#;

/// The answer timeout the proxy runs with here: longer than the slow origin's 3 s.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The body-stall timeout the proxy runs with here.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// How the origin behaves for the next connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Good,
    /// Answers after 3 s.
    Slow,
    /// Reads the request and never answers.
    Never,
    /// Reads the request and resets the connection.
    ResetBefore,
    /// Sends the head and part of a JSON body naming the ex with id 991, then resets.
    ResetMid,
    /// Sends the head and part of the body, then nothing more.
    StallMid,
    /// A certificate for www.example.org.
    WrongName,
    /// A certificate for the right name from a CA the proxy does not trust.
    UnknownCa,
    /// A certificate for the right name from the trusted CA, expired in 2021.
    Expired,
}

const MODES: [Mode; 9] = [
    Mode::Good,
    Mode::Slow,
    Mode::Never,
    Mode::ResetBefore,
    Mode::ResetMid,
    Mode::StallMid,
    Mode::WrongName,
    Mode::UnknownCa,
    Mode::Expired,
];

/// A good answer; at `/api/v1/teach/` one that pairs the ex with id 992.
const GOOD: &str = r#"{"users":[{"username":"someone","pk":"111"}],"status":"ok"}"#;
const TEACH: &str = r#"{"users":[{"username":"exname","pk":"992"}],"status":"ok"}"#;
/// The start of an answer that would pair the ex with id 991, were it complete.
const CUT: &str = r#"{"users":[{"username":"exname","pk":"991"}],"pad":""#;

/// The origin's certificates: one per certificate mode, chosen at each handshake.
#[derive(Debug)]
struct ByMode {
    mode: Arc<AtomicU8>,
    good: Arc<CertifiedKey>,
    wrong_name: Arc<CertifiedKey>,
    unknown_ca: Arc<CertifiedKey>,
    expired: Arc<CertifiedKey>,
}

impl ResolvesServerCert for ByMode {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match MODES[usize::from(self.mode.load(Ordering::SeqCst))] {
            Mode::WrongName => self.wrong_name.clone(),
            Mode::UnknownCa => self.unknown_ca.clone(),
            Mode::Expired => self.expired.clone(),
            _ => self.good.clone(),
        })
    }
}

fn test_ca(name: &str) -> (Issuer<'static, KeyPair>, CertificateDer<'static>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (Issuer::new(params, key), cert.der().clone())
}

fn leaf(issuer: &Issuer<'static, KeyPair>, name: &str, expired: bool) -> Arc<CertifiedKey> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, issuer).unwrap();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
    Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// The local origin, HTTP/1.1 over TLS, one answer per connection.
struct FaultOrigin {
    mode: Arc<AtomicU8>,
    /// Request heads the origin has read: what reached it.
    heads: Arc<AtomicUsize>,
    port: u16,
    root: CertificateDer<'static>,
    acceptor: tokio_rustls::TlsAcceptor,
    accepting: Option<tokio::task::JoinHandle<()>>,
}

impl FaultOrigin {
    async fn start() -> Self {
        let (issuer, root) = test_ca("the origin's test CA");
        let (stranger, _) = test_ca("a stranger's CA");
        let mode = Arc::new(AtomicU8::new(Mode::Good as u8));
        let certs = ByMode {
            mode: mode.clone(),
            good: leaf(&issuer, "www.instagram.com", false),
            wrong_name: leaf(&issuer, "www.example.org", false),
            unknown_ca: leaf(&stranger, "www.instagram.com", false),
            expired: leaf(&issuer, "www.instagram.com", true),
        };
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(certs));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // No resumption: each connection shows the certificate of the moment (a
        // resumed session would skip it, as it does for browsers).
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut origin = Self {
            mode,
            heads: Arc::new(AtomicUsize::new(0)),
            port: listener.local_addr().unwrap().port(),
            root,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            accepting: None,
        };
        origin.listen(listener);
        origin
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Stops listening: connections to the port are refused.
    async fn down(&mut self) {
        if let Some(task) = self.accepting.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    async fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.listen(listener);
    }

    fn listen(&mut self, listener: TcpListener) {
        let (acceptor, mode, heads) = (self.acceptor.clone(), self.mode.clone(), self.heads.clone());
        self.accepting = Some(tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, mode, heads) = (acceptor.clone(), mode.clone(), heads.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(path) = read_request(&mut tls).await else {
                        return;
                    };
                    heads.fetch_add(1, Ordering::SeqCst);
                    let answer = |body: &str, declared: usize| {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\nconnection: close\r\n\r\n{body}"
                        )
                    };
                    let good = if path == "/api/v1/teach/" { TEACH } else { GOOD };
                    match MODES[usize::from(mode.load(Ordering::SeqCst))] {
                        Mode::Slow => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            let _ = tls.write_all(answer(good, good.len()).as_bytes()).await;
                        }
                        Mode::Never => tokio::time::sleep(Duration::from_secs(3600)).await,
                        Mode::ResetBefore => {
                            let _ = tls.get_ref().0.set_zero_linger();
                            return;
                        }
                        Mode::ResetMid | Mode::StallMid => {
                            let _ = tls.write_all(answer(CUT, 4096).as_bytes()).await;
                            let _ = tls.flush().await;
                            if MODES[usize::from(mode.load(Ordering::SeqCst))] == Mode::StallMid {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let _ = tls.get_ref().0.set_zero_linger();
                            return;
                        }
                        _ => {
                            let _ = tls.write_all(answer(good, good.len()).as_bytes()).await;
                        }
                    }
                    let _ = tls.shutdown().await;
                });
            }
        }));
    }
}

/// Reads one request (head and a body of the declared length); its path.
async fn read_request(tls: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tls.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let chunked = head.contains("transfer-encoding: chunked");
    // A chunked body ends with its zero-length chunk (no trailers here).
    while buf.len() < end + length || (chunked && !buf[end..].ends_with(b"0\r\n\r\n")) {
        let n = tls.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    head.split(' ').nth(1).map(str::to_string)
}

struct Loopback;

#[async_trait::async_trait]
impl OriginResolver for Loopback {
    async fn resolve(&self, _host: &str) -> io::Result<Vec<IpAddr>> {
        Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
    }
}

#[derive(Default)]
struct Ledger(Mutex<Vec<(ProfileSite, Kind)>>);

impl ProxyHooks for Ledger {
    fn on_block(&self, site: ProfileSite, kind: Kind) {
        self.0.lock().unwrap().push((site, kind));
    }
}

/// A resolver whose upstreams are all down.
struct NoAnswer;

#[async_trait::async_trait]
impl OriginResolver for NoAnswer {
    async fn resolve(&self, _host: &str) -> io::Result<Vec<IpAddr>> {
        Err(io::Error::other("every upstream failed"))
    }
}

struct Running {
    origin: FaultOrigin,
    proxy: SocketAddr,
    ca_pem: String,
    ledger: Arc<Ledger>,
    learned: Arc<LearnedIds>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Running {
    start_resolving_with(Arc::new(Loopback)).await
}

async fn start_resolving_with(resolver: Arc<dyn OriginResolver>) -> Running {
    let origin = FaultOrigin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
    let (rules, _) = ProxyRules::build(&config, &dir.path().join("ca"), None)
        .unwrap()
        .unwrap();
    let ca_pem = rules.ca.cert_pem().to_string();
    let (learned, _) = LearnedIds::open(dir.path().join("proxy-learned.json"));
    let learned = Arc::new(learned);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let ledger = Arc::new(Ledger::default());
    let shutdown = CancellationToken::new();
    let options = ServeOptions {
        allow_clients: Vec::new(),
        origin: OriginOptions {
            extra_roots: vec![origin.root.clone()],
            port: origin.port,
            answer_timeout: ANSWER_TIMEOUT,
            body_idle_timeout: BODY_IDLE_TIMEOUT,
        },
        learned: Some(learned.clone()),
    };
    tokio::spawn(ncd_proxy::serve(
        vec![listener],
        Arc::new(ArcSwap::from_pointee(rules)) as Arc<dyn ncd_proxy::RulesSource>,
        resolver,
        ledger.clone(),
        options,
        shutdown.clone(),
    ));
    Running {
        origin,
        proxy,
        ca_pem,
        ledger,
        learned,
        shutdown,
        _dir: dir,
    }
}

/// A client that trusts only ncd's CA and reaches www.instagram.com at the proxy;
/// its own timeout is far past the proxy's, so a hang shows as a failure.
fn client(run: &Running, http2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(run.ca_pem.as_bytes()).unwrap())
        .resolve("www.instagram.com", run.proxy)
        .timeout(Duration::from_secs(60))
        .no_proxy();
    let builder = if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder.build().unwrap()
}

fn url(run: &Running, path: &str) -> String {
    format!("https://www.instagram.com:{}{path}", run.proxy.port())
}

/// A page load of `path`, as a browser sends it: (status, body, how long it took).
async fn navigate(run: &Running, http2: bool, path: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let resp = client(run, http2)
        .get(url(run, path))
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.text().await.unwrap();
    if status >= 500 {
        assert_eq!(cache.as_deref(), Some("no-store"), "an error page is never cached");
    }
    (status, body, started.elapsed())
}

/// The error page for `fault_words`: status, styling, the site, the words.
fn assert_error_page(status: u16, body: &str, want_status: u16, fault_words: &str) {
    assert_eq!(status, want_status, "{body}");
    assert!(body.contains(ORIGIN_ERROR_MARKER), "{body}");
    assert!(!body.contains(BLOCK_MARKER), "not the block page: {body}");
    assert!(body.contains("Instagram could not be reached."), "{body}");
    assert!(body.contains("www.instagram.com"), "names the host: {body}");
    assert!(body.contains(fault_words), "{fault_words:?} in {body}");
    assert!(body.contains("<style>"), "the block page's styling: {body}");
}

/// The origin answers normally again: the next page load gets its answer.
async fn assert_recovered(run: &Running, http2: bool) {
    let (status, body, _) = navigate(run, http2, "/someone/").await;
    assert_eq!((status, body.as_str()), (200, GOOD));
}

#[tokio::test]
async fn an_origin_that_is_down_gets_a_502_page_and_the_first_request_after_it_is_back_passes() {
    let mut run = start().await;
    for http2 in [false, true] {
        assert_recovered(&run, http2).await; // a pooled connection exists now
        run.origin.down().await;
        let (status, body, _) = navigate(&run, http2, "/someone/").await;
        assert_error_page(status, &body, 502, "refused the connection");
        run.origin.up().await;
        assert_recovered(&run, http2).await;
    }
    assert!(run.ledger.0.lock().unwrap().is_empty(), "a fault is not a block");
}

#[tokio::test]
async fn a_name_that_does_not_resolve_gets_a_502_page_saying_so() {
    let run = start_resolving_with(Arc::new(NoAnswer)).await;
    for http2 in [false, true] {
        let (status, body, _) = navigate(&run, http2, "/someone/").await;
        assert_error_page(status, &body, 502, "its address could not be found");
    }
    assert_eq!(run.origin.heads.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_slow_origin_is_waited_for_and_one_that_never_answers_gets_a_504_page_at_the_timeout() {
    let run = start().await;
    for http2 in [false, true] {
        run.origin.set(Mode::Slow);
        let (status, body, took) = navigate(&run, http2, "/someone/").await;
        assert_eq!((status, body.as_str()), (200, GOOD), "3 s is within the timeout");
        assert!(took >= Duration::from_secs(3), "{took:?}");

        run.origin.set(Mode::Never);
        let (status, body, took) = navigate(&run, http2, "/someone/").await;
        assert_error_page(status, &body, 504, "did not answer in time");
        assert!(took >= ANSWER_TIMEOUT, "not before the timeout: {took:?}");
        assert!(
            took < ANSWER_TIMEOUT + Duration::from_secs(10),
            "no hang past it: {took:?}"
        );

        run.origin.set(Mode::Good);
        assert_recovered(&run, http2).await;
    }
}

#[tokio::test]
async fn an_origin_that_resets_gets_a_502_page_before_its_answer_and_a_cut_answer_after_it_and_nothing_is_learned() {
    let run = start().await;
    for http2 in [false, true] {
        run.origin.set(Mode::ResetBefore);
        let (status, body, _) = navigate(&run, http2, "/someone/").await;
        assert_error_page(status, &body, 502, "closed the connection before it answered");

        // The head is out when the reset comes: the client sees an incomplete
        // answer (an error, not a hang) — and the ids in the part that came are
        // not learned.
        run.origin.set(Mode::ResetMid);
        let resp = client(&run, http2)
            .get(url(&run, "/api/v1/friendships/111/followers/"))
            .header("sec-fetch-mode", "cors")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.is_err(), "a cut answer is not passed on as whole");

        run.origin.set(Mode::Good);
        assert_recovered(&run, http2).await;
    }
    // A complete answer is learned; the learning works, so the cut one's absence means something.
    let resp = client(&run, false)
        .get(url(&run, "/api/v1/teach/"))
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), TEACH);
    let deadline = Instant::now() + Duration::from_secs(20);
    while run
        .learned
        .snapshot()
        .handle_for(ProfileSite::Instagram, "992")
        .is_none()
    {
        assert!(Instant::now() < deadline, "the complete answer was never learned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(run.learned.snapshot().handle_for(ProfileSite::Instagram, "991"), None);
}

/// A request body that comes a piece a second for `pieces` seconds.
struct Trickle {
    left: usize,
    next: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl hyper::body::Body for Trickle {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let sleep = self
            .next
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_secs(1))));
        std::task::ready!(sleep.as_mut().poll(cx));
        self.next = None;
        self.left -= 1;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
            b"0123456789",
        )))))
    }
}

/// The answer timeout runs from the request's last byte: an upload that takes
/// longer than it, still moving, is not cut.
#[tokio::test]
async fn an_upload_longer_than_the_answer_timeout_is_not_cut() {
    let run = start().await;
    for http2 in [false, true] {
        let pieces = ANSWER_TIMEOUT.as_secs() as usize + 3;
        let started = Instant::now();
        let resp = client(&run, http2)
            .post(url(&run, "/upload/"))
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap(Trickle {
                left: pieces,
                next: None,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "after {:?}", started.elapsed());
        assert_eq!(resp.text().await.unwrap(), GOOD);
        assert!(
            started.elapsed() > ANSWER_TIMEOUT,
            "the upload took longer than the timeout"
        );
    }
}

#[tokio::test]
async fn an_answer_that_stalls_mid_body_is_cut_at_the_body_timeout() {
    let run = start().await;
    for http2 in [false, true] {
        run.origin.set(Mode::StallMid);
        let started = Instant::now();
        let resp = client(&run, http2)
            .get(url(&run, "/someone/"))
            .header("sec-fetch-mode", "cors")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.is_err(), "a stalled answer ends in an error");
        let took = started.elapsed();
        assert!(took >= BODY_IDLE_TIMEOUT, "{took:?}");
        assert!(
            took < BODY_IDLE_TIMEOUT + Duration::from_secs(10),
            "no hang past it: {took:?}"
        );
        run.origin.set(Mode::Good);
        assert_recovered(&run, http2).await;
    }
}

#[tokio::test]
async fn an_origin_with_a_bad_certificate_gets_a_502_page_saying_so_and_is_sent_nothing() {
    let run = start().await;
    for http2 in [false, true] {
        for (mode, words) in [
            (Mode::WrongName, "is not for www.instagram.com"),
            (Mode::UnknownCa, "comes from an authority this computer does not trust"),
            (Mode::Expired, "certificate has expired"),
        ] {
            run.origin.set(mode);
            let heads = run.origin.heads.load(Ordering::SeqCst);
            let (status, body, _) = navigate(&run, http2, "/someone/").await;
            assert_error_page(status, &body, 502, words);
            assert!(body.contains("Nothing was sent to it."), "{body}");
            assert_eq!(
                run.origin.heads.load(Ordering::SeqCst),
                heads,
                "{mode:?}: no request reached it"
            );
            run.origin.set(Mode::Good);
            assert_recovered(&run, http2).await;
        }
    }
}

/// What the proxy logs at info and above, in this test binary.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The new error paths keep the logs rule: the site and the fault, never the
/// host, the path, a handle or a cookie.
#[tokio::test]
async fn faults_are_logged_with_the_site_and_the_fault_only() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut run = start().await;
    run.origin.set(Mode::Expired);
    let resp = client(&run, false)
        .get(url(&run, "/exname/?igsh=secretquery"))
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .header("cookie", "sessionid=secretcookie")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "the profile is still blocked first");
    let resp = client(&run, false)
        .post(url(&run, "/api/v1/web/search/"))
        .header("cookie", "sessionid=secretcookie")
        .header("content-type", "application/json")
        .body(r#"{"query":"secretbody"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    run.origin.set(Mode::Good);
    run.origin.down().await;
    let (status, _, _) = navigate(&run, false, "/someone/?x=secretquery").await;
    assert_eq!(status, 502);
    run.shutdown.cancel();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("proxy could not reach a site site=\"instagram\" fault=\"certificate-expired\""),
        "{text}"
    );
    assert!(text.contains("fault=\"refused\""), "{text}");
    for secret in [
        "exname",
        "someone",
        "secretquery",
        "secretcookie",
        "secretbody",
        "search",
        "www.instagram.com",
    ] {
        assert!(!text.contains(secret), "{secret:?} in the logs:\n{text}");
    }
}
