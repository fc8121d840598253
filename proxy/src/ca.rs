//! The local CA: name-constrained, made at first need, and the leaves it mints.
//!
//! The CA is ECDSA P-256 with a critical Name Constraints extension that permits
//! only the registrable domains of the sites with profile rules, so even a stolen
//! key cannot vouch for a bank. It lives in a directory of the caller's choosing:
//! `ca.key` (PKCS#8 PEM, mode 0600) and `ca.pem`. When the set of domains grows a
//! new CA (new key) is issued and reported, since it must be trusted again; a key
//! or certificate that cannot be read, or that do not belong together, is replaced
//! and reported, never half used. Leaves are minted per SNI on demand (30 days,
//! SAN, EKU serverAuth), cached, and refused outside the constraints. The key is
//! never logged: no type here prints it.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, NameConstraints, PublicKeyData,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::sites::normalize_host;

/// The key file's name inside the CA directory.
pub const KEY_FILE: &str = "ca.key";
/// The certificate file's name inside the CA directory (what users install).
pub const CERT_FILE: &str = "ca.pem";

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
const LEAF_VALIDITY: Duration = Duration::from_secs(30 * 86_400);
/// A cached leaf older than this is minted again, long before it expires.
const LEAF_REFRESH: Duration = Duration::from_secs(7 * 86_400);
const LEAF_CACHE_MAX: usize = 512;

/// Something about the CA the daemon should report (status says "trust it again").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaEvent {
    /// No CA existed: a new one was made; it must be trusted before the proxy works.
    Created { domains: Vec<String> },
    /// The sites with profile rules grew beyond the CA's constraints: a new CA was
    /// made and must be trusted again.
    Reissued { domains: Vec<String> },
    /// The key or certificate was damaged, mismatched or expired: both were
    /// replaced and the new CA must be trusted again.
    Replaced { why: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0:?} is outside the CA's name constraints")]
    OutOfScope(String),
    #[error("a CA needs at least one domain to permit")]
    NoDomains,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

struct Leaf {
    config: Arc<ServerConfig>,
    minted: SystemTime,
}

/// The local CA and its leaf cache.
pub struct CertAuthority {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    permitted: Vec<String>,
    provider: Arc<CryptoProvider>,
    leaves: Mutex<HashMap<String, Leaf>>,
}

impl fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("CertAuthority")
            .field("permitted", &self.permitted)
            .finish_non_exhaustive()
    }
}

