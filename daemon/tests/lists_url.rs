//! URL blocklists end to end: the real `ncdd`, a fake upstream DNS server, and the
//! list served over real HTTP on loopback by Python's standard `http.server`.
//!
//! ncdd fetches a URL list when its cached copy (in the state dir, under `lists/`)
//! is missing or older than `[block] refresh`, so a test that needs a second fetch
//! ages the cached copy and restarts ncdd. Every test has its own HTTP server, list
//! file name, upstream and ncdd.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Each test binary uses its own part of the shared harness.
#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use hickory_proto::op::ResponseCode;

use support::client::{Answer, a};
use support::control::Control;
use support::eventually;
use support::ncdd::{Ncdd, Setup};
use support::upstream::FakeUpstream;

/// How long a first download may take to be served (fetched at start, then a
/// reload debounced by 300 ms).
const FETCH_DEADLINE: Duration = Duration::from_secs(10);
/// How long the HTTP server may take to say where it listens.
const HTTP_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The marker the harness writes into the kept stderr on a restart.
const RESTART_MARKER: &str = "----- ncdd restarted by the test -----";
/// What ncdd logs when a download fails.
const DOWNLOAD_FAILED: &str = "blocklist download failed; the last good copy keeps blocking";

/// A list in two formats; both names are in the fake upstream's zone, so before
/// the list is loaded they resolve (192.0.2.17 and 192.0.2.15).
const LIST: &str = "# a test list served over HTTP\nlisted-late.test\n0.0.0.0 www.facebook.com\n";
const LISTED: &str = "listed-late.test";
const LISTED_UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 17);

// ----- A real HTTP server ---------------------------------------------------------

/// `python3 -m http.server` serving a temp dir on 127.0.0.1; killed when dropped.
#[derive(Debug)]
struct HttpServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    /// Everything the server wrote (its access log goes to stderr).
    log: Arc<Mutex<String>>,
}

impl HttpServer {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ncdd-http-")
            .tempdir()
            .expect("temp dir");
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory"])
            .arg(dir.path())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python3 -m http.server (is python3 installed?)");
        let log = Arc::new(Mutex::new(String::new()));
        let (lines, seen) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("http.server stdout");
        let stderr = child.stderr.take().expect("http.server stderr");
        for stream in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
            let (lines, log) = (lines.clone(), log.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut kept = log.lock().unwrap_or_else(|p| p.into_inner());
                    kept.push_str(&line);
                    kept.push('\n');
                    drop(kept);
                    let _ = lines.send(line);
                }
            });
        }
        drop(lines);

        let mut server = Self {
            dir,
            child: Some(child),
            port: 0,
            log,
        };
        let deadline = std::time::Instant::now() + HTTP_READY_TIMEOUT;
        while server.port == 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match seen.recv_timeout(left) {
                Ok(line) => {
                    // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
                    if let Some(rest) = line.split("Serving HTTP on 127.0.0.1 port ").nth(1) {
                        server.port = rest
                            .split_whitespace()
                            .next()
                            .and_then(|p| p.parse().ok())
                            .unwrap_or_else(|| panic!("no port in {line:?}"));
                    }
                }
                Err(_) => panic!("http.server did not say where it listens; it wrote:\n{}", server.log()),
            }
        }
        server
    }

    fn url(&self, file: &str) -> String {
        format!("http://127.0.0.1:{}/{file}", self.port)
    }

    /// Writes `file` into the served dir.
    fn serve(&self, file: &str, text: &str) {
        std::fs::write(self.dir.path().join(file), text).expect("write a served file");
    }

    /// How many GET requests for `file` the server has logged.
    fn gets(&self, file: &str) -> usize {
        let request = format!("\"GET /{file} ");
        self.log().lines().filter(|l| l.contains(&request)).count()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Kills the server; the port then refuses connections.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("----- http.server log -----\n{}-----", self.log());
        }
    }
}

// ----- Helpers ----------------------------------------------------------------------

/// A config with the fake upstream, `lists`, a 1 minute refresh and `rest` in `[block]`.
fn config(upstream: &FakeUpstream, lists: &[String], rest: &str) -> String {
    let lists: Vec<String> = lists.iter().map(|l| format!("{l:?}")).collect();
    format!(
        "[dns]\nupstreams = [\"{}\"]\n\n[block]\nlists = [{}]\nrefresh = \"1m\"\n{rest}\n",
        upstream.url(),
        lists.join(", ")
    )
}

