//! What "blocked" means, checked in one place: ncdd answers the name itself, in the
//! configured answer mode, over UDP and over TCP, for every query type an
//! application might use to reach it, and the fake upstream never hears of it.

// Each test binary uses its own part of the shared harness.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, RecordType};
use ncd_config::BlockAnswer;

use super::client::{Answer, query_tcp, query_udp};
use super::upstream::FakeUpstream;

/// A type no application asks for, standing for every rare one (private use, RFC 6895).
pub(crate) const RARE_TYPE: RecordType = RecordType::Unknown(65_280);

/// The query types every blocked name is asked for: addresses, the HTTPS record
/// (whose hints would route around an address block), ANY and a rare type.
pub(crate) const TYPES: [RecordType; 5] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::HTTPS,
    RecordType::ANY,
    RARE_TYPE,
];

/// Asserts that `name` is blocked (see [`assert_blocked_answer`]) over UDP and TCP
/// for every type in [`TYPES`], and that `upstream` heard nothing of it meanwhile.
/// (A name that was allowed before a block may have been asked for then; a test
/// about a name that was never allowed also checks `!upstream.was_asked(name)`.)
#[track_caller]
pub(crate) fn assert_blocked_and_unseen(server: SocketAddr, upstream: &FakeUpstream, name: &str, mode: BlockAnswer) {
    assert_blocked_and_unseen_via(server, upstream, name, name, mode);
}

/// As [`assert_blocked_and_unseen`], for a name blocked because its answer leads to
/// a blocked one (a CNAME target): `asked` is blocked everywhere, and the upstream,
/// which must be asked for `asked`, never hears of `unseen` at all.
#[track_caller]
pub(crate) fn assert_blocked_and_unseen_via(
    server: SocketAddr,
    upstream: &FakeUpstream,
    asked: &str,
    unseen: &str,
    mode: BlockAnswer,
) {
    let before = upstream.times_asked(unseen);
    for rtype in TYPES {
        assert_blocked_answer(&query_udp(server, asked, rtype), asked, rtype, mode, "UDP");
        assert_blocked_answer(&query_tcp(server, asked, rtype), asked, rtype, mode, "TCP");
    }
    let after = upstream.times_asked(unseen);
    assert_eq!(
        after,
        before,
        "{unseen} is blocked, yet the upstream was asked for it {} times meanwhile",
        after - before
    );
    if asked != unseen {
        assert!(
            !upstream.was_asked(unseen),
            "the upstream was asked for the blocked target {unseen}"
        );
    }
}

/// Asserts that `answer` is ncdd's blocked answer in `mode` for `rtype`: the
/// Extended DNS Error 15 ("Blocked"), and
/// - null: NOERROR with 0.0.0.0 for A, :: for AAAA, no records for anything else;
/// - nxdomain: NXDOMAIN and no records;
/// - refused: REFUSED and no records.
///
/// In every mode no record carries real data (no address, no HTTPS hint, no alias).
#[track_caller]
pub(crate) fn assert_blocked_answer(answer: &Answer, name: &str, rtype: RecordType, mode: BlockAnswer, how: &str) {
    let what = format!("{name} {rtype} over {how} ({mode:?})");
    assert!(
        answer.is_blocked(),
        "{what}: not blocked (no EDE 15): {:?}",
        answer.message
    );
    let expected_rcode = match mode {
        BlockAnswer::Null => ResponseCode::NoError,
        BlockAnswer::Nxdomain => ResponseCode::NXDomain,
        BlockAnswer::Refused => ResponseCode::Refused,
    };
    assert_eq!(answer.rcode(), expected_rcode, "{what}: {:?}", answer.message);
    let expected: Vec<RData> = match (mode, rtype) {
        (BlockAnswer::Null, RecordType::A) => vec![RData::A(A(Ipv4Addr::UNSPECIFIED))],
        (BlockAnswer::Null, RecordType::AAAA) => vec![RData::AAAA(AAAA(Ipv6Addr::UNSPECIFIED))],
        _ => Vec::new(),
    };
    let got: Vec<RData> = answer.answers().iter().map(|r| r.data.clone()).collect();
    assert_eq!(got, expected, "{what}: the answer section: {:?}", answer.message);
}
