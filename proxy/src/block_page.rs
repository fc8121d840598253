//! What a blocked request gets back: a calm page for a navigation, the site's own
//! "not found" for an API call. Also the page for a site the proxy could not
//! reach (down, slow, reset, a bad certificate), in the same calm style.
//!
//! The page is self-contained (inline style, no script, no third-party resource)
//! and links nowhere — least of all to the profile. It names the boundary, the day
//! of the period and the person's own reason, when the caller passes them.

use ncd_config::ProfileSite;

use crate::origin::OriginFault;

/// A string every block page carries, for tests and for the curious.
pub const BLOCK_MARKER: &str = "ncd-boundary-block";
/// A string every "could not reach the site" page carries.
pub const ORIGIN_ERROR_MARKER: &str = "ncd-origin-error";

const STYLE: &str = "body{font:18px/1.6 system-ui,sans-serif;background:#f6f4ef;color:#333;margin:0}\
main{max-width:34em;margin:12vh auto;padding:0 1.5em}h1{font-weight:500;font-size:1.6em}\
blockquote{margin:1em 0;padding:.5em 1em;border-left:3px solid #9ab;background:#fff}\
.day{color:#567}.kind{margin-top:2em;color:#555}";

/// What the page may say about the period; the daemon fills it in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageContext {
    /// Day N of M of the period, when one runs.
    pub day: Option<(u64, u64)>,
    /// The reason written at the start of the period.
    pub reason: Option<String>,
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn site_name(site: ProfileSite) -> &'static str {
    match site {
        ProfileSite::Instagram => "Instagram",
        ProfileSite::Threads => "Threads",
        ProfileSite::X => "X",
        ProfileSite::Facebook => "Facebook",
        ProfileSite::Tiktok => "TikTok",
        ProfileSite::Linkedin => "LinkedIn",
        ProfileSite::Snapchat => "Snapchat",
    }
}

/// The HTML block page for a navigation to `profile`'s profile on `site`.
pub fn html(profile: &str, site: ProfileSite, ctx: &PageContext) -> String {
    let day = match ctx.day {
        Some((n, m)) => format!("<p class=\"day\">Day {n} of {m}.</p>"),
        None => String::new(),
    };
    let reason = match ctx.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => format!(
            "<p>When you set this boundary, you wrote:</p><blockquote>{}</blockquote>",
            escape(r)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>A boundary you set</title>\
<style>{STYLE}</style></head>\
<body><main id=\"{BLOCK_MARKER}\"><h1>This part of {site} is paused for you.</h1>\
<p>ncd is keeping the boundary you set around {profile} (“{label}”). The rest of {site} still works.</p>\
{day}{reason}<p class=\"kind\">The urge to look is real, and it passes. You are doing something hard, \
and you are doing it. Maybe a glass of water, a walk, or a message to a friend?</p></main></body></html>\n",
        site = site_name(site),
        profile = "a profile",
        label = escape(profile),
    )
}

