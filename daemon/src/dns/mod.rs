//! The DNS path: client ACL → policy → cache → upstream → answer inspection.
//!
//! [`Chain`] holds everything a query needs, built from one config; it is the DNS
//! part of a [`Generation`](crate::generation::Generation), swapped whole when the
//! config or a list changes, so the query path takes no lock on the policy, and a
//! new generation starts with an empty cache: a new block bites at once.
//!
//! The chain dispatches on the [`RuleAction`](ncd_policy::RuleAction) of the rule
//! that matched; how a blocked answer looks (the answer mode, its TTL) is a reply
//! setting of the chain's, from `[dns]`.

pub mod cache;
pub mod listen;
pub mod ratelimit;
pub mod reply;
pub mod serve;
pub mod tcp;
pub mod udp;
pub mod upstream;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use ipnet::IpNet;
use ncd_config::{BlockAnswer, DnsConfig};
use ncd_policy::{Match, Policy, SourceId, Verdict};

use crate::stats::Ledger;
use cache::Cache;
use ratelimit::RateLimit;
use reply::{EDE_NO_REACHABLE_AUTHORITY, EDE_PROHIBITED, Reply};
use serve::Responses;
use upstream::{UpstreamAnswer, Upstreams};

/// How long a question no upstream answered is answered SERVFAIL at once. A
/// client therefore waits at most `upstream_timeout` for a failure, however often
/// it retries; a new network or config starts with an empty cache.
pub const FAILURE_REMEMBERED: Duration = Duration::from_secs(3);

/// One generation of the resolver chain.
#[derive(Debug)]
pub struct Chain {
    pub policy: Arc<Policy>,
    pub upstreams: Arc<Upstreams>,
    /// Upstream replies by (name, type).
    replies: Cache<(LowerName, RecordType), Arc<Reply>>,
    /// Finished UDP responses by the request's bytes after its ID (see serve.rs).
    pub(crate) responses: Responses,
    allow_clients: Vec<IpNet>,
    rate_limit: Option<RateLimit>,
    max_ttl: u32,
    /// How blocked names are answered (`[dns] answer`).
    answer: BlockAnswer,
    /// TTL of blocked answers, in seconds.
    blocked_ttl: u32,
    /// Where steered hosts are sent: the proxy's addresses.
    steer_to: Vec<IpAddr>,
    /// Where blocked attempts are counted (shared by every generation).
    ledger: Option<Arc<Ledger>>,
}

impl Chain {
    /// A chain answering with `policy`, asking `upstreams`, with the reply and
    /// client settings of `[dns]`.
    pub fn new(policy: Arc<Policy>, upstreams: Arc<Upstreams>, dns: &DnsConfig) -> Self {
        let secs = |d: &ncd_config::HumanDuration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        Self {
            policy,
            upstreams,
            replies: Cache::new(dns.cache_size),
            responses: Responses::new(dns.cache_size),
            allow_clients: dns.allow_clients.clone(),
            rate_limit: RateLimit::new(dns.client_rate_limit),
            max_ttl: secs(&dns.max_ttl),
            answer: dns.answer,
            blocked_ttl: secs(&dns.blocked_ttl),
            steer_to: Vec::new(),
            ledger: None,
        }
    }

    /// Answers hosts steered by profile rules with these addresses (the proxy's).
    /// Without any, a steered host gets no address: it fails closed.
    pub fn steer_to(mut self, proxy: Vec<IpAddr>) -> Self {
        self.steer_to = proxy;
        self
    }

