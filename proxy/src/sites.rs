//! Per-site facts and the request matcher.
//!
//! This module owns what the proxy knows about each site: the hosts the DNS side
//! steers to the proxy, the registrable domains the CA may sign for, and which
//! requests reach a named person's profile — page routes, the API and GraphQL calls
//! behind in-app navigation, by handle or numeric id, in paths, query strings, form
//! and JSON bodies, and entries of batched calls.
//!
//! It is pure: [`ProfileRules::judge`] looks at a [`RequestView`] and answers a
//! [`Judgement`]; no I/O, no clock. Every comparison is on one normal form: the path
//! percent-decoded until it stops changing (double encoding), split on `/` with
//! empty segments (`//`) and `;params` dropped, `.` and `..` resolved, lower-cased;
//! identity values decoded the same way, without `@`, surrounding blanks and a
//! trailing `/`.

use std::borrow::Cow;
use std::collections::HashMap;

use ncd_config::{Config, ProfileSite};
use serde_json::Value;

use crate::learn::Learned;

/// Facts about one site: where its profiles live.
#[derive(Debug, Clone, Copy)]
pub struct SiteFacts {
    pub site: ProfileSite,
    /// Hosts the DNS side steers to the proxy (profile pages and their APIs).
    pub hosts: &'static [&'static str],
    /// Registrable domains: the CA's name constraints permit exactly these.
    pub domains: &'static [&'static str],
}

/// The sites, in the order of [`ProfileSite::ALL`]; the hosts and domains are
/// `ncd_config`'s, which the DNS side steers by too.
pub const SITES: [SiteFacts; 7] = [
    SiteFacts {
        site: ProfileSite::Instagram,
        hosts: ProfileSite::Instagram.hosts(),
        domains: ProfileSite::Instagram.domains(),
    },
    SiteFacts {
        site: ProfileSite::Threads,
        hosts: ProfileSite::Threads.hosts(),
        domains: ProfileSite::Threads.domains(),
    },
    SiteFacts {
        site: ProfileSite::X,
        hosts: ProfileSite::X.hosts(),
        domains: ProfileSite::X.domains(),
    },
    SiteFacts {
        site: ProfileSite::Facebook,
        hosts: ProfileSite::Facebook.hosts(),
        domains: ProfileSite::Facebook.domains(),
    },
    SiteFacts {
        site: ProfileSite::Tiktok,
        hosts: ProfileSite::Tiktok.hosts(),
        domains: ProfileSite::Tiktok.domains(),
    },
    SiteFacts {
        site: ProfileSite::Linkedin,
        hosts: ProfileSite::Linkedin.hosts(),
        domains: ProfileSite::Linkedin.domains(),
    },
    SiteFacts {
        site: ProfileSite::Snapchat,
        hosts: ProfileSite::Snapchat.hosts(),
        domains: ProfileSite::Snapchat.domains(),
    },
];

/// The facts of `site`.
pub fn facts(site: ProfileSite) -> &'static SiteFacts {
    // Invariant: SITES lists every ProfileSite once, in ALL's order.
    SITES.iter().find(|f| f.site == site).unwrap_or(&SITES[0])
}

/// A host name in normal form: lower-case, without a port or a trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let host = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The site a host belongs to, among all known sites (whether or not a rule names it).
pub fn site_of_host(host: &str) -> Option<ProfileSite> {
    let host = normalize_host(host);
    SITES.iter().find(|f| f.hosts.contains(&host.as_str())).map(|f| f.site)
}

/// What the matcher needs to see of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// The host the request is for (SNI or `:authority`); any case, port or trailing dot.
    pub host: &'a str,
    /// The path as sent, still percent-encoded.
    pub path: &'a str,
    /// The query string as sent, without `?`.
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// The body, when it was buffered for inspection.
    pub body: Option<&'a [u8]>,
    /// True for a top-level navigation (`Sec-Fetch-Mode: navigate`, or no fetch
    /// metadata and an `Accept` that wants HTML): a block shows the block page.
    pub navigation: bool,
}

/// How a blocked request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A page load: the calm block page.
    Navigation,
    /// An API or data call: the site's own "not found".
    Api,
}

