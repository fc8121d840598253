//! `ncdd`: the ncd DNS-filtering daemon. Arguments and logging here; the rest lives
//! in the `ncd_daemon` library.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use ncd_daemon::daemon::{Daemon, Options};
use ncd_daemon::generation::ConfigSource;

#[derive(Debug, Parser)]
#[command(name = "ncdd", version, about = "The ncd DNS-filtering daemon")]
struct Args {
    /// The config file.
    #[arg(long, default_value = ncd_config::DEFAULT_CONFIG_PATH, conflicts_with = "dev")]
    config: PathBuf,
    /// Where ncdd keeps its state (last good config, downloaded lists).
    #[arg(long, default_value = "/var/lib/ncd")]
    state_dir: PathBuf,
    /// Try ncd without root or a config file: the embedded default on
    /// 127.0.0.1:5353 and [::1]:5353, every catalog service blocked, a temporary
    /// state dir.
    #[arg(long)]
    dev: bool,
    /// Listen here instead of `[dns] listen` (repeatable; port 0 picks a free port).
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// The control socket, instead of `[control] socket` (or the state dir under --dev).
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Read the network's resolver files (`/run/systemd/…`, `/etc/resolv.conf` …)
    /// under this folder instead of `/` (for tests).
    #[arg(long, hide = true)]
    network_root: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    keep_big_allocations_returnable();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NCD_LOG").unwrap_or_else(|_| {
                // hickory's warnings quote query names (a forged answer, say), and names
                // stay out of the default log: ncd's own messages say what went wrong.
                tracing_subscriber::EnvFilter::new("info,hickory_net=error,hickory_resolver=error,hickory_proto=error")
            }),
        )
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ncdd: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ncdd: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Pins glibc's mmap threshold at its default 128 KiB. Left dynamic, glibc raises it
/// after the first big list is freed, and from then on each reload's compiled
/// rules land in the heap and are never given back: a daemon with a million rules
/// grew from 42 to 174 MiB over six reloads. Pinned, it stays at 42 MiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn keep_big_allocations_returnable() {
    // SAFETY: mallopt only sets a malloc tuning parameter; it is called first thing
    // in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        // One malloc arena per thread (glibc's default, up to 8 a core) keeps what
        // each proxy worker's bursts freed: after a load run ncdd held 45 MiB with
        // 1,000 idle connections. Two arenas are shared by all threads.
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_big_allocations_returnable() {}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(root) = &args.network_root {
        ncd_daemon::network::set_root(root.clone());
    }
    let (config, state_dir) = if args.dev {
        (ConfigSource::Dev, dev_state_dir(&args))
    } else {
        (ConfigSource::File(args.config), args.state_dir)
    };
    let options = Options {
        config,
        state_dir,
        listen: (!args.listen.is_empty()).then_some(args.listen),
        control_socket: args.control_socket,
    };
    let daemon = Daemon::start(options).await?;
    daemon
        .serve(|bound| {
            // One line per address on stdout, for scripts and tests; logs go to stderr.
            for address in bound {
                println!("ncdd: listening on {address}");
            }
            println!("ncdd: ready");
            // Tests and scripts read these lines through a pipe: flush them now.
            use std::io::Write;
            let _ = std::io::stdout().flush();
        })
        .await
}

/// `--dev` keeps its state in the user's runtime dir (or the temp dir), never in
/// /var/lib, unless `--state-dir` was given explicitly.
fn dev_state_dir(args: &Args) -> PathBuf {
    if args.state_dir != std::path::Path::new("/var/lib/ncd") {
        return args.state_dir.clone();
    }
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join(format!("ncd-dev-{}", std::process::id()))
}
