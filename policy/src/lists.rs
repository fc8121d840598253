//! Where list text comes from: files on disk, and the last good copies kept in the
//! state dir (of URL lists, and of local lists).
//!
//! Reading never touches the network. The fetcher (`ncd_daemon::fetch`) downloads URL lists
//! in the background, writes them here atomically, and asks for a reload; until the
//! first download succeeds — and whenever one fails — the last good copy blocks.
//!
//! A local list is read safely, because a reload waits for it and a period may be
//! holding it in force:
//! - only a regular file is read: it is opened non-blocking and its type is taken
//!   from the opened descriptor (`fstat`, never the path: no swap in between), so
//!   a FIFO, a device, a socket or a directory is refused at once, with its path
//!   and why;
//! - at most [`MAX_LIST_BYTES`]: a bigger file is refused before it is read, and one
//!   that grows past the cap while it is read is refused too;
//! - within [`READ_DEADLINE`]: the read runs on a helper thread, and one that has not
//!   finished by then (a hung NFS or FUSE mount) is skipped; while it hangs, later
//!   reloads skip the file at once instead of starting another read.
//!
//! When a local list reads well its text is kept in the state dir
//! ([`StateDir::list_copy`]); when it is skipped for any reason, that last good copy
//! blocks in its place, so making a list unreadable never unblocks what it held.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use ncd_config::ListSource;
use ncd_state::StateDir;

/// The largest list read or downloaded: 256 MiB (the big public lists are ~50 MiB).
pub const MAX_LIST_BYTES: u64 = 256 * 1024 * 1024;

/// How long one list file may take to read before it is skipped for this build.
pub const READ_DEADLINE: Duration = Duration::from_secs(3);

/// A list's text for the policy, and why the list itself could not be used.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The rules' text: the list, or its last good copy; `None` when neither reads.
    pub text: Option<String>,
    /// Why the list as configured was skipped (with "using the last good copy …"
    /// when its copy stands in).
    pub error: Option<String>,
    /// `text` is the last good copy of a local list that was skipped.
    pub from_copy: bool,
}

/// Whether a build keeps last good copies of the lists that read well. ncdd does;
/// the CLI's offline checks only read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copies {
    Keep,
    ReadOnly,
}

