//! The steps to trust ncd's CA by hand, per OS and browser, as `ncd ca show` prints
//! them (and the README repeats).

use std::path::Path;

use super::plan::{COPY, NICKNAME, SYSTEM_KEYCHAIN};

/// The manual steps for the certificate at `pem` (its path on this machine).
pub(super) fn steps(pem: &Path) -> Vec<String> {
    let pem = pem.display();
    vec![
        "To trust it (`sudo ncd ca install` does the parts it can, and `sudo ncd ca uninstall` undoes them):".into(),
        String::new(),
        "  Debian/Ubuntu system store (curl, OpenSSL, GnuTLS; not Chrome or Firefox):".into(),
        format!("    sudo cp {pem} /usr/local/share/ca-certificates/ncd-local-ca.crt && sudo update-ca-certificates"),
        "  Fedora/RHEL system store (also NSS applications there):".into(),
        format!("    sudo cp {pem} /etc/pki/ca-trust/source/anchors/ncd-local-ca.pem && sudo update-ca-trust extract"),
        "  Chrome and Chromium on Linux (per user; restart the browser):".into(),
        format!("    certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n \"{NICKNAME}\" -i {pem}"),
        "  Firefox on Linux, each profile (or the enterprise policy below):".into(),
        format!("    certutil -d sql:$HOME/.mozilla/firefox/PROFILE -A -t C,, -n \"{NICKNAME}\" -i {pem}"),
        format!(
            "  Firefox enterprise policy (all OSes): in policies.json, \
             {{\"policies\": {{\"Certificates\": {{\"Install\": [\"{COPY}\"]}}}}}}"
        ),
        "    Linux: /etc/firefox/policies/policies.json (also the snap) or <install dir>/distribution/policies.json"
            .into(),
        "  macOS (Safari, Chrome, and Firefox, which trusts the keychain's roots since 120):".into(),
        format!("    sudo security add-trusted-cert -d -r trustRoot -k {SYSTEM_KEYCHAIN} {pem}"),
        "    macOS asks for an administrator's password in a dialog: this cannot be done from a script.".into(),
        String::new(),
        "Its Name Constraints limit it to the domains above, so even a stolen key cannot vouch for another site."
            .into(),
    ]
}
