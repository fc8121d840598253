//! The proxy end to end, on loopback only: a fake origin with its own test CA (given
//! as an origin root), the proxy with a CA in a temp dir and a resolver that maps
//! every name to 127.0.0.1, and a client that trusts only ncd's CA and connects to
//! the proxy with the SNI of www.instagram.com. No real DNS, no other address.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ncd_config::{Config, ProfileSite};
use ncd_proxy::block_page::BLOCK_MARKER;
use ncd_proxy::{Kind, LearnedIds, OriginOptions, OriginResolver, PageContext, ProxyHooks, ProxyRules, ServeOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[[profile]]
name = "ex"
instagram = ["exname", "1234567890"]
"#;

/// An allowed answer that names the ex in passing: someone's followers.
const FOLLOWERS: &str = r#"{"users":[{"username":"someone","pk":"111","is_private":false},{"username":"exname","pk":"987","full_name":"E"}],"status":"ok"}"#;

/// A search answer, streamed in two pieces.
const SEARCH: &str = r#"{"users":[{"position":0,"user":{"username":"exname","pk":"988","pk_id":"988"}}]}"#;

/// A JSON answer over the learning cap that pairs the ex with 989 at its start.
fn big_answer() -> Vec<u8> {
    let pad = "x".repeat(ncd_proxy::learn::MAX_LEARNED_BODY);
    format!(r#"{{"users":[{{"username":"exname","pk":"989"}}],"pad":"{pad}"}}"#).into_bytes()
}

/// A body in pieces; without a known length unless made with `full`.
struct Chunks {
    pieces: std::collections::VecDeque<Bytes>,
    exact: Option<u64>,
}

impl Chunks {
    fn full(bytes: Vec<u8>) -> Self {
        Self {
            exact: Some(bytes.len() as u64),
            pieces: [Bytes::from(bytes)].into(),
        }
    }

    fn streamed(pieces: Vec<Vec<u8>>) -> Self {
        Self {
            exact: None,
            pieces: pieces.into_iter().map(Bytes::from).collect(),
        }
    }
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        std::task::Poll::Ready(self.pieces.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.exact
            .map_or_else(hyper::body::SizeHint::default, hyper::body::SizeHint::with_exact)
    }
}

/// Bytes the origin serves for another person's profile: not text, not the same twice.
fn other_profile_bytes() -> Vec<u8> {
    (0..70_000u32).map(|i| (i * 7 + i / 251) as u8).collect()
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
    fn page_context(&self) -> PageContext {
        PageContext {
            day: Some((3, 60)),
            reason: Some("I want my evenings back".into()),
        }
    }
}

/// A stand-in for the real site: its own CA, h1 and h2, a few routes.
async fn fake_origin() -> (SocketAddr, CertificateDer<'static>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["www.instagram.com".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let path = req.uri().path().to_string();
                    let json = |body: Chunks| {
                        let mut resp = Response::new(body);
                        resp.headers_mut()
                            .insert("content-type", "application/json; charset=utf-8".parse().unwrap());
                        Ok(resp)
                    };
                    if path == "/ws/" {
                        // A WebSocket-style upgrade: 101, then an echo of whatever comes.
                        let mut req = req;
                        let upgraded = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            use tokio::io::{AsyncReadExt, AsyncWriteExt};
                            let Ok(upgraded) = upgraded.await else { return };
                            let mut io = TokioIo::new(upgraded);
                            let mut buf = [0u8; 64];
                            while let Ok(n) = io.read(&mut buf).await {
                                if n == 0 || io.write_all(&[b"echo:".as_slice(), &buf[..n]].concat()).await.is_err() {
                                    return;
                                }
                            }
                        });
                        let mut resp = Response::new(Chunks::full(Vec::new()));
                        *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
                        resp.headers_mut().insert("upgrade", "websocket".parse().unwrap());
                        resp.headers_mut().insert("connection", "upgrade".parse().unwrap());
                        return Ok(resp);
                    }
                    match path.as_str() {
                        "/api/v1/friendships/111/followers/" => {
                            return json(Chunks::full(FOLLOWERS.as_bytes().to_vec()));
                        }
                        // Streamed (chunked on HTTP/1.1, no length on HTTP/2), cut mid-object.
                        "/api/v1/web/search/topsearch/" => {
                            let (a, b) = SEARCH.split_at(SEARCH.len() / 2);
                            return json(Chunks::streamed(vec![a.as_bytes().to_vec(), b.as_bytes().to_vec()]));
                        }
                        "/api/v1/big/" => return json(Chunks::full(big_answer())),
                        "/api/v1/accept-encoding/" => {
                            let ae = req
                                .headers()
                                .get("accept-encoding")
                                .map(|v| v.to_str().unwrap().to_string());
                            return Ok(Response::new(Chunks::full(ae.unwrap_or_default().into_bytes())));
                        }
                        _ => {}
                    }
                    let query = req.uri().query().unwrap_or("").to_string();
                    let body = req.into_body().collect().await?.to_bytes();
                    let reply: Vec<u8> = match path.as_str() {
                        "/otherperson/" => other_profile_bytes(),
                        "/exname/" => b"the ex's profile: the proxy must never show this".to_vec(),
                        "/api/v1/feed/reels_media/" => format!("origin saw: {query}").into_bytes(),
                        _ => [b"echo: ".as_slice(), &body].concat(),
                    };
                    let mut resp = Response::new(Chunks::full(reply));
                    resp.headers_mut().insert("alt-svc", "h3=\":443\"".parse().unwrap());
                    Ok::<_, hyper::Error>(resp)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, ca_cert.der().clone())
}