/// Reads a list's text: the file (or its last good copy), or the kept copy of a URL list.
pub fn load(source: &ListSource, state_dir: &StateDir, copies: Copies) -> Loaded {
    match source {
        ListSource::Url(url) => match read_file(&state_dir.url_list_copy(url)) {
            Ok(text) => Loaded {
                text: Some(text),
                ..Loaded::default()
            },
            Err(Skipped::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Loaded {
                error: Some("not downloaded yet (it will be fetched in the background)".into()),
                ..Loaded::default()
            },
            Err(why) => Loaded {
                error: Some(format!(
                    "its downloaded copy: {}",
                    why.words(&state_dir.url_list_copy(url))
                )),
                ..Loaded::default()
            },
        },
        ListSource::File(path) => {
            let copy = state_dir.list_copy(path);
            match read_with_deadline(path, READ_DEADLINE) {
                Ok(text) => {
                    if copies == Copies::Keep {
                        keep_copy(&copy, &text);
                    }
                    Loaded {
                        text: Some(text),
                        ..Loaded::default()
                    }
                }
                Err(why) => {
                    let why = why.words(path);
                    match read_file(&copy) {
                        Ok(text) => Loaded {
                            text: Some(text),
                            error: Some(format!("{why}; using the last good copy from {}", modified(&copy))),
                            from_copy: true,
                        },
                        Err(_) => Loaded {
                            text: None,
                            error: Some(why),
                            from_copy: false,
                        },
                    }
                }
            }
        }
    }
}

/// Why a file was not read.
#[derive(Debug)]
pub enum Skipped {
    /// Open or read failed.
    Io(std::io::Error),
    /// Not a regular file: what it is instead.
    NotAFile(&'static str),
    /// Bigger than [`MAX_LIST_BYTES`]: its size (or at least the bytes seen).
    TooBig(u64),
    /// Grew past [`MAX_LIST_BYTES`] while it was read.
    Grew,
    /// Did not finish reading within the deadline.
    TimedOut(Duration),
    /// An earlier read of it has not finished yet.
    StillReading,
}

impl Skipped {
    /// The reason in plain words, naming `path`.
    pub fn words(&self, path: &Path) -> String {
        let path = path.display();
        let cap = MAX_LIST_BYTES / (1024 * 1024);
        match self {
            Skipped::Io(e) => format!("cannot read {path}: {e}"),
            Skipped::NotAFile(what) => format!("{path} is {what}, not a file; only regular files are read as lists"),
            Skipped::TooBig(size) => format!(
                "{path} is {} MiB ({size} bytes), over the {cap} MiB a list may have; it was not read",
                size.div_ceil(1024 * 1024)
            ),
            Skipped::Grew => format!("{path} grew past the {cap} MiB a list may have while it was read"),
            Skipped::TimedOut(after) => format!(
                "{path} did not finish reading within {} s (a slow or hung file system?); skipped",
                after.as_secs()
            ),
            Skipped::StillReading => {
                format!("{path} is still being read from an earlier reload (a slow or hung file system?); skipped")
            }
        }
    }
}

/// Opens `path` non-blocking, checks the opened file is a regular one of at most
/// [`MAX_LIST_BYTES`], and reads it (no more than the cap, however it grows).
pub fn read_file(path: &Path) -> Result<String, Skipped> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO would block the open until a writer came; a regular file ignores it.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(Skipped::Io)?;
    // fstat of the opened descriptor: what is read is what was checked.
    let meta = file.metadata().map_err(Skipped::Io)?;
    let kind = meta.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_dir() {
        Some("a directory")
    } else {
        Some("not a regular file")
    };
    if let Some(what) = what {
        return Err(Skipped::NotAFile(what));
    }
    if meta.len() > MAX_LIST_BYTES {
        return Err(Skipped::TooBig(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_LIST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Skipped::Io)?;
    if bytes.len() as u64 > MAX_LIST_BYTES {
        return Err(Skipped::Grew);
    }
    // Valid UTF-8 (nearly every list) is taken as is, without a copy.
    Ok(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

type Pending = mpsc::Receiver<Result<String, Skipped>>;

/// Reads that outlived their deadline, by path: while one still hangs, the file is
/// skipped at once (one stuck thread per file at most, however many reloads).
fn in_flight() -> &'static Mutex<HashMap<PathBuf, Pending>> {
    static IN_FLIGHT: OnceLock<Mutex<HashMap<PathBuf, Pending>>> = OnceLock::new();
    IN_FLIGHT.get_or_init(Default::default)
}

/// [`read_file`] on a helper thread, waiting at most `deadline`.
pub fn read_with_deadline(path: &Path, deadline: Duration) -> Result<String, Skipped> {
    let path = path.to_path_buf();
    read_on_helper(path.clone(), deadline, move || read_file(&path))
}

fn read_on_helper(
    key: PathBuf,
    deadline: Duration,
    read: impl FnOnce() -> Result<String, Skipped> + Send + 'static,
) -> Result<String, Skipped> {
    let Ok(mut flights) = in_flight().lock() else {
        return read();
    };
    if let Some(pending) = flights.get(&key) {
        match pending.try_recv() {
            Err(mpsc::TryRecvError::Empty) => return Err(Skipped::StillReading),
            // The hung read finished: read afresh (the file may have changed since).
            _ => {
                flights.remove(&key);
            }
        }
    }
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new().name("ncd-list-read".into()).spawn(move || {
        let _ = tx.send(read());
    });
    if let Err(e) = spawned {
        return Err(Skipped::Io(e));
    }
    // Not held while waiting: other lists' reads do not wait on this one.
    drop(flights);
    match rx.recv_timeout(deadline) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            if let Ok(mut flights) = in_flight().lock() {
                flights.insert(key, rx);
            }
            Err(Skipped::TimedOut(deadline))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(Skipped::Io(std::io::Error::other("the reading thread failed")))
        }
    }
}

/// Keeps `text` as the last good copy at `copy`, unless it is already there.
fn keep_copy(copy: &Path, text: &str) {
    if same_content(copy, text.as_bytes()) {
        return;
    }
    if let Err(error) = ncd_state::write_atomically(copy, text.as_bytes(), Some(0o600)) {
        tracing::warn!(copy = %copy.display(), %error, "cannot keep a last good copy of a list");
    }
}

/// Compares the file at `path` with `bytes` in chunks (no second copy in memory).
fn same_content(path: &Path, bytes: &[u8]) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(bytes.len() as u64) {
        return false;
    }
    let mut reader = std::io::BufReader::new(file);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut at = 0usize;
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return at == bytes.len(),
            Ok(n) => {
                let (Some(theirs), Some(ours)) = (chunk.get(..n), bytes.get(at..at + n)) else {
                    return false;
                };
                if theirs != ours {
                    return false;
                }
                at += n;
            }
            Err(_) => return false,
        }
    }
}

