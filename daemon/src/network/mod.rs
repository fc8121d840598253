//! The network's own resolvers: what ncdd follows for `upstreams = ["system"]`.
//!
//! [`discover`] reads, under a root (`/`, or a test's temp dir, `ncdd
//! --network-root`), the places where the system keeps the DNS servers and domains
//! each network link was handed, and returns them as [`NetworkDns`]. The first
//! source that names a usable server wins, in this order:
//!
//! 1. systemd-resolved's per-link state (`/run/systemd/resolve/netif/N`: what
//!    NetworkManager or `resolvectl` set over D-Bus) and systemd-networkd's
//!    (`/run/systemd/netif/links/N`), merged per link;
//! 2. resolved's list of every uplink server (`/run/systemd/resolve/resolv.conf`);
//! 3. NetworkManager's own resolv.conf (`/run/NetworkManager/no-stub-resolv.conf`,
//!    then `/run/NetworkManager/resolv.conf`);
//! 4. what NetworkManager's devices got by DHCP: the options in the device's
//!    state (`/run/NetworkManager/devices/N`, `dhcp4.domain_name_servers=`), else
//!    the lease files of the connections they are on
//!    (`/var/lib/NetworkManager/*-UUID-*.lease`): the network's truth when NM's
//!    global DNS points at ncdd;
//! 5. the ISC DHCP client's unexpired leases (`/var/lib/dhcp/dhclient*.leases`);
//! 6. `/etc/resolv.conf`;
//! 7. the copy of `/etc/resolv.conf` that `ncd install` kept before the takeover;
//! 8. on macOS, `scutil --dns`.
//!
//! Files are read rather than D-Bus asked: the files are there on systemd 252+
//! whether or not the bus is reachable from ncdd's sandbox, they need no new
//! dependency (zbus and its async stack), and a test can write them. The resolved
//! files say "do not parse": their `KEY=value` lines have been stable since
//! systemd 2xx, and a change there costs local names, never a block.
//!
//! ncdd itself is never a server it follows (after the takeover the files name
//! it): its own listen addresses, the takeover's `127.0.0.1:53`/`[::1]:53` and
//! resolved's stubs `127.0.0.53`/`127.0.0.54` are dropped.

mod files;
#[cfg(any(target_os = "macos", test))]
mod scutil;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// How often ncdd looks at the network's resolvers again. The files live in
/// `/run` (tmpfs): a look costs a few small reads.
pub const POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Names that belong to the local network whatever its links say: they go to the
/// network's servers, never to a public resolver. Private and link-local reverse
/// zones (RFC 1918, RFC 3927, RFC 4193, RFC 4291) and the usual home suffixes.
pub const LOCAL_ZONES: &[&str] = &[
    "local",
    "lan",
    "home.arpa",
    "internal",
    "localdomain",
    "10.in-addr.arpa",
    "16.172.in-addr.arpa",
    "17.172.in-addr.arpa",
    "18.172.in-addr.arpa",
    "19.172.in-addr.arpa",
    "20.172.in-addr.arpa",
    "21.172.in-addr.arpa",
    "22.172.in-addr.arpa",
    "23.172.in-addr.arpa",
    "24.172.in-addr.arpa",
    "25.172.in-addr.arpa",
    "26.172.in-addr.arpa",
    "27.172.in-addr.arpa",
    "28.172.in-addr.arpa",
    "29.172.in-addr.arpa",
    "30.172.in-addr.arpa",
    "31.172.in-addr.arpa",
    "168.192.in-addr.arpa",
    "254.169.in-addr.arpa",
    "c.f.ip6.arpa",
    "d.f.ip6.arpa",
    "8.e.f.ip6.arpa",
    "9.e.f.ip6.arpa",
    "a.e.f.ip6.arpa",
    "b.e.f.ip6.arpa",
];

/// The DNS the network hands out, link by link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NetworkDns {
    /// Where it was read, in words ("systemd-resolved", "/etc/resolv.conf" …).
    pub source: String,
    pub links: Vec<Link>,
}

/// One network link's DNS: its servers and the domains that belong to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    /// The interface name, or `link N`, or the file it came from.
    pub name: String,
    pub servers: Vec<SocketAddr>,
    /// Search and routing domains, in ncd's normal form (lower case, no dot at
    /// the end): names under them go to this link's servers only.
    pub domains: Vec<String>,
    /// Whether names no link claims may go to this link's servers (false for a
    /// VPN that only routes its own domains).
    pub default_route: bool,
}

impl NetworkDns {
    /// The servers for names no link claims: those of the default-route links,
    /// in order, each once.
    pub fn default_servers(&self) -> Vec<SocketAddr> {
        let mut servers = Vec::new();
        for link in self.links.iter().filter(|l| l.default_route) {
            for server in &link.servers {
                if !servers.contains(server) {
                    servers.push(*server);
                }
            }
        }
        servers
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// One line per link, for the log and `ncd status`: `wlan0: 192.168.1.1 (lan)`.
    pub fn describe(&self) -> Vec<String> {
        self.links
            .iter()
            .map(|link| {
                let servers: Vec<String> = link.servers.iter().map(|s| server_words(*s)).collect();
                let mut line = format!("{}: {}", link.name, servers.join(", "));
                if !link.domains.is_empty() {
                    line.push_str(&format!(" ({})", link.domains.join(", ")));
                }
                if !link.default_route {
                    line.push_str(", only for its domains");
                }
                line
            })
            .collect()
    }
}

/// `192.168.1.1`, or `127.0.0.2:5353` when the port is not 53.
pub fn server_words(server: SocketAddr) -> String {
    match (server.port(), server.ip()) {
        (53, ip) => ip.to_string(),
        _ => server.to_string(),
    }
}

/// Where the system's files are read: `/` unless `--network-root` says otherwise.
static ROOT: OnceLock<PathBuf> = OnceLock::new();
/// The addresses ncdd answers on, besides `[dns] listen` (known once bound).
static OWN: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

/// Reads the system's files under `root` from now on (tests: a temp dir).
pub fn set_root(root: PathBuf) {
    let _ = ROOT.set(root);
}

/// The root the files are read under.
pub fn root() -> &'static Path {
    ROOT.get().map_or(Path::new("/"), PathBuf::as_path)
}

