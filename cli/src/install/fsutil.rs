//! Small file-system helpers: paths under the root, hashes, atomic writes, and what
//! is at a path now.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

/// `path` (absolute, as on the target system) inside `root`.
pub(super) fn under(root: &Path, path: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    for part in path.components() {
        if let Component::Normal(part) = part {
            out.push(part);
        }
    }
    out
}

/// FNV-1a, 64 bits, as `fnv1a64:<hex>`: enough to notice an edit (not a security check).
pub(super) fn hash(bytes: &[u8]) -> String {
    format!("fnv1a64:{:016x}", ncd_state::checksum(bytes))
}

/// What is at a path now (without following a final symlink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    Absent,
    File { bytes: Vec<u8>, mode: u32 },
    Symlink { target: PathBuf },
    Other,
}

pub(super) fn look(path: &Path) -> std::io::Result<Found> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Absent),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        Ok(Found::Symlink {
            target: std::fs::read_link(path)?,
        })
    } else if meta.is_file() {
        Ok(Found::File {
            bytes: std::fs::read(path)?,
            mode: meta.permissions().mode() & 0o7777,
        })
    } else {
        Ok(Found::Other)
    }
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.ncd-tmp-{}", std::process::id()))
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// Writes `bytes` with `mode` to a temp file beside `path`, then renames it over `path`.
pub(super) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    ncd_state::write_atomically(path, bytes, Some(mode))
}

/// Makes `path` a symlink to `target`, atomically replacing what is there.
pub(super) fn symlink_atomically(path: &Path, target: &Path) -> std::io::Result<()> {
    let tmp = temp_name(path);
    let _ = std::fs::remove_file(&tmp);
    symlink(target, &tmp)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path)
}

/// Removes a file (or symlink); gone already is fine.
pub(super) fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
