//! The state dir (`/var/lib/ncd`, or a temp dir under `ncdd --dev`) and the name
//! of every file in it.

use std::path::{Path, PathBuf};

/// A state dir. Every file ncd keeps there is named by a method here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The period's two checksummed copies (see `ncd_period::store`).
    pub fn period_copies(&self) -> [PathBuf; 2] {
        [self.root.join("period.json"), self.root.join("period.copy.json")]
    }

    /// Left by the first start, so a later start without the period's files can
    /// tell "deleted" from "never written".
    pub fn ran_here_marker(&self) -> PathBuf {
        self.root.join("period.ran-here")
    }

    /// Present while a period runs; written by ncdd only when a period starts or
    /// ends. `ncd-guard.path` watches it, so the root guard (`ncd guard`) puts the
    /// stop refusal in place at once (see `ncd_period::stop_guard`).
    pub fn period_marker(&self) -> PathBuf {
        self.root.join("period.running")
    }

    /// What `ncd guard` (root) found and repaired, for `ncd status`: written by
    /// the guard (mode 0644), read by ncdd.
    pub fn guard_report(&self) -> PathBuf {
        self.root.join("guard-report.json")
    }

    /// The text of the last config that loaded: used when ncdd starts on a broken file.
    pub fn last_good_config(&self) -> PathBuf {
        self.root.join("config.last-good.toml")
    }

    /// The urge ledger: blocked attempts per service per day.
    pub fn stats(&self) -> PathBuf {
        self.root.join("stats.json")
    }

    /// The proxy's local CA: `ca.pem` (public) and `ca.key` (0600), made at first
    /// need by `ncd-proxy`.
    pub fn proxy_ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// The CA certificate `ncd ca show` prints and `ncd ca install` trusts.
    pub fn proxy_ca_cert(&self) -> PathBuf {
        self.proxy_ca_dir().join("ca.pem")
    }

    /// Numeric account ids the proxy learned for the profiles' handles.
    pub fn proxy_learned_ids(&self) -> PathBuf {
        self.root.join("proxy-learned.json")
    }

    /// The control socket of a second `ncdd --dev`, when the per-user one is taken.
    pub fn dev_control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// The last good download of the URL list `url`.
    pub fn url_list_copy(&self, url: &str) -> PathBuf {
        // A stable file name per URL, readable enough in a directory listing.
        self.root
            .join("lists")
            .join(format!("{:016x}.txt", crate::checksum(url.as_bytes())))
    }

    /// The last good text of the local list at `path` (blocks in its place while
    /// the file cannot be read).
    pub fn list_copy(&self, path: &Path) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        self.root.join("lists").join(format!(
            "local-{:016x}.txt",
            crate::checksum(path.as_os_str().as_bytes())
        ))
    }

    /// The folder of the lists' locked copies: every block rule each list held
    /// during the running period (see `ncd_policy::lists`). Removed when the
    /// period ends or a `pending` unlock applies the held rules.
    pub fn locked_lists_dir(&self) -> PathBuf {
        self.root.join("lists-locked")
    }

    /// Which period (and which opening of its held rules) the locked copies
    /// belong to.
    pub fn locked_lists_key(&self) -> PathBuf {
        self.locked_lists_dir().join("period")
    }

    /// The locked copy of the list `source` (a path or a URL): its block rules in
    /// plain form, `name` or `=name`, one a line.
    pub fn locked_list(&self, source: &str) -> PathBuf {
        self.locked_lists_dir()
            .join(format!("{:016x}.txt", crate::checksum(source.as_bytes())))
    }
}

/// The control socket `ncdd --dev` serves when none is given, and the one `ncd`
/// tries when the system's is not there: per user, in `$XDG_RUNTIME_DIR`, else in
/// a folder of the user's own under the temp dir (`/tmp/ncd-dev-UID/`).
pub fn dev_control_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("ncd-dev.sock"),
        None => std::env::temp_dir()
            .join(format!("ncd-dev-{}", rustix::process::geteuid().as_raw()))
            .join("control.sock"),
    }
}

impl AsRef<Path> for StateDir {
    fn as_ref(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_copies_keep_their_names_across_versions() {
        // Copies downloaded by earlier versions must still be found after an upgrade.
        let dir = StateDir::new("/s");
        assert_eq!(
            dir.url_list_copy("http://127.0.0.1:9/list.txt"),
            PathBuf::from("/s/lists").join(format!("{:016x}.txt", crate::checksum(b"http://127.0.0.1:9/list.txt")))
        );
        assert_eq!(dir.period_copies()[1], PathBuf::from("/s/period.copy.json"));
        let local = dir.list_copy(Path::new("/etc/ncd/lists/a.txt"));
        assert!(local.starts_with("/s/lists") && local != dir.url_list_copy("/etc/ncd/lists/a.txt"));
    }
}
