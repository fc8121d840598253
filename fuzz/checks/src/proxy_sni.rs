//! The proxy's first look at a connection: the ClientHello (rustls `Acceptor`,
//! as `ncd_proxy`'s server peeks it) and the decision to mint a leaf.
//!
//! The bytes are fed to a rustls `Acceptor` as a client's first flight. Then:
//!
//! - reading never panics, whatever the bytes;
//! - when a ClientHello with a server name comes out, the CA (constrained to the
//!   profile sites' registrable domains) mints a leaf for it **only** when the
//!   name is one of those domains or under one — never for any other name — and
//!   every name it does mint for is one of the steered hosts' domains;
//! - the same holds for the name read as text straight from the input (so names
//!   the ClientHello codec would refuse are tried against the CA too), judged in
//!   the proxy's normal form (blanks, a port, a trailing dot and case do not make
//!   another name: `"\tx.com "` gets the leaf of `x.com`, which is permitted).

use std::sync::OnceLock;

use ncd_config::Config;
use ncd_proxy::{CertAuthority, ProfileRules};

fn ca() -> &'static (CertAuthority, Vec<String>) {
    static CA: OnceLock<(CertAuthority, Vec<String>)> = OnceLock::new();
    CA.get_or_init(|| {
        let config = Config::parse(
            "[[profile]]\nname = \"ex\"\ninstagram = [\"exname\"]\nx = [\"exname\"]\n",
            std::path::Path::new("fuzz.toml"),
        )
        .expect("the fuzz profile parses");
        let domains = ProfileRules::compile(&config).registrable_domains();
        let dir = crate::fixture::fixture().dir().join("proxy-ca");
        let (ca, _) = CertAuthority::load_or_create(&dir, &domains).expect("make the fuzz CA");
        (ca, domains)
    })
}

/// Whether `name` is one of `domains` or a name under one (the definition), in
/// the proxy's normal form (`normalize_host`: no blanks around it, no port, no
/// trailing dot, lower case) — the name a leaf is minted for.
fn within(name: &str, domains: &[String]) -> bool {
    let name = ncd_proxy::sites::normalize_host(name);
    domains
        .iter()
        .any(|d| name == *d || name.strip_suffix(d.as_str()).is_some_and(|head| head.ends_with('.')))
}

fn check_name(name: &str) {
    let (ca, domains) = ca();
    let minted = ca.server_config(name).is_ok();
    if minted {
        assert!(within(name, domains), "minted a leaf for {name:?}, outside {domains:?}");
    }
    if !within(name, domains) {
        assert!(!minted && !ca.permits(name), "{name:?} is outside {domains:?}");
    }
}

pub fn check_proxy_sni(data: &[u8]) {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut input = data;
    if acceptor.read_tls(&mut input).is_ok()
        && let Ok(Some(accepted)) = acceptor.accept()
        && let Some(name) = accepted.client_hello().server_name()
    {
        check_name(name);
    }
    // The input as a name, as is: whatever the codec lets through or not.
    if let Ok(text) = std::str::from_utf8(data)
        && !text.is_empty()
        && text.len() <= 253
    {
        check_name(text);
    }
}
