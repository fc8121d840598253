//! Upstream resolver addresses: `udp://9.9.9.9:53`, `tcp://[2620:fe::fe]`,
//! `tls://1.1.1.1:853#cloudflare-dns.com`, `https://dns.quad9.net/dns-query`.
//!
//! `"system"` stands for the resolvers the network hands out, followed as they
//! change ([`UpstreamEntry::System`]); the daemon finds them.
//!
//! A bare address (`9.9.9.9`) means `udp://` with TCP for truncated answers. Encrypted
//! upstreams need a TLS name: the host itself, or the part after `#` when the host is
//! an IP address. A host given by name is looked up once through the plain upstreams
//! (ncdd never asks the system resolver, which may be ncdd itself).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::DomainName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// Plain DNS over UDP, retried over TCP when the answer is truncated.
    Udp,
    /// Plain DNS over TCP only.
    Tcp,
    /// DNS over TLS (RFC 7858).
    Tls,
    /// DNS over HTTPS (RFC 8484).
    Https,
}

impl UpstreamProtocol {
    fn scheme(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Udp | Self::Tcp => 53,
            Self::Tls => 853,
            Self::Https => 443,
        }
    }
}

/// Where an upstream lives: an address now, or a name to look up at start.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamHost {
    Ip(IpAddr),
    Name(DomainName),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    pub protocol: UpstreamProtocol,
    pub host: UpstreamHost,
    pub port: u16,
    /// The TLS server name (encrypted protocols only).
    pub tls_name: Option<String>,
    /// The HTTP path (HTTPS only).
    pub path: Option<String>,
}

impl Upstream {
    /// The socket address, when the host is an IP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            UpstreamHost::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            UpstreamHost::Name(_) => None,
        }
    }

    pub fn udp(addr: SocketAddr) -> Self {
        Self {
            protocol: UpstreamProtocol::Udp,
            host: UpstreamHost::Ip(addr.ip()),
            port: addr.port(),
            tls_name: None,
            path: None,
        }
    }
}

impl FromStr for Upstream {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (protocol, rest) = match text.split_once("://") {
            Some((scheme, rest)) => {
                let protocol = match scheme.to_ascii_lowercase().as_str() {
                    "udp" => UpstreamProtocol::Udp,
                    "tcp" => UpstreamProtocol::Tcp,
                    "tls" => UpstreamProtocol::Tls,
                    "https" => UpstreamProtocol::Https,
                    other => {
                        return Err(format!(
                            "upstream {text:?}: unknown scheme {other:?} (use udp, tcp, tls or https)"
                        ));
                    }
                };
                (protocol, rest)
            }
            None => (UpstreamProtocol::Udp, text),
        };
        let (rest, fragment) = match rest.split_once('#') {
            Some((rest, name)) => (rest, Some(name)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        let (host, port) = split_host_port(authority).map_err(|why| format!("upstream {text:?}: {why}"))?;
        let port = port.unwrap_or(protocol.default_port());
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => UpstreamHost::Ip(ip),
            Err(_) => UpstreamHost::Name(DomainName::parse(host).map_err(|e| format!("upstream {text:?}: {e}"))?),
        };
        let encrypted = matches!(protocol, UpstreamProtocol::Tls | UpstreamProtocol::Https);
        let tls_name = match (encrypted, fragment, &host) {
            (false, Some(_), _) => {
                return Err(format!(
                    "upstream {text:?}: a #name is only meaningful for tls:// and https://"
                ));
            }
            (false, None, UpstreamHost::Name(_)) => {
                return Err(format!(
                    "upstream {text:?}: plain DNS upstreams need an IP address (a name would need DNS to find DNS)"
                ));
            }
            (false, None, UpstreamHost::Ip(_)) => None,
            (true, Some(name), _) => Some(
                DomainName::parse(name)
                    .map_err(|e| format!("upstream {text:?}: {e}"))?
                    .to_string(),
            ),
            (true, None, UpstreamHost::Name(name)) => Some(name.to_string()),
            (true, None, UpstreamHost::Ip(_)) => {
                return Err(format!(
                    "upstream {text:?}: an encrypted upstream given by IP needs its TLS name, e.g. \"{}://{authority}#dns.example\"",
                    protocol.scheme()
                ));
            }
        };
        let path = match (protocol, path) {
            (UpstreamProtocol::Https, Some(path)) => Some(path.to_string()),
            (UpstreamProtocol::Https, None) => Some("/dns-query".to_string()),
            (_, Some(path)) if path != "/" => {
                return Err(format!("upstream {text:?}: only https:// upstreams take a path"));
            }
            (_, _) => None,
        };
        Ok(Self {
            protocol,
            host,
            port,
            tls_name,
            path,
        })
    }
}

