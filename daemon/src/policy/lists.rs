//! Where list text comes from: files on disk, and URL lists kept as a last good copy
//! in the state dir.
//!
//! Reading never touches the network. The fetcher (`dns::fetch`) downloads URL lists
//! in the background, writes them here atomically, and asks for a reload; until the
//! first download succeeds — and whenever one fails — the last good copy blocks.

use std::path::{Path, PathBuf};

use ncd_config::ListSource;

/// The cached copy of a URL list inside `state_dir`.
pub fn cache_path(state_dir: &Path, url: &str) -> PathBuf {
    // FNV-1a: a stable file name per URL, readable enough in a directory listing.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in url.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    state_dir.join("lists").join(format!("{hash:016x}.txt"))
}

/// Reads a list's text: the file, or the cached copy of a URL list.
pub fn read(source: &ListSource, state_dir: &Path) -> Result<String, String> {
    let path = match source {
        ListSource::File(path) => path.clone(),
        ListSource::Url(url) => cache_path(state_dir, url),
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

/// Writes `bytes` to `path` so that a crash leaves either the old or the new file:
/// temp file, fsync, rename, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile_in(dir, path)?;
    tmp.1.write_all(bytes)?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)?;
    std::fs::File::open(dir)?.sync_all()
}

fn tempfile_in(dir: &Path, path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let file = std::fs::File::create(&tmp)?;
    Ok((tmp, file))
}
