//! Profile rules: one person's handles (and numeric ids) on the sites the proxy
//! knows, blocked page by page while the rest of each site keeps working.
//!
//! Handles are kept in one normal form — lower-case, without `@`, without a
//! trailing slash — so that every comparison downstream is a plain string compare.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest handle, numeric id or profile URN segment accepted.
pub const MAX_HANDLE_LEN: usize = 128;

/// A handle or numeric account id in its normal form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Handle(String);

impl Handle {
    /// Normalises `text` (`@`, trailing `/`, case) and checks what is left.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let bare = trimmed.strip_prefix('@').unwrap_or(trimmed).trim_end_matches('/');
        if bare.is_empty() {
            return Err(format!("empty handle {text:?}"));
        }
        if bare.len() > MAX_HANDLE_LEN {
            return Err(format!("handle {trimmed:?} is longer than {MAX_HANDLE_LEN} characters"));
        }
        if let Some(c) = bare
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "handle {trimmed:?}: character {c:?} cannot be in a handle (letters, digits, '.', '_' and '-' can)"
            ));
        }
        if bare.chars().all(|c| matches!(c, '.' | '_' | '-')) {
            return Err(format!("handle {trimmed:?} has no letter or digit"));
        }
        Ok(Self(bare.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::error::parse_str(deserializer, Self::parse)
    }
}

/// A site a profile rule can name (the keys of a `[[profile]]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileSite {
    Instagram,
    Threads,
    X,
    Facebook,
    Tiktok,
    Linkedin,
    Snapchat,
}

impl ProfileSite {
    pub const ALL: [ProfileSite; 7] = [
        Self::Instagram,
        Self::Threads,
        Self::X,
        Self::Facebook,
        Self::Tiktok,
        Self::Linkedin,
        Self::Snapchat,
    ];

    /// The hosts the DNS side steers to the proxy while a profile names this
    /// site: where its profile pages and the APIs behind them are served.
    pub const fn hosts(self) -> &'static [&'static str] {
        match self {
            Self::Instagram => &["www.instagram.com", "instagram.com", "i.instagram.com"],
            Self::Threads => &["www.threads.com", "threads.com", "www.threads.net", "threads.net"],
            Self::X => &[
                "x.com",
                "www.x.com",
                "mobile.x.com",
                "api.x.com",
                "twitter.com",
                "www.twitter.com",
                "mobile.twitter.com",
                "api.twitter.com",
            ],
            Self::Facebook => &[
                "www.facebook.com",
                "facebook.com",
                "web.facebook.com",
                "m.facebook.com",
                "mbasic.facebook.com",
            ],
            Self::Tiktok => &["www.tiktok.com", "tiktok.com", "m.tiktok.com"],
            Self::Linkedin => &["www.linkedin.com", "linkedin.com"],
            Self::Snapchat => &["www.snapchat.com", "snapchat.com", "story.snapchat.com"],
        }
    }

    /// The site's registrable domains: the proxy CA's name constraints permit
    /// exactly these.
    pub const fn domains(self) -> &'static [&'static str] {
        match self {
            Self::Instagram => &["instagram.com"],
            Self::Threads => &["threads.com", "threads.net"],
            Self::X => &["x.com", "twitter.com"],
            Self::Facebook => &["facebook.com"],
            Self::Tiktok => &["tiktok.com"],
            Self::Linkedin => &["linkedin.com"],
            Self::Snapchat => &["snapchat.com"],
        }
    }

    /// The config key, also the name shown in status.
    pub fn key(self) -> &'static str {
        match self {
            Self::Instagram => "instagram",
            Self::Threads => "threads",
            Self::X => "x",
            Self::Facebook => "facebook",
            Self::Tiktok => "tiktok",
            Self::Linkedin => "linkedin",
            Self::Snapchat => "snapchat",
        }
    }
}

impl fmt::Display for ProfileSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One `[[profile]]` table: a label and the person's handles per site.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// A label, shown in status and on the block page.
    #[serde(deserialize_with = "profile_name")]
    pub name: String,
    #[serde(default)]
    pub instagram: Vec<Handle>,
    #[serde(default)]
    pub threads: Vec<Handle>,
    #[serde(default)]
    pub x: Vec<Handle>,
    #[serde(default)]
    pub facebook: Vec<Handle>,
    #[serde(default)]
    pub tiktok: Vec<Handle>,
    #[serde(default)]
    pub linkedin: Vec<Handle>,
    #[serde(default)]
    pub snapchat: Vec<Handle>,
}

impl Profile {
    /// A profile with a name and no handles yet.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// The handles this profile names on `site`.
    pub fn handles(&self, site: ProfileSite) -> &[Handle] {
        match site {
            ProfileSite::Instagram => &self.instagram,
            ProfileSite::Threads => &self.threads,
            ProfileSite::X => &self.x,
            ProfileSite::Facebook => &self.facebook,
            ProfileSite::Tiktok => &self.tiktok,
            ProfileSite::Linkedin => &self.linkedin,
            ProfileSite::Snapchat => &self.snapchat,
        }
    }

    pub fn handles_mut(&mut self, site: ProfileSite) -> &mut Vec<Handle> {
        match site {
            ProfileSite::Instagram => &mut self.instagram,
            ProfileSite::Threads => &mut self.threads,
            ProfileSite::X => &mut self.x,
            ProfileSite::Facebook => &mut self.facebook,
            ProfileSite::Tiktok => &mut self.tiktok,
            ProfileSite::Linkedin => &mut self.linkedin,
            ProfileSite::Snapchat => &mut self.snapchat,
        }
    }

    /// Every (site, handle) this profile names.
    pub fn entries(&self) -> impl Iterator<Item = (ProfileSite, &Handle)> {
        ProfileSite::ALL
            .into_iter()
            .flat_map(move |site| self.handles(site).iter().map(move |h| (site, h)))
    }
}

fn profile_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    crate::error::parse_str(d, |text| {
        let name = text.trim();
        if name.is_empty() {
            return Err("a profile needs a name (a label of your choosing)".into());
        }
        if name.chars().count() > 64 {
            return Err("a profile name is at most 64 characters".into());
        }
        if name.chars().any(char::is_control) {
            return Err("a profile name cannot hold control characters".into());
        }
        Ok(name.to_string())
    })
}

/// The `[[profile]]` tables, each name once.
pub(crate) fn profiles<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Profile>, D::Error> {
    let profiles = Vec::<Profile>::deserialize(d)?;
    for (i, p) in profiles.iter().enumerate() {
        if profiles[..i].iter().any(|q| q.name == p.name) {
            return Err(serde::de::Error::custom(format!(
                "two [[profile]] tables are named {:?}; give each its own name or merge them",
                p.name
            )));
        }
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_normalised() {
        for (text, want) in [
            ("exname", "exname"),
            ("@ExName", "exname"),
            ("ExName/", "exname"),
            (" @Ex.Name// ", "ex.name"),
            ("100004567890123", "100004567890123"),
            ("ex-name-123", "ex-name-123"),
        ] {
            assert_eq!(Handle::parse(text).unwrap().as_str(), want, "{text:?}");
        }
    }

    #[test]
    fn bad_handles_are_refused() {
        for text in [
            "",
            "@",
            "/",
            "  ",
            "ex name",
            "ex/name",
            "ex?x",
            "...",
            "é",
            &"a".repeat(129),
        ] {
            assert!(Handle::parse(text).is_err(), "{text:?}");
        }
    }
}