/// True when the A answer is ncdd's null block.
fn is_blocked(answer: &Answer) -> bool {
    answer.rcode() == ResponseCode::NoError && answer.ipv4() == [Ipv4Addr::UNSPECIFIED] && answer.is_blocked()
}

/// Blocked as a user would notice, and nothing of it goes upstream (see
/// `support::blocked`); `what` says when, for the first failure.
#[track_caller]
fn assert_blocked(ncdd: &Ncdd, upstream: &FakeUpstream, name: &str, what: &str) {
    let answer = a(ncdd.addr, name);
    assert!(
        is_blocked(&answer),
        "{what}: {name} is not blocked: {:?}",
        answer.message
    );
    support::blocked::assert_blocked_and_unseen(ncdd.addr, upstream, name, ncd_config::BlockAnswer::Null);
}

#[track_caller]
fn assert_resolves(ncdd: &Ncdd, name: &str, ip: Ipv4Addr, what: &str) {
    let answer = a(ncdd.addr, name);
    assert_eq!(answer.ipv4(), [ip], "{what}: {name}: {:?}", answer.message);
    assert!(!answer.is_blocked(), "{what}: {name}: {:?}", answer.message);
}

/// Polls until `name` is blocked; panics after [`FETCH_DEADLINE`].
#[track_caller]
fn wait_until_blocked(ncdd: &Ncdd, name: &str) {
    if eventually(FETCH_DEADLINE, || is_blocked(&a(ncdd.addr, name)).then_some(())).is_none() {
        panic!(
            "{name} was not blocked within {FETCH_DEADLINE:?}: {:?}",
            a(ncdd.addr, name).message
        );
    }
}

/// The files under `state_dir/lists/` (temp files of a write in progress left out).
fn cached_lists(state_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("lists")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect()
}

/// The cached copy whose text is `text`; panics when there is none.
#[track_caller]
fn cached_copy_of(state_dir: &Path, text: &str) -> PathBuf {
    let files = cached_lists(state_dir);
    files
        .iter()
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t == text))
        .cloned()
        .unwrap_or_else(|| {
            let found: Vec<_> = files
                .iter()
                .map(|p| (p.clone(), std::fs::read_to_string(p).unwrap_or_default()))
                .collect();
            panic!(
                "no cached copy of the list under {}/lists: {found:?}",
                state_dir.display()
            )
        })
}

/// Sets the modification time of `path` two hours back, older than any refresh
/// used here, so that the next ncdd start fetches the list again.
fn make_old(path: &Path) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.set_modified(SystemTime::now() - Duration::from_secs(2 * 3600))
        .expect("set the mtime back");
}

/// The stderr of the current ncdd process (after the last restart).
fn stderr_since_restart(ncdd: &Ncdd) -> String {
    let log = ncdd.stderr();
    match log.rfind(RESTART_MARKER) {
        Some(i) => log[i + RESTART_MARKER.len()..].to_string(),
        None => log,
    }
}

/// Waits until the current ncdd process has logged a line containing every one of
/// `needles`; returns that line.
#[track_caller]
fn wait_for_log_line(ncdd: &Ncdd, needles: &[&str]) -> String {
    let found = eventually(FETCH_DEADLINE, || {
        stderr_since_restart(ncdd)
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
    });
    found.unwrap_or_else(|| {
        panic!(
            "ncdd did not log a line with {needles:?} within {FETCH_DEADLINE:?}; stderr:\n{}",
            ncdd.stderr()
        )
    })
}

/// A loopback TCP port that nothing listens on (bound once, then released).
fn dead_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe listener");
    listener.local_addr().expect("probe address").port()
}

/// Starts the HTTP server with `LIST` as `file`, and ncdd with that URL; waits until
/// the list blocks.
fn start_with_downloaded_list(file: &str) -> (HttpServer, FakeUpstream, Ncdd) {
    let http = HttpServer::start();
    http.serve(file, LIST);
    let upstream = FakeUpstream::start();
    let ncdd = Setup::new(&config(&upstream, &[http.url(file)], "")).spawn();
    wait_until_blocked(&ncdd, LISTED);
    (http, upstream, ncdd)
}

// ----- Tests ------------------------------------------------------------------------

