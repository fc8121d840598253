//! `[[profile]]` and `[proxy]`: parsing, normal forms, located errors, and how the
//! ratchet holds profiles during a period.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ncd_config::ratchet::{ratchet, rebase};
use ncd_config::{Config, ConfigError, ProfileSite, ProxyConfig};

const PATH: &str = "/etc/ncd/ncd.toml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(PATH))
}

fn handles(config: &Config, name: &str, site: ProfileSite) -> Vec<String> {
    let profile = config.profiles.iter().find(|p| p.name == name).unwrap();
    profile.handles(site).iter().map(|h| h.to_string()).collect()
}

const ISSUE_EXAMPLE: &str = r#"
[[profile]]
name = "ex"                          # a label; shown in status and on the block page
instagram = ["exname"]               # handles (and numeric ids, if known)
threads   = ["exname"]
x         = ["exname"]
facebook  = ["ex.name", "100004567890123"]
tiktok    = ["exname"]
linkedin  = ["ex-name-123"]
snapchat  = ["exname"]

[proxy]
listen = ["127.0.0.1:443", "[::1]:443"]   # the default
origin_roots = []                          # extra trust anchors (PEM file paths) for origins
"#;

#[test]
fn the_issue_example_parses() {
    let config = parse(ISSUE_EXAMPLE).unwrap();
    assert_eq!(config.profiles.len(), 1);
    assert_eq!(config.profiles[0].name, "ex");
    assert_eq!(
        handles(&config, "ex", ProfileSite::Facebook),
        ["ex.name", "100004567890123"]
    );
    assert_eq!(handles(&config, "ex", ProfileSite::Linkedin), ["ex-name-123"]);
    for site in ProfileSite::ALL {
        assert!(!config.profiles[0].handles(site).is_empty(), "{site}");
    }
    assert_eq!(config.proxy, ProxyConfig::default());
}

#[test]
fn no_profile_and_no_proxy_table_are_the_defaults() {
    let config = parse("").unwrap();
    assert!(config.profiles.is_empty());
    assert_eq!(
        config.proxy.listen,
        [
            "127.0.0.1:443".parse::<SocketAddr>().unwrap(),
            "[::1]:443".parse().unwrap()
        ]
    );
    assert!(config.proxy.origin_roots.is_empty());
}

#[test]
fn several_profiles_and_handle_spellings_are_normalised() {
    let config = parse(
        r#"
[[profile]]
name = "ex"
instagram = ["@ExName", "ExName2/"]
[[profile]]
name = "ex's new partner"
x = ["@SomeOne"]
"#,
    )
    .unwrap();
    assert_eq!(handles(&config, "ex", ProfileSite::Instagram), ["exname", "exname2"]);
    assert_eq!(handles(&config, "ex's new partner", ProfileSite::X), ["someone"]);
    assert!(handles(&config, "ex", ProfileSite::X).is_empty());
}

#[test]
fn origin_roots_are_read_from_the_config_directory() {
    let config = parse("[proxy]\norigin_roots = [\"roots/corp.pem\", \"/abs/root.pem\"]\n").unwrap();
    assert_eq!(
        config.proxy.origin_roots,
        [PathBuf::from("/etc/ncd/roots/corp.pem"), PathBuf::from("/abs/root.pem")]
    );
}

#[track_caller]
fn assert_error_at(text: &str, line: usize, col: usize, words: &str) {
    let err = parse(text).unwrap_err();
    assert_eq!(err.position, Some((line, col)), "{err}");
    assert!(err.message.contains(words), "{err}");
    assert!(err.to_string().starts_with(&format!("{PATH}:{line}:{col}: ")), "{err}");
}

#[test]
fn an_unknown_site_key_is_an_error_at_its_place() {
    assert_error_at("[[profile]]\nname = \"ex\"\nmyspace = [\"exname\"]\n", 3, 1, "myspace");
}

#[test]
fn an_empty_or_invalid_handle_is_an_error_at_its_place() {
    assert_error_at(
        "[[profile]]\nname = \"ex\"\ninstagram = [\"ok\", \"\"]\n",
        3,
        20,
        "empty handle",
    );
    assert_error_at(
        "[[profile]]\nname = \"ex\"\nx = [\n  \"fine\",\n  \"@\",\n]\n",
        5,
        3,
        "empty handle",
    );
    assert_error_at(
        "[[profile]]\nname = \"ex\"\ntiktok = [\"ex name\"]\n",
        3,
        11,
        "cannot be in a handle",
    );
    assert_error_at(
        "[[profile]]\nname = \"ex\"\nlinkedin = [\"https://www.linkedin.com/in/ex\"]\n",
        3,
        13,
        "cannot be in a handle",
    );
}

#[test]
fn a_profile_needs_a_name_and_names_are_unique() {
    let err = parse("[[profile]]\ninstagram = [\"exname\"]\n").unwrap_err();
    assert!(err.message.contains("name"), "{err}");
    assert!(err.position.is_some(), "{err}");
    assert_error_at("[[profile]]\nname = \"  \"\n", 2, 8, "needs a name");
    let err = parse("[[profile]]\nname = \"ex\"\n[[profile]]\nname = \"ex\"\n").unwrap_err();
    assert!(err.message.contains("two [[profile]] tables"), "{err}");
    assert!(err.position.is_some(), "{err}");
}