/// When the copy at `path` was written, in UTC words.
fn modified(path: &Path) -> String {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .and_then(|d| chrono::DateTime::from_timestamp(i64::try_from(d.as_secs()).ok()?, 0))
        .map_or_else(
            || "an earlier read".to_string(),
            |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
}

/// Whether the lists' contents are held by a running period (ncdd says so from its
/// `Period`; the offline checks never hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold<'a> {
    /// No period runs: a list is what its file says.
    None,
    /// A period runs. `key` names the locked copies it holds (new at its start
    /// and at each confirmed `pending` unlock): copies kept under another key are
    /// dropped first. `None` adopts the copies on disk, whatever their key (a
    /// period assumed after damage: damage never opens anything).
    Period { key: Option<&'a str> },
}

/// Makes the locked copies' folder match `hold`: removed when no period runs,
/// emptied when it belongs to another period (or to before a `pending` unlock).
/// Returns whether the locked copies are to be read and kept.
pub fn prepare_hold(state_dir: &StateDir, hold: Hold<'_>) -> bool {
    let dir = state_dir.locked_lists_dir();
    let key_file = state_dir.locked_lists_key();
    let Hold::Period { key } = hold else {
        if dir.exists()
            && let Err(error) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(dir = %dir.display(), %error, "cannot remove the lists' locked copies");
        }
        return false;
    };
    let Some(key) = key else {
        return true;
    };
    if std::fs::read_to_string(&key_file).ok().as_deref() == Some(key) {
        return true;
    }
    if dir.exists()
        && let Err(error) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!(dir = %dir.display(), %error, "cannot remove the lists' old locked copies");
    }
    if let Err(error) = ncd_state::write_atomically(&key_file, key.as_bytes(), Some(0o600)) {
        tracing::warn!(dir = %dir.display(), %error, "cannot keep locked copies of the lists");
    }
    true
}

/// The lists whose last hold held nothing: by locked copy, the hashes of the list
/// text and of the copy then (random per process: no text can be made to match).
/// While both are the same, nothing is held and the copy needs nothing, so a
/// reload of a big list skips the comparison.
fn quiet_holds() -> &'static Mutex<HashMap<PathBuf, (u64, u64)>> {
    static QUIET: OnceLock<Mutex<HashMap<PathBuf, (u64, u64)>>> = OnceLock::new();
    QUIET.get_or_init(Default::default)
}

fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    static STATE: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
    STATE.get_or_init(Default::default).hash_one(bytes)
}

/// True when the list's `text` and its locked copy at `copy` are what they were
/// when the last hold of it held nothing.
pub fn hold_is_quiet(copy: &Path, text: &str) -> bool {
    let Some((text_hash, copy_hash)) = quiet_holds().lock().ok().and_then(|q| q.get(copy).copied()) else {
        return false;
    };
    content_hash(text.as_bytes()) == text_hash
        && read_file(copy).is_ok_and(|locked| content_hash(locked.as_bytes()) == copy_hash)
}

/// Notes how a hold of the list at `copy` ended: quiet (`Some((text, locked))`,
/// nothing held) or not.
pub fn note_hold(copy: &Path, quiet: Option<(&str, &str)>) {
    let Ok(mut holds) = quiet_holds().lock() else {
        return;
    };
    match quiet {
        Some((text, locked)) => {
            holds.insert(
                copy.to_path_buf(),
                (content_hash(text.as_bytes()), content_hash(locked.as_bytes())),
            );
        }
        None => {
            holds.remove(copy);
        }
    }
}

