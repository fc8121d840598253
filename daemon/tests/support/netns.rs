//! A network namespace joined to the root namespace by a veth pair, so that a
//! test can send DNS from an address that is not loopback without leaving this
//! machine. Everything is removed again when the guard is dropped.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace `name` with `peer_addr` and `peer_addr6`, linked by veth to
/// `host_addr` and `host_addr6` in the root namespace (a /30 inside 10.250.0.0/16
/// and a /64 inside the ULA fd4e:6364::/48).
#[derive(Debug)]
pub(crate) struct NetNs {
    pub name: String,
    host_link: String,
    pub host_addr: Ipv4Addr,
    pub peer_addr: Ipv4Addr,
    pub host_addr6: Ipv6Addr,
    pub peer_addr6: Ipv6Addr,
}

impl NetNs {
    /// Creates the namespace and the link; `Err` says why that is not possible here
    /// (not root, no CAP_SYS_ADMIN, no veth support …). A failure half-way is undone.
    pub(crate) fn create() -> Result<Self, String> {
        // A name and a /30 of its own per namespace: per process (the pid) and per
        // test in it (a counter), so parallel tests and runs never collide.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let count = NEXT.fetch_add(1, Ordering::Relaxed);
        // 16 /30s per process, 1024 processes: 10.250.0.0/16 exactly.
        let block = (pid % 1024) * 16 + count % 16;
        let third = u8::try_from(block / 64).unwrap_or(0);
        let fourth = u8::try_from((block % 64) * 4).unwrap_or(0);
        // Interface names are at most 15 bytes: "nv" + 7 digits + "c" + 2 + "h".
        let tag = format!("{pid}c{}", count % 100);
        let ns = NetNs {
            name: format!("ncdt{tag}"),
            host_link: format!("nv{tag}h"),
            host_addr: Ipv4Addr::new(10, 250, third, fourth + 1),
            peer_addr: Ipv4Addr::new(10, 250, third, fourth + 2),
            host_addr6: Ipv6Addr::new(0xfd4e, 0x6364, 0, u16::try_from(block).unwrap_or(0), 0, 0, 0, 1),
            peer_addr6: Ipv6Addr::new(0xfd4e, 0x6364, 0, u16::try_from(block).unwrap_or(0), 0, 0, 0, 2),
        };
        ip(&["netns", "add", &ns.name]).map_err(|e| format!("`ip netns add` is not permitted here: {e}"))?;
        // From here on, Drop cleans up whatever was made.
        let peer_link = format!("nv{tag}p");
        let host_cidr = format!("{}/30", ns.host_addr);
        let peer_cidr = format!("{}/30", ns.peer_addr);
        ip(&[
            "link",
            "add",
            &ns.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &peer_link,
            "netns",
            &ns.name,
        ])?;
        ip(&["addr", "add", &host_cidr, "dev", &ns.host_link])?;
        ip(&["link", "set", &ns.host_link, "up"])?;
        ip(&["-n", &ns.name, "addr", "add", &peer_cidr, "dev", &peer_link])?;
        ip(&["-n", &ns.name, "link", "set", &peer_link, "up"])?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        // `nodad`: usable at once, without duplicate address detection's wait.
        let host_cidr6 = format!("{}/64", ns.host_addr6);
        let peer_cidr6 = format!("{}/64", ns.peer_addr6);
        ip(&["-6", "addr", "add", &host_cidr6, "dev", &ns.host_link, "nodad"])?;
        ip(&[
            "-6",
            "-n",
            &ns.name,
            "addr",
            "add",
            &peer_cidr6,
            "dev",
            &peer_link,
            "nodad",
        ])?;
        Ok(ns)
    }

    /// Runs `program args…` inside the namespace; returns (success, stdout + stderr).
    pub(crate) fn exec(&self, program: &str, args: &[&str]) -> (bool, String) {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .expect("run ip netns exec");
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes the peer end, which deletes the pair; the
        // explicit link delete covers a pair whose peer never moved in.
        let _ = ip(&["link", "del", &self.host_link]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
