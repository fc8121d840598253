//! Numeric ids learned from allowed responses.
//!
//! Apps name a profile by handle once (a page, a search, a follower list) and by
//! numeric id from then on (Instagram `pk`, X `rest_id`, Facebook's id, TikTok
//! `secUid`, LinkedIn's `fsd_profile` URN). While forwarding allowed JSON answers
//! of the real origins on the steered hosts, the proxy looks for objects that pair
//! a handle some profile names with an id, and blocks that id from then on exactly
//! as if the config had named it.
//!
//! - [`find_pairs`] is pure: a site, a body and "is this a handle we block" in,
//!   `(handle, id)` pairs out. A pair counts only when both keys sit in **one**
//!   JSON object (X's GraphQL `User` object, whose `screen_name` sits one level
//!   down in `legacy`/`core`, is the one named exception). Requests are never
//!   learned from: a client could send any pair it liked.
//! - [`LearnedIds`] is the store: an immutable [`Learned`] snapshot behind an
//!   `ArcSwap`, read by the matcher per request, replaced on each addition, and
//!   kept apart from the compiled rules so a config reload does not forget it.
//!   It is persisted as JSON (written atomically) and loaded at start.
//!
//! Bounded: at most [`MAX_IDS_PER_HANDLE`] ids per handle and [`MAX_IDS_TOTAL`]
//! overall; a full set keeps what it has. Ids are only ever added, so the store
//! can only tighten what the config already blocks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use ncd_config::ProfileSite;
use serde_json::Value;

use crate::sites::ProfileRules;

/// Response bodies up to this size are inspected; larger ones are forwarded unread.
pub const MAX_LEARNED_BODY: usize = 1 << 20;
/// Ids kept per (site, handle).
pub const MAX_IDS_PER_HANDLE: usize = 16;
/// Ids kept overall.
pub const MAX_IDS_TOTAL: usize = 4096;
/// The longest id kept (TikTok's `secUid` is about 76 characters).
const MAX_ID_LEN: usize = 200;
const FILE_VERSION: u64 = 1;

/// One immutable view of what was learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned {
    /// site → handle → ids, all in the matcher's normal form (lower case).
    by_handle: BTreeMap<ProfileSite, BTreeMap<String, BTreeSet<String>>>,
    /// site → id → handle: what the matcher looks up.
    by_id: HashMap<ProfileSite, HashMap<String, String>>,
    total: usize,
}

impl Learned {
    /// The handle `id` (normal form) was learned for on `site`.
    pub fn handle_for(&self, site: ProfileSite, id: &str) -> Option<&str> {
        self.by_id.get(&site)?.get(id).map(String::as_str)
    }

    /// The ids learned for `handle` on `site`.
    pub fn ids(&self, site: ProfileSite, handle: &str) -> Vec<&str> {
        self.by_handle
            .get(&site)
            .and_then(|h| h.get(handle))
            .map(|ids| ids.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// How many ids are kept.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Adds `pairs` within the caps; returns how many ids were new.
    fn add(&mut self, site: ProfileSite, pairs: &[(String, String)]) -> usize {
        let mut added = 0;
        for (handle, id) in pairs {
            if self.total >= MAX_IDS_TOTAL {
                break;
            }
            let ids = self
                .by_handle
                .entry(site)
                .or_default()
                .entry(handle.clone())
                .or_default();
            if ids.len() >= MAX_IDS_PER_HANDLE || ids.contains(id) {
                continue;
            }
            ids.insert(id.clone());
            self.by_id.entry(site).or_default().insert(id.clone(), handle.clone());
            self.total += 1;
            added += 1;
        }
        added
    }

    fn to_json(&self) -> Value {
        let sites: serde_json::Map<String, Value> = self
            .by_handle
            .iter()
            .map(|(site, handles)| {
                let handles: serde_json::Map<String, Value> = handles
                    .iter()
                    .map(|(h, ids)| (h.clone(), Value::from(ids.iter().cloned().collect::<Vec<_>>())))
                    .collect();
                (site.key().to_string(), Value::Object(handles))
            })
            .collect();
        serde_json::json!({ "version": FILE_VERSION, "sites": sites })
    }

    fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        if value.get("version").and_then(Value::as_u64) != Some(FILE_VERSION) {
            return Err(format!("not version {FILE_VERSION}"));
        }
        let sites = value
            .get("sites")
            .and_then(Value::as_object)
            .ok_or("no \"sites\" object")?;
        let mut learned = Learned::default();
        for (key, handles) in sites {
            let site = ProfileSite::ALL
                .into_iter()
                .find(|s| s.key() == key)
                .ok_or_else(|| format!("unknown site {key:?}"))?;
            let handles = handles.as_object().ok_or("a site is not an object")?;
            for (handle, ids) in handles {
                let ids = ids.as_array().ok_or("a handle's ids are not a list")?;
                let mut pairs = Vec::new();
                for id in ids {
                    let id = id.as_str().and_then(|s| clean_id(site, "", s)).ok_or("a bad id")?;
                    pairs.push((handle.to_lowercase(), id));
                }
                learned.add(site, &pairs);
            }
        }
        Ok(learned)
    }
}

/// The learned-id store shared by the server's requests.
#[derive(Debug)]
pub struct LearnedIds {
    path: Option<PathBuf>,
    current: ArcSwap<Learned>,
    /// Serialises additions and their writes, so the file never goes back in time.
    writer: Mutex<()>,
}

impl LearnedIds {
    /// A store that is not persisted (tests, or no state dir).
    pub fn in_memory() -> Self {
        Self {
            path: None,
            current: ArcSwap::from_pointee(Learned::default()),
            writer: Mutex::new(()),
        }
    }

