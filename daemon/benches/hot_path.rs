//! Micro-benchmarks of the query hot path, run by hand: `cargo bench -p ncd-daemon`.
//!
//! - the matcher: a listed name, a subdomain of one, and a name no rule covers,
//!   against 100k generated rules;
//! - answering a blocked query through the real request path (`serve::respond`,
//!   bytes in, bytes out): a first ask (decode, policy, encode) and a repeat (the
//!   kept response with the new ID).
//!
//! The whole-daemon comparison with unbound and dnsmasq is bench/run.sh.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use ncd_config::Config;
use ncd_daemon::dns::Chain;
use ncd_daemon::dns::serve::{Transport, respond};
use ncd_daemon::dns::upstream::{UpstreamInputs, Upstreams};
use ncd_policy::Policy;

const RULES: usize = 100_000;

/// `n` names spread over a few TLDs, like a public blocklist.
fn names(n: usize) -> Vec<String> {
    let tlds = ["com", "net", "org", "io", "de", "co.uk", "xyz", "info"];
    (0..n)
        .map(|i| {
            format!(
                "host{}-{}.example{}.{}",
                i,
                i * 7919 % 1000,
                i % 97,
                tlds[i % tlds.len()]
            )
        })
        .collect()
}

fn policy_with_list(dir: &Path) -> (Config, Vec<String>) {
    let names = names(RULES);
    let list = dir.join("list.txt");
    std::fs::write(&list, names.join("\n")).unwrap();
    let text = format!(
        "[block]\nservices = [\"instagram\"]\nlists = [\"{}\"]\n[dns]\nupstreams = [\"udp://127.0.0.1:9\"]\n",
        list.display()
    );
    (Config::parse(&text, Path::new("bench.toml")).unwrap(), names)
}

fn matcher(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (config, names) = policy_with_list(dir.path());
    let policy = Policy::build(&config, &ncd_state::StateDir::new(dir.path()));
    let listed = names[RULES / 2].clone();
    let subdomain = format!("cdn.www.{listed}");
    let unlisted = "www.allowed-site.example.org".to_string();
    let mut group = c.benchmark_group("matcher (100k rules)");
    for (label, name) in [
        ("listed", &listed),
        ("subdomain", &subdomain),
        ("not listed", &unlisted),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| black_box(policy.verdict(black_box(name.as_bytes()))))
        });
    }
    group.finish();
}

fn blocked_answer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, names) = policy_with_list(dir.path());
    let chain = runtime.block_on(async {
        let upstreams = Upstreams::build(UpstreamInputs {
            entries: config.dns.upstreams.clone(),
            // Never the machine's own network: nothing here leaves loopback.
            network: Default::default(),
            roots: Vec::new(),
            timeout: Duration::from_secs(1),
        })
        .await;
        let policy = Policy::build(&config, &ncd_state::StateDir::new(dir.path()));
        Chain::new(Arc::new(policy), Arc::new(upstreams), &config.dns)
    });
    let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let request = |name: &str| {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        message.to_vec().unwrap()
    };
    // Distinct names, so every ask is a first one (none is seen twice in a row).
    let firsts: Vec<Vec<u8>> = names.iter().take(50_000).map(|n| request(n)).collect();
    let repeat = request("www.instagram.com");
    let mut out = Vec::with_capacity(1232);

    let mut group = c.benchmark_group("blocked answer (serve::respond)");
    let mut next = 0;
    group.bench_function("first ask", |b| {
        b.iter(|| {
            next = (next + 1) % firsts.len();
            let answered = runtime.block_on(respond(&chain, &firsts[next], client, Transport::Udp, &mut out));
            black_box((answered, out.len()))
        })
    });
    group.bench_function("repeat", |b| {
        b.iter(|| {
            let answered = runtime.block_on(respond(&chain, &repeat, client, Transport::Udp, &mut out));
            black_box((answered, out.len()))
        })
    });
    group.finish();
}

criterion_group!(benches, matcher, blocked_answer);
criterion_main!(benches);
