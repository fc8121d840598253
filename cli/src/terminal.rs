//! Raw mode on stdin for typing the unlock passage: no line editing (ICANON), no
//! echo (ECHO), no signal keys (ISIG, so Ctrl-C arrives as the byte 0x03 and is
//! handled as "cancel"), no literal-next (IEXTEN). The terminal is restored on every
//! way out: normal return, error, panic (drop), and SIGINT/SIGTERM/SIGHUP sent from
//! elsewhere (a thread waits for those while raw mode is on).

use std::io;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::sys::signal::{SigSet, Signal};
use rustix::termios::{self, LocalModes, OptionalActions, QueueSelector, SpecialCodeIndex, Termios};

/// The terminal settings to put back, shared with the signal thread. `None` once
/// they are back.
type Saved = Arc<Mutex<Option<Termios>>>;

/// Stdin in raw mode until dropped (or [`RawMode::restore`]d).
#[derive(Debug)]
pub(crate) struct RawMode {
    saved: Saved,
}

impl RawMode {
    /// Puts stdin (a terminal) in raw mode.
    pub(crate) fn enter() -> io::Result<Self> {
        let stdin = io::stdin();
        let original = termios::tcgetattr(stdin.as_fd())?;
        let saved: Saved = Arc::new(Mutex::new(Some(original.clone())));
        watch_signals(Arc::clone(&saved));
        let mut raw = original;
        raw.local_modes
            .remove(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG | LocalModes::IEXTEN);
        raw.special_codes[SpecialCodeIndex::VMIN] = 1;
        raw.special_codes[SpecialCodeIndex::VTIME] = 0;
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)?;
        Ok(Self { saved })
    }

    /// Reads one byte, unbuffered, and the moment it was read. `None` at end of input.
    pub(crate) fn read_byte(&self) -> io::Result<Option<(u8, Instant)>> {
        let mut byte = [0u8; 1];
        loop {
            match rustix::io::read(io::stdin().as_fd(), &mut byte) {
                Ok(0) => return Ok(None),
                Ok(_) => return Ok(Some((byte[0], Instant::now()))),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Throws away what was typed (or pasted) but not read yet.
    pub(crate) fn discard_input(&self) {
        let _ = termios::tcflush(io::stdin().as_fd(), QueueSelector::IFlush);
    }

    /// Puts the terminal back as it was. Safe to call more than once.
    pub(crate) fn restore(&self) -> io::Result<()> {
        restore(&self.saved)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

fn restore(saved: &Saved) -> io::Result<()> {
    let mut saved = saved.lock().unwrap_or_else(|poison| poison.into_inner());
    if let Some(original) = saved.take() {
        termios::tcsetattr(io::stdin().as_fd(), OptionalActions::Now, &original)?;
    }
    Ok(())
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread started
/// later) and waits for them in a thread of their own: if one comes while raw mode
/// is on, the terminal is restored before the process exits. Nothing is confirmed
/// then: the parts typed so far may have reached the daemon, but the confirmation
/// goes only after the terminal is back.
fn watch_signals(saved: Saved) {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        if let Ok(signal) = set.wait() {
            let was_raw = saved.lock().map(|s| s.is_some()).unwrap_or(true);
            let _ = restore(&saved);
            if was_raw {
                // Straight to the fd: the main thread may hold the stdout lock.
                let _ = rustix::io::write(io::stdout().as_fd(), b"\nStopped. Nothing was confirmed.\n");
            }
            std::process::exit(128 + signal as i32);
        }
    });
}
