//! What ncdd sends back: a response code, records, and an optional Extended DNS
//! Error. Blocked answers are synthesised here, in one place, for every query type.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ncd_config::BlockAnswer;

use ncd_policy::{Match, RuleAction};

/// RFC 8914 Extended DNS Error info-codes ncdd uses.
pub const EDE_BLOCKED: u16 = 15;
/// RFC 8914 "Prohibited": a client outside loopback and `allow_clients`.
pub const EDE_PROHIBITED: u16 = 18;
/// RFC 8914 "No Reachable Authority": every upstream failed.
pub const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;

/// A response body, independent of the request it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    /// Extended DNS Error (code, text), sent when the client speaks EDNS.
    pub ede: Option<(u16, &'static str)>,
}

impl Reply {
    pub fn error(rcode: ResponseCode, ede: Option<(u16, &'static str)>) -> Self {
        Self {
            rcode,
            answers: Vec::new(),
            authorities: Vec::new(),
            ede,
        }
    }

    /// The answer for a blocked `qname`/`qtype`, as the matched rule and the answer
    /// mode ask: A → 0.0.0.0 and AAAA → :: in null mode, every other type no data;
    /// NXDOMAIN or REFUSED in those modes. Negative answers carry an SOA so that
    /// resolvers downstream cache them for `ttl` only (RFC 2308).
    pub fn blocked(qname: &Name, qtype: RecordType, rule: &Match<'_>, mode: BlockAnswer, ttl: u32) -> Self {
        let ede = Some((EDE_BLOCKED, "blocked by ncd"));
        let effective = match rule.action {
            RuleAction::NxDomain => BlockAnswer::Nxdomain,
            RuleAction::NoData => {
                return Self {
                    rcode: ResponseCode::NoError,
                    answers: Vec::new(),
                    authorities: vec![soa(rule, ttl)],
                    ede,
                };
            }
            // A steering rule never reaches here (the policy says Steer, not
            // Blocked); were one to, it blocks: fail closed.
            RuleAction::Block | RuleAction::Steer => mode,
        };
        match effective {
            BlockAnswer::Refused => Self::error(ResponseCode::Refused, ede),
            BlockAnswer::Nxdomain => Self {
                rcode: ResponseCode::NXDomain,
                answers: Vec::new(),
                authorities: vec![soa(rule, ttl)],
                ede,
            },
            BlockAnswer::Null => {
                let data = match qtype {
                    RecordType::A => Some(RData::A(A(Ipv4Addr::UNSPECIFIED))),
                    RecordType::AAAA => Some(RData::AAAA(AAAA(Ipv6Addr::UNSPECIFIED))),
                    _ => None,
                };
                match data {
                    Some(data) => Self {
                        rcode: ResponseCode::NoError,
                        answers: vec![Record::from_rdata(qname.clone(), ttl, data)],
                        authorities: Vec::new(),
                        ede,
                    },
                    None => Self {
                        rcode: ResponseCode::NoError,
                        answers: Vec::new(),
                        authorities: vec![soa(rule, ttl)],
                        ede,
                    },
                }
            }
        }
    }

    /// The answer for a host steered to the proxy: A with the proxy's IPv4
    /// addresses, AAAA with its IPv6 ones, every other type (HTTPS and SVCB among
    /// them: no ECH keys, no address hints that would go around the proxy) no data.
    pub fn steered(qname: &Name, qtype: RecordType, rule: &Match<'_>, proxy: &[IpAddr], ttl: u32) -> Self {
        let answers: Vec<Record> = proxy
            .iter()
            .filter_map(|ip| match (qtype, ip) {
                (RecordType::A, IpAddr::V4(v4)) => Some(RData::A(A(*v4))),
                (RecordType::AAAA, IpAddr::V6(v6)) => Some(RData::AAAA(AAAA(*v6))),
                _ => None,
            })
            .map(|data| Record::from_rdata(qname.clone(), ttl, data))
            .collect();
        let authorities = if answers.is_empty() {
            vec![soa(rule, ttl)]
        } else {
            Vec::new()
        };
        Self {
            rcode: ResponseCode::NoError,
            answers,
            authorities,
            ede: None,
        }
    }

    /// The smallest TTL in the reply: how long it may be cached. A negative answer
    /// is cached for its SOA's negative TTL (RFC 2308 §5).
    pub fn cache_ttl(&self) -> Option<u32> {
        let answers = self.answers.iter().map(|r| r.ttl);
        let negative = self.authorities.iter().filter_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        });
        if self.answers.is_empty() {
            negative.min()
        } else {
            answers.min()
        }
    }

    /// This reply `elapsed` seconds later, with TTLs counted down (and capped at
    /// `max_ttl`, so clients come back soon enough to see a new block).
    pub fn aged(&self, elapsed: u32, max_ttl: u32) -> Self {
        let age = |records: &[Record]| {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = r.ttl.saturating_sub(elapsed).min(max_ttl);
                    r
                })
                .collect()
        };
        Self {
            rcode: self.rcode,
            answers: age(&self.answers),
            authorities: age(&self.authorities),
            ede: self.ede,
        }
    }
}

/// The SOA of a synthesised negative answer, owned by the rule's name.
fn soa(rule: &Match<'_>, ttl: u32) -> Record {
    let owner = Name::from_ascii(rule.name).map(|mut n| {
        n.set_fqdn(true);
        n
    });
    let owner = owner.unwrap_or_else(|_| Name::root());
    let mname = Name::from_ascii("ncd.invalid.").unwrap_or_else(|_| Name::root());
    let rname = Name::from_ascii("blocked.ncd.invalid.").unwrap_or_else(|_| Name::root());
    let soa = SOA::new(mname, rname, 1, 3600, 600, 86_400, ttl);
    Record::from_rdata(owner, ttl, RData::SOA(soa))
}