/// (a) A URL list is downloaded after start, blocks its names within seconds, and
/// is kept as a copy in the state dir.
#[test]
fn a_url_list_is_downloaded_blocks_its_names_and_is_cached() {
    let http = HttpServer::start();
    http.serve("social-a.txt", LIST);
    let upstream = FakeUpstream::start();
    let ncdd = Setup::new(&config(
        &upstream,
        &[http.url("social-a.txt")],
        "domains = [\"kept.test\"]",
    ))
    .spawn();

    assert_blocked(&ncdd, &upstream, "kept.test", "a config rule, from the start");
    wait_until_blocked(&ncdd, LISTED);
    assert_blocked(
        &ncdd,
        &upstream,
        "www.facebook.com",
        "the hosts-format line of the list",
    );
    assert_blocked(&ncdd, &upstream, "sub.listed-late.test", "a subdomain of a listed name");
    assert_resolves(&ncdd, "allowed.test", Ipv4Addr::new(192, 0, 2, 1), "a name not listed");

    assert_eq!(http.gets("social-a.txt"), 1, "one download: {}", http.log());
    let cached = cached_copy_of(&ncdd.state_dir(), LIST);
    assert!(
        cached.starts_with(ncdd.state_dir().join("lists")),
        "{}",
        cached.display()
    );
    wait_for_log_line(&ncdd, &["blocklist downloaded", &http.url("social-a.txt")]);
}

/// (b) After a restart with the list server down, the cached copy blocks from the
/// first query after `ready`; the failed download is logged, blocking goes on.
#[test]
fn a_restart_with_the_server_down_blocks_from_the_cached_copy_at_once() {
    let (mut http, upstream, mut ncdd) = start_with_downloaded_list("social-b.txt");
    let cached = cached_copy_of(&ncdd.state_dir(), LIST);
    http.stop();
    // Old enough that the restarted ncdd tries (and fails) to fetch it again.
    make_old(&cached);

    ncdd.restart();
    // The very first query after `ready`: no polling.
    assert_blocked(
        &ncdd,
        &upstream,
        LISTED,
        "first query after a restart with the server down",
    );
    assert_blocked(&ncdd, &upstream, "www.facebook.com", "first queries after the restart");

    let line = wait_for_log_line(&ncdd, &[DOWNLOAD_FAILED, &http.url("social-b.txt")]);
    assert!(line.contains("WARN"), "{line}");
    assert_blocked(&ncdd, &upstream, LISTED, "after the failed download");
    assert_eq!(
        std::fs::read_to_string(&cached).unwrap(),
        LIST,
        "the last good copy is kept"
    );
}

/// (c) A download that is an HTML page, not a list, is refused: the previous good
/// copy keeps blocking and stays on disk.
#[test]
fn an_html_page_instead_of_a_list_is_refused_and_the_good_copy_keeps_blocking() {
    let file = "social-c.txt";
    let (http, upstream, mut ncdd) = start_with_downloaded_list(file);
    let cached = cached_copy_of(&ncdd.state_dir(), LIST);

    http.serve(file, "<html><body>Not found</body></html>\n");
    make_old(&cached);
    ncdd.restart();
    assert_blocked(&ncdd, &upstream, LISTED, "first query after the restart");

    let line = wait_for_log_line(&ncdd, &[DOWNLOAD_FAILED, &http.url(file)]);
    assert!(line.contains("not a blocklist"), "{line}");
    assert_eq!(http.gets(file), 2, "the page was fetched: {}", http.log());
    assert!(
        !stderr_since_restart(&ncdd).contains("blocklist downloaded"),
        "{}",
        ncdd.stderr()
    );
    assert_blocked(&ncdd, &upstream, LISTED, "after the HTML page was refused");
    assert_eq!(std::fs::read_to_string(&cached).unwrap(), LIST, "the good copy is kept");
}

/// (c, continued) The same with a page laid out the usual way, one element a line,
/// where one line holds a single word, as captive portals and error pages do.
#[test]
fn a_multi_line_html_page_is_refused_too() {
    let file = "social-c2.txt";
    let (http, upstream, mut ncdd) = start_with_downloaded_list(file);
    let cached = cached_copy_of(&ncdd.state_dir(), LIST);

    http.serve(
        file,
        "<!DOCTYPE html>\n<html>\n<head>\n<title>Guest Wi-Fi</title>\n</head>\n<body>\n<h1>\nWelcome\n</h1>\n\
         <p>Please sign in to continue.</p>\n</body>\n</html>\n",
    );
    make_old(&cached);
    ncdd.restart();

    // Refused, said so, and never taken as a download.
    let line = wait_for_log_line(&ncdd, &[DOWNLOAD_FAILED, &http.url(file)]);
    assert!(line.contains("not a blocklist"), "{line}");
    assert_eq!(http.gets(file), 2, "the page was fetched: {}", http.log());
    assert!(
        !stderr_since_restart(&ncdd).contains("blocklist downloaded"),
        "{}",
        ncdd.stderr()
    );
    assert_blocked(
        &ncdd,
        &upstream,
        LISTED,
        "after an HTML page was served instead of the list",
    );
    assert_eq!(std::fs::read_to_string(&cached).unwrap(), LIST, "the good copy is kept");
}

