//! The matcher against the per-site URL and API shapes (research/proxy.md §5).

use std::path::Path;

use proptest::prelude::*;

use super::*;

const CONFIG: &str = r#"
[[profile]]
name = "ex"
instagram = ["exname", "1234567890"]
threads   = ["exname", "1234567890"]
x         = ["exname", "44196397"]
facebook  = ["ex.name", "100004567890123"]
tiktok    = ["exname", "MS4wLjABAAAAexsecuid"]
linkedin  = ["ex-name-123", "ACoAAExUrn"]
snapchat  = ["exname"]

[[profile]]
name = "friend"
instagram = ["friendname"]
"#;

fn rules() -> ProfileRules {
    ProfileRules::compile(&Config::parse(CONFIG, Path::new("t.toml")).unwrap())
}

fn view<'a>(host: &'a str, path_and_query: &'a str) -> RequestView<'a> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    RequestView {
        method: "GET",
        host,
        path,
        query,
        ..RequestView::default()
    }
}

fn nav<'a>(host: &'a str, path_and_query: &'a str) -> RequestView<'a> {
    RequestView {
        navigation: true,
        ..view(host, path_and_query)
    }
}

fn post<'a>(host: &'a str, path: &'a str, content_type: &'a str, body: &'a str) -> RequestView<'a> {
    RequestView {
        method: "POST",
        content_type: Some(content_type),
        body: Some(body.as_bytes()),
        ..view(host, path)
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

#[track_caller]
fn blocked(req: RequestView<'_>) -> (String, ProfileSite, Kind) {
    match rules().judge(&req) {
        Judgement::Block { profile, site, kind } => (profile, site, kind),
        other => panic!("{req:?} was not blocked: {other:?}"),
    }
}

#[track_caller]
fn passes(req: RequestView<'_>) {
    assert_eq!(rules().judge(&req), Judgement::Pass, "{req:?}");
}

#[track_caller]
fn rewritten(req: RequestView<'_>) -> (Option<String>, Option<String>) {
    match rules().judge(&req) {
        Judgement::Rewrite { query, body } => (query, body.map(|b| String::from_utf8(b).unwrap())),
        other => panic!("{req:?} was not rewritten: {other:?}"),
    }
}

#[test]
fn facts_cover_every_site_once() {
    for (facts, site) in SITES.iter().zip(ProfileSite::ALL) {
        assert_eq!(facts.site, site);
        for host in facts.hosts {
            assert!(
                facts
                    .domains
                    .iter()
                    .any(|d| host == d || host.ends_with(&format!(".{d}")))
            );
            assert_eq!(site_of_host(host), Some(site));
        }
    }
    let r = rules();
    assert_eq!(r.sites(), ProfileSite::ALL);
    assert!(r.steered_hosts().contains(&"www.instagram.com"));
    assert!(!r.steered_hosts().iter().any(|h| h.contains("cdn")));
    assert_eq!(
        r.registrable_domains(),
        [
            "facebook.com",
            "instagram.com",
            "linkedin.com",
            "snapchat.com",
            "threads.com",
            "threads.net",
            "tiktok.com",
            "twitter.com",
            "x.com"
        ]
    );
}

#[test]
fn only_sites_with_rules_are_in_scope() {
    let only_ig = ProfileRules::compile(
        &Config::parse("[[profile]]\nname = \"ex\"\ninstagram = [\"exname\"]\n", Path::new("t")).unwrap(),
    );
    assert_eq!(only_ig.registrable_domains(), ["instagram.com"]);
    assert_eq!(
        only_ig.site_for_host("WWW.Instagram.com.:443"),
        Some(ProfileSite::Instagram)
    );
    assert_eq!(only_ig.site_for_host("x.com"), None);
    assert_eq!(only_ig.judge(&view("x.com", "/exname")), Judgement::Pass);
    assert!(ProfileRules::compile(&Config::default()).is_empty());
    assert_eq!(only_ig.site_for_host("cdninstagram.com"), None);
    assert_eq!(only_ig.site_for_host("evil-instagram.com"), None);
}

#[test]
fn instagram_pages() {
    for path in [
        "/exname/",
        "/exname",
        "/ExName/",
        "/exname/reels/",
        "/exname/tagged/",
        "/exname/followers/",
        "/exname/following/",
        "/exname/p/Cabc123/",
        "/exname/reel/Cxyz/",
        "/stories/exname/",
        "/stories/exname/3141592653/",
        "/stories/highlights/1234567890/",
        "/_u/exname",
        "//exname//",
        "/%65xname/",
        "/%2565xname/",
        "/%252565xname/",
        "/explore/../exname/",
        "/a/b/%2e%2e/../exname/",
        "/./exname/",
        "/../../exname/",
        "/exname;jsessionid=1/",
        "/exname/?hl=en",
    ] {
        let (profile, site, kind) = blocked(nav("www.instagram.com", path));
        assert_eq!(
            (profile.as_str(), site, kind),
            ("ex", ProfileSite::Instagram, Kind::Navigation),
            "{path}"
        );
    }
    let (profile, _, kind) = blocked(view("instagram.com.", "/friendname/?__a=1&__d=dis"));
    assert_eq!((profile.as_str(), kind), ("friend", Kind::Api));
    for path in [
        "/",
        "/explore/",
        "/exname2/",
        "/otherperson/",
        "/p/Cabc123/",
        "/stories/otherperson/",
        "/direct/inbox/",
        "/accounts/edit/",
        "/reels/exname_fan/",
        "/exname/../",
        "/exname/../explore/",
    ] {
        passes(nav("www.instagram.com", path));
    }
}

#[test]
fn instagram_api() {
    for path in [
        "/api/v1/users/web_profile_info/?username=exname",
        "/api/v1/users/web_profile_info/?username=ExName",
        "/api/v1/users/web_profile_info/?username=%40exname",
        "/api/v1/users/web_profile_info/?username=%2540ex%256Eame",
        "/api/v1/users/12345%2536%2537890/info/",
        "/api/v1/users/1234567890/info/",
        "/api/v1/feed/user/1234567890/",
        "/api/v1/feed/user/exname/username/?count=12",
        "/api/v1/highlights/1234567890/highlights_tray/",
        "/api/v1/friendships/show/1234567890/",
        "/graphql/query/?query_hash=abc&variables=%7B%22id%22%3A%221234567890%22%2C%22first%22%3A12%7D",
    ] {
        let (_, site, kind) = blocked(view("i.instagram.com", path));
        assert_eq!((site, kind), (ProfileSite::Instagram, Kind::Api), "{path}");
    }
    let (_, _, kind) = blocked(post(
        "www.instagram.com",
        "/api/v1/clips/user/",
        FORM,
        "target_user_id=1234567890&page_size=12",
    ));
    assert_eq!(kind, Kind::Api);
    for body in [
        "doc_id=123&variables=%7B%22username%22%3A%22exname%22%7D",
        "doc_id=123&variables=%7B%22id%22%3A%221234567890%22%7D",
        "doc_id=123&variables=%7B%22user_id%22%3A1234567890%7D",
        "doc_id=123&variables=%7B%22data%22%3A%7B%22target_user_id%22%3A%221234567890%22%7D%7D",
        "lsd=x&variables=%7B%22username%22%3A%22%40ExName%22%7D",
        "doc_id=123&variables=%7B%22username%22%3A%22%2565xname%22%7D",
    ] {
        blocked(post("www.instagram.com", "/graphql/query", FORM, body));
        blocked(post("www.instagram.com", "/api/graphql", FORM, body));
    }
    passes(view(
        "www.instagram.com",
        "/api/v1/users/web_profile_info/?username=someone",
    ));
    passes(view("www.instagram.com", "/api/v1/feed/timeline/"));
    passes(post(
        "www.instagram.com",
        "/graphql/query",
        FORM,
        "doc_id=123&variables=%7B%22username%22%3A%22someone%22%7D",
    ));
    passes(post(
        "www.instagram.com",
        "/api/graphql",
        "application/json",
        r#"{"variables":{"id":"999"}}"#,
    ));
}

#[test]
fn instagram_batches_lose_only_the_profile() {
    let (query, body) = rewritten(view(
        "www.instagram.com",
        "/api/v1/feed/reels_media/?reel_ids=111&reel_ids=1234567890&reel_ids=222",
    ));
    assert_eq!(query.as_deref(), Some("reel_ids=111&reel_ids=222"));
    assert_eq!(body, None);
    let (query, _) = rewritten(view(
        "www.instagram.com",
        "/api/v1/feed/reels_media/?reel_ids=111,1234567890",
    ));
    assert_eq!(query.as_deref(), Some("reel_ids=111"));
    // Only the profile asked for: nothing left, so blocked.
    blocked(view(
        "www.instagram.com",
        "/api/v1/feed/reels_media/?reel_ids=1234567890",
    ));

    let (_, body) = rewritten(post(
        "www.instagram.com",
        "/ajax/bulk-route-definitions/",
        FORM,
        "route_urls%5B0%5D=%2Fexplore%2F&route_urls%5B1%5D=%2Fexname%2F&route_urls%5B2%5D=%2Fother%2F&__a=1",
    ));
    let body = body.unwrap();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert_eq!(
        pairs,
        [
            ("route_urls[0]".into(), "/explore/".into()),
            ("route_urls[2]".into(), "/other/".into()),
            ("__a".into(), "1".into())
        ]
    );
    blocked(post(
        "www.instagram.com",
        "/ajax/bulk-route-definitions/",
        FORM,
        "route_urls[0]=/ExName/reels/",
    ));
    passes(post(
        "www.instagram.com",
        "/ajax/bulk-route-definitions/",
        FORM,
        "route_urls[0]=/explore/&route_urls[1]=/other/",
    ));
}

#[test]
fn threads() {
    for host in ["www.threads.com", "www.threads.net", "threads.net"] {
        for path in [
            "/@exname",
            "/@ExName/",
            "/@exname/post/Cabc",
            "/@exname/replies",
            "/@exname/reposts",
        ] {
            let (_, site, kind) = blocked(nav(host, path));
            assert_eq!((site, kind), (ProfileSite::Threads, Kind::Navigation));
        }
        passes(nav(host, "/@someone"));
        passes(nav(host, "/exname"));
        passes(nav(host, "/"));
    }
    blocked(post(
        "www.threads.com",
        "/api/graphql",
        FORM,
        "lsd=AV&doc_id=1&variables=%7B%22userID%22%3A%221234567890%22%7D",
    ));
    rewritten(post(
        "www.threads.com",
        "/ajax/bulk-route-definitions/",
        FORM,
        "route_urls[0]=/@exname&route_urls[1]=/@other",
    ));
}

#[test]
fn x() {
    for host in ["x.com", "twitter.com", "mobile.x.com", "X.COM."] {
        for path in [
            "/exname",
            "/ExName/",
            "/exname/with_replies",
            "/exname/media",
            "/exname/likes",
            "/exname/followers",
            "/exname/status/1790000000000000000",
            "/exname/status/1790000000000000000/photo/1",
            "/intent/user?screen_name=exname",
            "/intent/follow?screen_name=ExName",
            "/i/user/44196397",
        ] {
            let (_, site, _) = blocked(nav(host, path));
            assert_eq!(site, ProfileSite::X, "{host}{path}");
        }
        for path in [
            "/home",
            "/explore",
            "/notifications",
            "/i/bookmarks",
            "/someone",
            "/exname_fan",
            "/search?q=cats",
        ] {
            passes(nav(host, path));
        }
    }
    let vars = |v: &str| {
        format!(
            "/i/api/graphql/G3KGOASz96M-Qu0nwmGXNg/UserByScreenName?variables={}&features=%7B%7D",
            percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
        )
    };
    for v in [
        r#"{"screen_name":"exname","withSafetyModeUserFields":true}"#,
        r#"{"screen_name":"ExName"}"#,
        r#"{"userId":"44196397","count":20}"#,
        r#"{"rest_id":"44196397"}"#,
    ] {
        let (_, _, kind) = blocked(view("x.com", &vars(v)));
        assert_eq!(kind, Kind::Api);
    }
    passes(view("x.com", &vars(r#"{"screen_name":"someone"}"#)));
    passes(view("x.com", &vars(r#"{"focalTweetId":"44196397"}"#)));
    let (query, _) = rewritten(view("x.com", &vars(r#"{"userIds":["1","44196397","2"]}"#)));
    let query = query.unwrap();
    let variables = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "variables")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(variables, r#"{"userIds":["1","2"]}"#);
    assert!(query.contains("features="));
    blocked(view("x.com", &vars(r#"{"userIds":["44196397"]}"#)));
    blocked(view("api.x.com", "/1.1/users/show.json?screen_name=exname"));
    blocked(view("api.x.com", "/1.1/statuses/user_timeline.json?user_id=44196397"));
    blocked(view("x.com", "/i/api/2/timeline/profile/44196397.json"));
    passes(view("api.x.com", "/1.1/statuses/user_timeline.json?user_id=1"));
}

#[test]
fn facebook() {
    for host in [
        "www.facebook.com",
        "web.facebook.com",
        "m.facebook.com",
        "mbasic.facebook.com",
    ] {
        for path in [
            "/ex.name",
            "/Ex.Name/",
            "/ex.name/photos",
            "/ex.name/friends",
            "/ex.name/about",
            "/profile.php?id=100004567890123",
            "/profile.php?id=100004567890123&sk=photos",
            "/people/Ex-Name/100004567890123/",
            "/100004567890123",
            "/stories/100004567890123/UzpfSVNDOjE/",
        ] {
            let (_, site, kind) = blocked(nav(host, path));
            assert_eq!((site, kind), (ProfileSite::Facebook, Kind::Navigation), "{host}{path}");
        }
        for path in [
            "/",
            "/marketplace/",
            "/groups/123/",
            "/profile.php?id=1",
            "/other.name",
            "/people/Someone/1/",
        ] {
            passes(nav(host, path));
        }
    }
    for vars in [
        r#"{"userID":"100004567890123","scale":1}"#,
        r#"{"selectedID":"100004567890123"}"#,
        r#"{"id":"100004567890123"}"#,
        r#"{"input":{"profile_id":"100004567890123"}}"#,
    ] {
        let body = format!(
            "av=1&fb_api_req_friendly_name=ProfileCometHeaderQuery&variables={}&doc_id=1",
            percent_encoding::utf8_percent_encode(vars, percent_encoding::NON_ALPHANUMERIC)
        );
        let (_, _, kind) = blocked(post("www.facebook.com", "/api/graphql/", FORM, &body));
        assert_eq!(kind, Kind::Api);
    }
    passes(post(
        "www.facebook.com",
        "/api/graphql/",
        FORM,
        "fb_api_req_friendly_name=CometNewsFeedPaginationQuery&variables=%7B%22count%22%3A3%7D",
    ));
    let (_, body) = rewritten(post(
        "www.facebook.com",
        "/ajax/bulk-route-definitions/",
        FORM,
        "route_urls[0]=%2Fex.name&route_urls[1]=%2Fmarketplace%2F&route_urls[2]=%2Fprofile.php%3Fid%3D100004567890123",
    ));
    assert_eq!(body.as_deref(), Some("route_urls%5B1%5D=%2Fmarketplace%2F"));
    blocked(post(
        "www.facebook.com",
        "/ajax/route-definition/",
        FORM,
        "route_url=%2Fex.name%2Fphotos",
    ));
}

#[test]
fn tiktok() {
    for path in [
        "/@exname",
        "/@ExName/",
        "/@exname/video/7300000000000000000",
        "/@exname/photo/1",
        "/@exname/live",
        "/embed/@exname",
    ] {
        let (_, site, _) = blocked(nav("www.tiktok.com", path));
        assert_eq!(site, ProfileSite::Tiktok);
    }
    for path in [
        "/api/user/detail/?uniqueId=exname&aid=1988",
        "/api/post/item_list/?secUid=MS4wLjABAAAAexsecuid&count=35",
        "/api/creator/item_list/?secUid=MS4wLjABAAAAexsecuid",
        "/api/repost/item_list/?secUid=ms4wljabaaaaexsecuid",
        "/api/live/detail/?uniqueId=exname",
    ] {
        let (_, _, kind) = blocked(view("www.tiktok.com", path));
        assert_eq!(kind, Kind::Api, "{path}");
    }
    passes(nav("www.tiktok.com", "/@someone"));
    passes(nav("www.tiktok.com", "/foryou"));
    passes(view("www.tiktok.com", "/api/user/detail/?uniqueId=someone"));
    passes(view("www.tiktok.com", "/api/recommend/item_list/?count=30"));
}

#[test]
fn linkedin() {
    for path in [
        "/in/ex-name-123/",
        "/in/Ex-Name-123",
        "/in/ex-name-123/recent-activity/all/",
        "/in/ex-name-123/details/experience/",
    ] {
        let (_, site, _) = blocked(nav("www.linkedin.com", path));
        assert_eq!(site, ProfileSite::Linkedin);
    }
    for path in [
        "/voyager/api/graphql?variables=(vanityName:ex-name-123)&queryId=voyagerIdentityDashProfiles.abc",
        "/voyager/api/voyagerIdentityDashProfiles?q=memberIdentity&memberIdentity=ex-name-123",
        "/voyager/api/graphql?variables=(profileUrn:urn%3Ali%3Afsd_profile%3AACoAAExUrn)&queryId=x",
        "/voyager/api/identity/dash/profiles/urn:li:fsd_profile:ACoAAExUrn",
    ] {
        let (_, _, kind) = blocked(view("www.linkedin.com", path));
        assert_eq!(kind, Kind::Api, "{path}");
    }
    passes(nav("www.linkedin.com", "/in/someone-else/"));
    passes(nav("www.linkedin.com", "/feed/"));
    passes(view(
        "www.linkedin.com",
        "/voyager/api/graphql?variables=(vanityName:someone)&queryId=voyagerIdentityDashProfiles.abc",
    ));
}

#[test]
fn snapchat() {
    for (host, path) in [
        ("www.snapchat.com", "/add/exname"),
        ("www.snapchat.com", "/add/ExName/"),
        ("www.snapchat.com", "/@exname"),
        ("story.snapchat.com", "/@exname"),
        ("story.snapchat.com", "/s/exname"),
        ("www.snapchat.com", "/_next/data/build123/en-US/add/exname.json"),
        ("www.snapchat.com", "/_next/data/build123/en-US/@exname.json"),
    ] {
        let (_, site, _) = blocked(nav(host, path));
        assert_eq!(site, ProfileSite::Snapchat, "{host}{path}");
    }
    passes(nav("www.snapchat.com", "/add/someone"));
    passes(nav("www.snapchat.com", "/spotlight/"));
}

#[test]
fn json_bodies_and_bodies_without_a_content_type() {
    blocked(post(
        "x.com",
        "/i/api/graphql/abc/UserByScreenName",
        "application/json",
        r#"{"variables":{"screen_name":"exname"}}"#,
    ));
    blocked(post(
        "x.com",
        "/i/api/graphql/abc/Op",
        "text/plain;charset=UTF-8",
        r#"{"variables":"{\"userId\":\"44196397\"}"}"#,
    ));
    let mut req = post("www.tiktok.com", "/api/x/", FORM, "");
    req.content_type = None;
    req.body = Some(br#"{"uniqueId":"exname"}"#);
    blocked(req);
    passes(post("x.com", "/i/api/graphql/abc/Op", "application/json", "not json {"));
    passes(post("x.com", "/i/api/1.1/upload", "image/png", "\u{1}exname"));
}

#[test]
fn wants_body_only_for_forms_and_json_on_sites_with_rules() {
    let r = rules();
    assert!(r.wants_body("www.facebook.com", Some(FORM)));
    assert!(r.wants_body("x.com", Some("application/json; charset=utf-8")));
    assert!(!r.wants_body("x.com", Some("image/jpeg")));
    assert!(!r.wants_body("x.com", None));
    assert!(!r.wants_body("example.com", Some(FORM)));
}

/// Spells `handle` the ways a URL may: case, percent-encoding of some characters.
fn spelled(handle: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec((any::<bool>(), any::<bool>()), handle.len()).prop_map(move |flags| {
        handle
            .chars()
            .zip(flags)
            .map(|(c, (upper, encode))| {
                let c = if upper { c.to_ascii_uppercase() } else { c };
                if encode {
                    format!("%{:02X}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect()
    })
}

/// Path decorations that do not change the route: `//`, `;params`, a trailing slash.
fn decorated(segment: String, slashes: usize, params: bool, trailing: bool) -> String {
    let lead = "/".repeat(slashes.max(1));
    let params = if params { ";x=1" } else { "" };
    let trailing = if trailing { "/" } else { "" };
    format!("{lead}{segment}{params}{trailing}")
}

const HOSTS: &[(&str, &str)] = &[
    ("www.instagram.com", ""),
    ("x.com", ""),
    ("www.facebook.com", ""),
    ("www.tiktok.com", "@"),
    ("www.threads.com", "@"),
    ("www.snapchat.com", "@"),
];

proptest! {
    #[test]
    fn a_named_handle_is_blocked_however_it_is_spelled(
        spelling in spelled("exname"),
        site in 0..HOSTS.len(),
        slashes in 1usize..3,
        params: bool,
        trailing: bool,
        upper_host: bool,
        dot: bool,
        navigation: bool,
    ) {
        let (host, prefix) = HOSTS[site];
        // Facebook's handle is ex.name: spell that one by hand.
        let fb = host == "www.facebook.com";
        let handle = if fb { "Ex.NAME".to_string() } else { spelling };
        let mut host = if upper_host { host.to_ascii_uppercase() } else { host.to_string() };
        if dot { host.push('.'); }
        let path = decorated(format!("{prefix}{handle}"), slashes, params, trailing);
        let req = RequestView { navigation, ..view(&host, &path) };
        let judged = rules().judge(&req);
        let kind = if navigation { Kind::Navigation } else { Kind::Api };
        prop_assert!(matches!(judged, Judgement::Block { kind: k, .. } if k == kind), "{host}{path}: {judged:?}");

        // The same handle as an API value, however spelled.
        let plain = spelling_of(if fb { "Ex.Name" } else { "ExName" });
        let query = format!("username={plain}&screen_name=%40{plain}");
        let req = view(&host, "/api/v1/users/web_profile_info/");
        let req = RequestView { query: Some(&query), ..req };
        prop_assert!(matches!(rules().judge(&req), Judgement::Block { .. }), "{host}?{query}");
    }

    #[test]
    fn a_request_not_naming_a_handle_passes_unchanged(
        segs in proptest::collection::vec("[a-z0-9._@-]{1,12}", 0..5),
        params in proptest::collection::vec(("[a-z_]{1,10}", "[A-Za-z0-9._-]{0,12}"), 0..4),
        json_values in proptest::collection::vec("[A-Za-z0-9]{1,10}", 0..4),
        site in 0..HOSTS.len(),
    ) {
        let names = ["exname", "1234567890", "44196397", "ex.name", "100004567890123", "friendname", "ms4wljabaaaaexsecuid", "ex-name-123", "acoaaexurn"];
        let named = |s: &str| {
            let s = s.trim_start_matches('@').to_ascii_lowercase();
            names.iter().any(|n| s == *n || s == format!("{n}.json"))
        };
        prop_assume!(!segs.iter().any(|s| named(s)));
        prop_assume!(!params.iter().any(|(_, v)| named(v)));
        prop_assume!(!json_values.iter().any(|v| named(v)));
        let (host, _) = HOSTS[site];
        let path = format!("/{}", segs.join("/"));
        let query: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish();
        let json = serde_json::json!({ "variables": { "username": json_values.first(), "ids": json_values, "id": json_values.last() } }).to_string();
        let mut req = post(host, &path, "application/json", &json);
        req.query = Some(&query);
        prop_assert_eq!(rules().judge(&req), Judgement::Pass, "{}{}?{} {}", host, path, query, json);
    }
}

/// Percent-encodes every other character of `text` for a query value.
fn spelling_of(text: &str) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                format!("%{:02X}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[test]
fn body_relevant_endpoints_are_the_apis() {
    let r = rules();
    for (host, path) in [
        ("www.instagram.com", "/graphql/query"),
        ("www.instagram.com", "/api/v1/clips/user/"),
        ("www.instagram.com", "/ajax/bulk-route-definitions/"),
        ("www.threads.com", "/api/graphql"),
        ("www.facebook.com", "/api/graphql/"),
        ("x.com", "/i/api/graphql/abc/UserByRestId"),
        ("api.x.com", "/1.1/users/show.json"),
        ("www.tiktok.com", "/api/post/item_list/"),
        ("www.linkedin.com", "/voyager/api/graphql"),
    ] {
        assert!(r.body_relevant(host, path), "{host}{path}");
    }
    for (host, path) in [
        ("www.instagram.com", "/accounts/edit/"),
        ("www.instagram.com", "/rupload_igphoto/x"),
        ("x.com", "/i/jot"),
        ("www.example.org", "/api/graphql"),
    ] {
        assert!(!r.body_relevant(host, path), "{host}{path}");
    }
}

fn prefix<'a>(host: &'a str, path: &'a str, content_type: &'a str, body: &'a [u8]) -> RequestView<'a> {
    RequestView {
        method: "POST",
        content_type: Some(content_type),
        body: Some(body),
        ..view(host, path)
    }
}

#[test]
fn a_cut_off_body_blocks_when_its_complete_part_names_the_profile() {
    let r = rules();
    let blocks = |v: &RequestView<'_>| matches!(r.judge_prefix(v, None), Judgement::Block { .. });
    // JSON cut in the middle of a later value.
    let json = br#"{"variables":{"userID":"1234567890","cursor":"AQHR"#;
    assert!(blocks(&prefix(
        "www.instagram.com",
        "/api/graphql",
        "application/json",
        json
    )));
    // JSON inside a JSON string, itself cut off.
    let nested = br#"{"doc_id":"1","variables":"{\"id\":\"1234567890\",\"first\":12,\"after\":\"QVF"#;
    assert!(blocks(&prefix(
        "www.instagram.com",
        "/api/graphql",
        "application/json",
        nested
    )));
    // A list entry: no rewrite of a body we do not have whole, so a block.
    let list = br#"{"user_ids":["1","44196397","3"#;
    assert!(blocks(&prefix(
        "x.com",
        "/i/api/graphql/q/UsersByRestIds",
        "application/json",
        list
    )));
    // A form whose cut-off last pair holds the JSON variables.
    let form = b"doc_id=1&variables=%7B%22id%22%3A%22100004567890123%22%2C%22x%22%3A%22AAAA";
    assert!(blocks(&prefix("www.facebook.com", "/api/graphql/", FORM, form)));
    // Complete form pairs before the cut.
    let form = b"username=exname&blob=AAAAAAAA";
    assert!(blocks(&prefix("www.instagram.com", "/api/v1/x/", FORM, form)));
    // The path alone.
    assert!(!blocks(&prefix("www.tiktok.com", "/api/user/detail/", FORM, b"")));
    assert!(blocks(&prefix(
        "www.instagram.com",
        "/api/v1/users/1234567890/info/",
        FORM,
        b"a=b"
    )));
}

#[test]
fn a_value_the_cut_went_through_names_nobody() {
    let r = rules();
    let passes = |v: &RequestView<'_>| r.judge_prefix(v, None) == Judgement::Pass;
    // "exname" cut to "exna", "1234567890" cut to "12345": neither is judged.
    let json = br#"{"variables":{"username":"exna"#;
    assert!(passes(&prefix(
        "www.instagram.com",
        "/api/graphql",
        "application/json",
        json
    )));
    let json = br#"{"variables":{"id":12345"#;
    assert!(passes(&prefix(
        "www.instagram.com",
        "/api/graphql",
        "application/json",
        json
    )));
    let form = b"a=1&username=exname";
    assert!(passes(&prefix("www.instagram.com", "/api/v1/x/", FORM, form)));
    // Someone else, in full.
    let json = br#"{"variables":{"username":"someone","blob":"AAAA"#;
    assert!(passes(&prefix(
        "www.instagram.com",
        "/api/graphql",
        "application/json",
        json
    )));
}

proptest! {
    /// Wherever the cut falls: a body naming someone else never blocks, and a
    /// body naming the profile blocks once the cut is past the id's closing quote.
    #[test]
    fn a_cut_body_blocks_exactly_when_the_complete_part_names_the_profile(
        cut in 0usize..200,
        nested: bool,
        form: bool,
    ) {
        let r = rules();
        let inner = |id: &str| format!(r#"{{"first":12,"id":"{id}","after":"QVFIUjRzT2"}}"#);
        let body = |id: &str| {
            let variables = inner(id);
            if form {
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("doc_id", "1")
                    .append_pair("variables", &variables)
                    .finish()
            } else if nested {
                serde_json::json!({"doc_id": "1", "variables": variables}).to_string()
            } else {
                format!(r#"{{"doc_id":"1","variables":{variables}}}"#)
            }
        };
        let ct = if form { FORM } else { "application/json" };
        let judge = |text: &str| {
            let cut = cut.min(text.len());
            r.judge_prefix(&prefix("www.instagram.com", "/graphql/query", ct, &text.as_bytes()[..cut]), None)
        };
        prop_assert_eq!(judge(&body("1234567")), Judgement::Pass);
        let named = body("1234567890");
        // Where the id's value is complete (its closing quote) in the text as sent.
        let closing = match (form, nested) {
            (true, _) => "1234567890%22",
            (false, true) => r#"1234567890\""#,
            (false, false) => r#"1234567890""#,
        };
        let complete = named.find(closing).map(|at| at + closing.len());
        let blocked = matches!(judge(&named), Judgement::Block { .. });
        prop_assert_eq!(blocked, cut >= complete.unwrap_or(usize::MAX), "cut {}", cut);
    }
}