/// The page for a request the proxy could not take to `host` (a host of `site`):
/// what went wrong, in plain words, and that it is not the boundary.
pub fn origin_error_html(host: &str, site: ProfileSite, fault: OriginFault) -> String {
    let what = match fault {
        OriginFault::Refused => "the site refused the connection. It may be down, or your network may be offline.".to_string(),
        OriginFault::NoAddress => "its address could not be found. Your network or DNS may be offline.".to_string(),
        OriginFault::TimedOut => "the site did not answer in time. It may be slow or overloaded right now.".to_string(),
        OriginFault::Closed => "the site closed the connection before it answered.".to_string(),
        OriginFault::CertificateExpired => {
            "the site's certificate has expired (or is not valid yet), so the connection could not be trusted. Nothing was sent to it.".to_string()
        }
        OriginFault::CertificateWrongName => format!(
            "the certificate the site presented is not for {}, so the connection could not be trusted. Nothing was sent to it.",
            escape(host)
        ),
        OriginFault::CertificateUnknownIssuer => {
            "the site's certificate comes from an authority this computer does not trust, so the connection could not be trusted. Nothing was sent to it.".to_string()
        }
        OriginFault::Tls => "a secure connection to the site could not be made. Nothing was sent to it.".to_string(),
        OriginFault::Other => "the connection to the site failed.".to_string(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{site} could not be reached</title>\
<style>{STYLE}</style></head>\
<body><main id=\"{ORIGIN_ERROR_MARKER}\"><h1>{site} could not be reached.</h1>\
<p>ncd passed your request on to {host}, and {what}</p>\
<p class=\"kind\">This is not your boundary: the rest of {site} is open, it is only the connection. \
Trying again in a moment usually works.</p></main></body></html>\n",
        site = site_name(site),
        host = escape(host),
    )
}

/// The status, content type and body a site's app reads as "not found".
pub fn not_found(site: ProfileSite) -> (u16, &'static str, &'static str) {
    const JSON: &str = "application/json; charset=utf-8";
    match site {
        // Instagram's web API: a failed lookup.
        ProfileSite::Instagram => (404, JSON, r#"{"message":"User not found","status":"fail"}"#),
        // Threads shares Meta's GraphQL shape: no such user.
        ProfileSite::Threads => (404, JSON, r#"{"data":{"user":null},"status":"ok"}"#),
        // X's API error 50 ("User not found").
        ProfileSite::X => (404, JSON, r#"{"errors":[{"code":50,"message":"User not found."}]}"#),
        // Meta GraphQL: the node is not there.
        ProfileSite::Facebook => (404, JSON, r#"{"data":{"user":null,"node":null}}"#),
        // TikTok: statusCode 10202, "user not exist".
        ProfileSite::Tiktok => (
            404,
            JSON,
            r#"{"statusCode":10202,"status_code":10202,"status_msg":"user not exist"}"#,
        ),
        // LinkedIn Voyager: a bare 404 status object.
        ProfileSite::Linkedin => (404, JSON, r#"{"status":404}"#),
        // Next.js data route: not found.
        ProfileSite::Snapchat => (404, JSON, r#"{"notFound":true}"#),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_calm_self_contained_and_links_nowhere() {
        let ctx = PageContext {
            day: Some((12, 60)),
            reason: Some("I deserve <peace> & quiet".into()),
        };
        let page = html("ex", ProfileSite::Instagram, &ctx);
        assert!(page.contains(BLOCK_MARKER));
        assert!(page.contains("Day 12 of 60."));
        assert!(page.contains("I deserve &lt;peace&gt; &amp; quiet"));
        assert!(page.contains("“ex”"));
        for bad in ["<a ", "href", "src=", "<script", "http://", "https://", "instagram.com"] {
            assert!(!page.contains(bad), "{bad}");
        }
        let bare = html("<ex>", ProfileSite::X, &PageContext::default());
        assert!(!bare.contains("Day ") && !bare.contains("blockquote>") && bare.contains("&lt;ex&gt;"));
    }

    #[test]
    fn the_origin_error_page_names_the_site_and_the_fault_and_links_nowhere() {
        let page = origin_error_html(
            "www.instagram.com",
            ProfileSite::Instagram,
            OriginFault::CertificateWrongName,
        );
        assert!(page.contains(ORIGIN_ERROR_MARKER) && !page.contains(BLOCK_MARKER));
        assert!(page.contains("Instagram could not be reached."));
        assert!(page.contains("is not for www.instagram.com"));
        assert!(page.contains("<style>") && page.contains("#f6f4ef"));
        for bad in ["<a ", "href", "src=", "<script", "http://", "https://"] {
            assert!(!page.contains(bad), "{bad}");
        }
        let escaped = origin_error_html("<x>", ProfileSite::X, OriginFault::TimedOut);
        assert!(escaped.contains("&lt;x&gt;") && escaped.contains("did not answer in time"));
    }

    #[test]
    fn not_found_bodies_are_json() {
        for site in ProfileSite::ALL {
            let (status, ct, body) = not_found(site);
            assert_eq!(status, 404);
            assert!(ct.starts_with("application/json"));
            serde_json::from_str::<serde_json::Value>(body).unwrap();
        }
    }
}
