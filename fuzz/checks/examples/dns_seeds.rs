//! Writes the `dns_request` seeds (flag byte + a request made with hickory-proto)
//! into the directory given, e.g.
//! `cargo run -p ncd-fuzz-checks --example dns_seeds -- fuzz/corpus/dns_request`.
//! Flag byte: bits 0-1 the chain, bit 2 TCP, bits 3-5 the client (see
//! `ncd_fuzz_checks::dns_request`).

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("a seed name"), qtype));
    message
}

fn with_edns(mut message: Message, payload: u16, dnssec_ok: bool) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    edns.set_dnssec_ok(dnssec_ok);
    message.set_edns(edns);
    message
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("the directory to write the seeds to"));
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    let udp = |chain: u8, client: u8| chain | (client << 3);
    let tcp = |chain: u8, client: u8| chain | 4 | (client << 3);
    let mut seeds: Vec<(String, u8, Message)> = Vec::new();
    let mut add = |name: &str, flags: u8, message: Message| seeds.push((name.to_string(), flags, message));

    add("blocked-a", udp(0, 0), query("www.instagram.com.", RecordType::A));
    add(
        "blocked-aaaa-v6",
        udp(0, 1),
        query("WWW.Instagram.COM.", RecordType::AAAA),
    );
    add(
        "blocked-https-nx",
        udp(1, 0),
        query("instagram.com.", RecordType::HTTPS),
    );
    add("blocked-mx-refused", udp(2, 2), query("blocked.test.", RecordType::MX));
    add("exact", udp(0, 0), query("exact.test.", RecordType::A));
    add("exact-sub", udp(0, 0), query("www.exact.test.", RecordType::A));
    add("exception", udp(0, 0), query("ok.blocked.test.", RecordType::A));
    add("list-rule", udp(0, 0), query("x.adserver.example.", RecordType::A));
    add("canary", udp(0, 0), query("use-application-dns.net.", RecordType::A));
    add("ddr", udp(0, 0), query("_dns.resolver.arpa.", RecordType::SVCB));
    add("allowed-a", udp(0, 0), query("allowed.test.", RecordType::A));
    add("allowed-aaaa-tcp", tcp(0, 1), query("allowed.test.", RecordType::AAAA));
    add("allowed-txt-cached", udp(1, 0), query("allowed.test.", RecordType::TXT));
    add("allowed-mx", udp(0, 0), query("allowed.test.", RecordType::MX));
    add("cname-cloak", udp(0, 0), query("cname.allowed.test.", RecordType::A));
    add(
        "https-alias",
        udp(0, 0),
        query("alias.allowed.test.", RecordType::HTTPS),
    );
    add("svcb", udp(0, 0), query("svc.allowed.test.", RecordType::SVCB));
    add("nxdomain", udp(0, 0), query("nx.allowed.test.", RecordType::A));
    add("servfail", udp(0, 0), query("fail.allowed.test.", RecordType::A));
    add("big-udp", udp(0, 0), query("big.allowed.test.", RecordType::A));
    add("big-tcp", tcp(0, 0), query("big.allowed.test.", RecordType::A));
    add("lan-client", udp(0, 2), query("allowed.test.", RecordType::A));
    add(
        "lan-client-mapped",
        udp(0, 3),
        query("www.instagram.com.", RecordType::A),
    );
    add("lan-rate-limited", udp(3, 2), query("allowed.test.", RecordType::A));
    add("outsider", udp(0, 4), query("allowed.test.", RecordType::A));
    add("outsider-v6", tcp(0, 5), query("www.instagram.com.", RecordType::A));
    add(
        "edns",
        udp(0, 0),
        with_edns(query("www.instagram.com.", RecordType::A), 4096, false),
    );
    add(
        "edns-do",
        udp(1, 0),
        with_edns(query("allowed.test.", RecordType::A), 1232, true),
    );
    add(
        "edns-small",
        udp(0, 0),
        with_edns(query("big.allowed.test.", RecordType::A), 100, false),
    );
    add(
        "edns-big",
        udp(0, 0),
        with_edns(query("big.allowed.test.", RecordType::A), 65_535, false),
    );
    let mut chaos = query("version.bind.", RecordType::TXT);
    chaos.queries[0].set_query_class(DNSClass::CH);
    add("class-chaos", udp(0, 0), chaos);
    add("opcode-notify", udp(0, 0), {
        let mut m = query("allowed.test.", RecordType::SOA);
        m.metadata.op_code = OpCode::Notify;
        m
    });
    add("two-questions", udp(0, 0), {
        let mut m = query("allowed.test.", RecordType::A);
        m.add_query(Query::query(
            Name::from_ascii("www.instagram.com.").expect("name"),
            RecordType::A,
        ));
        m
    });
    add(
        "no-question",
        udp(0, 0),
        Message::new(7, MessageType::Query, OpCode::Query),
    );
    add("a-response", udp(0, 0), {
        let mut m = query("allowed.test.", RecordType::A);
        m.metadata.message_type = MessageType::Response;
        m.add_answer(Record::from_rdata(
            Name::from_ascii("allowed.test.").expect("name"),
            60,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        m
    });
    add("with-answer", udp(0, 0), {
        let mut m = query("allowed.test.", RecordType::A);
        m.add_additional(Record::from_rdata(
            Name::from_ascii("extra.test.").expect("name"),
            60,
            RData::A(A::new(192, 0, 2, 9)),
        ));
        m
    });
    add("idn", udp(0, 0), query("xn--bcher-kva.blocked.test.", RecordType::A));
    add("root", udp(0, 0), query(".", RecordType::NS));
    add("any", udp(0, 0), query("allowed.test.", RecordType::ANY));

    for (name, flags, message) in &seeds {
        let mut bytes = vec![*flags];
        bytes.extend(message.to_vec().expect("encode a seed"));
        std::fs::write(dir.join(name), &bytes).expect("write a seed");
    }
    // Broken ones: cut short, a header alone, too short for a header.
    let full = query("www.instagram.com.", RecordType::A).to_vec().expect("encode");
    for (name, bytes) in [
        ("cut", &full[..full.len() - 3]),
        ("header-only", &full[..12]),
        ("short", &full[..5]),
    ] {
        let mut seed = vec![udp(0, 0)];
        seed.extend_from_slice(bytes);
        std::fs::write(dir.join(name), seed).expect("write a seed");
    }
    std::fs::write(dir.join("empty"), [0u8]).expect("write a seed");
    println!("{} seeds in {}", seeds.len() + 4, dir.display());
}
