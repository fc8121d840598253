//! The proxy's request matcher (`ncd_proxy::ProfileRules::judge`).
//!
//! The profile rules name `exname` and the id `987654` on every site. The first
//! byte picks a site and how the request is made (method, navigation, where the
//! rest goes); the rest is split at NUL bytes into path, query and body, read
//! as UTF-8 lossily, as a client could send them. Then:
//!
//! - judging never panics;
//! - **a request that does not name the profile passes unchanged**: when neither
//!   the handle nor the id appears in the path, query or body — not even after
//!   percent-decoding, in any case — the verdict is `Pass`;
//! - **whatever names the profile is blocked however it is spelled**: the site's
//!   profile page, built from the fuzzer's spelling choices (the handle's case,
//!   which of its characters are percent-encoded, `//` in front, a `;param` after
//!   it, a trailing `/`, the host in upper case, with a trailing dot or a port), is
//!   always `Block`, and so is the same spelling with the fuzzer's rest appended
//!   as a sub-path, double-encoded (`%25` for each `%`), or behind `/explore/..`;
//!   on Instagram, the handle so spelled (or the id) in GraphQL `variables` of a
//!   form and of a JSON body is `Block`, and a batched call naming the id among
//!   others loses that entry only.

use std::sync::OnceLock;

use ncd_config::{Config, ProfileSite};
use ncd_proxy::{Judgement, ProfileRules, RequestView};

const HANDLE: &str = "exname";
const ID: &str = "987654";

fn rules() -> &'static ProfileRules {
    static RULES: OnceLock<ProfileRules> = OnceLock::new();
    RULES.get_or_init(|| {
        let sites: String = ProfileSite::ALL
            .iter()
            .map(|site| format!("{} = [\"{HANDLE}\", \"{ID}\"]\n", site.key()))
            .collect();
        let config = Config::parse(
            &format!("[[profile]]\nname = \"ex\"\n{sites}"),
            std::path::Path::new("fuzz.toml"),
        )
        .expect("the fuzz profile parses");
        ProfileRules::compile(&config)
    })
}

/// The profile page's path on `site`, the handle written as `spell` says.
fn profile_path(site: ProfileSite, handle: &str) -> String {
    match site {
        ProfileSite::Threads | ProfileSite::Tiktok => format!("/@{handle}"),
        ProfileSite::Linkedin => format!("/in/{handle}"),
        ProfileSite::Snapchat => format!("/add/{handle}"),
        _ => format!("/{handle}"),
    }
}

/// Percent-decodes `text` until it stops changing (at most a few rounds).
fn decoded(text: &str) -> String {
    let mut current = text.to_string();
    for _ in 0..4 {
        let next = percent_decode(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current.to_lowercase()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn check_proxy_request(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let site = ProfileSite::ALL[usize::from(first) % ProfileSite::ALL.len()];
    let host = site.hosts()[usize::from(first / 7) % site.hosts().len()];
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, '\0');
    let path = format!("/{}", parts.next().unwrap_or_default().trim_start_matches('/'));
    let query = parts.next();
    let body = parts.next();
    let method = if first & 0x80 != 0 { "POST" } else { "GET" };
    let navigation = first & 0x40 != 0;
    let content_type = if first & 0x20 != 0 {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };

    // Not naming the profile: passes unchanged.
    let request = RequestView {
        method,
        host,
        path: &path,
        query,
        content_type: Some(content_type),
        body: body.map(str::as_bytes),
        navigation,
    };
    let verdict = rules().judge(&request);
    let seen = [Some(path.as_str()), query, body]
        .into_iter()
        .flatten()
        .map(decoded)
        .collect::<Vec<_>>()
        .join(" ");
    if !seen.contains(HANDLE) && !seen.contains(ID) {
        assert_eq!(verdict, Judgement::Pass, "{site:?} {host} {path:?} {query:?} {body:?}");
    }

    // Naming it, spelled as the fuzzer chose: blocked.
    let spell = rest.first().copied().unwrap_or(0);
    let encode = rest.get(1).copied().unwrap_or(0);
    let handle: String = HANDLE
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let c = if (spell >> (i % 8)) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            };
            if (encode >> (i % 8)) & 1 == 1 {
                format!("%{:02X}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect();
    let mut page = profile_path(site, &handle);
    if spell & 0x40 != 0 {
        page = format!("/{page}");
    }
    if encode & 0x80 != 0 {
        page.push_str(";x=1");
    }
    if spell & 0x80 != 0 {
        page.push('/');
    }
    let host_spelled = match encode & 0x30 {
        0x10 => host.to_uppercase(),
        0x20 => format!("{host}."),
        0x30 => format!("{host}:443"),
        _ => host.to_string(),
    };
    let double = page.replace('%', "%25");
    let dotted = format!("/explore/..{page}");
    for (path, navigation) in [
        (page.clone(), true),
        (page.clone(), false),
        (double, true),
        (dotted, true),
    ] {
        let request = RequestView {
            method: "GET",
            host: &host_spelled,
            path: &path,
            query: None,
            content_type: None,
            body: None,
            navigation,
        };
        assert!(
            matches!(rules().judge(&request), Judgement::Block { .. }),
            "{site:?} {host_spelled} {path:?} was not blocked"
        );
    }

    if site == ProfileSite::Instagram {
        check_instagram_bodies(&handle, spell, encode);
    }
}

/// Every byte but ASCII letters and digits as `%XX`: a form value as a client
/// may send it.
fn form_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// GraphQL `variables` naming the profile (the handle spelled as the fuzzer
/// chose, maybe double-encoded, or the id) in a form and in a JSON body, and a
/// batched call naming the id among others.
fn check_instagram_bodies(handle: &str, spell: u8, encode: u8) {
    let handle = if encode & 0x40 != 0 {
        handle.replace('%', "%25")
    } else {
        handle.to_string()
    };
    let variables = if spell & 0x20 != 0 {
        format!(r#"{{"id":"{ID}","first":12}}"#)
    } else {
        format!(r#"{{"username":"{handle}"}}"#)
    };
    let form = format!("doc_id=1&variables={}", form_encoded(&variables));
    let json = format!(r#"{{"doc_id":"1","variables":{variables}}}"#);
    for (path, content_type, body) in [
        ("/graphql/query", "application/x-www-form-urlencoded", form.as_str()),
        ("/api/graphql", "application/json", json.as_str()),
    ] {
        let request = RequestView {
            method: "POST",
            host: "www.instagram.com",
            path,
            query: None,
            content_type: Some(content_type),
            body: Some(body.as_bytes()),
            navigation: false,
        };
        assert!(
            matches!(rules().judge(&request), Judgement::Block { .. }),
            "{path} {body:?} was not blocked"
        );
    }
    let query = format!("reel_ids=111&reel_ids={ID}&reel_ids=222");
    let request = RequestView {
        method: "GET",
        host: "i.instagram.com",
        path: "/api/v1/feed/reels_media/",
        query: Some(&query),
        content_type: None,
        body: None,
        navigation: false,
    };
    match rules().judge(&request) {
        Judgement::Rewrite { query: Some(q), .. } => {
            assert!(!q.contains(ID) && q.contains("111") && q.contains("222"), "{q}");
        }
        other => panic!("a batch naming the id among others: {other:?}"),
    }
}
