//! The proxy's CA certificate as `ncd ca` sees it: read from the state dir and parsed
//! with x509-parser (never by hand), with the facts a person checks before trusting
//! it: the SHA-256 fingerprint, the domains it is constrained to, and its validity.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::super::fsutil;

/// A SHA-256 fingerprint of a certificate's DER, as `AB:CD:…` (the form browsers
/// and `openssl x509 -fingerprint -sha256` show).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Fingerprint(String);

impl Fingerprint {
    pub(crate) fn of(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        Fingerprint(hex(digest.as_ref(), ":"))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn hex(bytes: &[u8], sep: &str) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(sep)
}

/// The CA certificate and what `ncd ca` says about it.
#[derive(Debug, Clone)]
pub(crate) struct CaCert {
    /// Where it was read from (on disk, with the root).
    pub path: PathBuf,
    /// The PEM text, as the proxy wrote it.
    pub pem: String,
    pub sha256: Fingerprint,
    /// SHA-1 as plain hex: what macOS `security delete-certificate -Z` takes.
    pub sha1_hex: String,
    pub subject: String,
    /// The permitted DNS names of the Name Constraints, lower-case, sorted.
    pub domains: Vec<String>,
    /// The last day it is valid, `YYYY-MM-DD` (UTC).
    pub not_after: String,
}

/// The CA certificate's path on disk: `StateDir::proxy_ca_cert()` under the root.
pub(crate) fn cert_path(root: &Path, state_dir: &Path) -> PathBuf {
    fsutil::under(root, &ncd_state::StateDir::new(state_dir).proxy_ca_cert())
}

/// What to say when there is no CA yet.
pub(crate) fn no_ca_yet(path: &Path) -> String {
    format!(
        "There is no CA yet ({} does not exist). ncdd makes it when the first [[profile]] of the config \
         is in force and the daemon runs; then run this again.",
        path.display()
    )
}

impl CaCert {
    /// The certificate at `path`, or `None` when there is none yet.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Option<CaCert>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(e).with_context(|| {
                    format!(
                        "Could not read the CA certificate {}: the state dir is the ncd user's; run this with sudo",
                        path.display()
                    )
                });
            }
            Err(e) => return Err(e).with_context(|| format!("Could not read the CA certificate {}", path.display())),
        };
        Self::parse(path, text).map(Some)
    }

    pub(crate) fn parse(path: &Path, pem: String) -> anyhow::Result<CaCert> {
        let damaged = || {
            format!(
                "The CA certificate {} is not a PEM certificate. ncdd replaces a damaged CA when it starts; \
                 restart it (`sudo systemctl restart ncd`) and try again.",
                path.display()
            )
        };
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| anyhow::anyhow!(damaged()))?;
        anyhow::ensure!(block.label == "CERTIFICATE", damaged());
        let der = block.contents;
        let (_, x509) = x509_parser::parse_x509_certificate(&der).map_err(|_| anyhow::anyhow!(damaged()))?;
        let mut domains: Vec<String> = match x509.name_constraints() {
            Ok(Some(nc)) => nc
                .value
                .permitted_subtrees
                .iter()
                .flatten()
                .filter_map(|s| match s.base {
                    x509_parser::extensions::GeneralName::DNSName(name) => {
                        Some(name.trim_start_matches('.').to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        domains.sort();
        domains.dedup();
        let not_after = chrono::DateTime::from_timestamp(x509.validity().not_after.timestamp(), 0)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let subject = x509.subject().to_string();
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        Ok(CaCert {
            path: path.to_path_buf(),
            sha256: Fingerprint::of(&der),
            sha1_hex: hex(sha1.as_ref(), ""),
            subject,
            domains,
            not_after,
            pem,
        })
    }

    /// The lines `ncd ca show` prints about the certificate.
    pub(crate) fn facts(&self) -> Vec<String> {
        vec![
            format!("ncd's local CA: {}", self.path.display()),
            format!("  subject:     {}", self.subject),
            format!("  SHA-256:     {}", self.sha256),
            format!(
                "  valid for:   {} and the names under them, nothing else (Name Constraints)",
                if self.domains.is_empty() {
                    "(no constraints found!)".to_string()
                } else {
                    self.domains.join(", ")
                }
            ),
            format!("  valid until: {}", self.not_after),
        ]
    }
}
