//! Learning shapes per site (research/proxy.md §1.5, §5), the one-object rule,
//! the caps, the file, and the matcher using what was learned.

use std::path::Path;

use ncd_config::Config;

use super::*;
use crate::sites::{Judgement, RequestView};

const CONFIG: &str = r#"
[[profile]]
name = "ex"
instagram = ["exname"]
threads   = ["exname"]
x         = ["exname"]
facebook  = ["ex.name"]
tiktok    = ["exname"]
linkedin  = ["ex-name-123"]
snapchat  = ["exname"]
"#;

fn rules() -> ProfileRules {
    ProfileRules::compile(&Config::parse(CONFIG, Path::new("t.toml")).unwrap())
}

/// The pairs `body` yields. A body that yields one must also pass the server's
/// cheap test (`may_name_handle`), or its ids would never be learned.
fn pairs(site: ProfileSite, body: &str) -> Vec<(String, String)> {
    let rules = rules();
    let found = find_pairs(site, body.as_bytes(), |h| rules.names_handle(site, h));
    assert!(
        found.is_empty() || rules.may_name_handle(site, body.as_bytes()),
        "{body} yields {found:?} but may_name_handle says it names no handle"
    );
    found
}

fn ids(site: ProfileSite, body: &str) -> Vec<String> {
    pairs(site, body).into_iter().map(|(_, id)| id).collect()
}

#[test]
fn instagram_and_threads_pair_username_with_pk_id_and_pk_id() {
    for site in [ProfileSite::Instagram, ProfileSite::Threads] {
        assert_eq!(
            pairs(site, r#"{"users":[{"username":"ExName","pk":"987","full_name":"x"}]}"#),
            [("exname".to_string(), "987".to_string())]
        );
        assert_eq!(ids(site, r#"{"user":{"username":"exname","id":"555"}}"#), ["555"]);
        assert_eq!(
            ids(site, r#"{"username":"exname","pk_id":"777","pk":987}"#),
            ["777", "987"]
        );
    }
}

#[test]
fn x_pairs_screen_name_with_rest_id_and_id_str() {
    assert_eq!(
        ids(ProfileSite::X, r#"{"screen_name":"exname","rest_id":"44"}"#),
        ["44"]
    );
    assert_eq!(
        ids(ProfileSite::X, r#"[{"screen_name":"EXNAME","id_str":"45","id":45}]"#),
        ["45"]
    );
    // GraphQL's User: the handle one level down, under the typename's guard.
    let graphql = r#"{"data":{"user":{"result":{"__typename":"User","rest_id":"46",
        "legacy":{"screen_name":"exname"}}}}}"#;
    assert_eq!(ids(ProfileSite::X, graphql), ["46"]);
    let not_a_user = r#"{"__typename":"Tweet","rest_id":"47","legacy":{"screen_name":"exname"}}"#;
    assert!(ids(ProfileSite::X, not_a_user).is_empty());
}

#[test]
fn facebook_pairs_vanity_with_its_id() {
    assert_eq!(
        ids(ProfileSite::Facebook, r#"{"vanity":"ex.name","id":"100004567890123"}"#),
        ["100004567890123"]
    );
    assert_eq!(
        ids(
            ProfileSite::Facebook,
            r#"for (;;);{"payload":{"userVanity":"ex.name","profile_id":1000045}}"#
        ),
        ["1000045"]
    );
    // A GraphQL stream: several JSON values, one per line.
    let stream = "{\"data\":{}}\n{\"data\":{\"vanity\":\"ex.name\",\"userID\":\"1000046\"}}\n";
    assert_eq!(ids(ProfileSite::Facebook, stream), ["1000046"]);
}

#[test]
fn tiktok_pairs_unique_id_with_id_and_sec_uid() {
    assert_eq!(
        ids(
            ProfileSite::Tiktok,
            r#"{"userInfo":{"user":{"uniqueId":"exname","id":"6800","secUid":"MS4wLjABAAAAabcDEF-_x"}}}"#
        ),
        ["6800", "ms4wljabaaaaabcdef-_x"]
    );
}

#[test]
fn linkedin_pairs_public_identifier_with_the_profile_urn() {
    let body = r#"{"included":[{"publicIdentifier":"ex-name-123",
        "entityUrn":"urn:li:fsd_profile:ACoAAExUrn","objectUrn":"urn:li:member:123"}]}"#;
    assert_eq!(ids(ProfileSite::Linkedin, body), ["123", "acoaaexurn"]);
    // Not a profile URN: nothing.
    let other = r#"{"publicIdentifier":"ex-name-123","entityUrn":"urn:li:fsd_company:9"}"#;
    assert!(ids(ProfileSite::Linkedin, other).is_empty());
}