/// The matcher's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Forward as sent.
    Pass,
    /// The request reaches `profile`'s profile on `site`.
    Block {
        profile: String,
        site: ProfileSite,
        kind: Kind,
    },
    /// A batched call named the profile among others: forward it with the profile's
    /// entries removed. `query` (without `?`) and `body` replace the request's own
    /// when set.
    Rewrite {
        query: Option<String>,
        body: Option<Vec<u8>>,
    },
}

/// The handles and ids to block on one site, each with its profile's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SiteRules {
    tokens: HashMap<String, String>,
}

/// Profile rules compiled from a config: per site, the handles and ids to block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileRules {
    sites: HashMap<ProfileSite, SiteRules>,
}

impl ProfileRules {
    /// Compiles the `[[profile]]` tables of `config`.
    pub fn compile(config: &Config) -> Self {
        let mut sites: HashMap<ProfileSite, SiteRules> = HashMap::new();
        for profile in &config.profiles {
            for (site, handle) in profile.entries() {
                sites
                    .entry(site)
                    .or_default()
                    .tokens
                    .entry(handle.as_str().to_string())
                    .or_insert_with(|| profile.name.clone());
            }
        }
        Self { sites }
    }

    /// True when no profile names any handle: the proxy has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// The sites some profile names, in a fixed order.
    pub fn sites(&self) -> Vec<ProfileSite> {
        ProfileSite::ALL
            .into_iter()
            .filter(|s| self.sites.contains_key(s))
            .collect()
    }

