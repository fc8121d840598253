//! The files the system keeps its DNS in, and their parsers (pure, unit-tested on
//! captured text). See the module above for the order they are read in.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Link, NetworkDns, normal_domain, parse_server};

/// resolved's per-link state, set over D-Bus (NetworkManager, `resolvectl`).
const RESOLVED_LINKS: &str = "run/systemd/resolve/netif";
/// networkd's per-link state.
const NETWORKD_LINKS: &str = "run/systemd/netif/links";
/// resolved's list of every uplink server (no per-link split).
const RESOLVED_UPLINK: &str = "run/systemd/resolve/resolv.conf";
/// NetworkManager's view, without resolved's stub when NM uses resolved.
const NETWORKMANAGER: [&str; 2] = [
    "run/NetworkManager/no-stub-resolv.conf",
    "run/NetworkManager/resolv.conf",
];
/// NetworkManager's devices (the connection each one is on) and its DHCP leases
/// per connection: what the network handed out even when NM's own resolv.conf
/// names only ncdd (NM's global DNS, after the takeover).
const NETWORKMANAGER_DEVICES: &str = "run/NetworkManager/devices";
const NETWORKMANAGER_LEASES: &str = "var/lib/NetworkManager";
/// Where the ISC DHCP client keeps its leases (Debian, then Red Hat).
const DHCLIENT_DIRS: [&str; 2] = ["var/lib/dhcp", "var/lib/dhclient"];
const RESOLV_CONF: &str = "etc/resolv.conf";
/// The copy `ncd install` keeps of a resolv.conf it replaced.
const RESOLV_CONF_BEFORE_TAKEOVER: &str = "var/lib/ncd-root/install-backup/etc/resolv.conf";
/// No file ncdd reads here is near this; a bigger one is not a resolver file.
const MAX_FILE: u64 = 1 << 20;

/// A place the system keeps its DNS in; `None` when it is not there.
pub(super) type Source = fn(&Path) -> Option<NetworkDns>;

/// The sources, in order of trust. They are read one by one until one names a
/// usable server: every 2 s, most machines stop at the first.
pub(super) const SOURCES: &[Source] = &[
    |root| Some(systemd_links(root)),
    |root| resolv_conf_file(root, RESOLVED_UPLINK, "systemd-resolved"),
    |root| resolv_conf_file(root, NETWORKMANAGER[0], "NetworkManager"),
    |root| resolv_conf_file(root, NETWORKMANAGER[1], "NetworkManager"),
    |root| Some(networkmanager_leases(root)),
    |root| Some(dhclient(root)),
    |root| resolv_conf_file(root, RESOLV_CONF, "/etc/resolv.conf"),
    |root| {
        resolv_conf_file(
            root,
            RESOLV_CONF_BEFORE_TAKEOVER,
            "/etc/resolv.conf as it was before ncd install",
        )
    },
];

fn resolv_conf_file(root: &Path, path: &str, words: &str) -> Option<NetworkDns> {
    small_file(&root.join(path)).map(|text| resolv_conf(words, &text))
}

fn small_file(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The files of one directory whose names are link indices, by index.
fn by_ifindex(dir: &Path) -> BTreeMap<u32, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let index = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((index, small_file(&e.path())?))
        })
        .collect()
}

/// resolved's and networkd's per-link files, merged: where `resolvectl` or
/// NetworkManager set a link's servers, resolved uses those.
fn systemd_links(root: &Path) -> NetworkDns {
    let resolved = by_ifindex(&root.join(RESOLVED_LINKS));
    let networkd = by_ifindex(&root.join(NETWORKD_LINKS));
    let mut indices: Vec<u32> = resolved.keys().chain(networkd.keys()).copied().collect();
    indices.sort_unstable();
    indices.dedup();
    let links = indices
        .into_iter()
        .filter_map(|index| {
            let name = interface_name(root, index);
            let from_resolved = resolved.get(&index).map(|t| resolved_link(&name, t));
            match from_resolved {
                Some(link) if !link.servers.is_empty() => Some(link),
                _ => networkd.get(&index).and_then(|t| networkd_link(&name, t)),
            }
        })
        .collect();
    NetworkDns {
        source: "systemd-resolved".into(),
        links,
    }
}