/// One entry of `[dns] upstreams`: a resolver the person names, or `"system"`, the
/// resolvers the network hands out (learned by ncdd and followed as the laptop
/// moves). Entries are tried in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamEntry {
    /// The network's resolvers, in this place of the order.
    System,
    /// A resolver the config names.
    Server(Upstream),
}

impl UpstreamEntry {
    /// The word that stands for the network's resolvers.
    pub const SYSTEM: &'static str = "system";
}

impl FromStr for UpstreamEntry {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case(Self::SYSTEM) {
            return Ok(Self::System);
        }
        text.parse().map(Self::Server).map_err(|error| {
            if text.contains("://") {
                error
            } else {
                format!("{error}; or \"system\" for the network's own resolvers")
            }
        })
    }
}

impl fmt::Display for UpstreamEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str(Self::SYSTEM),
            Self::Server(upstream) => upstream.fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for UpstreamEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::error::parse_str(deserializer, str::parse)
    }
}

impl Serialize for UpstreamEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let parse_port = |p: &str| p.parse::<u16>().map_err(|_| format!("invalid port {p:?}"));
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("missing ']' after an IPv6 address")?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(parse_port(port)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected {after:?} after the address")),
        };
    }
    if authority.is_empty() {
        return Err("missing host".into());
    }
    // A bare IPv6 address has several colons and no port.
    if authority.matches(':').count() > 1 {
        return Ok((authority, None));
    }
    match authority.split_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((authority, None)),
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.protocol.scheme())?;
        match &self.host {
            UpstreamHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            UpstreamHost::Ip(ip) => write!(f, "{ip}")?,
            UpstreamHost::Name(name) => write!(f, "{name}")?,
        }
        write!(f, ":{}", self.port)?;
        if let Some(path) = &self.path {
            f.write_str(path)?;
        }
        if let (Some(name), UpstreamHost::Ip(_)) = (&self.tls_name, &self.host) {
            write!(f, "#{name}")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::error::parse_str(deserializer, str::parse)
    }
}

impl Serialize for Upstream {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(s: &str) -> Upstream {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_form_from_the_issue() {
        assert_eq!(up("udp://9.9.9.9:53").to_string(), "udp://9.9.9.9:53");
        assert_eq!(up("tcp://9.9.9.9:53").protocol, UpstreamProtocol::Tcp);
        let tls = up("tls://1.1.1.1:853#cloudflare-dns.com");
        assert_eq!(tls.tls_name.as_deref(), Some("cloudflare-dns.com"));
        assert_eq!(tls.to_string(), "tls://1.1.1.1:853#cloudflare-dns.com");
        let doh = up("https://dns.quad9.net/dns-query");
        assert_eq!(
            doh.host,
            UpstreamHost::Name(DomainName::parse("dns.quad9.net").unwrap())
        );
        assert_eq!((doh.port, doh.path.as_deref()), (443, Some("/dns-query")));
        assert_eq!(up("9.9.9.9").to_string(), "udp://9.9.9.9:53");
        assert_eq!(up("udp://[2620:fe::fe]:5353").port, 5353);
        assert_eq!(up("2620:fe::fe").to_string(), "udp://[2620:fe::fe]:53");
    }

    #[test]
    fn system_is_an_entry_of_its_own() {
        let entry = |s: &str| s.parse::<UpstreamEntry>().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(entry("system"), UpstreamEntry::System);
        assert_eq!(entry(" System "), UpstreamEntry::System);
        assert_eq!(entry("9.9.9.9"), UpstreamEntry::Server(up("udp://9.9.9.9:53")));
        assert_eq!(entry("system").to_string(), "system");
        let typo = "sytem".parse::<UpstreamEntry>().unwrap_err();
        assert!(
            typo.ends_with("or \"system\" for the network's own resolvers"),
            "{typo}"
        );
    }

    #[test]
    fn refuses_what_cannot_work() {
        for bad in [
            "ftp://9.9.9.9",
            "udp://dns.google",
            "tls://1.1.1.1",
            "udp://9.9.9.9:99999",
            "udp://9.9.9.9#name",
            "udp://",
            "tcp://9.9.9.9/path",
        ] {
            assert!(bad.parse::<Upstream>().is_err(), "{bad:?} should be refused");
        }
    }
}