    /// The hosts to steer to the proxy (A and AAAA to its address, HTTPS/SVCB empty).
    pub fn steered_hosts(&self) -> Vec<&'static str> {
        self.sites()
            .into_iter()
            .flat_map(|s| facts(s).hosts.iter().copied())
            .collect()
    }

    /// The registrable domains of the sites with rules, sorted: the CA's constraints.
    pub fn registrable_domains(&self) -> Vec<String> {
        let mut domains: Vec<String> = self
            .sites()
            .into_iter()
            .flat_map(|s| facts(s).domains.iter().map(|d| d.to_string()))
            .collect();
        domains.sort();
        domains.dedup();
        domains
    }

    /// The site of `host` when some profile names it; `None` means "not ours".
    pub fn site_for_host(&self, host: &str) -> Option<ProfileSite> {
        site_of_host(host).filter(|s| self.sites.contains_key(s))
    }

    /// True when the proxy should buffer this request's body to judge it: a body
    /// of a kind that can carry a handle (a form or JSON), on a site with rules.
    pub fn wants_body(&self, host: &str, content_type: Option<&str>) -> bool {
        self.site_for_host(host).is_some() && content_type.is_some_and(inspectable)
    }

    /// True when `value` (any spelling) is a handle or id the config names on
    /// `site`: what a learned id must be paired with.
    pub fn names_handle(&self, site: ProfileSite, value: &str) -> bool {
        self.sites
            .get(&site)
            .is_some_and(|r| r.tokens.contains_key(&value_form(value)))
    }

    /// False only when reading `body` for ids cannot find a pair on `site`: no
    /// handle or id the config names there appears in it (ASCII case ignored).
    /// Exact for [`crate::learn::find_pairs`]: a value it pairs holds one of these
    /// tokens, and a token (letters, digits, `.`, `_`, `-`) can hide only behind a
    /// `\u` escape or a Kelvin sign (which lower-cases to `k`), so a body with
    /// either is always read. Most answers name no handle: this keeps their JSON
    /// parse, and the hop to a blocking thread, off the request path.
    pub fn may_name_handle(&self, site: ProfileSite, body: &[u8]) -> bool {
        let Some(rules) = self.sites.get(&site) else {
            return false;
        };
        let Ok(text) = std::str::from_utf8(body) else {
            return true;
        };
        if text.contains("\\u") || text.contains('\u{212A}') {
            return true;
        }
        let lower = text.to_ascii_lowercase();
        rules.tokens.keys().any(|token| lower.contains(token.as_str()))
    }

    /// True when a request body to `host`'s `path` can carry a handle or id the
    /// matcher acts on: the API, GraphQL and route-definition endpoints of a site
    /// with rules. A body on such an endpoint too large to inspect whole is not
    /// forwarded (see the server's body rule); elsewhere it streams.
    pub fn body_relevant(&self, host: &str, path: &str) -> bool {
        let Some(site) = self.site_for_host(host) else {
            return false;
        };
        let segs = segments(path);
        let seg = |i: usize| segs.get(i).map(String::as_str).unwrap_or("");
        match site {
            ProfileSite::Instagram => matches!(seg(0), "api" | "graphql" | "ajax"),
            ProfileSite::Threads | ProfileSite::Facebook => matches!(seg(0), "api" | "ajax" | "graphql"),
            ProfileSite::X => matches!((seg(0), seg(1)), ("i", "api") | ("1.1" | "2" | "graphql", _)),
            ProfileSite::Tiktok => seg(0) == "api",
            ProfileSite::Linkedin => seg(0) == "voyager",
            ProfileSite::Snapchat => matches!(seg(0), "api" | "_next"),
        }
    }

    /// Judges one request against the config alone.
    pub fn judge(&self, req: &RequestView<'_>) -> Judgement {
        self.judge_with(req, None)
    }

    /// Judges one request, treating ids in `learned` (paired with a handle the
    /// config names) exactly like ids the config names.
    pub fn judge_with(&self, req: &RequestView<'_>, learned: Option<&Learned>) -> Judgement {
        let Some((m, block)) = self.matcher(req, learned) else {
            return Judgement::Pass;
        };
        if let Some(profile) = m.path_hit(req.path) {
            return block(profile);
        }
        let mut found = Found::default();
        let query = req.query.map(|q| m.params(q.as_bytes(), &mut found));
        let body = match (req.body, req.content_type) {
            (Some(body), Some(ct)) if is_form(ct) => Some(m.params(body, &mut found).map(String::into_bytes)),
            (Some(body), Some(ct)) if is_json(ct) || looks_like_json(body) => m.json_body(body, &mut found),
            (Some(body), None) if looks_like_json(body) => m.json_body(body, &mut found),
            _ => None,
        };
        if let Some(profile) = found.blocked {
            return block(profile);
        }
        let query = query.flatten();
        let body = body.flatten();
        if query.is_some() || body.is_some() {
            return Judgement::Rewrite { query, body };
        }
        Judgement::Pass
    }

    /// Judges a request whose body is longer than what was read: `req.body` holds
    /// only its first bytes. Blocks when the path, the query or the complete parts
    /// of that prefix name a profile (form pairs before the last `&`; JSON keys and
    /// values scanned without needing the document to end); otherwise `Pass`, which
    /// here means only "the prefix names nobody", not "forward".
    pub fn judge_prefix(&self, req: &RequestView<'_>, learned: Option<&Learned>) -> Judgement {
        let Some((m, block)) = self.matcher(req, learned) else {
            return Judgement::Pass;
        };
        let whole = RequestView { body: None, ..*req };
        if let b @ Judgement::Block { .. } = self.judge_with(&whole, learned) {
            return b;
        }
        let prefix = req.body.unwrap_or_default();
        let mut found = Found::default();
        if req.content_type.is_some_and(is_form) {
            let complete = prefix
                .iter()
                .rposition(|b| *b == b'&')
                .map_or(&[][..], |at| &prefix[..at]);
            let _ = m.params(complete, &mut found);
            // JSON in any pair's value, the cut-off last one included.
            for (_, value) in form_urlencoded::parse(prefix) {
                if looks_like_json(value.as_bytes()) {
                    m.scan(value.as_bytes(), &mut found, 0);
                }
            }
        } else {
            m.scan(prefix, &mut found, 0);
        }
        match found.blocked.or(found.removed) {
            Some(profile) => block(profile),
            None => Judgement::Pass,
        }
    }

    /// The matcher for `req`'s site and how it blocks, when the site has rules.
    #[allow(clippy::type_complexity)]
    fn matcher<'a>(
        &'a self,
        req: &RequestView<'_>,
        learned: Option<&'a Learned>,
    ) -> Option<(Matcher<'a>, impl Fn(&str) -> Judgement + use<'a>)> {
        let site = self.site_for_host(req.host)?;
        let rules = self.sites.get(&site)?;
        let kind = if req.navigation { Kind::Navigation } else { Kind::Api };
        let block = move |profile: &str| Judgement::Block {
            profile: profile.to_string(),
            site,
            kind,
        };
        Some((Matcher { site, rules, learned }, block))
    }
}