#[test]
fn an_id_paired_with_another_handle_is_not_learned() {
    for (site, body) in [
        (ProfileSite::Instagram, r#"{"username":"someone","pk":"111"}"#),
        (ProfileSite::X, r#"{"screen_name":"someone","rest_id":"111"}"#),
        (ProfileSite::Facebook, r#"{"vanity":"someone","id":"111"}"#),
        (ProfileSite::Tiktok, r#"{"uniqueId":"someone","id":"111"}"#),
        (
            ProfileSite::Linkedin,
            r#"{"publicIdentifier":"someone","entityUrn":"urn:li:fsd_profile:A1"}"#,
        ),
    ] {
        assert!(pairs(site, body).is_empty(), "{site:?}");
    }
    // Snapchat has no ids to learn.
    assert!(pairs(ProfileSite::Snapchat, r#"{"username":"exname","id":"1"}"#).is_empty());
}

#[test]
fn a_pair_counts_only_within_one_object() {
    // A post by someone else, owned or liked by the ex: its id is not the ex's.
    let post = r#"{"id":"555","pk":"555","owner":{"username":"exname"},"likers":[{"username":"exname"}]}"#;
    assert!(pairs(ProfileSite::Instagram, post).is_empty());
    // The ex's handle beside the id of a child object.
    let child = r#"{"username":"exname","user":{"pk":"556"}}"#;
    assert!(pairs(ProfileSite::Instagram, child).is_empty());
    // Two objects side by side: only the ex's own.
    let list = r#"{"users":[{"username":"someone","pk":"1"},{"username":"exname","pk":"2"}]}"#;
    assert_eq!(ids(ProfileSite::Instagram, list), ["2"]);
}

#[test]
fn junk_and_non_ids_are_not_learned() {
    for body in [
        "",
        "<html>exname</html>",
        r#"{"username":"exname","pk":"12a"}"#,
        r#"{"username":"exname","pk":"exname"}"#,
        r#"{"username":"exname","pk":-5}"#,
        r#"{"username":"exname","pk":{"x":1}}"#,
        r#"{"username":"exname","pk":"#,
    ] {
        assert!(pairs(ProfileSite::Instagram, body).is_empty(), "{body}");
    }
}

#[test]
fn the_caps_hold() {
    let mut learned = Learned::default();
    let many: Vec<_> = (0..40).map(|i| ("exname".to_string(), format!("{i}"))).collect();
    assert_eq!(learned.add(ProfileSite::Instagram, &many), MAX_IDS_PER_HANDLE);
    assert_eq!(learned.ids(ProfileSite::Instagram, "exname").len(), MAX_IDS_PER_HANDLE);
    assert_eq!(
        learned.add(ProfileSite::Instagram, &many),
        0,
        "a full set keeps what it has"
    );

    let mut learned = Learned::default();
    let mut added = 0;
    for h in 0..(MAX_IDS_TOTAL / MAX_IDS_PER_HANDLE + 10) {
        let batch: Vec<_> = (0..MAX_IDS_PER_HANDLE)
            .map(|i| (format!("h{h}"), format!("{h}0{i}")))
            .collect();
        added += learned.add(ProfileSite::X, &batch);
    }
    assert_eq!(added, MAX_IDS_TOTAL);
    assert_eq!(learned.len(), MAX_IDS_TOTAL);
}

#[test]
fn a_body_over_the_cap_or_of_another_type_is_not_read() {
    let store = LearnedIds::in_memory();
    let rules = rules();
    let body = r#"{"username":"exname","pk":"987"}"#;
    assert_eq!(
        store.learn(&rules, ProfileSite::Instagram, Some("image/png"), body.as_bytes()),
        0
    );
    let mut big = body.as_bytes().to_vec();
    big.resize(MAX_LEARNED_BODY + 1, b' ');
    assert_eq!(
        store.learn(&rules, ProfileSite::Instagram, Some("application/json"), &big),
        0
    );
    assert!(store.snapshot().is_empty());
    let ct = Some("application/json; charset=utf-8");
    assert_eq!(store.learn(&rules, ProfileSite::Instagram, ct, body.as_bytes()), 1);
    assert_eq!(store.learn(&rules, ProfileSite::Instagram, ct, body.as_bytes()), 0);
}

#[test]
fn learned_ids_are_judged_like_config_ids() {
    let rules = rules();
    let store = LearnedIds::in_memory();
    let body = br#"{"users":[{"username":"exname","pk":"987"}]}"#;
    store.learn(&rules, ProfileSite::Instagram, Some("application/json"), body);
    let snapshot = store.snapshot();
    let form = RequestView {
        method: "POST",
        host: "www.instagram.com",
        path: "/graphql/query",
        content_type: Some("application/x-www-form-urlencoded"),
        body: Some(b"doc_id=1&variables=%7B%22id%22%3A%22987%22%7D"),
        ..RequestView::default()
    };
    assert_eq!(rules.judge(&form), Judgement::Pass, "the config alone does not know it");
    assert!(matches!(
        rules.judge_with(&form, Some(&snapshot)),
        Judgement::Block { ref profile, .. } if profile == "ex"
    ));
    let path = RequestView {
        method: "GET",
        host: "www.instagram.com",
        path: "/api/v1/users/987/info/",
        ..RequestView::default()
    };
    assert!(matches!(
        rules.judge_with(&path, Some(&snapshot)),
        Judgement::Block { .. }
    ));
    // Learned on Instagram, not on X.
    let x = RequestView {
        host: "x.com",
        path: "/i/user/987",
        ..path
    };
    assert_eq!(rules.judge_with(&x, Some(&snapshot)), Judgement::Pass);
    // A handle no longer in the config: its learned ids are not used.
    let other = ProfileRules::compile(
        &Config::parse(
            "[[profile]]\nname = \"b\"\ninstagram = [\"bee\"]\n",
            Path::new("t.toml"),
        )
        .unwrap(),
    );
    assert_eq!(other.judge_with(&form, Some(&snapshot)), Judgement::Pass);
}

#[test]
fn the_file_round_trips_and_a_damaged_one_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy-learned.json");
    let (store, problem) = LearnedIds::open(&path);
    assert!(problem.is_none() && store.snapshot().is_empty());
    let rules = rules();
    let n = store.learn(
        &rules,
        ProfileSite::Linkedin,
        Some("application/json"),
        br#"{"publicIdentifier":"ex-name-123","entityUrn":"urn:li:fsd_profile:ACoAAExUrn"}"#,
    );
    assert_eq!(n, 1);
    store.add(ProfileSite::Instagram, &[("exname".into(), "987".into())]);
    let (again, problem) = LearnedIds::open(&path);
    assert!(problem.is_none());
    assert_eq!(*again.snapshot(), *store.snapshot());
    assert_eq!(
        again.snapshot().handle_for(ProfileSite::Linkedin, "acoaaexurn"),
        Some("ex-name-123")
    );

    std::fs::write(&path, b"{\"version\":1,\"sites\":{\"instagram\":{\"exname\":[\"9").unwrap();
    let (damaged, problem) = LearnedIds::open(&path);
    assert!(problem.is_some_and(|p| p.contains("damaged")));
    assert!(damaged.snapshot().is_empty());
    // The next addition writes a good file again.
    damaged.add(ProfileSite::Instagram, &[("exname".into(), "987".into())]);
    assert!(LearnedIds::open(&path).1.is_none());
}

#[test]
fn only_a_body_that_can_name_a_handle_is_read() {
    let rules = rules();
    let site = ProfileSite::Instagram;
    let may = |body: &str| rules.may_name_handle(site, body.as_bytes());
    assert!(may(r#"{"users":[{"username":"ExName","pk":"987"}]}"#));
    assert!(!may(r#"{"users":[{"username":"someone_else","pk":"987"}]}"#));
    assert!(!may("<!doctype html><p>a page</p>"));
    // A `\u` escape can spell the handle without its bytes: read, and learned.
    let escaped = r#"{"users":[{"username":"\u0045xname","pk":"987"}]}"#;
    assert!(may(escaped));
    assert_eq!(pairs(site, escaped), [("exname".to_string(), "987".to_string())]);

    // So can a Kelvin sign, which lower-cases to `k`.
    let config = "[[profile]]\nname = \"k\"\ninstagram = [\"kname\"]\n";
    let k_rules = ProfileRules::compile(&Config::parse(config, Path::new("t.toml")).unwrap());
    let kelvin = "{\"users\":[{\"username\":\"\u{212A}name\",\"pk\":\"42\"}]}";
    let found = find_pairs(site, kelvin.as_bytes(), |h| k_rules.names_handle(site, h));
    assert_eq!(found, [("kname".to_string(), "42".to_string())]);
    assert!(k_rules.may_name_handle(site, kelvin.as_bytes()));
    assert!(!k_rules.may_name_handle(site, b"{\"users\":[{\"username\":\"other\"}]}"));
}