/// A 404 from the list server is a failed download too: the good copy keeps blocking.
#[test]
fn a_404_keeps_the_last_good_copy() {
    let file = "social-404.txt";
    let (http, upstream, mut ncdd) = start_with_downloaded_list(file);
    let cached = cached_copy_of(&ncdd.state_dir(), LIST);

    std::fs::remove_file(http.dir.path().join(file)).expect("remove the served list");
    make_old(&cached);
    ncdd.restart();
    assert_blocked(&ncdd, &upstream, LISTED, "first query after the restart");
    let line = wait_for_log_line(&ncdd, &[DOWNLOAD_FAILED, &http.url(file)]);
    assert!(line.contains("404"), "{line}");
    assert_blocked(&ncdd, &upstream, LISTED, "after the 404");
    assert_eq!(std::fs::read_to_string(&cached).unwrap(), LIST);
}

/// (d) A URL list that was never downloaded (its server is down from the start)
/// does not stop the other rules from blocking, nor allowed names from resolving.
#[test]
fn a_url_list_never_downloaded_does_not_stop_the_other_rules() {
    let upstream = FakeUpstream::start();
    let url = format!("http://127.0.0.1:{}/social-d.txt", dead_tcp_port());
    let ncdd = Setup::new(&config(
        &upstream,
        std::slice::from_ref(&url),
        "services = [\"instagram\"]\ndomains = [\"kept.test\"]",
    ))
    .spawn();

    // From the first query on, without waiting for the fetcher.
    assert_blocked(&ncdd, &upstream, "kept.test", "a [block] domains rule");
    assert_blocked(&ncdd, &upstream, "www.instagram.com", "a service rule");
    assert_resolves(&ncdd, LISTED, LISTED_UPSTREAM_IP, "a name only the missing list has");
    assert_resolves(
        &ncdd,
        "allowed.test",
        Ipv4Addr::new(192, 0, 2, 1),
        "a name no rule covers",
    );

    let missing = wait_for_log_line(&ncdd, &["blocklist not loaded", &url]);
    assert!(missing.contains("not downloaded yet"), "{missing}");
    wait_for_log_line(&ncdd, &[DOWNLOAD_FAILED, &url]);
    // Still the same after the failed download.
    assert_blocked(&ncdd, &upstream, "kept.test", "after the failed download");
    assert_blocked(&ncdd, &upstream, "www.instagram.com", "after the failed download");
    assert_resolves(&ncdd, LISTED, LISTED_UPSTREAM_IP, "after the failed download");
    assert!(cached_lists(&ncdd.state_dir()).is_empty(), "nothing to cache");
}

/// (g) During a period, a download that drops names does not loosen: they stay
/// blocked, shown as held in `ncd status`.
#[test]
fn during_a_period_a_download_that_drops_names_keeps_them_blocked() {
    let (http, upstream, mut ncdd) = start_with_downloaded_list("social-g.txt");
    let control = Control::in_state_dir(&ncdd.state_dir());
    control.ok(
        "start",
        Some(serde_json::json!({ "length_secs": 3600, "reason": "a download must not open anything" })),
    );

    // The next download drops a name (fetched again at the restart: the copy is old).
    http.serve("social-g.txt", "0.0.0.0 www.facebook.com\n");
    make_old(&cached_copy_of(&ncdd.state_dir(), LIST));
    ncdd.restart();
    wait_for_log_line(&ncdd, &["blocklist downloaded", &http.url("social-g.txt")]);
    let held = eventually(FETCH_DEADLINE, || {
        let status = control.status();
        status
            .pending
            .iter()
            .any(|p| p.starts_with("1 rule removed from ") && p.contains("social-g.txt"))
            .then_some(status)
    });
    assert!(
        held.is_some(),
        "the dropped name shows as held: {:#?}",
        control.status()
    );
    assert_blocked(&ncdd, &upstream, LISTED, "a name the download dropped during a period");
    assert_blocked(&ncdd, &upstream, "www.facebook.com", "a name the download kept");
}
