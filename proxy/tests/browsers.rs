//! Real browsers against the proxy: headless Chromium and Firefox ESR, each with a
//! throwaway profile whose NSS database trusts the ncd CA, load the ex's profile
//! (they must get the block page) and another profile (they must get the fake
//! origin's page), and a screenshot of the block page is kept as an artefact under
//! `target/browser-artifacts/`.
//!
//! Traffic stays on this machine: the fake origin (its own test CA, given as an
//! origin root) and the proxy listen on host loopback; Chromium is pointed at the
//! proxy by `--host-resolver-rules`, with every other name mapped to NOTFOUND.
//! Firefox has no such rules with a port; its profile's `network.dns.forceResolve`
//! sends every name to 127.0.0.1 and then either `network.socket.forcePort` maps
//! 443 to the proxy's port (no root needed), or, as the proxy will really run, a
//! network namespace the test makes (only `lo`) has the proxy's listener bound at
//! 127.0.0.1:443 while the proxy itself, and its way to the origin, stay outside.
//! Both browsers run with their background traffic (updates, telemetry, safe
//! browsing, captive portal …) off.
//!
//! Outside CI a missing browser, `certutil` or root (for the namespace) skips the
//! test with a message; with `CI=true` it fails it. A run prints each browser's
//! time and where the screenshots went.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ncd_config::{Config, ProfileSite};
use ncd_proxy::block_page::BLOCK_MARKER;
use ncd_proxy::{Kind, OriginOptions, OriginResolver, PageContext, ProxyHooks, ProxyRules, ServeOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[[profile]]
name = "ex"
instagram = ["exname"]
"#;

/// What the fake origin's page for another profile carries.
const ORIGIN_MARKER: &str = "ncd-test-origin-page";
/// What the fake origin serves for the ex's profile; no browser may ever see it.
const NEVER_SHOWN: &str = "the ex's profile: the proxy must never show this";
const BLOCKED_URL: &str = "https://www.instagram.com/exname/";
const OTHER_URL: &str = "https://www.instagram.com/someoneelse/";
/// How long one browser run may take (a cold Firefox start on two busy cores is slow).
const BROWSER_DEADLINE: Duration = Duration::from_secs(120);

/// One browser at a time: two of them on two cores only make both slow.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------
// What is missing here: skip outside CI, fail in CI.

/// Returns `false` (after saying why) when the test cannot run here; in CI that is a failure.
fn available(missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let what = missing.join("; ");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true and this browser test cannot run: {what} (.ci/run installs chromium, firefox-esr, libnss3-tools and runs as root)"
        );
    }
    // Straight to stderr, past the test harness's capture: a skip must be seen.
    let _ = writeln!(io::stderr(), "SKIPPED: {what}");
    false
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn need_programs(programs: &[(&str, &str)]) -> Vec<String> {
    programs
        .iter()
        .filter(|(program, _)| on_path(program).is_none())
        .map(|(program, package)| format!("`{program}` is not installed (Debian package {package})"))
        .collect()
}

fn is_root() -> bool {
    // /proc/self belongs to the effective uid.
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

// ---------------------------------------------------------------------------
// What the proxy says: a browser that refuses the proxy's certificate shows up as
// the proxy's "TLS handshake failed" (at debug), which the controls wait for.

const HANDSHAKE_FAILED: &str = "proxy TLS handshake failed";

#[derive(Default)]
struct Heard(Mutex<Vec<String>>);

impl Heard {
    fn count(&self, message: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|m| *m == message).count()
    }
}

struct Listen(&'static Heard);

struct Message(Option<String>);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Listen {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if !event.metadata().target().starts_with("ncd_proxy") {
            return;
        }
        let mut message = Message(None);
        event.record(&mut message);
        if let Some(m) = message.0 {
            self.0.0.lock().unwrap().push(m);
        }
    }
}