    /// Counts blocked attempts in `ledger`.
    pub fn with_ledger(mut self, ledger: Arc<Ledger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// True when `ip` may query: loopback always, others only from `allow_clients`.
    pub fn client_allowed(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        ip.is_loopback() || self.allow_clients.iter().any(|net| net.contains(&ip))
    }

    /// False when a client other than loopback is over its rate limit: its query
    /// is dropped unanswered.
    pub fn admit(&self, ip: IpAddr) -> bool {
        match &self.rate_limit {
            Some(limit) if !unmapped(ip).is_loopback() => limit.admit(ip, Instant::now()),
            _ => true,
        }
    }

    /// Everything that can be answered without leaving the process: the client
    /// check, the policy, the cache. [`Local::Upstream`] means "ask
    /// [`Chain::ask_upstream`]"; the UDP loop answers all else inline.
    pub fn answer_locally(&self, qname: &LowerName, qtype: RecordType, client: IpAddr) -> Local {
        if !self.client_allowed(client) {
            return Local::Refused(Reply::error(
                ResponseCode::Refused,
                Some((EDE_PROHIBITED, "not an open resolver")),
            ));
        }
        let mut buf = [0u8; 256];
        match self.policy.verdict(name_bytes(qname, &mut buf)) {
            Verdict::Blocked(rule) => {
                self.count(client, rule.source);
                return Local::Blocked(self.blocked(qname, qtype, &rule), rule.source);
            }
            Verdict::Steer(rule) => return Local::Steered(self.steered(qname, qtype, &rule), rule.source),
            Verdict::Pass | Verdict::Allowed { .. } => {}
        }
        let key = (qname.clone(), qtype);
        match self.replies.get(&key, Instant::now()) {
            Some((reply, age)) => Local::Cached(reply, age),
            None => Local::Upstream,
        }
    }

    /// Asks the upstreams, looks through the answer for blocked names, caches it.
    pub async fn ask_upstream(&self, qname: &LowerName, qtype: RecordType, client: IpAddr) -> Arc<Reply> {
        let now = Instant::now();
        let query = hickory_proto::op::Query::query(Name::from(qname), qtype);
        let reply = match self.upstreams.query(query).await {
            Ok(answer) => match self.inspect(&answer) {
                Some(Verdict::Blocked(blocked_by)) => {
                    tracing::debug!(%qname, rule = %blocked_by, "answer leads into a blocked name");
                    self.count(client, blocked_by.source);
                    self.blocked(qname, qtype, &blocked_by)
                }
                // An alias into a steered host goes to the proxy too, never around it.
                Some(Verdict::Steer(rule)) => self.steered(qname, qtype, &rule),
                _ => Reply {
                    rcode: answer.rcode,
                    answers: answer.answers,
                    authorities: answer.authorities,
                    ede: None,
                },
            },
            Err(error) => {
                tracing::debug!(%qname, %error, "upstream failure");
                let failed = Arc::new(Reply::error(
                    ResponseCode::ServFail,
                    Some((EDE_NO_REACHABLE_AUTHORITY, "no upstream answered")),
                ));
                // Remembered for a moment (RFC 9520): a stub in front of ncdd
                // (systemd-resolved, glibc) retries at once, and each retry would
                // wait the whole upstream timeout again.
                self.replies
                    .insert((qname.clone(), qtype), failed.clone(), FAILURE_REMEMBERED, now);
                return failed;
            }
        };
        // TTLs are capped once, here; the cache and this client share the reply.
        let reply = Arc::new(reply.aged(0, self.max_ttl));
        if let Some(ttl) = reply.cache_ttl() {
            let ttl = Duration::from_secs(u64::from(ttl));
            self.replies.insert((qname.clone(), qtype), reply.clone(), ttl, now);
        }
        reply
    }

    /// Counts a blocked attempt from `client` against the service the rule came from.
    pub(crate) fn count(&self, client: IpAddr, source: SourceId) {
        if let Some(ledger) = &self.ledger
            && let Some(service) = self.policy.source(source).and_then(ncd_policy::Source::ledger_label)
        {
            ledger.record(client, service);
        }
    }

    fn blocked(&self, qname: &LowerName, qtype: RecordType, rule: &Match<'_>) -> Reply {
        Reply::blocked(&Name::from(qname), qtype, rule, self.answer, self.blocked_ttl)
    }

    fn steered(&self, qname: &LowerName, qtype: RecordType, rule: &Match<'_>) -> Reply {
        Reply::steered(&Name::from(qname), qtype, rule, &self.steer_to, self.blocked_ttl)
    }

    /// Looks through an upstream answer for a name the policy blocks or steers:
    /// owners and targets of CNAMEs (cloaking) and SVCB/HTTPS targets (alias and
    /// service mode). A block anywhere wins over a steer.
    fn inspect<'p>(&'p self, answer: &UpstreamAnswer) -> Option<Verdict<'p>> {
        let mut buf = [0u8; 256];
        let mut steer = None;
        let mut check = |name: &Name| match self.policy.verdict(name_bytes(name, &mut buf)) {
            blocked @ Verdict::Blocked(_) => Some(blocked),
            Verdict::Steer(rule) => {
                steer.get_or_insert(Verdict::Steer(rule));
                None
            }
            _ => None,
        };
        for record in &answer.answers {
            if let Some(rule) = check(&record.name) {
                return Some(rule);
            }
            let target = match &record.data {
                RData::CNAME(cname) => Some(&cname.0),
                RData::HTTPS(https) => Some(&https.0.target_name),
                RData::SVCB(svcb) => Some(&svcb.target_name),
                _ => None,
            };
            if let Some(rule) = target.filter(|t| !t.is_root()).and_then(&mut check) {
                return Some(rule);
            }
        }
        steer
    }
}

/// `ip` with an IPv4-mapped IPv6 address read as the IPv4 address it carries.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What [`Chain::answer_locally`] found.
#[derive(Debug)]
pub enum Local {
    /// Blocked by a rule from `source`.
    Blocked(Reply, SourceId),
    /// A client outside loopback and `allow_clients`.
    Refused(Reply),
    /// A cached upstream reply, `age` seconds old.
    Cached(Arc<Reply>, u32),
    /// A host steered to the proxy, by a rule from `source`.
    Steered(Reply, SourceId),
    /// Not known here: the upstreams must be asked.
    Upstream,
}

/// Writes `name` in ncd's normal form (lower-case, no trailing dot) into `buf`,
/// without allocating, and returns the written part.
pub fn name_bytes<'b>(name: &Name, buf: &'b mut [u8; 256]) -> &'b [u8] {
    let mut len = 0;
    for label in name.iter() {
        if len != 0 && len < buf.len() {
            buf[len] = b'.';
            len += 1;
        }
        for &byte in label {
            if len == buf.len() {
                break;
            }
            buf[len] = byte.to_ascii_lowercase();
            len += 1;
        }
    }
    &buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_bytes_is_lower_case_without_trailing_dot() {
        let mut buf = [0u8; 256];
        let name = Name::from_ascii("WWW.Instagram.COM.").unwrap();
        assert_eq!(name_bytes(&name, &mut buf), b"www.instagram.com");
        assert_eq!(name_bytes(&Name::root(), &mut buf), b"");
    }
}
