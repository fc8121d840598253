//! Where list text comes from: files on disk, and URL lists kept as a last good copy
//! in the state dir.
//!
//! Reading never touches the network. The fetcher (`ncd_daemon::fetch`) downloads URL lists
//! in the background, writes them here atomically, and asks for a reload; until the
//! first download succeeds — and whenever one fails — the last good copy blocks.

use ncd_config::ListSource;
use ncd_state::StateDir;

/// Reads a list's text: the file, or the kept copy of a URL list.
pub fn read(source: &ListSource, state_dir: &StateDir) -> Result<String, String> {
    let path = match source {
        ListSource::File(path) => path.clone(),
        ListSource::Url(url) => state_dir.url_list_copy(url),
    };
    match std::fs::read(&path) {
        // Valid UTF-8 (nearly every list) is taken as is, without a copy.
        Ok(bytes) => {
            Ok(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && matches!(source, ListSource::Url(_)) => {
            Err("not downloaded yet (it will be fetched in the background)".into())
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}
