//! A private mount namespace for one test, so that it can give ncdd a full disk
//! (a small tmpfs) or a read-only state dir (a read-only bind mount) that nothing
//! else on the machine sees. ncdd is run inside it with [`MountNs::prefix`]; the
//! test reaches its files through [`MountNs::path`] (`/proc/PID/root/…`).
//!
//! The namespace lives as long as a `sleep` started by `unshare --mount` (the
//! holder); every mount in it disappears with it. Needs root (CAP_SYS_ADMIN) and
//! util-linux `unshare`, `nsenter` and `mount`.

// Each test binary uses its own part of the shared harness.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct MountNs {
    holder: Child,
}

impl MountNs {
    /// A new namespace with private propagation; `Err` says why not here.
    pub(crate) fn create() -> Result<Self, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("a mount namespace needs root".into());
        }
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "86400"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        // Ready once the holder's namespace differs from ours.
        let ours = std::fs::read_link("/proc/self/ns/mnt").map_err(|e| e.to_string())?;
        let pid = holder.id();
        let ready = super::eventually(Duration::from_secs(5), || {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
            (theirs != ours).then_some(())
        });
        if ready.is_none() {
            let mut holder = holder;
            let _ = holder.kill();
            let output = holder.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!(
                "unshare --mount did not make a namespace: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Self { holder })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `nsenter --target PID --mount --`: runs the command after it inside.
    pub(crate) fn prefix(&self) -> Vec<OsString> {
        ["nsenter", "--target", &self.pid().to_string(), "--mount", "--"]
            .iter()
            .map(OsString::from)
            .collect()
    }

    /// Runs `mount ARGS…` inside.
    pub(crate) fn mount(&self, args: &[&str]) -> Result<(), String> {
        self.run("mount", args)
    }

    /// Runs `program ARGS…` inside; `Err` with its output when it fails.
    pub(crate) fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let output = Command::new("nsenter")
            .args(["--target", &self.pid().to_string(), "--mount", "--", program])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run nsenter: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// A tmpfs of `size` (as `mount -o size=` takes it, e.g. `256k`) on `dir`.
    pub(crate) fn tmpfs(&self, dir: &Path, size: &str) -> Result<(), String> {
        let dir = dir.to_str().ok_or("a non-UTF-8 path")?;
        self.mount(&["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs", dir])
    }

    /// Makes `dir` a read-only view of itself.
    pub(crate) fn read_only(&self, dir: &Path) -> Result<(), String> {
        let dir = dir.to_str().ok_or("a non-UTF-8 path")?;
        self.mount(&["--bind", dir, dir])?;
        self.mount(&["-o", "remount,bind,ro", dir])
    }

    /// Undoes the last mount on `dir`.
    pub(crate) fn unmount(&self, dir: &Path) -> Result<(), String> {
        let dir = dir.to_str().ok_or("a non-UTF-8 path")?;
        self.run("umount", &[dir])
    }

    /// `path` as seen inside the namespace, reachable from outside.
    pub(crate) fn path(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(relative)
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