/// The proxy's log messages (targets `ncd_proxy::…`), from every test in this binary.
fn heard() -> &'static Heard {
    static HEARD: std::sync::OnceLock<&'static Heard> = std::sync::OnceLock::new();
    HEARD.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let heard: &'static Heard = Box::leak(Box::default());
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Listen(heard))).unwrap();
        heard
    })
}

// ---------------------------------------------------------------------------
// The fake origin and the proxy, in process.

struct Loopback;

#[async_trait::async_trait]
impl OriginResolver for Loopback {
    async fn resolve(&self, _host: &str) -> io::Result<Vec<IpAddr>> {
        Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
    }
}

#[derive(Default)]
struct Ledger(Mutex<Vec<(ProfileSite, Kind)>>);

impl Ledger {
    fn navigations(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, kind)| *kind == Kind::Navigation)
            .count()
    }
}

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

/// Paths the fake origin was asked for, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// A stand-in for the real site on host loopback: its own CA, h1 and h2.
async fn fake_origin(seen: Seen) -> (SocketAddr, CertificateDer<'static>) {
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        seen.lock().unwrap().push(path.clone());
                        let (status, body) = match path.as_str() {
                            "/someoneelse/" => (
                                200,
                                format!(
                                    "<!doctype html><html><head><title>someoneelse</title></head>\
                                     <body style=\"background:#fff\"><h1 id=\"{ORIGIN_MARKER}\">\
                                     someoneelse, served by the fake origin</h1></body></html>"
                                ),
                            ),
                            "/exname/" => (200, format!("<!doctype html><p>{NEVER_SHOWN}</p>")),
                            _ => (404, String::new()),
                        };
                        let mut resp = Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        resp.headers_mut()
                            .insert("content-type", "text/html; charset=utf-8".parse().unwrap());
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, ca_cert.der().clone())
}

/// The fake origin and the proxy, running on their own runtime while the test
/// thread drives a browser.
struct Running {
    _rt: tokio::runtime::Runtime,
    /// The ncd CA, as the browsers import it.
    ca_pem: PathBuf,
    ledger: Arc<Ledger>,
    origin_seen: Seen,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
}

impl Running {
    /// Starts the origin and the proxy; the proxy serves on `listeners` (bound by
    /// the caller: on host loopback, or inside a namespace).
    fn start(listeners: Vec<std::net::TcpListener>) -> Self {
        heard();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(Ledger::default());
        let origin_seen = Seen::default();
        let shutdown = CancellationToken::new();
        let config = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
        let ca_dir = dir.path().join("ca");
        fs::create_dir_all(&ca_dir).unwrap();
        let (rules, _) = ProxyRules::build(&config, &ca_dir, None).unwrap().unwrap();
        let ca_pem = dir.path().join("ncd-ca.pem");
        fs::write(&ca_pem, rules.ca.cert_pem()).unwrap();
        rt.block_on(async {
            let (origin, origin_root) = fake_origin(origin_seen.clone()).await;
            let listeners = listeners
                .into_iter()
                .map(|l| {
                    l.set_nonblocking(true).unwrap();
                    tokio::net::TcpListener::from_std(l).unwrap()
                })
                .collect();
            let options = ServeOptions {
                allow_clients: Vec::new(),
                origin: OriginOptions {
                    extra_roots: vec![origin_root],
                    port: origin.port(),
                    ..OriginOptions::default()
                },
                learned: None,
            };
            tokio::spawn(ncd_proxy::serve(
                listeners,
                Arc::new(ArcSwap::from_pointee(rules)) as Arc<dyn ncd_proxy::RulesSource>,
                Arc::new(Loopback),
                ledger.clone(),
                options,
                shutdown.clone(),
            ));
        });
        Self {
            _rt: rt,
            ca_pem,
            ledger,
            origin_seen,
            shutdown,
            dir,
        }
    }

    fn origin_saw(&self, path: &str) -> bool {
        self.origin_seen.lock().unwrap().iter().any(|p| p == path)
    }

