//! `ncd ca show|install|uninstall|check` in temp roots with a temp home. Nothing here
//! touches the real system: every run passes --root and --home (and HOME points at the
//! temp home); certutil, when installed, only ever sees NSS databases in the temp home.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ncd_period::commitment::Commitment;
use ncd_period::store::{State, Store};
use rcgen::{BasicConstraints, CertificateParams, DnType, GeneralSubtree, IsCa, KeyPair, NameConstraints};
use tempfile::TempDir;

const NCD: &str = env!("CARGO_BIN_EXE_ncd");
const COPY: &str = "usr/local/share/ncd/ncd-local-ca.pem";
const CA: &str = "var/lib/ncd/ca/ca.pem";
const MANIFEST: &str = "var/lib/ncd-root/ca-install.json";
const ANCHOR: &str = "usr/local/share/ca-certificates/ncd-local-ca.crt";

/// A name-constrained CA like the proxy's: (PEM, SHA-256 fingerprint as `AB:CD:…`).
fn make_ca(domains: &[&str]) -> (String, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("ncd test CA {}", domains.join(" ")));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: domains.iter().map(|d| GeneralSubtree::DnsName((*d).into())).collect(),
        excluded_subtrees: Vec::new(),
    });
    let cert = params.self_signed(&key).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.der());
    let fingerprint = digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    (cert.pem(), fingerprint)
}

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir(u32),
    File(u32, Vec<u8>),
}