/// The interface's name from `/sys/class/net/*/ifindex`, else `link N`.
fn interface_name(root: &Path, index: u32) -> String {
    let found = std::fs::read_dir(root.join("sys/class/net")).ok().and_then(|entries| {
        entries.flatten().find_map(|e| {
            let text = std::fs::read_to_string(e.path().join("ifindex")).ok()?;
            (text.trim().parse::<u32>().ok()? == index).then(|| e.file_name().to_string_lossy().into_owned())
        })
    });
    found.unwrap_or_else(|| format!("link {index}"))
}

/// `KEY=value` lines.
fn keys(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn yes(value: &str) -> Option<bool> {
    match value {
        "yes" | "true" | "1" => Some(true),
        "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Whether a link serves names no link claims, as resolved decides: an explicit
/// setting, else `~.` says yes, else any routing-only domain says no.
fn default_route(explicit: Option<bool>, routing: &[&str]) -> bool {
    explicit.unwrap_or_else(|| routing.contains(&".") || routing.iter().all(|d| normal_domain(d).is_none()))
}

/// resolved's `/run/systemd/resolve/netif/N`: `SERVERS=`, `DOMAINS=` (`~` marks a
/// routing-only domain), `DEFAULT_ROUTE=`.
pub(super) fn resolved_link(name: &str, text: &str) -> Link {
    let keys = keys(text);
    let servers = keys
        .get("SERVERS")
        .map(|v| v.split_whitespace().filter_map(parse_server).collect())
        .unwrap_or_default();
    let words: Vec<&str> = keys
        .get("DOMAINS")
        .map(|v| v.split_whitespace().collect())
        .unwrap_or_default();
    let routing: Vec<&str> = words.iter().filter_map(|d| d.strip_prefix('~')).collect();
    let domains = words
        .iter()
        .filter_map(|d| normal_domain(d.trim_start_matches('~')))
        .collect();
    Link {
        name: name.to_string(),
        servers,
        domains,
        default_route: default_route(keys.get("DEFAULT_ROUTE").and_then(|v| yes(v)), &routing),
    }
}

/// networkd's `/run/systemd/netif/links/N`: `DNS=`, `DOMAINS=`, `ROUTE_DOMAINS=`,
/// `DNS_DEFAULT_ROUTE=`; a link that is down is skipped.
pub(super) fn networkd_link(name: &str, text: &str) -> Option<Link> {
    let keys = keys(text);
    if matches!(keys.get("OPER_STATE"), Some(&("off" | "no-carrier" | "dormant"))) {
        return None;
    }
    let list = |key: &str| -> Vec<&str> {
        keys.get(key)
            .map(|v| v.split_whitespace().collect())
            .unwrap_or_default()
    };
    let routing = list("ROUTE_DOMAINS");
    let domains = list("DOMAINS")
        .into_iter()
        .chain(routing.iter().copied())
        .filter_map(normal_domain)
        .collect();
    Some(Link {
        name: name.to_string(),
        servers: list("DNS").into_iter().filter_map(parse_server).collect(),
        domains,
        default_route: default_route(keys.get("DNS_DEFAULT_ROUTE").and_then(|v| yes(v)), &routing),
    })
}

/// resolv.conf text: its `nameserver`s and `search`/`domain` domains, as one link.
pub(super) fn resolv_conf(source: &str, text: &str) -> NetworkDns {
    let mut servers = Vec::new();
    let mut domains = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => servers.extend(fields.next().and_then(parse_server)),
            // The last `search` or `domain` line wins, as in glibc.
            Some("search" | "domain") => domains = fields.filter_map(normal_domain).collect(),
            _ => {}
        }
    }
    let links = if servers.is_empty() {
        Vec::new()
    } else {
        vec![Link {
            name: source.to_string(),
            servers,
            domains,
            default_route: true,
        }]
    };
    NetworkDns {
        source: source.to_string(),
        links,
    }
}

/// What NetworkManager's devices got by DHCP on the connections they are on now:
/// the DHCP options NM keeps in each device's state file, else the lease files
/// of those connections (older leases, from other networks, stay on disk and are
/// not read).
fn networkmanager_leases(root: &Path) -> NetworkDns {
    let now = chrono::Utc::now().naive_utc();
    let mut links = Vec::new();
    let leases: Vec<std::path::PathBuf> = std::fs::read_dir(root.join(NETWORKMANAGER_LEASES))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for (index, device) in &by_ifindex(&root.join(NETWORKMANAGER_DEVICES)) {
        if let Some(link) = networkmanager_device(&interface_name(root, *index), device) {
            links.push(link);
            continue;
        }
        let Some(uuid) = keys(device).get("connection-uuid").map(|u| u.to_string()) else {
            continue;
        };
        for path in &leases {
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(text) = small_file(path) else { continue };
            let iface = |plugin: &str| {
                file.strip_prefix(&format!("{plugin}-{uuid}-"))
                    .and_then(|rest| rest.strip_suffix(".lease"))
                    .map(str::to_string)
            };
            if let Some(iface) = iface("internal") {
                links.extend(systemd_lease(&iface, &text));
            } else if let Some(iface) = iface("dhclient") {
                links.extend(dhclient_leases(&text, now).into_iter().map(|mut l| {
                    l.name = iface.clone();
                    l
                }));
            }
        }
    }
    NetworkDns {
        source: "NetworkManager's DHCP lease".into(),
        links,
    }
}

/// NetworkManager's device state (`/run/NetworkManager/devices/N`): the DHCP
/// options of the lease in use, `dhcp4.domain_name_servers=`, `dhcp4.domain_search=`
/// (else `dhcp4.domain_name=`) and their DHCPv6 counterparts. NetworkManager 1.42's
/// internal client keeps only the address in its lease file (seen on Debian 12).
pub(super) fn networkmanager_device(name: &str, text: &str) -> Option<Link> {
    let keys = keys(text);
    let words = |key: &str| {
        keys.get(key)
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let servers: Vec<_> = words("dhcp4.domain_name_servers")
        .into_iter()
        .chain(words("dhcp6.dhcp6_name_servers"))
        .filter_map(parse_server)
        .collect();
    let mut search = words("dhcp4.domain_search");
    if search.is_empty() {
        search = words("dhcp4.domain_name");
    }
    let mut domains: Vec<String> = Vec::new();
    for domain in search
        .into_iter()
        .chain(words("dhcp6.dhcp6_domain_search"))
        .filter_map(normal_domain)
    {
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    (!servers.is_empty()).then(|| Link {
        name: name.to_string(),
        servers,
        domains,
        default_route: true,
    })
}

/// A lease in systemd's format (NetworkManager's internal DHCP client):
/// `DNS=`, `DOMAINNAME=`, `DOMAIN_SEARCH_LIST=`.
pub(super) fn systemd_lease(name: &str, text: &str) -> Option<Link> {
    let keys = keys(text);
    let servers: Vec<_> = keys
        .get("DNS")
        .map(|v| v.split_whitespace().filter_map(parse_server).collect())
        .unwrap_or_default();
    let domains = match keys.get("DOMAIN_SEARCH_LIST").or(keys.get("DOMAINNAME")) {
        Some(list) => list.split_whitespace().filter_map(normal_domain).collect(),
        None => Vec::new(),
    };
    (!servers.is_empty()).then(|| Link {
        name: name.to_string(),
        servers,
        domains,
        default_route: true,
    })
}

/// The ISC DHCP client's lease files: per interface, the last lease that has not
/// expired (the files keep every lease ever had, from every network).
fn dhclient(root: &Path) -> NetworkDns {
    let now = chrono::Utc::now().naive_utc();
    let mut links: Vec<Link> = Vec::new();
    for dir in DHCLIENT_DIRS {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "leases" || e == "lease"))
        {
            if let Some(text) = small_file(path) {
                for link in dhclient_leases(&text, now) {
                    links.retain(|l| l.name != link.name);
                    links.push(link);
                }
            }
        }
    }
    NetworkDns {
        source: "the DHCP client's lease".into(),
        links,
    }
}

/// The current lease per interface in dhclient lease text, at `now` (UTC).
pub(super) fn dhclient_leases(text: &str, now: chrono::NaiveDateTime) -> Vec<Link> {
    let mut current: Vec<Link> = Vec::new();
    for block in text.split("lease {").skip(1) {
        let body = block.split('}').next().unwrap_or_default();
        let mut link = Link {
            name: String::new(),
            servers: Vec::new(),
            domains: Vec::new(),
            default_route: true,
        };
        let mut expired = false;
        for statement in body.split(';').map(str::trim) {
            let unquote = |s: &str| s.trim().trim_matches('"').to_string();
            if let Some(name) = statement.strip_prefix("interface ") {
                link.name = unquote(name);
            } else if let Some(list) = statement.strip_prefix("option domain-name-servers ") {
                link.servers = list.split(',').filter_map(|s| parse_server(s.trim())).collect();
            } else if let Some(list) = statement.strip_prefix("option domain-search ") {
                link.domains = list.split(',').filter_map(|d| normal_domain(&unquote(d))).collect();
            } else if let Some(name) = statement.strip_prefix("option domain-name ") {
                if link.domains.is_empty() {
                    link.domains = unquote(name).split_whitespace().filter_map(normal_domain).collect();
                }
            } else if let Some(when) = statement.strip_prefix("expire ") {
                // `expire 4 2026/12/03 05:00:00` (UTC) or `expire never`.
                let when = when.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
                expired = chrono::NaiveDateTime::parse_from_str(&when, "%Y/%m/%d %H:%M:%S").is_ok_and(|t| t <= now);
            }
        }
        if !expired && !link.servers.is_empty() {
            current.retain(|l| l.name != link.name);
            current.push(link);
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// Writes `text` at `path` under `root`, making its folders.
    fn write_under(root: &std::path::Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn resolved_link_state_from_networkmanager() {
        // Captured from systemd 252 after NetworkManager configured wlan0.
        let text = "# This is private data. Do not parse.\nLLMNR=yes\nMDNS=no\nDNSSEC=no\n\
                    SERVERS=192.168.1.1 fd00::1%3#router.lan\nDOMAINS=lan ~corp.example\n";
        let link = resolved_link("wlan0", text);
        assert_eq!(link.servers, addrs(&["192.168.1.1:53", "[fd00::1]:53"]));
        assert_eq!(link.domains, ["lan", "corp.example"]);
        assert!(!link.default_route, "a routing-only domain makes it a split link");
        let full = resolved_link("wg0", "SERVERS=10.8.0.1\nDOMAINS=~.\n");
        assert!(full.default_route && full.domains.is_empty());
        assert!(resolved_link("x", "SERVERS=1.1.1.1\nDEFAULT_ROUTE=yes\nDOMAINS=~a.b\n").default_route);
    }

    #[test]
    fn networkd_link_state() {
        let text = "# This is private data. Do not parse.\nADMIN_STATE=configured\nOPER_STATE=routable\n\
                    DNS=192.168.7.1 192.168.7.2:5353\nDOMAINS=home.arpa\nROUTE_DOMAINS=vpn.example\n";
        let link = networkd_link("eth0", text).unwrap();
        assert_eq!(link.servers, addrs(&["192.168.7.1:53", "192.168.7.2:5353"]));
        assert_eq!(link.domains, ["home.arpa", "vpn.example"]);
        assert!(!link.default_route);
        assert!(networkd_link("eth1", "OPER_STATE=no-carrier\nDNS=1.2.3.4\n").is_none());
    }

    #[test]
    fn resolv_conf_keeps_its_search_domains() {
        let dns = resolv_conf(
            "/etc/resolv.conf",
            "# by NM\nsearch lan Home.Arpa.\nnameserver 192.168.1.1\noptions edns0\nnameserver ::1\n",
        );
        assert_eq!(dns.links[0].servers, addrs(&["192.168.1.1:53", "[::1]:53"]));
        assert_eq!(dns.links[0].domains, ["lan", "home.arpa"]);
        assert!(resolv_conf("x", "search lan\n").links.is_empty());
    }

    #[test]
    fn dhclient_keeps_the_last_lease_that_has_not_expired() {
        let text = r#"
lease {
  interface "wlan0";
  fixed-address 10.1.2.3;
  option domain-name-servers 10.1.2.1;
  option domain-name "hotel.example";
  expire 1 2026/11/30 10:00:00;
}
lease {
  interface "wlan0";
  fixed-address 192.168.1.50;
  option domain-name-servers 192.168.1.1, 192.168.1.2;
  option domain-search "lan", "home.arpa";
  option domain-name "ignored.example";
  renew 3 2026/12/02 11:00:00;
  expire 4 2026/12/03 05:00:00;
}
lease {
  interface "eth0";
  option domain-name-servers 172.16.0.1;
  expire 4 2026/12/01 05:00:00;
}
"#;
        let now = chrono::NaiveDateTime::parse_from_str("2026/12/02 06:00:00", "%Y/%m/%d %H:%M:%S").unwrap();
        let links = dhclient_leases(text, now);
        assert_eq!(links.len(), 1, "eth0's lease has expired: {links:?}");
        assert_eq!(links[0].name, "wlan0");
        assert_eq!(links[0].servers, addrs(&["192.168.1.1:53", "192.168.1.2:53"]));
        assert_eq!(links[0].domains, ["lan", "home.arpa"]);
    }

    #[test]
    fn networkmanager_leases_of_the_connections_in_use_only() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| write_under(root.path(), path, text);
        write(
            "run/NetworkManager/devices/3",
            "[device]\nmanaged=true\nconnection-uuid=aaaa-1111\nnm-owned=false\n",
        );
        write(
            "var/lib/NetworkManager/internal-aaaa-1111-wlan0.lease",
            "# This is private data. Do not parse.\nADDRESS=192.168.1.50\nDNS=192.168.1.1\nDOMAINNAME=lan\nLIFETIME=86400\n",
        );
        // A café from last week: its lease is still on disk.
        write(
            "var/lib/NetworkManager/internal-bbbb-2222-wlan0.lease",
            "ADDRESS=10.3.0.7\nDNS=10.3.0.1\n",
        );
        let dns = networkmanager_leases(root.path());
        assert_eq!(dns.links.len(), 1, "{dns:?}");
        assert_eq!(
            (
                dns.links[0].name.as_str(),
                dns.links[0].servers.clone(),
                dns.links[0].domains.clone()
            ),
            ("wlan0", addrs(&["192.168.1.1:53"]), vec!["lan".to_string()])
        );
    }

    #[test]
    fn networkmanager_device_state_names_the_dhcp_servers() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| write_under(root.path(), path, text);
        // As NetworkManager 1.42 (Debian 12) left them in the live test: the DNS
        // is in the device's state, the internal client's lease has the address only.
        write(
            "run/NetworkManager/devices/2",
            "[device]\nmanaged=true\nconnection-uuid=075ee8d0-ce72\nnm-owned=false\n\
             route-metric-default-effective=100\n\n[dhcp4]\ndhcp4.domain_name_servers=10.77.1.1 10.77.1.3\n\
             dhcp4.domain_search=lan corp.example\ndhcp4.ip_address=10.77.1.2\n",
        );
        write(
            "var/lib/NetworkManager/internal-075ee8d0-ce72-lanA.lease",
            "# This is private data. Do not parse.\nADDRESS=10.77.1.2\n",
        );
        // A device that is up without DHCP (loopback, or a static address).
        write(
            "run/NetworkManager/devices/1",
            "[device]\nmanaged=true\nnm-owned=false\n",
        );
        write("sys/class/net/lanA/ifindex", "2\n");
        let dns = networkmanager_leases(root.path());
        assert_eq!(dns.links.len(), 1, "{dns:?}");
        assert_eq!(
            (
                dns.links[0].name.as_str(),
                dns.links[0].servers.clone(),
                dns.links[0].domains.clone()
            ),
            (
                "lanA",
                addrs(&["10.77.1.1:53", "10.77.1.3:53"]),
                vec!["lan".to_string(), "corp.example".to_string()]
            )
        );
    }

    #[test]
    fn sources_are_read_in_order_under_a_root() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| write_under(root.path(), path, text);
        write("etc/resolv.conf", "nameserver 127.0.0.53\nsearch lan\n");
        write("run/systemd/resolve/netif/3", "SERVERS=192.168.1.1\nDOMAINS=lan\n");
        write("run/systemd/netif/links/3", "DNS=10.9.9.9\n");
        write(
            "run/systemd/netif/links/4",
            "OPER_STATE=routable\nDNS=10.0.0.1\nROUTE_DOMAINS=corp\n",
        );
        let found: Vec<NetworkDns> = SOURCES.iter().filter_map(|source| source(root.path())).collect();
        assert_eq!(found[0].source, "systemd-resolved");
        let servers: Vec<_> = found[0]
            .links
            .iter()
            .map(|l| (l.name.as_str(), l.servers.clone()))
            .collect();
        assert_eq!(
            servers,
            [
                ("link 3", addrs(&["192.168.1.1:53"])),
                ("link 4", addrs(&["10.0.0.1:53"]))
            ]
        );
        assert_eq!(found.last().unwrap().source, "/etc/resolv.conf");
    }
}
