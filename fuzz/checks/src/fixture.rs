//! The files the checks read: a private directory, made once per process, with
//! the config path configs are parsed under and a few list files they may name.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// List files every fuzzed config may name (relative to the config, as
/// `lists/NAME`): one per format, and one with adblock exceptions (`@@`).
pub const LISTS: &[(&str, &str)] = &[
    ("social.hosts", include_str!("../../../examples/lists/social.hosts")),
    (
        "plain.txt",
        "# plain\nads.example\n=exact.tracker.example\nMiXeD.Example.NET.\nbücher.example\n",
    ),
    (
        "ads.adblock",
        "! adblock\n||adserver.example^\n||metrics.example^|\n@@||ok.adserver.example^\n",
    ),
    (
        "exceptions.adblock",
        "! a list with exceptions only\n@@||help.instagram.com^\n@@||ads.example^\n@@||vk.com^\n",
    ),
];

/// The process's fixture directory.
#[derive(Debug)]
pub struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path configs are parsed under (relative list paths start beside it).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("ncd.toml")
    }

    /// A state dir with nothing in it: URL lists have no cached copy there.
    pub fn empty_state_dir(&self) -> PathBuf {
        self.dir.join("empty-state")
    }

    /// The absolute paths of the list files in [`LISTS`].
    pub fn list_paths(&self) -> impl Iterator<Item = PathBuf> + '_ {
        LISTS.iter().map(|(name, _)| self.dir.join("lists").join(name))
    }
}

/// The fixture, made on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        remove_stale();
        let dir = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
        let lists = dir.join("lists");
        std::fs::create_dir_all(&lists).expect("create the fixture directory");
        for (name, text) in LISTS {
            std::fs::write(lists.join(name), text).expect("write a fixture list");
        }
        Fixture { dir }
    })
}

const PREFIX: &str = "ncd-fuzz-checks-";

/// Removes fixture directories of processes that are gone (a fuzzer is killed
/// rather than asked to stop, so it never cleans up after itself).
fn remove_stale() {
    if !Path::new("/proc/self").exists() {
        return; // no way to tell a live process from a dead one
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