fn inspectable(content_type: &str) -> bool {
    is_form(content_type) || is_json(content_type) || content_type.to_ascii_lowercase().starts_with("text/plain")
}

fn is_form(content_type: &str) -> bool {
    content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
}

fn is_json(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ct.starts_with("application/json") || ct.contains("+json")
}

/// The index of the `"` closing the string that opens at `start`, if it closes.
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while let Some(&b) = text.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The text of a string literal (opening `"` included) the cut went through,
/// without a trailing half escape.
fn unterminated(literal: &[u8]) -> Option<String> {
    (0..=6).find_map(|cut| {
        let kept = literal.get(..literal.len().checked_sub(cut)?)?;
        let mut closed = kept.to_vec();
        closed.push(b'"');
        serde_json::from_slice::<String>(&closed).ok()
    })
}

fn looks_like_json(body: &[u8]) -> bool {
    matches!(body.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['))
}

/// What inspecting a query or body found.
#[derive(Debug, Default)]
struct Found<'a> {
    /// A profile a single-valued identity field named.
    blocked: Option<&'a str>,
    /// A profile whose entries were removed from a batch.
    removed: Option<&'a str>,
}

impl<'a> Found<'a> {
    fn block(&mut self, profile: &'a str) {
        if self.blocked.is_none() {
            self.blocked = Some(profile);
        }
    }

    fn remove(&mut self, profile: &'a str) {
        if self.removed.is_none() {
            self.removed = Some(profile);
        }
    }

    /// A batch lost every entry: nothing is left to ask for, so block.
    fn emptied(&mut self) {
        if let Some(profile) = self.removed {
            self.block(profile);
        }
    }
}

/// Keys whose value is a person (handle, id, URN), compared without case, `_` or `-`.
const IDENTITY_KEYS: &[&str] = &[
    "username",
    "screenname",
    "uniqueid",
    "secuid",
    "userid",
    "uid",
    "targetuserid",
    "id",
    "pk",
    "restid",
    "selectedid",
    "profileid",
    "ownerid",
    "vanityname",
    "memberidentity",
    "handle",
    "userids",
    "restids",
    "reelids",
    "ids",
    "profileurn",
];

/// Keys whose value is a route (a path, maybe with a query) the app is about to open.
const ROUTE_KEYS: &[&str] = &["routeurls", "routeurl", "route"];

/// Keys whose value is a list: a match removes the entry, the rest passes.
const BATCH_KEYS: &[&str] = &["userids", "restids", "reelids", "ids", "routeurls"];

/// `route_urls[3]` → `routeurls`: lower case, no `_`/`-`, no index.
fn key_form(key: &str) -> String {
    let key = key.split('[').next().unwrap_or(key);
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// An identity value in normal form.
fn value_form(value: &str) -> String {
    let decoded = fully_decoded(value.trim());
    let v = decoded.trim();
    let v = v.strip_prefix('@').unwrap_or(v);
    v.trim_end_matches('/').to_ascii_lowercase()
}

/// `text` percent-decoded until it stops changing (a few rounds at most), so a
/// double-encoded name (`%2565` for `e`) reads as an origin that decodes twice would.
fn fully_decoded(text: &str) -> Cow<'_, str> {
    let mut current: Cow<'_, str> = Cow::Borrowed(text);
    for _ in 0..4 {
        if !current.contains('%') {
            break;
        }
        let next = percent_encoding::percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if next == current {
            break;
        }
        current = Cow::Owned(next);
    }
    current
}

/// The path's segments in normal form: fully decoded, `;params` and empty
/// segments dropped, lower-cased, and `.` and `..` resolved as an origin would
/// (`/x/../exname/` is `/exname/`; never above the root).
fn segments(path: &str) -> Vec<String> {
    let decoded = fully_decoded(path);
    let mut out: Vec<String> = Vec::new();
    for seg in decoded.split('/') {
        let seg = seg.split(';').next().unwrap_or(seg).trim().to_lowercase();
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(seg),
        }
    }
    out
}

struct Matcher<'a> {
    site: ProfileSite,
    rules: &'a SiteRules,
    learned: Option<&'a Learned>,
}