fn walk(root: &Path) -> BTreeMap<PathBuf, Entry> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                out.insert(rel, Entry::Dir(mode));
                go(root, &path, out);
            } else {
                out.insert(rel, Entry::File(mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

struct Fake {
    tmp: TempDir,
    root: PathBuf,
    home: PathBuf,
    pem: String,
    fingerprint: String,
}

impl Fake {
    /// A root with a CA in its state dir, and an empty home beside it.
    fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("root");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let (pem, fingerprint) = make_ca(&["instagram.com", "cdninstagram.com"]);
        let fake = Fake {
            tmp,
            root,
            home,
            pem,
            fingerprint,
        };
        fake.write(CA, &fake.pem.clone());
        fake
    }

    /// A Debian-like root: the system store is `update-ca-certificates`.
    fn debian() -> Self {
        let fake = Self::new();
        fake.write("etc/ca-certificates.conf", "mozilla/ISRG_Root_X1.crt\n");
        std::fs::create_dir_all(fake.root.join("usr/local/share/ca-certificates")).unwrap();
        fake
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.root.join(rel)).unwrap()
    }

    /// A new CA in the state dir (the proxy reissued it for a new site).
    fn reissue(&mut self) {
        let (pem, fingerprint) = make_ca(&["instagram.com", "cdninstagram.com", "facebook.com"]);
        self.write(CA, &pem);
        self.pem = pem;
        self.fingerprint = fingerprint;
    }

    fn ncd_with_path(&self, args: &[&str], path: Option<&str>) -> Output {
        let mut command = Command::new(NCD);
        command
            .arg("ca")
            .args(args)
            .arg("--root")
            .arg(&self.root)
            .env("HOME", &self.home)
            .env_remove("SUDO_USER")
            .env_remove("NCD_SOCKET");
        if matches!(args.first(), Some(&"install")) {
            command.arg("--home").arg(&self.home);
            if !args.contains(&"--platform") {
                command.args(["--platform", "linux"]);
            }
        }
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let out = command.output().unwrap();
        eprintln!(
            "ncd ca {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ncd(&self, args: &[&str]) -> Output {
        self.ncd_with_path(args, None)
    }

    /// `ncd ca …` with a PATH that has no certutil: the NSS steps are listed only.
    fn ncd_without_certutil(&self, args: &[&str]) -> Output {
        let empty = self.tmp.path().join("empty-path");
        std::fs::create_dir_all(&empty).unwrap();
        self.ncd_with_path(args, Some(empty.to_str().unwrap()))
    }
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn certutil() -> bool {
    Command::new("certutil").arg("-H").output().is_ok()
}

#[test]
fn show_prints_the_pem_the_fingerprint_and_the_domains() {
    let fake = Fake::new();
    let out = fake.ncd(&["show"]);
    assert_eq!(ok(&out), fake.pem);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&fake.fingerprint), "{err}");
    assert!(err.contains("cdninstagram.com, instagram.com"), "{err}");
    assert!(
        err.contains("update-ca-certificates") && err.contains("add-trusted-cert"),
        "{err}"
    );
    assert!(err.contains("certutil -d sql:$HOME/.pki/nssdb"), "{err}");

    let steps = ok(&fake.ncd(&["show", "--steps"]));
    assert!(!steps.contains("BEGIN CERTIFICATE"), "{steps}");
    assert!(steps.contains(&fake.fingerprint), "{steps}");
}

#[test]
fn without_a_ca_each_verb_says_so_plainly() {
    let fake = Fake::debian();
    std::fs::remove_file(fake.root.join(CA)).unwrap();
    let before = walk(&fake.root);
    for verb in ["show", "install"] {
        let err = refused(&fake.ncd(&[verb]));
        assert!(err.contains("no CA yet") && err.contains("[[profile]]"), "{err}");
        assert!(!err.contains("ncd:"), "a plain sentence, not an error: {err}");
    }
    ok(&fake.ncd(&["check"]));
    assert_eq!(walk(&fake.root), before);
}

#[test]
fn install_in_a_debian_root_writes_the_anchor_and_uninstall_takes_it_back() {
    let fake = Fake::debian();
    let before = walk(&fake.root);
    let out = ok(&fake.ncd_without_certutil(&["install"]));
    assert!(out.contains("Run `update-ca-certificates`"), "{out}");
    assert!(out.contains("listed only"), "{out}");
    assert!(out.contains("certutil is not installed"), "{out}");
    assert_eq!(fake.read(ANCHOR), fake.pem.as_bytes());
    assert_eq!(fake.read(COPY), fake.pem.as_bytes());
    let manifest = String::from_utf8(fake.read(MANIFEST)).unwrap();
    assert!(manifest.contains(&fake.fingerprint), "{manifest}");
    assert!(manifest.contains("update-ca-certificates"), "{manifest}");

    let again = ok(&fake.ncd_without_certutil(&["install"]));
    assert!(again.contains("nothing to do"), "{again}");

    let out = ok(&fake.ncd_without_certutil(&["uninstall"]));
    assert!(
        out.contains("Remove /usr/local/share/ca-certificates/ncd-local-ca.crt"),
        "{out}"
    );
    assert!(out.contains("Run `update-ca-certificates`"), "{out}");
    assert_eq!(walk(&fake.root), before);
}

#[test]
fn dry_runs_change_nothing() {
    let fake = Fake::debian();
    fake.write("usr/lib/firefox/distribution/policies.json", "{\"policies\": {}}\n");
    let before = walk(&fake.root);
    let home = walk(&fake.home);
    let out = ok(&fake.ncd(&["install", "--dry-run"]));
    assert!(out.contains("would do this") && out.contains("dry run"), "{out}");
    assert!(
        out.contains("ncd-local-ca.crt") && out.contains("policies.json"),
        "{out}"
    );
    assert_eq!(walk(&fake.root), before);
    assert_eq!(walk(&fake.home), home);

    ok(&fake.ncd_without_certutil(&["install"]));
    let installed = walk(&fake.root);
    let out = ok(&fake.ncd_without_certutil(&["uninstall", "--dry-run"]));
    assert!(
        out.contains("would do this") && out.contains("Put back the original"),
        "{out}"
    );
    assert_eq!(walk(&fake.root), installed);
}

#[test]
fn a_firefox_policy_is_merged_and_put_back_byte_for_byte() {
    let fake = Fake::new();
    // Odd spacing and key order, which a rewrite would not keep.
    let original = "{ \"policies\":{\"DisableTelemetry\":true,\n  \"Certificates\": {\"ImportEnterpriseRoots\": true},\
                    \"DisableAppUpdate\": true } }\n";
    fake.write("usr/lib/firefox-esr/distribution/policies.json", original);
    std::fs::create_dir_all(fake.root.join("etc/firefox")).unwrap();
    let before = walk(&fake.root);
    ok(&fake.ncd_without_certutil(&["install"]));

    let esr: serde_json::Value =
        serde_json::from_slice(&fake.read("usr/lib/firefox-esr/distribution/policies.json")).unwrap();
    assert_eq!(esr["policies"]["DisableTelemetry"], true);
    assert_eq!(esr["policies"]["DisableAppUpdate"], true);
    assert_eq!(esr["policies"]["Certificates"]["ImportEnterpriseRoots"], true);
    assert_eq!(
        esr["policies"]["Certificates"]["Install"],
        serde_json::json!(["/usr/local/share/ncd/ncd-local-ca.pem"])
    );
    // /etc/firefox is there: its policy file is made.
    let etc: serde_json::Value = serde_json::from_slice(&fake.read("etc/firefox/policies/policies.json")).unwrap();
    assert_eq!(
        etc["policies"]["Certificates"]["Install"],
        serde_json::json!(["/usr/local/share/ncd/ncd-local-ca.pem"])
    );

    ok(&fake.ncd_without_certutil(&["uninstall"]));
    assert_eq!(
        fake.read("usr/lib/firefox-esr/distribution/policies.json"),
        original.as_bytes()
    );
    assert_eq!(walk(&fake.root), before);
}

#[test]
fn a_policy_edited_since_install_loses_only_ncds_entry() {
    let fake = Fake::new();
    let path = "usr/lib/firefox/distribution/policies.json";
    fake.write(path, "{\"policies\": {\"DisableTelemetry\": true}}\n");
    ok(&fake.ncd_without_certutil(&["install"]));
    let mut policy: serde_json::Value = serde_json::from_slice(&fake.read(path)).unwrap();
    policy["policies"]["DisablePocket"] = serde_json::Value::Bool(true);
    fake.write(path, &serde_json::to_string(&policy).unwrap());

    let out = ok(&fake.ncd_without_certutil(&["uninstall"]));
    assert!(out.contains("edited since"), "{out}");
    let left: serde_json::Value = serde_json::from_slice(&fake.read(path)).unwrap();
    assert_eq!(
        left,
        serde_json::json!({"policies": {"DisableTelemetry": true, "DisablePocket": true}})
    );
    assert!(!fake.root.join(MANIFEST).exists());
    assert!(!fake.root.join("var/lib/ncd-root/ca-backup").exists());
}

#[test]
fn an_edited_anchor_is_refused_unless_forced() {
    let fake = Fake::debian();
    ok(&fake.ncd_without_certutil(&["install"]));
    fake.write(ANCHOR, "something else\n");
    let installed = walk(&fake.root);
    let err = refused(&fake.ncd_without_certutil(&["uninstall"]));
    assert!(err.contains("changed since") && err.contains("--force"), "{err}");
    assert_eq!(walk(&fake.root), installed);
    ok(&fake.ncd_without_certutil(&["uninstall", "--force"]));
    assert!(!fake.root.join(ANCHOR).exists());
}

fn nss_nicknames(db: &Path) -> String {
    let out = Command::new("certutil")
        .arg("-d")
        .arg(format!("sql:{}", db.display()))
        .arg("-L")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn nss_databases_really_get_the_ca_and_lose_it_again() {
    if !certutil() {
        // .ci/run installs libnss3-tools: there a skip would be a pass that tested
        // nothing. A developer machine may lack it.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and certutil is not installed (libnss3-tools)"
        );
        let _ = writeln!(std::io::stderr(), "SKIPPED: certutil is not installed (libnss3-tools)");
        return;
    }
    let mut fake = Fake::debian();
    let profile = fake.home.join(".mozilla/firefox/abcd.default-release");
    std::fs::create_dir_all(&profile).unwrap();
    let made = Command::new("certutil")
        .arg("-d")
        .arg(format!("sql:{}", profile.display()))
        .args(["-N", "--empty-password"])
        .status()
        .unwrap();
    assert!(made.success());
    let chromium = fake.home.join(".pki/nssdb");

    let out = ok(&fake.ncd(&["install"]));
    assert!(out.contains("create it, then add the CA"), "{out}");
    for db in [&profile, &chromium] {
        let list = nss_nicknames(db);
        assert!(list.contains("ncd local CA"), "{}: {list}", db.display());
        assert!(list.contains("C,,"), "{list}");
    }
    ok(&fake.ncd(&["check"]));

    // Taken out by hand: `ncd status` (through ca_trust_problems) says so.
    let removed = Command::new("certutil")
        .arg("-d")
        .arg(format!("sql:{}", profile.display()))
        .args(["-D", "-n", "ncd local CA"])
        .status()
        .unwrap();
    assert!(removed.success());
    let out = fake.ncd(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("no longer in the NSS database") && text.contains("abcd.default-release"),
        "{text}"
    );
    // Install puts it back there, and only there.
    let out = ok(&fake.ncd(&["install"]));
    assert!(
        out.contains("abcd.default-release") && !out.contains(".pki/nssdb"),
        "{out}"
    );
    ok(&fake.ncd(&["check"]));

    // A new CA replaces the old under the same nickname.
    fake.reissue();
    ok(&fake.ncd(&["install"]));
    ok(&fake.ncd(&["check"]));
    assert_eq!(nss_nicknames(&chromium).matches("ncd local CA").count(), 1);

    // Without certutil, the NSS part waits in the record for a second uninstall.
    let out = ok(&fake.ncd_without_certutil(&["uninstall"]));
    assert!(
        out.contains("still have ncd's CA") && out.contains("abcd.default-release"),
        "{out}"
    );
    assert!(fake.root.join(MANIFEST).exists());
    assert!(!fake.root.join(ANCHOR).exists());
    assert!(nss_nicknames(&profile).contains("ncd local CA"));

    let out = ok(&fake.ncd(&["uninstall"]));
    assert!(out.contains("no longer trusted"), "{out}");
    assert!(!fake.root.join(MANIFEST).exists());
    for db in [&profile, &chromium] {
        let list = nss_nicknames(db);
        assert!(!list.contains("ncd local CA"), "{}: {list}", db.display());
    }
}

fn commitment() -> Commitment {
    Commitment {
        reason: "to heal".into(),
        owner_uid: 1000,
        started_unix: 1_700_000_000,
        length_secs: 60 * 86_400,
        served_secs: 3_600,
        locked: ncd_config::Config::default(),
        unlock: None,
        last_request: None,
        lists_key: None,
    }
}

#[test]
fn uninstall_is_refused_during_a_period() {
    let fake = Fake::debian();
    ok(&fake.ncd_without_certutil(&["install"]));
    let store = Store::new(&ncd_state::StateDir::new(fake.root.join("var/lib/ncd")));
    store
        .save(&State {
            seq: 1,
            commitment: Some(commitment()),
            ..State::default()
        })
        .unwrap();
    let installed = walk(&fake.root);
    for args in [
        &["uninstall"][..],
        &["uninstall", "--dry-run"],
        &["uninstall", "--force"],
    ] {
        let err = refused(&fake.ncd_without_certutil(args));
        assert!(err.contains("while a period is running"), "{err}");
    }
    assert_eq!(walk(&fake.root), installed);

    store
        .save(&State {
            seq: 2,
            ..State::default()
        })
        .unwrap();
    ok(&fake.ncd_without_certutil(&["uninstall"]));
    assert!(!fake.root.join(ANCHOR).exists());
}

#[test]
fn a_ca_changed_after_install_is_reported_until_installed_again() {
    let mut fake = Fake::debian();
    let out = fake.ncd_without_certutil(&["check"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not trusted yet"));

    ok(&fake.ncd_without_certutil(&["install"]));
    ok(&fake.ncd_without_certutil(&["check"]));

    fake.reissue();
    let out = fake.ncd_without_certutil(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("changed since `ncd ca install`") && text.contains("sudo ncd ca install"),
        "{text}"
    );
    // Without the (root-only) record, the installed copy tells the same.
    let record = fake.read(MANIFEST);
    std::fs::remove_file(fake.root.join(MANIFEST)).unwrap();
    let out = fake.ncd_without_certutil(&["check"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("changed since"));
    std::fs::write(fake.root.join(MANIFEST), record).unwrap();

    let out = ok(&fake.ncd_without_certutil(&["install"]));
    assert!(out.contains("ncd-local-ca.crt"), "{out}");
    assert_eq!(fake.read(ANCHOR), fake.pem.as_bytes());
    ok(&fake.ncd_without_certutil(&["check"]));
    ok(&fake.ncd_without_certutil(&["uninstall"]));
}

#[test]
fn macos_trusts_the_system_keychain_and_firefox_policy_and_takes_them_back() {
    let fake = Fake::new();
    std::fs::create_dir_all(fake.root.join("Applications/Firefox.app/Contents/Resources")).unwrap();
    let before = walk(&fake.root);
    let out = ok(&fake.ncd_without_certutil(&["install", "--platform", "macos"]));
    assert!(
        out.contains(
            "Run `security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain \
             /usr/local/share/ncd/ncd-local-ca.pem`"
        ),
        "{out}"
    );
    assert!(out.contains("password") && out.contains("listed only"), "{out}");
    assert!(!out.contains("NSS database"), "{out}");
    let policy: serde_json::Value =
        serde_json::from_slice(&fake.read("Applications/Firefox.app/Contents/Resources/distribution/policies.json"))
            .unwrap();
    assert_eq!(
        policy["policies"]["Certificates"]["Install"],
        serde_json::json!(["/usr/local/share/ncd/ncd-local-ca.pem"])
    );
    let again = ok(&fake.ncd_without_certutil(&["install", "--platform", "macos"]));
    assert!(again.contains("nothing to do"), "{again}");

    let out = ok(&fake.ncd_without_certutil(&["uninstall"]));
    assert!(out.contains("security remove-trusted-cert -d"), "{out}");
    assert!(out.contains("security delete-certificate -Z"), "{out}");
    assert_eq!(walk(&fake.root), before);
}
