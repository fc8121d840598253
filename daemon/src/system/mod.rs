//! Living inside a service manager: sockets handed over by systemd or launchd,
//! readiness and watchdog notifications. (The runtime drop-in that makes a casual
//! `systemctl stop` refuse while a period runs is `ncd_period::stop_guard`, shared
//! with the root guard in the CLI.)

pub mod activation;
pub mod notify;