    /// Loads the store kept at `path` (the daemon passes
    /// `StateDir::proxy_learned_ids()`). A missing file starts empty. A damaged one
    /// is reported (logged, and returned as the second value) and starts empty too:
    /// the file only ever adds blocks, so losing it loosens at worst to what the
    /// config names, and the ids are learned again from the next answers.
    pub fn open(path: impl Into<PathBuf>) -> (Self, Option<String>) {
        let path = path.into();
        let (learned, problem) = match std::fs::read(&path) {
            Ok(bytes) => match Learned::from_json(&bytes) {
                Ok(learned) => (learned, None),
                Err(e) => (
                    Learned::default(),
                    Some(format!(
                        "{}: damaged ({e}); starting with no learned ids",
                        path.display()
                    )),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Learned::default(), None),
            Err(e) => (
                Learned::default(),
                Some(format!(
                    "{}: cannot read ({e}); starting with no learned ids",
                    path.display()
                )),
            ),
        };
        if let Some(problem) = &problem {
            tracing::warn!("proxy learned ids: {problem}");
        }
        let store = Self {
            path: Some(path),
            current: ArcSwap::from_pointee(learned),
            writer: Mutex::new(()),
        };
        (store, problem)
    }

    /// Where the store is kept, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The current snapshot (cheap; the matcher takes one per request).
    pub fn snapshot(&self) -> Arc<Learned> {
        self.current.load_full()
    }

    /// Learns from one allowed response of `site`'s origin: ids paired with a
    /// handle `rules` names. Adds them (within the caps), writes the file when
    /// something was new, and returns how many were. Blocking (file I/O): call it
    /// off the async workers.
    pub fn learn(&self, rules: &ProfileRules, site: ProfileSite, content_type: Option<&str>, body: &[u8]) -> usize {
        if body.len() > MAX_LEARNED_BODY || !content_type.is_none_or(learnable_content_type) {
            return 0;
        }
        let pairs = find_pairs(site, body, |h| rules.names_handle(site, h));
        if pairs.is_empty() {
            return 0;
        }
        self.add(site, &pairs)
    }

    /// Adds `(handle, id)` pairs for `site` (normal form); returns how many were new.
    pub fn add(&self, site: ProfileSite, pairs: &[(String, String)]) -> usize {
        let Ok(_writing) = self.writer.lock() else {
            return 0;
        };
        let mut next = Learned::clone(&self.current.load());
        let added = next.add(site, pairs);
        if added == 0 {
            return 0;
        }
        let json = next.to_json().to_string();
        self.current.store(Arc::new(next));
        tracing::info!(site = site.key(), count = added, "proxy learned profile ids");
        if let Some(path) = &self.path
            && let Err(e) = ncd_state::write_atomically(path, json.as_bytes(), Some(0o600))
        {
            // Kept in memory all the same; the next addition tries the write again.
            tracing::warn!(path = %path.display(), error = %e, "proxy could not save the learned ids");
        }
        added
    }
}

/// True for a response content type worth reading for ids: JSON, and the
/// JavaScript and HTML types Meta and others send JSON under.
pub fn learnable_content_type(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    let ct = ct.split(';').next().unwrap_or("").trim();
    ct == "application/json"
        || ct.ends_with("+json")
        || ct == "text/javascript"
        || ct == "application/javascript"
        || ct == "application/x-javascript"
        || ct == "text/json"
        || ct == "text/html"
}

/// Keys, in the matcher's key form (lower case, no `_`/`-`), that name the handle
/// and the id in one object on `site`.
fn keys(site: ProfileSite) -> (&'static [&'static str], &'static [&'static str]) {
    match site {
        ProfileSite::Instagram | ProfileSite::Threads => (&["username"], &["pk", "id", "pkid", "strongid"]),
        ProfileSite::X => (&["screenname"], &["restid", "idstr", "id"]),
        ProfileSite::Facebook => (&["vanity", "uservanity"], &["id", "profileid", "userid"]),
        ProfileSite::Tiktok => (&["uniqueid"], &["id", "secuid", "uid"]),
        ProfileSite::Linkedin => (&["publicidentifier"], &["entityurn", "objecturn", "dashentityurn"]),
        ProfileSite::Snapchat => (&[], &[]),
    }
}

