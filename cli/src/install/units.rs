//! The service files install writes: the texts in systemd/ at the workspace root,
//! embedded so the installed `ncd` carries them.

/// (file name, text) of the systemd units, installed into /etc/systemd/system.
pub(super) const SYSTEMD_UNITS: &[(&str, &str)] = &[
    ("ncd.socket", include_str!("../../../systemd/ncd.socket")),
    (
        "ncd-control.socket",
        include_str!("../../../systemd/ncd-control.socket"),
    ),
    ("ncd-proxy.socket", include_str!("../../../systemd/ncd-proxy.socket")),
    ("ncd.service", include_str!("../../../systemd/ncd.service")),
    ("ncd-guard.service", include_str!("../../../systemd/ncd-guard.service")),
    ("ncd-guard.path", include_str!("../../../systemd/ncd-guard.path")),
    ("ncd-guard.timer", include_str!("../../../systemd/ncd-guard.timer")),
];

/// The path the unit files name for the daemon; rewritten to the installed one.
pub(super) const PACKAGED_NCDD: &str = "/usr/bin/ncdd";
/// The path the guard unit names for `ncd` (with the space that follows it).
pub(super) const PACKAGED_NCD: &str = "/usr/bin/ncd ";

/// systemd-sysusers(8) entry: the `ncd` system user.
pub(super) const SYSUSERS: &str = include_str!("../../../systemd/ncd.sysusers");

/// systemd-tmpfiles(8) entry: /etc/ncd, /run/ncd, /var/lib/ncd-root.
pub(super) const TMPFILES: &str = include_str!("../../../systemd/ncd.tmpfiles");

/// The systemd-resolved drop-in; `@BLOCKED_DOMAINS@` becomes `~apex` for each blocked apex.
pub(super) const RESOLVED_DROPIN: &str = include_str!("../../../systemd/resolved-dropin.conf.in");

/// The launchd label on macOS.
pub(super) const LAUNCHD_LABEL: &str = "org.ncd.ncdd";

/// The launchd job on macOS.
pub(super) const LAUNCHD_PLIST: &str = include_str!("../../../systemd/macos/org.ncd.ncdd.plist");

/// The daemon path the plist names; rewritten to the installed one.
pub(super) const PLIST_NCDD: &str = "/usr/local/bin/ncdd";