impl<'a> Matcher<'a> {
    /// The profile `value` (any spelling) names on this site: a handle or id of
    /// the config, or an id learned for one of its handles.
    fn token(&self, value: &str) -> Option<&'a str> {
        let value = value_form(value);
        let learned = || {
            let handle = self.learned?.handle_for(self.site, &value)?;
            self.rules.tokens.get(handle)
        };
        self.rules.tokens.get(&value).or_else(learned).map(String::as_str)
    }

    /// `@handle` segments (TikTok, Threads, Snapchat) name a profile too.
    fn at_token(&self, seg: &str) -> Option<&'a str> {
        seg.strip_prefix('@').and_then(|s| self.token(s))
    }

    /// The profile a path reaches: page routes and id-bearing API paths.
    fn path_hit(&self, path: &str) -> Option<&'a str> {
        let segs = segments(path);
        let seg = |i: usize| segs.get(i).map(String::as_str).unwrap_or("");
        let any = |f: &dyn Fn(&str) -> Option<&'a str>| segs.iter().find_map(|s| f(s));
        // A segment of a data path, with a `.json` suffix (X, Next.js data routes) off.
        let bare = |s: &str| -> Option<&'a str> { self.token(s.strip_suffix(".json").unwrap_or(s)) };
        match self.site {
            ProfileSite::Instagram => match seg(0) {
                // /{u}/ and everything under it: reels, tagged, followers, p/{code} …
                "stories" if seg(1) == "highlights" => self.token(seg(2)),
                "stories" | "_u" => self.token(seg(1)),
                "api" | "graphql" => any(&bare),
                first => self.token(first),
            },
            ProfileSite::Threads => match seg(0) {
                "api" => any(&bare),
                first => self.at_token(first),
            },
            ProfileSite::X => match (seg(0), seg(1)) {
                ("i", "user") => self.token(seg(2)),
                ("i", "api") | ("1.1", _) | ("2", _) | ("graphql", _) => any(&bare),
                (first, _) => self.token(first),
            },
            ProfileSite::Facebook => match seg(0) {
                "people" => self.token(seg(2)),
                "stories" => self.token(seg(1)),
                "api" | "ajax" => any(&bare),
                first => self.token(first),
            },
            ProfileSite::Tiktok => any(&|s| self.at_token(s)).or_else(|| match seg(0) {
                "api" => any(&bare),
                _ => None,
            }),
            ProfileSite::Linkedin => match seg(0) {
                "in" => self.token(seg(1)),
                "voyager" => any(&bare).or_else(|| self.urn_hit(&segs.join("/"))),
                _ => None,
            },
            ProfileSite::Snapchat => {
                let at = any(&|s| self.at_token(s.strip_suffix(".json").unwrap_or(s)));
                at.or_else(|| {
                    segs.windows(2).find_map(|w| match w[0].as_str() {
                        "add" | "s" | "u" => bare(&w[1]),
                        _ => None,
                    })
                })
            }
        }
    }

    /// LinkedIn names a member by `urn:li:fsd_profile:{id}`, and Rest.li query
    /// values by `vanityName:{v}` / `memberIdentity:{v}` inside `(…)`.
    fn urn_hit(&self, text: &str) -> Option<&'a str> {
        let lower = text.to_ascii_lowercase();
        for marker in [
            "fsd_profile:",
            "fs_profile:",
            "member:",
            "vanityname:",
            "memberidentity:",
        ] {
            let mut rest = lower.as_str();
            while let Some(at) = rest.find(marker) {
                let after = &rest[at + marker.len()..];
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                    .unwrap_or(after.len());
                if let Some(profile) = self.token(&after[..end]) {
                    return Some(profile);
                }
                rest = after;
            }
        }
        None
    }

    /// A route an app is about to open (`/exname/`, `https://host/exname/?x=1`).
    fn route_hit(&self, route: &str) -> Option<&'a str> {
        let route = route.trim();
        let without_origin = match route.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => route,
        };
        let (path, query) = match without_origin.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (without_origin, None),
        };
        self.path_hit(path).or_else(|| {
            // Identity keys in the route's own query (profile.php?id=…).
            let mut found = Found::default();
            let _ = self.params(query.unwrap_or("").as_bytes(), &mut found);
            found.blocked
        })
    }

    /// Inspects `key=value&…` (a query string or a form body). Returns the rewritten
    /// text when batch entries naming a profile were removed.
    fn params(&self, text: &[u8], found: &mut Found<'a>) -> Option<String> {
        let mut kept: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
        let mut removed = false;
        for (key, value) in form_urlencoded::parse(text) {
            let k = key_form(&key);
            let mut value = value;
            if ROUTE_KEYS.contains(&k.as_str()) {
                if let Some(profile) = self.route_hit(&value) {
                    if BATCH_KEYS.contains(&k.as_str()) {
                        removed = true;
                        found.remove(profile);
                        continue;
                    }
                    found.block(profile);
                }
            } else if IDENTITY_KEYS.contains(&k.as_str()) {
                if BATCH_KEYS.contains(&k.as_str()) {
                    // Repeated keys or a comma-separated list: drop the profile's entries.
                    let parts: Vec<&str> = value.split(',').collect();
                    let mut keep = Vec::new();
                    for part in &parts {
                        match self.token(part) {
                            Some(profile) => found.remove(profile),
                            None => keep.push(*part),
                        }
                    }
                    if keep.len() != parts.len() {
                        removed = true;
                        if keep.is_empty() {
                            continue;
                        }
                        value = Cow::Owned(keep.join(","));
                    }
                } else if let Some(profile) = self.token(&value) {
                    found.block(profile);
                }
            } else if looks_like_json(value.as_bytes())
                && let Ok(mut json) = serde_json::from_str::<Value>(&value)
                && self.walk(&mut json, None, found)
            {
                removed = true;
                value = Cow::Owned(json.to_string());
            }
            if found.blocked.is_none()
                && self.site == ProfileSite::Linkedin
                && let Some(profile) = self.urn_hit(&value)
            {
                found.block(profile);
            }
            kept.push((key, value));
        }
        if !removed {
            return None;
        }
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &kept {
            out.append_pair(k, v);
        }
        // Every entry of a batch was the profile's: nothing is left to ask for.
        let batch_left = |k: &str| kept.iter().any(|(kk, _)| key_form(kk) == k);
        let emptied = form_urlencoded::parse(text).any(|(k, _)| {
            let k = key_form(&k);
            BATCH_KEYS.contains(&k.as_str()) && !batch_left(&k)
        });
        if emptied {
            found.emptied();
        }
        Some(out.finish())
    }

    /// Scans JSON that may be cut off (the first bytes of a body too large to
    /// read whole): every complete string or number is judged under the key it
    /// sits under (array entries under the array's key), strings holding JSON are
    /// walked or scanned in turn. A value the cut went through is not judged:
    /// `"exna` must not match a handle `exna`.
    fn scan(&self, text: &[u8], found: &mut Found<'a>, depth: usize) {
        if depth > 8 {
            return;
        }
        // (is an object, the key the container sits under)
        let mut stack: Vec<(bool, Option<String>)> = Vec::new();
        let mut key: Option<String> = None;
        let mut expecting_key = false;
        let mut i = 0;
        while let Some(&b) = text.get(i) {
            let in_object = stack.last().is_some_and(|(obj, _)| *obj);
            let array_key = || stack.last().and_then(|(obj, k)| (!obj).then(|| k.clone()).flatten());
            match b {
                b'{' | b'[' => {
                    let under = if in_object { key.take() } else { array_key() };
                    stack.push((b == b'{', under));
                    expecting_key = b == b'{';
                    i += 1;
                }
                b'}' | b']' => {
                    stack.pop();
                    key = None;
                    expecting_key = false;
                    i += 1;
                }
                b',' => {
                    if in_object {
                        key = None;
                        expecting_key = true;
                    }
                    i += 1;
                }
                b'"' => {
                    let Some(end) = string_end(text, i) else {
                        // The cut went through this string: JSON inside it may still
                        // hold complete values.
                        if let Some(inner) = unterminated(text.get(i..).unwrap_or_default())
                            && looks_like_json(inner.as_bytes())
                        {
                            self.scan(inner.as_bytes(), found, depth + 1);
                        }
                        return;
                    };
                    let Some(Ok(s)) = text.get(i..=end).map(serde_json::from_slice::<String>) else {
                        return;
                    };
                    i = end + 1;
                    if in_object && expecting_key {
                        key = Some(s);
                        expecting_key = false;
                    } else {
                        let under = if in_object { key.clone() } else { array_key() };
                        self.scan_scalar(&s, under.as_deref(), found, depth);
                    }
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    while text
                        .get(i)
                        .is_some_and(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
                    {
                        i += 1;
                    }
                    if i >= text.len() {
                        return;
                    }
                    let number = String::from_utf8_lossy(text.get(start..i).unwrap_or_default()).into_owned();
                    let under = if in_object { key.clone() } else { array_key() };
                    self.scan_scalar(&number, under.as_deref(), found, depth);
                }
                _ => i += 1,
            }
        }
    }

    fn scan_scalar(&self, value: &str, key: Option<&str>, found: &mut Found<'a>, depth: usize) {
        let k = key.map(key_form).unwrap_or_default();
        let linkedin = || {
            (self.site == ProfileSite::Linkedin)
                .then(|| self.urn_hit(value))
                .flatten()
        };
        let hit = if ROUTE_KEYS.contains(&k.as_str()) {
            self.route_hit(value)
        } else if IDENTITY_KEYS.contains(&k.as_str()) {
            self.token(value).or_else(linkedin)
        } else {
            linkedin()
        };
        if let Some(profile) = hit {
            found.block(profile);
        }
        if looks_like_json(value.as_bytes()) {
            match serde_json::from_str::<Value>(value) {
                Ok(mut inner) => {
                    self.walk(&mut inner, None, found);
                }
                Err(_) => self.scan(value.as_bytes(), found, depth + 1),
            }
        }
    }

    /// Inspects a JSON body; returns the rewritten body when entries were removed.
    fn json_body(&self, body: &[u8], found: &mut Found<'a>) -> Option<Option<Vec<u8>>> {
        let mut json: Value = serde_json::from_slice(body).ok()?;
        if self.walk(&mut json, None, found) {
            Some(Some(json.to_string().into_bytes()))
        } else {
            Some(None)
        }
    }

    /// Walks JSON (GraphQL `variables`, API bodies). Scalars under identity keys
    /// that name a profile block; array entries that do are removed (true when any
    /// was). JSON inside strings (`"variables":"{…}"`) is walked too.
    fn walk(&self, value: &mut Value, key: Option<&str>, found: &mut Found<'a>) -> bool {
        let k = key.map(key_form).unwrap_or_default();
        let identity = IDENTITY_KEYS.contains(&k.as_str());
        let route = ROUTE_KEYS.contains(&k.as_str());
        let hit = |v: &Value| -> Option<&'a str> {
            let text = match v {
                Value::String(s) => Cow::Borrowed(s.as_str()),
                Value::Number(n) => Cow::Owned(n.to_string()),
                _ => return None,
            };
            if route {
                self.route_hit(&text)
            } else if identity {
                self.token(&text).or_else(|| {
                    (self.site == ProfileSite::Linkedin)
                        .then(|| self.urn_hit(&text))
                        .flatten()
                })
            } else if self.site == ProfileSite::Linkedin {
                self.urn_hit(&text)
            } else {
                None
            }
        };
        match value {
            Value::Object(map) => {
                let mut changed = false;
                for (child_key, child) in map.iter_mut() {
                    changed |= self.walk(child, Some(child_key), found);
                }
                changed
            }
            Value::Array(items) => {
                let before = items.len();
                if identity || route {
                    items.retain(|item| match hit(item) {
                        Some(profile) => {
                            found.remove(profile);
                            false
                        }
                        None => true,
                    });
                }
                let mut changed = items.len() != before;
                if changed && items.is_empty() {
                    found.emptied();
                }
                for item in items.iter_mut() {
                    changed |= self.walk(item, key, found);
                }
                changed
            }
            Value::String(s) if looks_like_json(s.as_bytes()) => {
                let Ok(mut inner) = serde_json::from_str::<Value>(s) else {
                    return false;
                };
                if self.walk(&mut inner, None, found) {
                    *s = inner.to_string();
                    true
                } else {
                    false
                }
            }
            scalar => {
                if let Some(profile) = hit(scalar) {
                    found.block(profile);
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
