//! macOS: the resolvers `scutil --dns` shows. Only its first part ("DNS
//! configuration") is read; the scoped copies after it repeat the same servers.
//! A resolver with a `domain` serves only that domain (a VPN, `/etc/resolver/`);
//! one without serves everything else, with its `search domain`s.

use super::{Link, NetworkDns, normal_domain, parse_server};

/// Runs `scutil --dns` and reads its answer.
#[cfg(target_os = "macos")]
pub(super) fn read() -> NetworkDns {
    match std::process::Command::new("/usr/sbin/scutil").arg("--dns").output() {
        Ok(out) if out.status.success() => parse(&String::from_utf8_lossy(&out.stdout)),
        _ => NetworkDns::default(),
    }
}

/// The resolvers in `scutil --dns` text.
pub(super) fn parse(text: &str) -> NetworkDns {
    let mut links: Vec<Link> = Vec::new();
    let mut current: Option<(Link, Option<String>, Option<u16>)> = None;
    let finish = |entry: Option<(Link, Option<String>, Option<u16>)>, links: &mut Vec<Link>| {
        if let Some((mut link, domain, port)) = entry {
            if let Some(port) = port {
                link.servers.iter_mut().for_each(|s| s.set_port(port));
            }
            if let Some(domain) = domain {
                link.domains = vec![domain];
                link.default_route = false;
            }
            if !link.servers.is_empty() {
                links.push(link);
            }
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("DNS configuration (") {
            break;
        }
        if let Some(number) = line.strip_prefix("resolver #") {
            finish(current.take(), &mut links);
            let link = Link {
                name: format!("resolver #{number}"),
                servers: Vec::new(),
                domains: Vec::new(),
                default_route: true,
            };
            current = Some((link, None, None));
            continue;
        }
        let Some((link, domain, port)) = current.as_mut() else {
            continue;
        };
        let Some((key, value)) = line.split_once(':').map(|(k, v)| (k.trim(), v.trim())) else {
            continue;
        };
        if key.starts_with("nameserver[") {
            link.servers.extend(parse_server(value));
        } else if key.starts_with("search domain[") {
            link.domains.extend(normal_domain(value));
        } else if key == "domain" {
            *domain = normal_domain(value);
        } else if key == "port" {
            *port = value.parse().ok();
        } else if key == "if_index" {
            // `if_index : 6 (en0)`
            if let Some(name) = value.split_once('(').and_then(|(_, n)| n.strip_suffix(')')) {
                link.name = name.to_string();
            }
        } else if key == "options" && value.contains("mdns") {
            link.servers.clear();
        }
    }
    finish(current.take(), &mut links);
    NetworkDns {
        source: "scutil --dns".into(),
        links,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on macOS 14 on a home network with a WireGuard tunnel for corp.example.
    const CAPTURED: &str = "\
DNS configuration

resolver #1
  search domain[0] : lan
  nameserver[0] : 192.168.1.1
  nameserver[1] : fd00::1
  if_index : 6 (en0)
  flags    : Request A records, Request AAAA records
  reach    : 0x00020002 (Reachable,Directly Reachable Address)

resolver #2
  domain   : local
  options  : mdns
  timeout  : 5
  flags    : Request A records, Request AAAA records
  reach    : 0x00000000 (Not Reachable)
  order    : 300000

resolver #3
  domain   : corp.example
  nameserver[0] : 10.8.0.1
  port     : 5353
  if_index : 12 (utun4)
  flags    : Supplemental, Request A records
  reach    : 0x00000003 (Reachable,Transient Connection)
  order    : 102400

DNS configuration (for scoped queries)

resolver #1
  search domain[0] : lan
  nameserver[0] : 192.168.1.1
  if_index : 6 (en0)
";

    #[test]
    fn reads_the_main_resolvers_and_the_scoped_domains() {
        let dns = parse(CAPTURED);
        assert_eq!(dns.links.len(), 2, "{dns:?}");
        let en0 = &dns.links[0];
        assert_eq!(en0.name, "en0");
        assert_eq!(
            en0.servers,
            ["192.168.1.1:53".parse().unwrap(), "[fd00::1]:53".parse().unwrap()]
        );
        assert_eq!(en0.domains, ["lan"]);
        assert!(en0.default_route);
        let vpn = &dns.links[1];
        assert_eq!(
            (vpn.name.as_str(), vpn.domains.as_slice()),
            ("utun4", ["corp.example".to_string()].as_slice())
        );
        assert_eq!(vpn.servers, ["10.8.0.1:5353".parse().unwrap()]);
        assert!(!vpn.default_route);
        assert_eq!(dns.default_servers().len(), 2);
    }
}
