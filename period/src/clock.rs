//! Reading the clocks that credited time is made of.
//!
//! A [`Reading`] is taken on every tick: the boot's identity, the time since boot
//! including suspend (`CLOCK_BOOTTIME` on Linux; `CLOCK_MONOTONIC` on macOS, which
//! counts sleep there), and the wall clock. Only the boot clock is trusted for
//! time served; the wall clock is used across reboots (clamped) and to notice
//! jumps. The [`Clock`] trait lets tests run a 60-day period in milliseconds.

use std::time::Duration;

/// One look at the clocks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reading {
    /// Changes at every boot.
    pub boot_id: String,
    /// Time since boot, counting suspend; cannot be set.
    pub since_boot: Duration,
    /// Time since boot while awake (not counting suspend). Only used to tell a
    /// suspended machine from a stopped daemon.
    #[serde(default)]
    pub awake: Duration,
    /// Wall clock, Unix seconds; can be set by anyone with root.
    pub wall_unix: i64,
}

pub trait Clock: Send + Sync + 'static {
    fn read(&self) -> Reading;
}

/// The machine's clocks.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn read(&self) -> Reading {
        #[cfg(target_os = "linux")]
        let id = rustix::time::ClockId::Boottime;
        #[cfg(not(target_os = "linux"))]
        let id = rustix::time::ClockId::Monotonic;
        let read = |id| {
            let ts = rustix::time::clock_gettime(id);
            Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
        };
        let since_boot = read(id);
        #[cfg(target_os = "linux")]
        let awake = read(rustix::time::ClockId::Monotonic);
        #[cfg(not(target_os = "linux"))]
        let awake = since_boot;
        let wall_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Reading {
            boot_id: boot_id(),
            since_boot,
            awake,
            wall_unix,
        }
    }
}

fn boot_id() -> String {
    #[cfg(target_os = "linux")]
    if let Ok(id) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        return id.trim().to_string();
    }
    #[cfg(target_os = "macos")]
    if let Ok(out) = std::process::Command::new("sysctl")
        .args(["-n", "kern.bootsessionuuid"])
        .output()
    {
        return String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    // Without a boot id, a reboot looks like a long stay in one boot; the boot
    // clock restarting from zero is then caught as "clock went back" (credits 0).
    String::from("unknown")
}