fn key_form(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// An id as the matcher compares it, when `raw` under `key` is one on `site`.
fn clean_id(site: ProfileSite, key: &str, raw: &str) -> Option<String> {
    let raw = raw.trim();
    let id = match site {
        // URNs: the part after the kind, as the matcher's `urn_hit` extracts it.
        ProfileSite::Linkedin => {
            let lower = raw.to_ascii_lowercase();
            let found = ["fsd_profile:", "fs_profile:", "member:"]
                .iter()
                .find_map(|m| lower.find(m).map(|at| lower[at + m.len()..].to_string()));
            match found {
                Some(rest) => rest,
                // Loaded from the file: already the bare id.
                None if key.is_empty() => lower,
                None => return None,
            }
        }
        _ => raw.to_ascii_lowercase(),
    };
    let ok_chars = |s: &str, extra: &[char]| {
        !s.is_empty() && s.len() <= MAX_ID_LEN && s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    };
    let numeric = |s: &str| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit());
    let ok = match (site, key) {
        (ProfileSite::Tiktok, "secuid") => ok_chars(&id, &['_', '-', '.']) && id.len() >= 10,
        (ProfileSite::Tiktok, "") => ok_chars(&id, &['_', '-', '.']),
        (ProfileSite::Linkedin, _) => ok_chars(&id, &['_', '-']),
        _ => numeric(&id),
    };
    ok.then_some(id)
}

/// A scalar's text: strings as they are, integers in decimal.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The `(handle, id)` pairs one response body holds on `site`, for handles
/// `is_handle` accepts (given in normal form). Each pair comes from one object.
/// Accepts one JSON value, several (newline-delimited, as GraphQL streams send),
/// and Meta's `for (;;);` prefix. Anything else finds nothing.
pub fn find_pairs(site: ProfileSite, body: &[u8], is_handle: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let (handle_keys, id_keys) = keys(site);
    if handle_keys.is_empty() || body.len() > MAX_LEARNED_BODY {
        return Vec::new();
    }
    let mut body = body.trim_ascii_start();
    for prefix in [b"for (;;);".as_slice(), b")]}'".as_slice(), b"while(1);".as_slice()] {
        if let Some(rest) = body.strip_prefix(prefix) {
            body = rest.trim_ascii_start();
        }
    }
    if !matches!(body.first(), Some(b'{' | b'[')) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let cx = Cx {
        site,
        handle_keys,
        id_keys,
        is_handle: &is_handle,
    };
    for value in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        let Ok(value) = value else { break };
        cx.walk(&value, 0, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

struct Cx<'a> {
    site: ProfileSite,
    handle_keys: &'static [&'static str],
    id_keys: &'static [&'static str],
    is_handle: &'a dyn Fn(&str) -> bool,
}

/// Deeper than this is not a user object anyone sends; it also bounds the walk.
const MAX_DEPTH: usize = 64;

impl Cx<'_> {
    fn walk(&self, value: &Value, depth: usize, out: &mut Vec<(String, String)>) {
        if depth > MAX_DEPTH {
            return;
        }
        match value {
            Value::Object(map) => {
                self.object(map, out);
                for child in map.values() {
                    self.walk(child, depth + 1, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, depth + 1, out);
                }
            }
            _ => {}
        }
    }

    /// The handle this object names (one of ours), if any.
    fn handle_in(&self, map: &serde_json::Map<String, Value>) -> Option<String> {
        map.iter().find_map(|(k, v)| {
            if !self.handle_keys.contains(&key_form(k).as_str()) {
                return None;
            }
            let text = scalar_text(v)?;
            let t = text.trim();
            let h = t.strip_prefix('@').unwrap_or(t).trim_end_matches('/').to_lowercase();
            (self.is_handle)(&h).then_some(h)
        })
    }

    fn ids_in(&self, map: &serde_json::Map<String, Value>, handle: &str, out: &mut Vec<(String, String)>) {
        for (k, v) in map {
            let k = key_form(k);
            if !self.id_keys.contains(&k.as_str()) {
                continue;
            }
            if let Some(id) = scalar_text(v).and_then(|t| clean_id(self.site, &k, &t))
                && id != handle
            {
                out.push((handle.to_string(), id));
            }
        }
    }

    fn object(&self, map: &serde_json::Map<String, Value>, out: &mut Vec<(String, String)>) {
        if let Some(handle) = self.handle_in(map) {
            self.ids_in(map, &handle, out);
            return;
        }
        // X's GraphQL user: {"__typename":"User","rest_id":…,"legacy":{"screen_name":…}}
        // (newer answers put it in "core"). The typename makes the pair one user's.
        if self.site == ProfileSite::X && map.get("__typename").and_then(Value::as_str) == Some("User") {
            let nested = ["legacy", "core"]
                .iter()
                .filter_map(|k| map.get(*k).and_then(Value::as_object))
                .find_map(|inner| self.handle_in(inner));
            if let Some(handle) = nested
                && let Some(id) = map
                    .get("rest_id")
                    .and_then(scalar_text)
                    .and_then(|t| clean_id(self.site, "restid", &t))
            {
                out.push((handle, id));
            }
        }
    }
}

#[cfg(test)]
mod tests;