    /// A new empty directory in the test's temp dir.
    fn fresh_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

// ---------------------------------------------------------------------------
// Helpers for browsers: NSS databases, running with a deadline, artefacts.

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new NSS database in `dir` (as Chromium's ~/.pki/nssdb or a Firefox profile
/// keeps it), trusting `ca_pem` as a web CA when given, nothing at all otherwise.
fn nssdb(dir: &Path, ca_pem: Option<&Path>) {
    fs::create_dir_all(dir).unwrap();
    let db = format!("sql:{}", dir.display());
    run_ok(Command::new("certutil").args(["-d", &db, "-N", "--empty-password"]));
    if let Some(pem) = ca_pem {
        run_ok(
            Command::new("certutil")
                .args(["-d", &db, "-A", "-t", "C,,", "-n", "ncd"])
                .arg("-i")
                .arg(pem),
        );
    }
}

/// What a browser run left behind.
struct Outcome {
    stdout: String,
    stderr: String,
    /// The browser exited by itself (not killed at `stop` or at the deadline).
    exited: bool,
    /// `stop` said so, and the browser was ended.
    stopped: bool,
}

/// Runs `cmd` with stdout and stderr in files until it exits, `stop` returns
/// true, or `deadline` passes; in the last two cases it is killed. Waiting is
/// polling for those conditions, never a sleep before an assertion.
fn run_with_deadline(mut cmd: Command, logs: &Path, deadline: Duration, stop: &dyn Fn() -> bool) -> Outcome {
    fs::create_dir_all(logs).unwrap();
    let out_path = logs.join("stdout");
    let err_path = logs.join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let end = Instant::now() + deadline;
    let (exited, stopped) = loop {
        if child.try_wait().unwrap().is_some() {
            break (true, false);
        }
        let stopped = stop();
        if stopped || Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break (false, stopped);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Outcome {
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        exited,
        stopped,
    }
}

/// `target/browser-artifacts/`, beside the test binary's target dir.
fn artifacts_dir() -> PathBuf {
    // The test binary is target/<profile>/deps/browsers-<hash>.
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .filter(|t| t.is_dir())
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("browser-artifacts");
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A PNG with a real picture in it: the signature, a non-empty IHDR, more than a few bytes.
fn assert_png(path: &Path) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert!(width > 100 && height > 100, "{}: {width}x{height}", path.display());
    assert!(bytes.len() > 2_000, "{}: only {} bytes", path.display(), bytes.len());
}

fn keep(src: &Path, name: &str) -> PathBuf {
    let dest = artifacts_dir().join(name);
    fs::copy(src, &dest).unwrap();
    eprintln!("screenshot: {}", dest.display());
    dest
}

// ---------------------------------------------------------------------------
// Chromium.

/// Loads `url` in headless Chromium with `home` as $HOME (its ~/.pki/nssdb is
/// the trust store) and a fresh profile; returns the DOM and the screenshot path.
fn chromium(run: &Running, home: &Path, url: &str, tag: &str, proxy: SocketAddr) -> (Outcome, PathBuf) {
    let work = run.fresh_dir(&format!("chromium-{tag}"));
    let shot = work.join("shot.png");
    let mut cmd = Command::new("chromium");
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--no-pings",
            "--password-store=basic",
            "--window-size=1000,800",
        ])
        // The one name the test serves goes to the proxy; every other name fails
        // to resolve, so nothing can leave the machine whatever Chromium tries.
        .arg(format!(
            "--host-resolver-rules=MAP www.instagram.com 127.0.0.1:{}, MAP * ~NOTFOUND",
            proxy.port()
        ))
        .arg(format!("--user-data-dir={}", work.join("profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--dump-dom")
        .arg(url);
    let started = Instant::now();
    let outcome = run_with_deadline(cmd, &work, BROWSER_DEADLINE, &|| false);
    eprintln!("chromium {tag}: {:.1?}", started.elapsed());
    assert!(
        outcome.exited,
        "chromium did not finish loading {url}:\n{}",
        outcome.stderr
    );
    (outcome, shot)
}

#[test]
fn chromium_gets_the_block_page_for_the_ex_and_the_origin_for_anyone_else() {
    if !available(&need_programs(&[
        ("chromium", "chromium"),
        ("certutil", "libnss3-tools"),
    ])) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = listener.local_addr().unwrap();
    let run = Running::start(vec![listener]);

    // A HOME whose NSS database trusts the ncd CA and nothing else besides
    // Chromium's own roots (which cannot vouch for the proxy's leaves).
    let home = run.fresh_dir("home-trusting");
    nssdb(&home.join(".pki/nssdb"), Some(&run.ca_pem));

    let (blocked, shot) = chromium(&run, &home, BLOCKED_URL, "blocked", proxy);
    assert!(
        blocked.stdout.contains(BLOCK_MARKER) && blocked.stdout.contains("I want my evenings back"),
        "no block page in Chromium's DOM:\n{}\n{}",
        blocked.stdout,
        blocked.stderr
    );
    assert!(!blocked.stdout.contains(NEVER_SHOWN));
    assert!(
        run.ledger.navigations() >= 1,
        "the proxy recorded no blocked navigation"
    );
    assert!(!run.origin_saw("/exname/"), "the origin was asked for the ex's profile");
    assert_png(&shot);
    keep(&shot, "chromium-block-page.png");

    let (other, shot) = chromium(&run, &home, OTHER_URL, "other", proxy);
    assert!(
        other.stdout.contains(ORIGIN_MARKER) && !other.stdout.contains(BLOCK_MARKER),
        "no origin page in Chromium's DOM:\n{}\n{}",
        other.stdout,
        other.stderr
    );
    assert!(run.origin_saw("/someoneelse/"));
    assert_png(&shot);
    keep(&shot, "chromium-other-profile.png");

    // The control: the same load with a HOME that does not trust the ncd CA gets
    // no page at all, so the trust above was real.
    let untrusting = run.fresh_dir("home-untrusting");
    nssdb(&untrusting.join(".pki/nssdb"), None);
    let before = run.ledger.navigations();
    let refusals = heard().count(HANDSHAKE_FAILED);
    let (refused, _) = chromium(&run, &untrusting, BLOCKED_URL, "untrusted", proxy);
    assert!(
        !refused.stdout.contains(BLOCK_MARKER) && !refused.stdout.contains(NEVER_SHOWN),
        "a profile without the ncd CA saw a page:\n{}",
        refused.stdout
    );
    assert!(
        heard().count(HANDSHAKE_FAILED) > refusals,
        "Chromium without the ncd CA did not refuse the proxy's certificate:\n{}\n{}",
        refused.stdout,
        refused.stderr
    );
    assert_eq!(
        run.ledger.navigations(),
        before,
        "a browser without the ncd CA got a request through"
    );
}

// ---------------------------------------------------------------------------
// Firefox ESR, in a network namespace.

/// A network namespace with only `lo`, up; deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn create() -> Self {
        let name = format!("ncdbr{}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        run_ok(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        ns
    }

    /// A listener bound inside the namespace: a short-lived thread joins it and
    /// binds; the socket stays in the namespace, whoever accepts on it.
    fn bind(&self, addr: SocketAddr) -> std::net::TcpListener {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || -> io::Result<std::net::TcpListener> {
            let ns = fs::File::open(&path)?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            std::net::TcpListener::bind(addr)
        })
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot bind {addr} in namespace {}: {e}", self.name))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Prefs for a throwaway profile: every name resolves to 127.0.0.1 (where the
/// proxy is, on :443 in the namespace or behind `forcePort`), and nothing starts
/// traffic of its own.
const USER_JS: &str = r#"
user_pref("network.dns.forceResolve", "127.0.0.1");
user_pref("network.dns.disableIPv6", true);
user_pref("network.dns.disablePrefetch", true);
user_pref("network.trr.mode", 5);
user_pref("network.proxy.type", 0);
user_pref("network.http.http3.enable", false);
user_pref("network.http.speculative-parallel-limit", 0);
user_pref("network.prefetch-next", false);
user_pref("network.predictor.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("app.update.enabled", false);
user_pref("app.update.auto", false);
user_pref("app.update.disabledForTesting", true);
user_pref("app.normandy.enabled", false);
user_pref("app.normandy.api_url", "");
user_pref("app.shield.optoutstudies.enabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("toolkit.telemetry.unified", false);
user_pref("toolkit.telemetry.server", "");
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.safebrowsing.downloads.enabled", false);
user_pref("browser.safebrowsing.blockedURIs.enabled", false);
user_pref("browser.safebrowsing.update.enabled", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.startup.page", 0);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("browser.newtabpage.enabled", false);
user_pref("browser.search.update", false);
user_pref("browser.region.update.enabled", false);
user_pref("browser.region.network.url", "");
user_pref("browser.ping-centre.telemetry", false);
user_pref("extensions.update.enabled", false);
user_pref("extensions.getAddons.cache.enabled", false);
user_pref("extensions.systemAddon.update.enabled", false);
user_pref("services.settings.server", "data:,#remote-settings-dummy/v1");
user_pref("dom.push.connection.enabled", false);
user_pref("geo.provider.network.url", "");
user_pref("media.gmp-manager.updateEnabled", false);
user_pref("security.OCSP.enabled", 0);
user_pref("security.remote_settings.crlite_filters.enabled", false);
user_pref("security.remote_settings.intermediates.enabled", false);
user_pref("security.certerrors.mitm.priming.enabled", false);
user_pref("security.enterprise_roots.enabled", false);
"#;

/// Where Firefox's connections go besides the forced resolution to 127.0.0.1.
enum FirefoxNet<'a> {
    /// On host loopback: `network.socket.forcePort` maps 443 to the proxy's port.
    ForcePort(u16),
    /// Inside a namespace of the test's own, where the proxy listens on :443.
    Namespace(&'a NetNs),
}

/// A throwaway Firefox profile: the prefs above and an NSS database that trusts
/// the ncd CA (or, for the control, nothing of ours).
fn firefox_profile(run: &Running, net: &FirefoxNet<'_>, tag: &str, trust_ncd: bool) -> PathBuf {
    let profile = run.fresh_dir(&format!("firefox-{tag}/profile"));
    let mut prefs = USER_JS.to_string();
    if let FirefoxNet::ForcePort(port) = net {
        prefs.push_str(&format!("user_pref(\"network.socket.forcePort\", \"443={port}\");\n"));
    }
    fs::write(profile.join("user.js"), prefs).unwrap();
    nssdb(&profile, trust_ncd.then_some(run.ca_pem.as_path()));
    profile
}

/// Loads `url` in headless Firefox and asks for a screenshot; Firefox writes none
/// when the page does not load (a TLS failure among them).
fn firefox(
    run: &Running,
    net: &FirefoxNet<'_>,
    profile: &Path,
    url: &str,
    tag: &str,
    stop: &dyn Fn() -> bool,
) -> (Outcome, PathBuf) {
    let work = run.fresh_dir(&format!("firefox-run-{tag}"));
    let home = work.join("home");
    fs::create_dir_all(&home).unwrap();
    let shot = work.join("shot.png");
    let mut cmd = match net {
        FirefoxNet::ForcePort(_) => Command::new("firefox-esr"),
        FirefoxNet::Namespace(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &ns.name, "firefox-esr"]);
            cmd
        }
    };
    cmd.args(["--headless", "--no-remote", "--profile"])
        .arg(profile)
        .arg("--window-size=1000,800")
        .arg("--screenshot")
        .arg(&shot)
        .arg(url)
        .env("HOME", &home)
        .env("MOZ_HEADLESS", "1")
        .env("MOZ_CRASHREPORTER_DISABLE", "1")
        .env("MOZ_DISABLE_AUTO_SAFE_MODE", "1");
    let started = Instant::now();
    let outcome = run_with_deadline(cmd, &work, BROWSER_DEADLINE, stop);
    eprintln!("firefox {tag}: {:.1?}", started.elapsed());
    (outcome, shot)
}

/// The ex's profile gets the block page, another profile the origin's page, and a
/// profile without the ncd CA gets nothing through; `name` prefixes the artefacts.
fn firefox_checks(run: &Running, net: &FirefoxNet<'_>, name: &str) {
    let trusting = firefox_profile(run, net, &format!("{name}-trusting"), true);
    let (blocked, shot) = firefox(run, net, &trusting, BLOCKED_URL, &format!("{name}-blocked"), &|| false);
    assert!(
        blocked.exited && shot.exists(),
        "Firefox wrote no screenshot of {BLOCKED_URL}:\n{}\n{}",
        blocked.stdout,
        blocked.stderr
    );
    assert_png(&shot);
    assert!(
        run.ledger.navigations() >= 1,
        "the proxy recorded no blocked navigation"
    );
    assert!(!run.origin_saw("/exname/"), "the origin was asked for the ex's profile");
    keep(&shot, &format!("{name}-block-page.png"));

    // The same profile again (Firefox let go of it when it exited).
    let (other, shot) = firefox(run, net, &trusting, OTHER_URL, &format!("{name}-other"), &|| false);
    assert!(
        other.exited && shot.exists(),
        "Firefox wrote no screenshot of {OTHER_URL}:\n{}",
        other.stderr
    );
    assert_png(&shot);
    assert!(
        run.origin_saw("/someoneelse/"),
        "the origin was not asked for another profile"
    );
    keep(&shot, &format!("{name}-other-profile.png"));

    // The control: a profile without the ncd CA refuses the proxy's certificate
    // (Firefox then waits on its error page, so it is ended once the proxy has
    // seen the refusal) and gets nothing through.
    let untrusting = firefox_profile(run, net, &format!("{name}-untrusting"), false);
    let before = run.ledger.navigations();
    let refusals = heard().count(HANDSHAKE_FAILED);
    let refused = || heard().count(HANDSHAKE_FAILED) > refusals;
    let (outcome, shot) = firefox(
        run,
        net,
        &untrusting,
        BLOCKED_URL,
        &format!("{name}-untrusted"),
        &refused,
    );
    assert!(
        outcome.stopped || refused(),
        "Firefox without the ncd CA did not refuse the proxy's certificate:\n{}",
        outcome.stderr
    );
    assert!(!shot.exists(), "Firefox without the ncd CA rendered a page");
    assert_eq!(
        run.ledger.navigations(),
        before,
        "a browser without the ncd CA got a request through"
    );
}

#[test]
fn firefox_gets_the_block_page_for_the_ex_and_the_origin_for_anyone_else() {
    if !available(&need_programs(&[
        ("firefox-esr", "firefox-esr"),
        ("certutil", "libnss3-tools"),
    ])) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let run = Running::start(vec![listener]);
    firefox_checks(&run, &FirefoxNet::ForcePort(port), "firefox");
}

/// As the proxy will really run: on port 443, with no port mapping in the browser.
#[test]
fn firefox_in_a_namespace_reaches_the_proxy_on_443() {
    let mut missing = need_programs(&[
        ("firefox-esr", "firefox-esr"),
        ("certutil", "libnss3-tools"),
        ("ip", "iproute2"),
    ]);
    if !is_root() {
        missing.push("not root: this test makes a network namespace".into());
    }
    if !available(&missing) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = NetNs::create();
    let listener = ns.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 443)));
    let run = Running::start(vec![listener]);
    firefox_checks(&run, &FirefoxNet::Namespace(&ns), "firefox-netns");
}