struct Running {
    proxy: SocketAddr,
    ca_pem: String,
    ledger: Arc<Ledger>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    start_with(None).await
}

async fn start_with(learned: Option<Arc<LearnedIds>>) -> Running {
    let (origin, origin_root) = fake_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
    let (rules, events) = ProxyRules::build(&config, dir.path(), None).unwrap().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let ca_pem = rules.ca.cert_pem().to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let ledger = Arc::new(Ledger::default());
    let shutdown = CancellationToken::new();
    let options = ServeOptions {
        allow_clients: Vec::new(),
        origin: OriginOptions {
            extra_roots: vec![origin_root],
            port: origin.port(),
            ..OriginOptions::default()
        },
        learned,
    };
    tokio::spawn(ncd_proxy::serve(
        vec![listener],
        Arc::new(ArcSwap::from_pointee(rules)) as Arc<dyn ncd_proxy::RulesSource>,
        Arc::new(Loopback),
        ledger.clone(),
        options,
        shutdown.clone(),
    ));
    Running {
        proxy,
        ca_pem,
        ledger,
        shutdown,
        _dir: dir,
    }
}

fn client(run: &Running, host: &str, http2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(run.ca_pem.as_bytes()).unwrap())
        .resolve(host, run.proxy)
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

async fn each_protocol(check: impl AsyncFn(&Running, reqwest::Client, reqwest::Version)) {
    let run = start().await;
    for (http2, version) in [(false, reqwest::Version::HTTP_11), (true, reqwest::Version::HTTP_2)] {
        check(&run, client(&run, "www.instagram.com", http2), version).await;
    }
    run.shutdown.cancel();
}

#[tokio::test]
async fn the_profile_page_gets_the_block_page() {
    each_protocol(async |run, client, version| {
        let resp = client
            .get(url(run, "/ExName/"))
            .header("accept", "text/html")
            .header("sec-fetch-mode", "navigate")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 403);
        let page = resp.text().await.unwrap();
        assert!(page.contains(BLOCK_MARKER), "{page}");
        assert!(page.contains("Day 3 of 60.") && page.contains("I want my evenings back"));
        assert!(!page.contains("never show this"));
    })
    .await;
}

