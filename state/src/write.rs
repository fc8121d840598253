//! Atomic writes: temp file beside the target, fsync, rename, fsync the directory.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that a crash leaves either the old or the new file:
/// temp file, fsync, rename, fsync the directory. `mode` sets the permissions
/// (else the process's umask decides). Missing parent directories are created. A
/// write that fails removes its temp file and leaves `path` as it was.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        if let Some(mode) = mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `.NAME.PID.tmp` beside `path`: each process names its own, so two writers never
/// share one, and [`remove_stale_temp_files`] can tell a dead writer's from ours.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Removes the temp files that writes of `names` (file names in `dir`) left when a
/// crash or a kill cut them short; this process's own are kept.
pub fn remove_stale_temp_files(dir: &Path, names: &[&str]) {
    let own = format!(".{}.tmp", std::process::id());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = names.iter().any(|file| {
            name.strip_prefix('.')
                .and_then(|rest| rest.strip_prefix(file))
                .is_some_and(|rest| rest.starts_with('.') && rest.ends_with(".tmp"))
        });
        if ours && !name.ends_with(&own) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_with_the_mode_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/f.txt");
        write_atomically(&path, b"one", Some(0o600)).unwrap();
        write_atomically(&path, b"two", Some(0o600)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn a_failed_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a directory fails after the temp file was written.
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"x").unwrap();
        assert!(write_atomically(&target, b"new", None).is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("taken")]);
    }

    #[test]
    fn stale_temp_files_of_dead_writers_go() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".period.json.4242424.tmp");
        let other = dir.path().join(".unrelated.json.4242424.tmp");
        std::fs::write(&stale, b"").unwrap();
        std::fs::write(&other, b"").unwrap();
        remove_stale_temp_files(dir.path(), &["period.json"]);
        assert!(!stale.exists());
        assert!(other.exists());
    }
}
