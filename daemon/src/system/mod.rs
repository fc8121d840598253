//! Living inside a service manager: sockets handed over by systemd or launchd,
//! readiness and watchdog notifications. (The runtime drop-in that makes a casual
//! `systemctl stop` refuse while a period runs is `ncd_period::stop_guard`, shared
//! with the root guard in the CLI.)

pub mod activation;
pub mod notify;

/// Gives memory that was freed back to the system. After a burst (a proxy load,
/// a reload of a big list) glibc keeps the freed pages in its arenas, and ncdd's
/// RSS stays at the burst's peak until the next one: 1,000 idle proxy connections
/// after a load run held 45 MiB where a fresh ncdd holds 41. Called every 30 s.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn return_freed_memory() {
    // SAFETY: malloc_trim only releases free memory held by malloc; it takes the
    // arenas' own locks and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_freed_memory() {}