/// Notes the addresses ncdd serves on, so they are never followed as a server.
pub fn set_own_addresses(bound: &[SocketAddr]) {
    if let Ok(mut own) = OWN.lock() {
        *own = bound.to_vec();
    }
}

/// The network's resolvers now, without ncdd itself (`listen`: `[dns] listen`).
pub fn discover(listen: &[SocketAddr]) -> NetworkDns {
    let mut own = listen.to_vec();
    if let Ok(bound) = OWN.lock() {
        own.extend(bound.iter().copied());
    }
    // On macOS the system's own view comes first (its resolv.conf is derived).
    #[cfg(target_os = "macos")]
    {
        let dns = without_ncdd(scutil::read(), &own);
        if !dns.is_empty() {
            return dns;
        }
    }
    files::SOURCES
        .iter()
        .filter_map(|source| source(root()))
        .map(|dns| without_ncdd(dns, &own))
        .find(|dns| !dns.is_empty())
        .unwrap_or_default()
}

/// `dns` without ncdd's own addresses, and without links left with no server.
fn without_ncdd(mut dns: NetworkDns, own: &[SocketAddr]) -> NetworkDns {
    for link in &mut dns.links {
        link.servers.retain(|s| !is_ncdd(*s, own));
    }
    dns.links.retain(|l| !l.servers.is_empty());
    dns
}

/// True when `server` is ncdd itself (or a stub that forwards to it).
fn is_ncdd(server: SocketAddr, own: &[SocketAddr]) -> bool {
    const TAKEN_OVER: [IpAddr; 4] = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        // systemd-resolved's stub and its proxy stub: after the takeover, ncdd.
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)),
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 54)),
    ];
    server.ip().is_unspecified()
        || (server.port() == 53 && TAKEN_OVER.contains(&server.ip()))
        || own
            .iter()
            .any(|o| o.port() == server.port() && (o.ip() == server.ip() || o.ip().is_unspecified()))
}

/// A server as the files write it: `1.2.3.4`, `1.2.3.4:5353`, `[fe80::1]:53`,
/// `fe80::1%eth0`, `1.1.1.1#cloudflare-dns.com` (resolved's form; the TLS name is
/// not used: the network's servers are asked in plain DNS, as resolved would).
pub(crate) fn parse_server(text: &str) -> Option<SocketAddr> {
    let text = text.split('#').next()?.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.split('%').next()?.parse().ok()?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.split('%').next()?.parse().ok()?,
            None => 53,
        };
        return Some(SocketAddr::new(IpAddr::V6(ip), port));
    }
    let text = text.split('%').next()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    text.parse::<std::net::SocketAddrV4>().ok().map(SocketAddr::V4)
}

/// A domain as the files write it, in ncd's normal form; `None` for the root.
pub(crate) fn normal_domain(text: &str) -> Option<String> {
    let domain = text.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn servers_in_every_written_form() {
        assert_eq!(parse_server("192.168.1.1"), Some(addr("192.168.1.1:53")));
        assert_eq!(parse_server("127.0.0.2:5353"), Some(addr("127.0.0.2:5353")));
        assert_eq!(parse_server("fe80::1%eth0"), Some(addr("[fe80::1]:53")));
        assert_eq!(
            parse_server("[2001:db8::1]:5353%3#dns.example"),
            Some(addr("[2001:db8::1]:5353"))
        );
        assert_eq!(parse_server("1.1.1.1#cloudflare-dns.com"), Some(addr("1.1.1.1:53")));
        assert_eq!(parse_server("not-an-address"), None);
    }

    #[test]
    fn ncdd_and_the_stubs_are_never_followed() {
        let own = [addr("192.168.1.20:53"), addr("0.0.0.0:5300")];
        for ours in [
            "127.0.0.1:53",
            "[::1]:53",
            "127.0.0.53:53",
            "127.0.0.54:53",
            "192.168.1.20:53",
            "10.0.0.1:5300",
        ] {
            assert!(is_ncdd(addr(ours), &own), "{ours} is ncdd");
        }
        for theirs in ["192.168.1.1:53", "127.0.0.2:53", "127.0.0.1:5353", "[fd00::1]:53"] {
            assert!(!is_ncdd(addr(theirs), &own), "{theirs} is not ncdd");
        }
    }

    #[test]
    fn default_servers_skip_links_that_only_route_their_domains() {
        let dns = NetworkDns {
            source: "test".into(),
            links: vec![
                Link {
                    name: "wg0".into(),
                    servers: vec![addr("10.8.0.1:53")],
                    domains: vec!["corp.example".into()],
                    default_route: false,
                },
                Link {
                    name: "wlan0".into(),
                    servers: vec![addr("192.168.1.1:53"), addr("192.168.1.1:53")],
                    domains: vec!["lan".into()],
                    default_route: true,
                },
            ],
        };
        assert_eq!(dns.default_servers(), [addr("192.168.1.1:53")]);
        assert_eq!(
            dns.describe(),
            [
                "wg0: 10.8.0.1 (corp.example), only for its domains",
                "wlan0: 192.168.1.1, 192.168.1.1 (lan)"
            ]
        );
    }
}