#[tokio::test]
async fn an_api_call_for_the_profile_gets_the_sites_not_found() {
    let run = start().await;
    for http2 in [false, true] {
        let resp = client(&run, "www.instagram.com", http2)
            .get(url(&run, "/api/v1/users/web_profile_info/?username=exname"))
            .header("sec-fetch-mode", "cors")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(body["status"], "fail");
    }
    let ledger = run.ledger.0.lock().unwrap().clone();
    assert_eq!(ledger, [(ProfileSite::Instagram, Kind::Api); 2]);
    run.shutdown.cancel();
}

#[tokio::test]
async fn another_profile_passes_byte_for_byte() {
    each_protocol(async |run, client, version| {
        let resp = client
            .get(url(run, "/otherperson/"))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("alt-svc").is_none(), "no HTTP/3 advertisement");
        assert_eq!(resp.bytes().await.unwrap().to_vec(), other_profile_bytes());
    })
    .await;
}

#[tokio::test]
async fn a_post_body_passes_through_and_a_batch_loses_only_the_profile() {
    each_protocol(async |run, client, _| {
        let body = "doc_id=1&variables=%7B%22username%22%3A%22someone%22%7D";
        let resp = client
            .post(url(run, "/graphql/query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), format!("echo: {body}"));

        let blocked = client
            .post(url(run, "/graphql/query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("doc_id=1&variables=%7B%22id%22%3A%221234567890%22%7D")
            .send()
            .await
            .unwrap();
        assert_eq!(blocked.status(), 404);

        let resp = client
            .get(url(
                run,
                "/api/v1/feed/reels_media/?reel_ids=111&reel_ids=1234567890&reel_ids=222",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), "origin saw: reel_ids=111&reel_ids=222");
    })
    .await;
}

#[tokio::test]
async fn a_name_out_of_scope_is_closed() {
    let run = start().await;
    let err = client(&run, "www.example.org", false)
        .get(format!("https://www.example.org:{}/", run.proxy.port()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    // A site without profile rules is out of scope too.
    assert!(
        client(&run, "x.com", false)
            .get(format!("https://x.com:{}/", run.proxy.port()))
            .send()
            .await
            .is_err()
    );
    run.shutdown.cancel();
}

/// Waits for `cond` with a deadline; never a fixed sleep.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn graphql_by_id(run: &Running, http2: bool, id: &str) -> reqwest::Response {
    let variables = format!("{{\"id\":\"{id}\"}}");
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("doc_id", "1")
        .append_pair("variables", &variables)
        .finish();
    client(run, "www.instagram.com", http2)
        .post(url(run, "/graphql/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_id_learned_from_an_allowed_answer_is_blocked_and_kept() {
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("proxy-learned.json");
    let (store, problem) = LearnedIds::open(&file);
    assert!(problem.is_none());
    let store = Arc::new(store);
    let run = start_with(Some(store.clone())).await;

    // Before: nothing pairs 987 with the ex.
    assert_eq!(graphql_by_id(&run, false, "987").await.status(), 200);

    // An allowed answer mentions the ex in passing; it reaches the client unchanged.
    let resp = client(&run, "www.instagram.com", true)
        .get(url(&run, "/api/v1/friendships/111/followers/"))
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), FOLLOWERS);
    eventually("the id to be learned and saved", || {
        store.snapshot().handle_for(ProfileSite::Instagram, "987").is_some() && file.exists()
    })
    .await;
    assert!(store.snapshot().handle_for(ProfileSite::Instagram, "111").is_none());

    for http2 in [false, true] {
        let blocked = graphql_by_id(&run, http2, "987").await;
        assert_eq!(blocked.status(), 404);
        assert_eq!(graphql_by_id(&run, http2, "111").await.status(), 200);
    }
    run.shutdown.cancel();

    // A new proxy on the same file blocks the id at once.
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved["sites"]["instagram"]["exname"], serde_json::json!(["987"]));
    let (again, problem) = LearnedIds::open(&file);
    assert!(problem.is_none());
    let run = start_with(Some(Arc::new(again))).await;
    for http2 in [false, true] {
        assert_eq!(graphql_by_id(&run, http2, "987").await.status(), 404);
    }
    let ledger = run.ledger.0.lock().unwrap().clone();
    assert_eq!(ledger, [(ProfileSite::Instagram, Kind::Api); 2]);
    run.shutdown.cancel();
}

/// A form body of `len` bytes or more: `variables` JSON naming `id`, padded.
fn long_form(id: &str, len: usize) -> String {
    let pad = "A".repeat(len);
    let variables = format!("{{\"id\":\"{id}\",\"pad\":\"{pad}\"}}");
    form_urlencoded::Serializer::new(String::new())
        .append_pair("doc_id", "1")
        .append_pair("variables", &variables)
        .finish()
}

#[tokio::test]
async fn a_body_longer_than_the_buffer_follows_the_rule() {
    let over = ncd_proxy::server::MAX_INSPECTED_BODY + 100_000;
    each_protocol(async |run, client, version| {
        let form = "application/x-www-form-urlencoded";
        // An API endpoint, and the first bytes name the profile: blocked.
        let resp = client
            .post(url(run, "/graphql/query"))
            .header("content-type", form)
            .body(long_form("1234567890", over))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 404);
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(body["status"], "fail");

        // An API endpoint, and the first bytes name nobody: the rest could, so 413.
        let resp = client
            .post(url(run, "/graphql/query"))
            .header("content-type", form)
            .body(long_form("5555", over))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413);

        // The same size where a body cannot name a profile: forwarded unchanged.
        let body = long_form("5555", over);
        let resp = client
            .post(url(run, "/accounts/edit/"))
            .header("content-type", form)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let echoed = resp.bytes().await.unwrap();
        assert!(echoed == format!("echo: {body}").as_bytes(), "the body passed changed");

        // Under the limit on an API endpoint: judged whole, as before.
        let resp = client
            .post(url(run, "/graphql/query"))
            .header("content-type", form)
            .body(long_form("5555", 1000))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    })
    .await;
}

#[tokio::test]
async fn learning_reads_streamed_answers_over_both_protocols_but_not_big_ones_or_pages() {
    let store = Arc::new(LearnedIds::in_memory());
    let run = start_with(Some(store.clone())).await;
    for http2 in [false, true] {
        let client = client(&run, "www.instagram.com", http2);
        // API calls ask for an answer the proxy can read.
        let ae = client
            .get(url(&run, "/api/v1/accept-encoding/"))
            .header("accept-encoding", "gzip, br")
            .header("sec-fetch-mode", "cors")
            .send()
            .await
            .unwrap();
        assert_eq!(ae.text().await.unwrap(), "identity");
        // Over the cap: passed byte for byte, not read.
        let big = client
            .get(url(&run, "/api/v1/big/"))
            .header("sec-fetch-mode", "cors")
            .send()
            .await
            .unwrap();
        assert_eq!(big.bytes().await.unwrap().to_vec(), big_answer());
        // A page load is not read either.
        let page = client
            .get(url(&run, "/api/v1/friendships/111/followers/"))
            .header("sec-fetch-mode", "navigate")
            .send()
            .await
            .unwrap();
        assert_eq!(page.text().await.unwrap(), FOLLOWERS);
    }
    for http2 in [false, true] {
        // Streamed, no length: read as it passes.
        let resp = client(&run, "www.instagram.com", http2)
            .get(url(&run, "/api/v1/web/search/topsearch/?query=ex"))
            .header("sec-fetch-mode", "cors")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), SEARCH);
    }
    eventually("the streamed answer to be learned", || {
        store.snapshot().handle_for(ProfileSite::Instagram, "988").is_some()
    })
    .await;
    let learned = store.snapshot();
    assert_eq!(learned.ids(ProfileSite::Instagram, "exname"), ["988"]);
    // Without a store, nothing is rewritten.
    run.shutdown.cancel();
    let run = start().await;
    let ae = client(&run, "www.instagram.com", false)
        .get(url(&run, "/api/v1/accept-encoding/"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(ae.text().await.unwrap(), "gzip, br");
    run.shutdown.cancel();
}

/// `len` bytes in 64 KiB pieces, without a declared length: chunked on HTTP/1.1.
fn unsized_body(text: String) -> reqwest::Body {
    let pieces = text.into_bytes().chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    reqwest::Body::wrap(Chunks::streamed(pieces))
}

#[tokio::test]
async fn a_long_body_without_a_declared_length_follows_the_rule_too() {
    let over = ncd_proxy::server::MAX_INSPECTED_BODY + 100_000;
    each_protocol(async |run, client, _| {
        let form = "application/x-www-form-urlencoded";
        let resp = client
            .post(url(run, "/graphql/query"))
            .header("content-type", form)
            .body(unsized_body(long_form("1234567890", over)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        let resp = client
            .post(url(run, "/graphql/query"))
            .header("content-type", form)
            .body(unsized_body(long_form("5555", over)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413);
        let body = long_form("5555", over);
        let resp = client
            .post(url(run, "/accounts/edit/"))
            .header("content-type", form)
            .body(unsized_body(body.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.unwrap() == format!("echo: {body}").as_bytes());
    })
    .await;
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

#[tokio::test]
async fn logs_at_info_name_the_site_and_count_never_the_handle_id_or_url() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The whole binary's logs (other tests' too): the rule holds for all of them.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let state = tempfile::tempdir().unwrap();
    let (store, _) = LearnedIds::open(state.path().join("proxy-learned.json"));
    let store = Arc::new(store);
    let run = start_with(Some(store.clone())).await;
    let resp = client(&run, "www.instagram.com", false)
        .get(url(&run, "/api/v1/friendships/111/followers/"))
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), FOLLOWERS);
    eventually("the id to be learned", || !store.snapshot().is_empty()).await;
    assert_eq!(graphql_by_id(&run, false, "987").await.status(), 404);
    run.shutdown.cancel();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("proxy learned profile ids"), "{text}");
    assert!(text.contains("site=\"instagram\" count=1"), "{text}");
    for secret in [
        "exname",
        "987",
        "graphql",
        "friendships",
        "followers",
        "www.instagram.com",
    ] {
        assert!(!text.contains(secret), "{secret:?} in the logs:\n{text}");
    }
}

/// A TLS connection to the proxy for www.instagram.com (HTTP/1.1), trusting only
/// the ncd CA, as a hand-written client would open it.
async fn raw_tls(run: &Running) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(run.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(run.proxy).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("www.instagram.com").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Reads an answer's head (up to the blank line), lower-cased.
async fn read_head(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if tls.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_lowercase()
}

/// Not an open relay: whatever a request names — another host in an absolute
/// URI, a CONNECT to an arbitrary address, a Host that differs from the SNI —
/// it is refused (421), never forwarded anywhere but the steered host.
#[tokio::test]
async fn requests_for_other_hosts_are_refused_not_relayed() {
    use tokio::io::AsyncWriteExt;
    let run = start().await;
    for request in [
        "GET https://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        "CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\n\r\n",
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        "GET /otherperson/ HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    ] {
        let mut tls = raw_tls(&run).await;
        tls.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut tls).await;
        assert!(head.starts_with("http/1.1 421"), "{request:?} got {head:?}");
    }
    // The same connection and name, asked properly, is served.
    let mut tls = raw_tls(&run).await;
    tls.write_all(b"GET /otherperson/ HTTP/1.1\r\nHost: www.instagram.com\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("http/1.1 200"), "{head:?}");
    run.shutdown.cancel();
}

/// A WebSocket upgrade passes through the proxy both ways (HTTP/1.1, as browsers
/// open WebSockets), and the bytes after it are relayed untouched.
#[tokio::test]
async fn a_websocket_upgrade_passes_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let run = start().await;
    let mut tls = raw_tls(&run).await;
    tls.write_all(
        b"GET /ws/ HTTP/1.1\r\nHost: www.instagram.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            tls.read(&mut byte).await.unwrap(),
            1,
            "closed before the answer's head ended"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    tls.write_all(b"hello").await.unwrap();
    let mut echoed = vec![0u8; 10];
    tls.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, b"echo:hello");
    run.shutdown.cancel();
}
