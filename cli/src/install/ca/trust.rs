//! Whether the proxy's current CA is trusted where `ncd ca install` put it, in
//! sentences for `ncd status`. With the install record (root, or a test's root) every
//! place is checked, NSS databases with `certutil -L` when certutil is there; without
//! it (a person's own `ncd status`: the record is root's) the world-readable copy of
//! the installed CA is compared with the current one.

use std::path::Path;

use super::super::fsutil::{self, Found};
use super::apply::nss_cert;
use super::cert::{self, CaCert, Fingerprint};
use super::plan::{self, on_path};
use super::policy;
use super::record::CaManifest;

const AGAIN: &str = "run `sudo ncd ca install` again";

/// What is wrong with the trust in the current CA, one sentence each; empty when
/// all is well or when there is no CA (no profile rules).
pub(crate) fn ca_trust_problems(root: &Path, state_dir: &Path) -> Vec<String> {
    let path = cert::cert_path(root, state_dir);
    let cert = match CaCert::load(&path) {
        Ok(Some(cert)) => cert,
        Ok(None) => return Vec::new(),
        // The state dir is the `ncd` user's (0700): a person's own `ncd status` cannot
        // read the CA, so cannot tell; root's can.
        Err(e) if permission_denied(&e) => return Vec::new(),
        Err(e) => return vec![format!("{e:#}")],
    };
    match CaManifest::load(root) {
        Ok(Some(manifest)) => with_record(root, &cert, &manifest),
        Ok(None) => from_copy(root, &cert, false),
        // Unreadable (root's record, read by a person): the copy tells the most.
        Err(_) => from_copy(root, &cert, true),
    }
}

fn permission_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    })
}

/// The copy `ncd ca install` wrote, compared with the current CA.
fn from_copy(root: &Path, cert: &CaCert, record_exists: bool) -> Vec<String> {
    let copy = fsutil::under(root, Path::new(plan::COPY));
    match fsutil::look(&copy) {
        Ok(Found::File { bytes, .. }) => {
            let installed = CaCert::parse(&copy, String::from_utf8_lossy(&bytes).into_owned());
            if installed.is_ok_and(|c| c.sha256 == cert.sha256) {
                Vec::new()
            } else {
                vec![changed()]
            }
        }
        _ if record_exists => vec![changed()],
        _ => vec![
            "ncd's proxy CA is not trusted yet, while profile rules are in force: browsers will show an error \
             on those sites until you run `sudo ncd ca install` (`ncd ca show` tells what it does)."
                .to_string(),
        ],
    }
}

fn changed() -> String {
    format!("ncd's CA changed since `ncd ca install` (new sites with profile rules); {AGAIN}.")
}

fn with_record(root: &Path, cert: &CaCert, manifest: &CaManifest) -> Vec<String> {
    if manifest.fingerprint != cert.sha256 {
        return vec![changed()];
    }
    let mut problems = Vec::new();
    for record in &manifest.files {
        let disk = fsutil::under(root, &record.file.path);
        let ok = match (fsutil::look(&disk), &record.policy_entry) {
            (Ok(Found::File { bytes, .. }), Some(entry)) => policy::has(&bytes, entry),
            (Ok(Found::File { bytes, .. }), None) => bytes == cert.pem.as_bytes(),
            _ => false,
        };
        if !ok {
            problems.push(match &record.policy_entry {
                Some(_) => format!(
                    "The Firefox policy {} no longer installs ncd's CA (a Firefox update may have replaced it); {AGAIN}.",
                    disk.display()
                ),
                None => format!(
                    "{} ({}) is gone or changed; {AGAIN}.",
                    disk.display(),
                    record.file.what
                ),
            });
        }
    }
    if on_path("certutil") {
        for record in &manifest.nss {
            let ok = record.fingerprint == cert.sha256
                && nss_cert(&record.db).is_some_and(|der| Fingerprint::of(&der) == cert.sha256);
            if !ok && record.db.join("cert9.db").is_file() {
                problems.push(format!(
                    "ncd's CA is no longer in the NSS database {}; {AGAIN}.",
                    record.db.display()
                ));
            }
        }
    }
    problems
}
