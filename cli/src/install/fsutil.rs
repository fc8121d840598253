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

/// Reads a JSON record ncd keeps for root (the install manifest, the CA record):
/// `None` when there is none; an error naming `what` and the path when it cannot
/// be read, is damaged, or has a format this ncd does not know.
pub(crate) fn load_record<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    known_format: u32,
    format_of: impl Fn(&T) -> u32,
) -> anyhow::Result<Option<T>> {
    use anyhow::Context;
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("Could not read the {what} {}", path.display())),
    };
    let record: T =
        serde_json::from_slice(&bytes).with_context(|| format!("The {what} {} is damaged", path.display()))?;
    let format = format_of(&record);
    anyhow::ensure!(
        format == known_format,
        "The {what} {} has format {format}, which this ncd does not know (it knows {known_format}).",
        path.display(),
    );
    Ok(Some(record))
}

/// Writes a JSON record (root's eyes only: 0600), atomically.
pub(crate) fn save_record<T: serde::Serialize>(path: &Path, what: &str, record: &T) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut bytes = serde_json::to_vec_pretty(record)?;
    bytes.push(b'\n');
    write_atomically(path, &bytes, 0o600).with_context(|| format!("Could not write the {what} {}", path.display()))
}

/// Creates the missing directories down to `dir` (a path on the target system)
/// inside `root`, top first, and returns them so the caller records them for
/// uninstall. Those under `private` (root's own records) get 0700, the rest 0755.
pub(crate) fn make_dirs(root: &Path, dir: &Path, private: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context;
    let mut missing = Vec::new();
    for d in dir.ancestors() {
        if d.parent().is_none() || under(root, d).is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
    }
    missing.reverse();
    for d in &missing {
        let disk = under(root, d);
        std::fs::create_dir(&disk).with_context(|| format!("Could not create the directory {}", disk.display()))?;
        let mode = if d.starts_with(private) { 0o700 } else { 0o755 };
        std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("Could not set the mode of {}", disk.display()))?;
    }
    Ok(missing)
}
