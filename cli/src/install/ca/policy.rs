//! Firefox enterprise policies (`policies.json`): adding ncd's CA to
//! `policies.Certificates.Install` while keeping everything else in the file, and
//! taking exactly that entry out again. Key order is not kept (serde_json sorts
//! keys); uninstall puts the original back byte for byte from its backup when the
//! file was not edited since, and only edits out the entry when it was.

use anyhow::Context;
use serde_json::{Map, Value};

/// The policy files ncd adds its CA to, each with the directory whose presence
/// says that Firefox is installed there. Linux first, then macOS.
pub(super) const LINUX_POLICIES: &[(&str, &str)] = &[
    (
        "/usr/lib/firefox-esr",
        "/usr/lib/firefox-esr/distribution/policies.json",
    ),
    ("/usr/lib/firefox", "/usr/lib/firefox/distribution/policies.json"),
    // Read by the distribution's Firefox and by the snap.
    ("/etc/firefox", "/etc/firefox/policies/policies.json"),
    ("/snap/firefox", "/etc/firefox/policies/policies.json"),
];
pub(super) const MACOS_POLICIES: &[(&str, &str)] = &[(
    "/Applications/Firefox.app",
    "/Applications/Firefox.app/Contents/Resources/distribution/policies.json",
)];

fn parse(bytes: &[u8], what: &str) -> anyhow::Result<Map<String, Value>> {
    let value: Value = serde_json::from_slice(bytes).with_context(|| {
        format!("{what} is not valid JSON, so ncd will not change it. Fix or move it, then run this again")
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => anyhow::bail!("{what} is not a JSON object, so ncd will not change it"),
    }
}

fn to_bytes(map: Map<String, Value>) -> anyhow::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(map))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// An object member, made when missing; an error when it is something else.
fn object<'a>(map: &'a mut Map<String, Value>, key: &str, what: &str) -> anyhow::Result<&'a mut Map<String, Value>> {
    match map.entry(key).or_insert_with(|| Value::Object(Map::new())) {
        Value::Object(inner) => Ok(inner),
        _ => anyhow::bail!("In {what}, \"{key}\" is not an object, so ncd will not change the file"),
    }
}

/// Whether the policy file's `Certificates.Install` names `entry`.
pub(super) fn has(bytes: &[u8], entry: &str) -> bool {
    serde_json::from_slice::<Value>(bytes).is_ok_and(|v| {
        v.pointer("/policies/Certificates/Install")
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|e| e.as_str() == Some(entry)))
    })
}

/// The file with `entry` added to `policies.Certificates.Install`, or `None` when it
/// is there already. `existing`: the file now, `None` when there is none.
pub(super) fn merged(existing: Option<&[u8]>, entry: &str, what: &str) -> anyhow::Result<Option<Vec<u8>>> {
    if existing.is_some_and(|bytes| has(bytes, entry)) {
        return Ok(None);
    }
    let mut map = match existing {
        Some(bytes) => parse(bytes, what)?,
        None => Map::new(),
    };
    let certificates = object(object(&mut map, "policies", what)?, "Certificates", what)?;
    match certificates
        .entry("Install")
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(list) => list.push(Value::String(entry.to_string())),
        _ => anyhow::bail!("In {what}, \"Certificates.Install\" is not a list, so ncd will not change the file"),
    }
    to_bytes(map).map(Some)
}

/// The file without `entry` in `policies.Certificates.Install`; the list and the
/// objects around it go when that leaves them empty.
pub(super) fn without(bytes: &[u8], entry: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut map = parse(bytes, what)?;
    if let Some(Value::Object(policies)) = map.get_mut("policies")
        && let Some(Value::Object(certificates)) = policies.get_mut("Certificates")
    {
        if let Some(Value::Array(list)) = certificates.get_mut("Install") {
            list.retain(|e| e.as_str() != Some(entry));
            if list.is_empty() {
                certificates.remove("Install");
            }
        }
        if certificates.is_empty() {
            policies.remove("Certificates");
        }
    }
    to_bytes(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_added_beside_other_policies_and_taken_out_again() {
        let before = br#"{"policies": {"DisableTelemetry": true, "Certificates": {"ImportEnterpriseRoots": true}}}"#;
        let after = merged(Some(before), "/x/ca.pem", "p").unwrap().unwrap();
        assert!(has(&after, "/x/ca.pem"));
        let v: Value = serde_json::from_slice(&after).unwrap();
        assert_eq!(v.pointer("/policies/DisableTelemetry"), Some(&Value::Bool(true)));
        assert_eq!(
            v.pointer("/policies/Certificates/ImportEnterpriseRoots"),
            Some(&Value::Bool(true))
        );
        assert_eq!(merged(Some(&after), "/x/ca.pem", "p").unwrap(), None);
        let back: Value = serde_json::from_slice(&without(&after, "/x/ca.pem", "p").unwrap()).unwrap();
        let orig: Value = serde_json::from_slice(before).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn a_broken_file_is_refused() {
        assert!(merged(Some(b"{nope"), "/x", "p").is_err());
        assert!(merged(Some(b"[]"), "/x", "p").is_err());
        assert!(merged(Some(br#"{"policies": {"Certificates": {"Install": "x"}}}"#), "/x", "p").is_err());
    }
}