/// A rule in the plain form of a locked copy: `name`, or `=name` for an exact one.
pub fn parse_locked_line(line: &str) -> Option<(ncd_config::RuleScope, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    match line.strip_prefix('=') {
        Some(name) => Some((ncd_config::RuleScope::Exact, name)),
        None => Some((ncd_config::RuleScope::Subtree, line)),
    }
}

/// Appends a rule in plain form (one line).
pub fn push_locked_line(out: &mut String, scope: ncd_config::RuleScope, name: &str) {
    if scope == ncd_config::RuleScope::Exact {
        out.push('=');
    }
    out.push_str(name);
    out.push('\n');
}

/// Writes a locked copy (atomically, 0600); false when it could not be written.
pub fn keep_locked(copy: &Path, text: &str) -> bool {
    match ncd_state::write_atomically(copy, text.as_bytes(), Some(0o600)) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(copy = %copy.display(), %error, "cannot keep the locked copy of a list");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_at_once_without_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let why = read_file(&fifo).unwrap_err().words(&fifo);
        assert!(why.contains("is a FIFO, not a file"), "{why}");
        assert!(why.contains(&fifo.display().to_string()), "{why}");
    }

    #[test]
    fn devices_and_directories_are_refused() {
        let why = read_file(Path::new("/dev/zero"))
            .unwrap_err()
            .words(Path::new("/dev/zero"));
        assert!(why.contains("/dev/zero is a character device, not a file"), "{why}");
        let dir = tempfile::tempdir().unwrap();
        let why = read_file(dir.path()).unwrap_err().words(dir.path());
        assert!(why.contains("is a directory, not a file"), "{why}");
    }

    #[test]
    fn a_file_over_the_cap_is_refused_with_its_size_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.txt");
        // Sparse: no disk used.
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_LIST_BYTES + 1)
            .unwrap();
        let skipped = read_file(&big).unwrap_err();
        assert!(
            matches!(skipped, Skipped::TooBig(n) if n == MAX_LIST_BYTES + 1),
            "{skipped:?}"
        );
        let why = skipped.words(&big);
        assert!(
            why.contains(&format!("{} bytes", MAX_LIST_BYTES + 1)) && why.contains("256 MiB"),
            "{why}"
        );

        // Under the cap it is read.
        std::fs::File::create(&big).unwrap().set_len(1024).unwrap();
        assert_eq!(read_file(&big).unwrap().len(), 1024);
    }

    #[test]
    fn a_read_that_hangs_is_skipped_and_not_started_again_while_it_hangs() {
        let key = PathBuf::from("/test/hangs");
        let (release, wait) = mpsc::channel::<()>();
        let result = read_on_helper(key.clone(), Duration::from_millis(50), move || {
            let _ = wait.recv();
            Ok("late.test\n".into())
        });
        assert!(matches!(result, Err(Skipped::TimedOut(_))), "{result:?}");
        let again = read_on_helper(key.clone(), Duration::from_secs(5), || Ok("never".into()));
        assert!(matches!(again, Err(Skipped::StillReading)), "{again:?}");
        release.send(()).unwrap();
        // Once the hung read is over, the next read starts afresh.
        let fresh = eventually(|| read_on_helper(key.clone(), Duration::from_secs(5), || Ok("fresh".into())).ok());
        assert_eq!(fresh.as_deref(), Some("fresh"));
    }

    fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(v) = check() {
                return Some(v);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_skipped_list_blocks_with_its_last_good_copy() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let list = dir.path().join("l.txt");
        std::fs::write(&list, "kept.test\n").unwrap();
        let source = ListSource::File(list.clone());
        let first = load(&source, &state, Copies::Keep);
        assert_eq!(
            (first.text.as_deref(), first.error, first.from_copy),
            (Some("kept.test\n"), None, false)
        );

        std::fs::remove_file(&list).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&list).status().unwrap();
        assert!(made.success());
        let second = load(&source, &state, Copies::ReadOnly);
        assert_eq!((second.text.as_deref(), second.from_copy), (Some("kept.test\n"), true));
        let error = second.error.unwrap();
        assert!(
            error.contains("is a FIFO") && error.contains("using the last good copy from"),
            "{error}"
        );
    }
}