/// The crypto provider the proxy uses everywhere (ring, as the workspace's rustls).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl CertAuthority {
    /// Loads the CA in `dir`, or makes one, so that it permits every one of
    /// `domains`. Returns what happened, for status.
    pub fn load_or_create(dir: &Path, domains: &[String]) -> Result<(Self, Vec<CaEvent>), CaError> {
        if domains.is_empty() {
            return Err(CaError::NoDomains);
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut wanted: Vec<String> = domains.iter().map(|d| normalize_host(d)).collect();
        wanted.sort();
        wanted.dedup();
        let mut events = Vec::new();
        match Self::load(dir) {
            Ok(Some(ca)) if wanted.iter().all(|d| ca.permitted.contains(d)) => return Ok((ca, events)),
            Ok(Some(_)) => events.push(CaEvent::Reissued {
                domains: wanted.clone(),
            }),
            Ok(None) => events.push(CaEvent::Created {
                domains: wanted.clone(),
            }),
            Err(why) => events.push(CaEvent::Replaced { why }),
        }
        let ca = Self::create(dir, wanted)?;
        Ok((ca, events))
    }

    /// The CA on disk: `Ok(None)` when there is none, `Err(why)` when it is unusable.
    fn load(dir: &Path) -> Result<Option<Self>, String> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        if !key_path.exists() && !cert_path.exists() {
            return Ok(None);
        }
        let key_pem = std::fs::read_to_string(&key_path).map_err(|e| format!("cannot read {KEY_FILE}: {e}"))?;
        // The error text of a failed key parse never includes the key itself.
        let key = KeyPair::from_pem(&key_pem).map_err(|_| format!("{KEY_FILE} is not a usable key"))?;
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(|e| format!("cannot read {CERT_FILE}: {e}"))?;
        let cert_der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map(|c: CertificateDer<'_>| c.into_owned())
            .map_err(|_| format!("{CERT_FILE} is not a PEM certificate"))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|_| format!("{CERT_FILE} is not a valid certificate"))?;
        if x509.tbs_certificate.subject_pki.raw != key.subject_public_key_info().as_slice() {
            return Err(format!("{CERT_FILE} does not belong to {KEY_FILE}"));
        }
        if !x509.validity().is_valid() {
            return Err(format!("{CERT_FILE} has expired or is not valid yet"));
        }
        let permitted = permitted_domains(&x509).ok_or_else(|| format!("{CERT_FILE} has no name constraints"))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| format!("{CERT_FILE}: {e}"))?;
        Ok(Some(Self::assemble(cert_der, cert_pem, issuer, permitted)))
    }

    fn create(dir: &Path, domains: Vec<String>) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let stamp = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        dn.push(DnType::CommonName, format!("ncd boundary CA {stamp}"));
        dn.push(
            DnType::OrganizationName,
            "ncd (this computer only; social profiles only)",
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = (now - Duration::from_secs(86_400)).into();
        params.not_after = (now + CA_VALIDITY).into();
        params.serial_number = Some(random_serial());
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: domains.iter().map(|d| GeneralSubtree::DnsName(d.clone())).collect(),
            excluded_subtrees: Vec::new(),
        });
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        write_file(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&dir.join(CERT_FILE), cert_pem.as_bytes(), 0o644)?;
        let issuer = Issuer::new(params, key);
        Ok(Self::assemble(cert.der().clone(), cert_pem, issuer, domains))
    }

    fn assemble(
        cert_der: CertificateDer<'static>,
        cert_pem: String,
        issuer: Issuer<'static, KeyPair>,
        permitted: Vec<String>,
    ) -> Self {
        Self {
            cert_der,
            cert_pem,
            issuer,
            permitted,
            provider: provider(),
            leaves: Mutex::new(HashMap::new()),
        }
    }

    /// The domains the CA may sign for (with every name under them).
    pub fn permitted_domains(&self) -> &[String] {
        &self.permitted
    }

    /// The CA certificate, PEM (what `ncd ca install` trusts).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The SHA-256 fingerprint of the CA certificate, as browsers and `openssl x509
    /// -fingerprint -sha256` show it (`AB:CD:…`): how status tells CAs apart.
    pub fn fingerprint_sha256(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.cert_der.as_ref());
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// True when `host` is one of the permitted domains or under one — and a
    /// valid DNS name at all: no leaf is ever minted for a name with stray bytes
    /// that merely ends like a permitted one (found by the `proxy_sni` fuzz target).
    pub fn permits(&self, host: &str) -> bool {
        self.permits_normal(&normalize_host(host))
    }

    /// [`Self::permits`] for a name already in normal form: normalising twice
    /// could read a different name than the one a leaf is minted for (found by
    /// the `proxy_sni` fuzz target).
    fn permits_normal(&self, host: &str) -> bool {
        if rustls::pki_types::DnsName::try_from(host).is_err() {
            return false;
        }
        self.permitted.iter().any(|d| {
            host == *d
                || (host.len() > d.len() && host.ends_with(d.as_str()) && host[..host.len() - d.len()].ends_with('.'))
        })
    }

    /// A TLS server config whose certificate is a leaf for `host` (cached).
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let host = normalize_host(host);
        if !self.permits_normal(&host) {
            return Err(CaError::OutOfScope(host));
        }
        let now = SystemTime::now();
        let mut leaves = self.leaves.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(leaf) = leaves.get(&host)
            && now.duration_since(leaf.minted).is_ok_and(|age| age < LEAF_REFRESH)
        {
            return Ok(leaf.config.clone());
        }
        let (chain, key) = self.mint(&host, now)?;
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if leaves.len() >= LEAF_CACHE_MAX {
            leaves.clear();
        }
        leaves.insert(
            host,
            Leaf {
                config: config.clone(),
                minted: now,
            },
        );
        Ok(config)
    }

    /// Mints a leaf for `host` without the scope check (callers check first).
    fn mint(
        &self,
        host: &str,
        now: SystemTime,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![host.to_string()])?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, host);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + LEAF_VALIDITY).into();
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key_der))
    }
}

