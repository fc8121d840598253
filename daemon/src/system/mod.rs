//! Living inside a service manager: sockets handed over by systemd or launchd,
//! readiness and watchdog notifications, and the runtime drop-in that makes a
//! casual `systemctl stop` refuse while a period runs.

pub mod activation;
pub mod notify;
pub mod stop_guard;