#[test]
fn proxy_keys_are_checked() {
    assert_error_at("[proxy]\nlisten = []\n", 2, 10, "listen is empty");
    assert_error_at("[proxy]\nlisten = [\"127.0.0.1:0\"]\n", 2, 10, "fixed port");
    assert_error_at("[proxy]\nlisten = [\"localhost:443\"]\n", 2, 11, "");
    assert_error_at("[proxy]\nport = 443\n", 2, 1, "port");
}

// The ratchet.

const LOCKED: &str = r#"
[[profile]]
name = "ex"
instagram = ["exname"]
facebook = ["ex.name", "100004567890123"]
"#;

fn config(text: &str) -> Config {
    parse(text).unwrap()
}

#[test]
fn adding_a_profile_or_a_handle_applies_at_once() {
    let locked = config(LOCKED);
    let new = config(&format!(
        "{LOCKED}x = [\"exname\"]\n[[profile]]\nname = \"friend of ex\"\ntiktok = [\"someone\"]\n"
    ));
    let r = ratchet(&locked, &new);
    assert!(r.pending.is_empty(), "{:?}", r.pending);
    assert_eq!(
        r.tightened,
        [
            "add x handle exname to profile \"ex\"",
            "add profile \"friend of ex\"",
            "add tiktok handle someone to profile \"friend of ex\"",
        ]
    );
    assert_eq!(r.effective.profiles, new.profiles);
}

#[test]
fn removing_a_profile_or_a_handle_is_held() {
    let locked = config(LOCKED);
    let fewer_handles = config("[[profile]]\nname = \"ex\"\nfacebook = [\"ex.name\"]\n");
    let r = ratchet(&locked, &fewer_handles);
    assert_eq!(r.effective.profiles, locked.profiles);
    assert_eq!(
        r.pending,
        [
            "remove instagram handle exname from profile \"ex\"",
            "remove facebook handle 100004567890123 from profile \"ex\"",
        ]
    );
    assert!(r.tightened.is_empty());

    let none = config("");
    let r = ratchet(&locked, &none);
    assert_eq!(r.effective.profiles, locked.profiles);
    assert_eq!(r.pending, ["remove profile \"ex\""]);
}

#[test]
fn a_renamed_profile_keeps_the_old_one_until_an_unlock() {
    let locked = config(LOCKED);
    let renamed = config(&LOCKED.replace("name = \"ex\"", "name = \"them\""));
    let r = ratchet(&locked, &renamed);
    let names: Vec<_> = r.effective.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["ex", "them"]);
    assert_eq!(r.pending, ["remove profile \"ex\""]);
}

#[test]
fn handle_spelling_is_not_a_change() {
    let locked = config(LOCKED);
    let respelled = config(&LOCKED.replace("\"exname\"", "\"@ExName/\""));
    let r = ratchet(&locked, &respelled);
    assert!(r.pending.is_empty() && r.tightened.is_empty(), "{r:?}");
}

#[test]
fn proxy_roots_are_free_and_its_address_is_held() {
    let locked = config(LOCKED);
    let roots = config(&format!("{LOCKED}[proxy]\norigin_roots = [\"/etc/ssl/corp.pem\"]\n"));
    let r = ratchet(&locked, &roots);
    assert!(r.pending.is_empty() && r.tightened.is_empty(), "{r:?}");
    assert_eq!(r.effective, roots);
    // Profile hosts are steered to the proxy's addresses: moving them is held.
    let moved = config(&format!("{LOCKED}[proxy]\nlisten = [\"127.0.0.1:8443\"]\n"));
    let r = ratchet(&locked, &moved);
    assert_eq!(r.effective.proxy.listen, locked.proxy.listen);
    assert_eq!(
        r.pending,
        ["change the proxy's listen addresses from 127.0.0.1:443, [::1]:443 to 127.0.0.1:8443"]
    );
}

#[test]
fn an_unlock_opens_a_held_profile_removal_and_keeps_handles_added_since() {
    let base = config(LOCKED);
    // Asked to open: the whole profile removed.
    let target = config("");
    // Since then: a handle added to it, and a new profile.
    let head = config(&format!(
        "{LOCKED}x = [\"exname\"]\n[[profile]]\nname = \"new\"\nthreads = [\"n\"]\n"
    ));
    let result = rebase(&target, &base, &head);
    assert_eq!(result.profiles.len(), 2);
    assert_eq!(handles(&result, "ex", ProfileSite::X), ["exname"]);
    assert!(handles(&result, "ex", ProfileSite::Instagram).is_empty());
    assert_eq!(handles(&result, "new", ProfileSite::Threads), ["n"]);
    // Unlocking with nothing tightened since: the request as written.
    assert_eq!(rebase(&target, &base, &base), target);
}

#[test]
fn the_effective_profiles_cover_both_sides() {
    let a = config(LOCKED);
    let b = config("[[profile]]\nname = \"ex\"\nsnapchat = [\"exname\"]\n[[profile]]\nname = \"b\"\nx = [\"bb\"]\n");
    for (locked, new) in [(&a, &b), (&b, &a)] {
        let e = ratchet(locked, new).effective;
        for side in [locked, new] {
            for p in &side.profiles {
                for (site, handle) in p.entries() {
                    let held = e.profiles.iter().find(|q| q.name == p.name).unwrap();
                    assert!(held.handles(site).contains(handle), "{site} {handle}");
                }
            }
        }
        // Holding again changes nothing more.
        let again = ratchet(&e, new);
        assert!(again.tightened.is_empty(), "{:?}", again.tightened);
        assert_eq!(again.effective, e);
    }
}