/// The DNS names a CA certificate's name constraints permit.
fn permitted_domains(x509: &x509_parser::certificate::X509Certificate<'_>) -> Option<Vec<String>> {
    let nc = x509.name_constraints().ok()??;
    let subtrees = nc.value.permitted_subtrees.as_ref()?;
    let mut out: Vec<String> = subtrees
        .iter()
        .filter_map(|s| match s.base {
            x509_parser::extensions::GeneralName::DNSName(name) => Some(normalize_host(name)),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    Some(out)
}

fn random_serial() -> rcgen::SerialNumber {
    let mut bytes = [0u8; 16];
    // A serial only has to be unique; ring's system random is at hand.
    let _ = rustls::crypto::ring::default_provider().secure_random.fill(&mut bytes);
    bytes[0] &= 0x7f;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// Writes `path` through a temporary file, with `mode`, then renames it in place.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(data).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    fn domains(list: &[&str]) -> Vec<String> {
        list.iter().map(|d| d.to_string()).collect()
    }

    fn verify(ca: &CertAuthority, chain: &[CertificateDer<'static>], name: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone())?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let name = ServerName::try_from(name.to_string()).map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn a_new_ca_has_critical_name_constraints_for_exactly_the_domains() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, events) = CertAuthority::load_or_create(dir.path(), &domains(&["x.com", "instagram.com"])).unwrap();
        assert_eq!(
            events,
            [CaEvent::Created {
                domains: domains(&["instagram.com", "x.com"])
            }]
        );
        let (_, x509) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        let ext = x509
            .extensions()
            .iter()
            .find(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS)
            .expect("a name constraints extension");
        assert!(ext.critical);
        assert_eq!(permitted_domains(&x509).unwrap(), ["instagram.com", "x.com"]);
        assert!(x509.is_ca());
        assert!(ca.permits("www.instagram.com") && ca.permits("X.COM.") && ca.permits("instagram.com"));
        assert!(!ca.permits("evilinstagram.com") && !ca.permits("www.example.org") && !ca.permits("com"));
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        CertAuthority::load_or_create(dir.path(), &domains(&["x.com"])).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_leaf_verifies_in_scope_and_an_out_of_scope_name_is_refused_and_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = CertAuthority::load_or_create(dir.path(), &domains(&["instagram.com"])).unwrap();
        let (chain, _) = ca.mint("www.instagram.com", SystemTime::now()).unwrap();
        verify(&ca, &chain, "www.instagram.com").unwrap();
        assert!(verify(&ca, &chain, "www.facebook.com").is_err());
        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        assert!(!leaf.is_ca());
        let eku = leaf.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth);

        // Minting is refused outside the constraints…
        assert!(matches!(
            ca.server_config("www.example.org"),
            Err(CaError::OutOfScope(_))
        ));
        assert!(ca.server_config("WWW.Instagram.com.").is_ok());
        // …and a leaf forced past that check does not verify: the constraints hold.
        let (chain, _) = ca.mint("www.example.org", SystemTime::now()).unwrap();
        let err = verify(&ca, &chain, "www.example.org").unwrap_err();
        assert!(format!("{err:?}").contains("NameConstraint"), "{err:?}");
    }

    #[test]
    fn leaves_are_cached() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = CertAuthority::load_or_create(dir.path(), &domains(&["x.com"])).unwrap();
        let a = ca.server_config("x.com").unwrap();
        let b = ca.server_config("X.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn the_ca_is_reused_while_it_covers_the_domains_and_reissued_when_they_grow() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = CertAuthority::load_or_create(dir.path(), &domains(&["x.com", "tiktok.com"])).unwrap();
        let (again, events) = CertAuthority::load_or_create(dir.path(), &domains(&["x.com"])).unwrap();
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(again.cert_der(), first.cert_der());
        // A leaf from the reloaded CA chains to the same certificate.
        let (chain, _) = again.mint("www.tiktok.com", SystemTime::now()).unwrap();
        verify(&first, &chain, "www.tiktok.com").unwrap();

        let (grown, events) =
            CertAuthority::load_or_create(dir.path(), &domains(&["x.com", "tiktok.com", "facebook.com"])).unwrap();
        assert_eq!(
            events,
            [CaEvent::Reissued {
                domains: domains(&["facebook.com", "tiktok.com", "x.com"])
            }]
        );
        assert_ne!(grown.cert_der(), first.cert_der());
        assert!(grown.permits("www.facebook.com"));
    }

    #[test]
    fn a_damaged_key_or_certificate_is_replaced_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let want = domains(&["x.com"]);
        let (first, _) = CertAuthority::load_or_create(dir.path(), &want).unwrap();
        let key_path = dir.path().join(KEY_FILE);
        let key = std::fs::read_to_string(&key_path).unwrap();
        // Truncated key.
        std::fs::write(&key_path, &key[..key.len() / 2]).unwrap();
        let (second, events) = CertAuthority::load_or_create(dir.path(), &want).unwrap();
        assert!(
            matches!(&events[..], [CaEvent::Replaced { why }] if why.contains(KEY_FILE)),
            "{events:?}"
        );
        assert_ne!(second.cert_der(), first.cert_der());
        // No key material in the report.
        assert!(!format!("{events:?}").contains("PRIVATE KEY"));

        // A key that belongs to another certificate.
        std::fs::write(&key_path, KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let (_, events) = CertAuthority::load_or_create(dir.path(), &want).unwrap();
        assert!(
            matches!(&events[..], [CaEvent::Replaced { why }] if why.contains("does not belong")),
            "{events:?}"
        );

        // A missing certificate.
        std::fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        let (third, events) = CertAuthority::load_or_create(dir.path(), &want).unwrap();
        assert!(matches!(&events[..], [CaEvent::Replaced { .. }]), "{events:?}");
        let (reloaded, events) = CertAuthority::load_or_create(dir.path(), &want).unwrap();
        assert!(events.is_empty());
        assert_eq!(reloaded.cert_der(), third.cert_der());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever the name, a leaf is minted only for a permitted domain or a
        /// name under one — never for a look-alike (`xinstagram.com`,
        /// `instagram.com.evil`), an IP, or anything else.
        #[test]
        fn a_leaf_is_never_minted_outside_the_constraints(
            label in "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?",
            glue in proptest::sample::select(vec!["", ".", "x", "-", ".evil."]),
            tail in proptest::sample::select(vec!["instagram.com", "x.com", "com", "evil.test", "1.2.3.4", "instagram.com."]),
        ) {
            static CA: std::sync::OnceLock<(tempfile::TempDir, CertAuthority)> = std::sync::OnceLock::new();
            let (_, ca) = CA.get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let (ca, _) = CertAuthority::load_or_create(dir.path(), &domains(&["instagram.com", "x.com"])).unwrap();
                (dir, ca)
            });
            let name = format!("{label}{glue}{tail}");
            let bare = name.trim_end_matches('.');
            let within = ["instagram.com", "x.com"]
                .iter()
                .any(|d| bare == *d || bare.strip_suffix(d).is_some_and(|head| head.ends_with('.')));
            let minted = ca.server_config(&name).is_ok();
            proptest::prop_assert_eq!(minted, within, "{}", name);
        }
    }
}
