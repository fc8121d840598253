//! `ncd unlock --confirm`: typing the daemon's passage at a keyboard. The passage is
//! shown one chunk at a time in raw mode; each chunk must be typed, not pasted or
//! piped. [`Typist`] is the pure logic (keys, bursts, chunks) fed with bytes and
//! their arrival times; [`run`] drives it from the terminal and talks to ncdd.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ncd_config::control::UnlockScope;

use crate::client::Client;
use crate::terminal::RawMode;

/// A paste is recognised by its rhythm: when [`BURST_BYTES`] or more bytes arrive in
/// a row, each less than [`BURST_GAP`] after the one before, the chunk's input is
/// discarded. A person typing fast still leaves 30–100 ms between keys, and key
/// rollover or an escape sequence gives at most a few bytes at once (the longest
/// common ones, like Ctrl-F5 `ESC [ 15 ; 5 ~`, are 7); a paste or a program
/// writing to the terminal delivers its bytes within microseconds of each other.
pub(crate) const BURST_BYTES: usize = 8;
/// See [`BURST_BYTES`].
pub(crate) const BURST_GAP: Duration = Duration::from_millis(5);
/// A chunk shorter than [`BURST_BYTES`] (the passage's last one, say) is also
/// refused when it is at least this long and all of it arrived as one burst.
pub(crate) const SHORT_PASTE_CHARS: usize = 4;

/// Runs `ncd unlock --confirm`.
pub(crate) fn run(client: &Client) -> anyhow::Result<ExitCode> {
    if !io::stdin().is_terminal() {
        bail!("Confirming needs you at a keyboard: stdin is not a terminal.");
    }
    // Best effort: the reason and the scope are shown back, but their absence does
    // not stand in the way.
    let before = client.status().ok();
    let challenge = client.unlock_challenge()?;
    let chunk_chars = challenge.chunk_chars.max(1);
    if challenge.passage.is_empty() {
        bail!("ncdd sent an empty passage; nothing was confirmed.");
    }

    let mut out = io::stdout().lock();
    if let Some(status) = &before {
        match status.unlock.scope {
            Some(UnlockScope::End) => writeln!(out, "This confirms your request to end the period.")?,
            Some(UnlockScope::Pending) => writeln!(out, "This confirms your request to apply the held changes.")?,
            None => {}
        }
        if let Some(reason) = status.period.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            writeln!(out, "When you started, you wrote: “{}”", reason.trim())?;
        }
        writeln!(out)?;
    }
    writeln!(out, "To confirm, type the passage below, one part at a time.")?;
    writeln!(
        out,
        "Each part moves on by itself when it is right (Enter works too). Backspace fixes a typo."
    )?;
    writeln!(out, "Ctrl-C stops; nothing is sent until the end.")?;
    out.flush()?;

    let mut typist = Typist::new(&challenge.passage, chunk_chars);
    let typed = {
        let raw = RawMode::enter().context("could not put the terminal in raw mode")?;
        let typed = type_passage(&raw, &mut typist, &mut out);
        raw.restore().context("could not restore the terminal")?;
        typed?
    };
    let Some(typed) = typed else {
        writeln!(
            out,
            "\nStopped. Nothing was sent. Your request is still there; `ncd status` shows its window."
        )?;
        return Ok(ExitCode::from(130));
    };
    drop(out);

    // ncdd answers with the scope it opened.
    match client.unlock_confirm(typed)?.scope {
        UnlockScope::End => say!("Confirmed. The period has ended and the lock is lifted."),
        UnlockScope::Pending => say!("Confirmed. The held changes apply now."),
    }
    say!("Take good care of yourself.");
    Ok(ExitCode::SUCCESS)
}

/// Shows the chunks and feeds the keys to `typist` until the passage is typed
/// (`Some`), or the person cancels or input ends (`None`).
fn type_passage(raw: &RawMode, typist: &mut Typist, out: &mut impl Write) -> io::Result<Option<String>> {
    show_part(out, typist)?;
    loop {
        let Some((byte, at)) = raw.read_byte()? else {
            return Ok(None);
        };
        for step in typist.feed(byte, at) {
            match step {
                Step::Echo(c) => write!(out, "{c}")?,
                Step::Erase(n) => out.write_all("\x08 \x08".repeat(n).as_bytes())?,
                Step::Burst => {
                    raw.discard_input();
                    write!(out, "\r\n  That came in faster than typing — please type it.\r\n")?;
                    show_part(out, typist)?;
                }
                Step::Mismatch { at, typed } => {
                    let chunk: String = typist.chunk().iter().collect();
                    write!(
                        out,
                        "\r\n  Not quite: they differ at the mark. Type this part again.\r\n"
                    )?;
                    write!(out, "    {chunk}\r\n    {typed}\r\n    {}^\r\n", " ".repeat(at))?;
                    show_part(out, typist)?;
                }
                Step::Next => {
                    write!(out, "\r\n")?;
                    show_part(out, typist)?;
                }
                Step::Done(typed) => {
                    write!(out, "\r\n")?;
                    out.flush()?;
                    return Ok(Some(typed));
                }
                Step::Cancel => {
                    write!(out, "\r\n")?;
                    out.flush()?;
                    return Ok(None);
                }
            }
        }
        out.flush()?;
    }
}

fn show_part(out: &mut impl Write, typist: &Typist) -> io::Result<()> {
    let (part, parts) = typist.part();
    let chunk: String = typist.chunk().iter().collect();
    write!(out, "\r\n  Part {part} of {parts}:  “{chunk}”\r\n  > ")?;
    out.flush()
}

/// What the terminal should show after a byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Echo a typed character.
    Echo(char),
    /// Erase this many characters before the cursor.
    Erase(usize),
    /// The chunk's input was discarded: it came as a burst.
    Burst,
    /// The typed chunk differs from the passage at character `at`; type it again.
    Mismatch { at: usize, typed: String },
    /// The chunk is right; the next one is up.
    Next,
    /// The whole passage is typed.
    Done(String),
    /// Ctrl-C or Ctrl-D.
    Cancel,
}

/// Consecutive fast bytes.
#[derive(Debug, Default)]
struct Rhythm {
    last: Option<Instant>,
    run: usize,
}

impl Rhythm {
    /// Counts a byte; returns how many bytes in a row have come fast, this one
    /// included (1 after a pause).
    fn feed(&mut self, at: Instant) -> usize {
        let fast = self
            .last
            .is_some_and(|last| at.saturating_duration_since(last) < BURST_GAP);
        self.run = if fast { self.run + 1 } else { 1 };
        self.last = Some(at);
        self.run
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Char(char),
    Enter,
    Backspace,
    ClearLine,
    Cancel,
}

/// Bytes to keys: UTF-8 is assembled, escape sequences (arrow keys …) and other
/// control bytes are dropped.
#[derive(Debug, Default)]
struct Decoder {
    utf8: Vec<u8>,
    escape: Escape,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Escape {
    #[default]
    No,
    /// Just after ESC.
    Started,
    /// In `ESC [ …`, until a final byte.
    Csi,
    /// After `ESC O`: one more byte.
    Ss3,
}

impl Decoder {
    fn reset(&mut self) {
        *self = Self::default();
    }

    fn feed(&mut self, byte: u8) -> Option<Key> {
        match self.escape {
            Escape::No => {}
            Escape::Started => {
                self.escape = match byte {
                    b'[' => Escape::Csi,
                    b'O' => Escape::Ss3,
                    _ => Escape::No,
                };
                if self.escape != Escape::No {
                    return None;
                }
            }
            Escape::Csi => {
                if (0x40..=0x7e).contains(&byte) || !(0x20..=0x3f).contains(&byte) {
                    self.escape = Escape::No;
                }
                return None;
            }
            Escape::Ss3 => {
                self.escape = Escape::No;
                return None;
            }
        }
        if !self.utf8.is_empty() || byte >= 0x80 {
            return self.feed_utf8(byte);
        }
        match byte {
            0x03 | 0x04 => Some(Key::Cancel),
            0x7f | 0x08 => Some(Key::Backspace),
            b'\r' | b'\n' => Some(Key::Enter),
            0x15 => Some(Key::ClearLine),
            0x1b => {
                self.escape = Escape::Started;
                None
            }
            0x00..=0x1f => None,
            _ => Some(Key::Char(byte as char)),
        }
    }

    fn feed_utf8(&mut self, byte: u8) -> Option<Key> {
        let continuation = byte & 0xc0 == 0x80;
        if self.utf8.is_empty() == continuation {
            // A stray continuation byte, or a new character before the last one
            // finished: start over.
            self.utf8.clear();
            if continuation {
                return None;
            }
        }
        self.utf8.push(byte);
        let want = match self.utf8[0] {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => {
                self.utf8.clear();
                return None;
            }
        };
        if self.utf8.len() < want {
            return None;
        }
        let key = std::str::from_utf8(&self.utf8)
            .ok()
            .and_then(|s| s.chars().next())
            .map(Key::Char);
        self.utf8.clear();
        key
    }
}

/// The passage in chunks, what has been typed of the current one, and the rhythm
/// of the input.
#[derive(Debug)]
pub(crate) struct Typist {
    chunks: Vec<Vec<char>>,
    index: usize,
    input: Vec<char>,
    typed: String,
    rhythm: Rhythm,
    decoder: Decoder,
    /// After a burst: bytes keep being thrown away while they still come fast.
    draining: bool,
}

impl Typist {
    pub(crate) fn new(passage: &str, chunk_chars: usize) -> Self {
        let chars: Vec<char> = passage.chars().collect();
        Self {
            chunks: chars.chunks(chunk_chars.max(1)).map(<[char]>::to_vec).collect(),
            index: 0,
            input: Vec::new(),
            typed: String::new(),
            rhythm: Rhythm::default(),
            decoder: Decoder::default(),
            draining: false,
        }
    }

    /// The chunk to type now.
    pub(crate) fn chunk(&self) -> &[char] {
        self.chunks.get(self.index).map_or(&[], Vec::as_slice)
    }

    /// (this part, counting from 1; how many parts).
    pub(crate) fn part(&self) -> (usize, usize) {
        ((self.index + 1).min(self.chunks.len()), self.chunks.len())
    }

    /// One byte of input, read at `at`.
    pub(crate) fn feed(&mut self, byte: u8, at: Instant) -> Vec<Step> {
        let run = self.rhythm.feed(at);
        if self.draining {
            if run > 1 {
                return Vec::new();
            }
            self.draining = false;
        }
        if run >= BURST_BYTES {
            return vec![self.reject()];
        }
        let Some(key) = self.decoder.feed(byte) else {
            return Vec::new();
        };
        match key {
            Key::Cancel => vec![Step::Cancel],
            Key::Backspace => match self.input.pop() {
                Some(_) => vec![Step::Erase(1)],
                None => Vec::new(),
            },
            Key::ClearLine => {
                let n = std::mem::take(&mut self.input).len();
                if n == 0 { Vec::new() } else { vec![Step::Erase(n)] }
            }
            Key::Enter if self.input.is_empty() => Vec::new(),
            Key::Enter => vec![self.judge()],
            Key::Char(c) => {
                self.input.push(c);
                let len = self.chunk().len();
                if self.input.len() < len {
                    vec![Step::Echo(c)]
                } else if len >= SHORT_PASTE_CHARS && run >= len {
                    vec![self.reject()]
                } else {
                    vec![Step::Echo(c), self.judge()]
                }
            }
        }
    }

    /// Throws the chunk's input away after a burst.
    fn reject(&mut self) -> Step {
        self.input.clear();
        self.decoder.reset();
        self.draining = true;
        Step::Burst
    }

    /// Compares the input with the chunk.
    fn judge(&mut self) -> Step {
        let input = std::mem::take(&mut self.input);
        let chunk = self.chunk();
        if input == chunk {
            self.typed.extend(input);
            self.index += 1;
            if self.index >= self.chunks.len() {
                Step::Done(self.typed.clone())
            } else {
                Step::Next
            }
        } else {
            let at = input
                .iter()
                .zip(chunk)
                .position(|(a, b)| a != b)
                .unwrap_or(input.len().min(chunk.len()));
            Step::Mismatch {
                at,
                typed: input.into_iter().collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` with `gap` between bytes, starting at `*now`; returns the steps.
    fn feed(typist: &mut Typist, now: &mut Instant, text: &[u8], gap: Duration) -> Vec<Step> {
        let mut steps = Vec::new();
        for &byte in text {
            *now += gap;
            steps.extend(typist.feed(byte, *now));
        }
        steps
    }

    const TYPING: Duration = Duration::from_millis(40);
    const PASTE: Duration = Duration::from_micros(50);

    #[test]
    fn typed_chunks_advance_and_finish_with_the_passage() {
        let mut t = Typist::new("quiet river stone", 8);
        assert_eq!(t.part(), (1, 3));
        let mut now = Instant::now();
        let steps = feed(&mut t, &mut now, b"quiet ri", TYPING);
        assert_eq!(steps.last(), Some(&Step::Next));
        assert_eq!(t.part(), (2, 3));
        feed(&mut t, &mut now, b"ver ston", TYPING);
        let steps = feed(&mut t, &mut now, b"e", TYPING);
        assert_eq!(steps, [Step::Echo('e'), Step::Done("quiet river stone".into())]);
    }

    #[test]
    fn a_wrong_character_is_shown_and_the_chunk_retyped() {
        let mut t = Typist::new("abcdefgh", 8);
        let mut now = Instant::now();
        let steps = feed(&mut t, &mut now, b"abcxefgh", TYPING);
        assert_eq!(
            steps.last(),
            Some(&Step::Mismatch {
                at: 3,
                typed: "abcxefgh".into()
            })
        );
        assert_eq!(t.part(), (1, 1));
        let steps = feed(&mut t, &mut now, b"abc\r", TYPING);
        assert_eq!(
            steps.last(),
            Some(&Step::Mismatch {
                at: 3,
                typed: "abc".into()
            })
        );
        let steps = feed(&mut t, &mut now, b"abcx\x7fdefgh", TYPING);
        assert!(steps.contains(&Step::Erase(1)));
        assert_eq!(steps.last(), Some(&Step::Done("abcdefgh".into())));
    }

    #[test]
    fn a_paste_is_discarded_and_the_rest_of_it_drained() {
        let mut t = Typist::new("abcdefghijklmnop", 8);
        let mut now = Instant::now();
        // The whole passage at once: the first chunk is refused at the 8th byte,
        // and the other 8 bytes, still fast, are thrown away.
        let steps = feed(&mut t, &mut now, b"abcdefghijklmnop", PASTE);
        assert_eq!(steps.iter().filter(|s| **s == Step::Burst).count(), 1, "{steps:?}");
        assert!(!steps.iter().any(|s| matches!(s, Step::Next | Step::Done(_))));
        assert_eq!(t.part(), (1, 2));
        // Typed after a pause, it counts.
        let steps = feed(&mut t, &mut now, b"abcdefgh", TYPING);
        assert_eq!(steps.last(), Some(&Step::Next));
    }

    #[test]
    fn seven_fast_bytes_are_not_a_burst_but_eight_are() {
        let mut t = Typist::new("abcdefghijklmnop", 16);
        let mut now = Instant::now();
        let steps = feed(&mut t, &mut now, b"abcdefg", PASTE);
        assert!(!steps.contains(&Step::Burst));
        let steps = feed(&mut t, &mut now, b"h", BURST_GAP);
        assert!(
            !steps.contains(&Step::Burst),
            "a gap of exactly BURST_GAP is slow enough"
        );
        // 'h' began a new run: with six more fast bytes it is seven, with a seventh eight.
        let steps = feed(&mut t, &mut now, b"ijklmn", PASTE);
        assert!(!steps.contains(&Step::Burst));
        let steps = feed(&mut t, &mut now, b"o", PASTE);
        assert_eq!(steps, [Step::Burst]);
    }

    #[test]
    fn a_short_last_chunk_pasted_whole_is_refused() {
        let mut t = Typist::new("abcdefgh12345", 8);
        let mut now = Instant::now();
        feed(&mut t, &mut now, b"abcdefgh", TYPING);
        let steps = feed(&mut t, &mut now, b"12345", PASTE);
        assert_eq!(steps.last(), Some(&Step::Burst));
        let steps = feed(&mut t, &mut now, b"12345", TYPING);
        assert_eq!(steps.last(), Some(&Step::Done("abcdefgh12345".into())));
    }

    #[test]
    fn ctrl_c_and_ctrl_d_cancel_and_arrow_keys_are_ignored() {
        let mut t = Typist::new("abcdefgh", 8);
        let mut now = Instant::now();
        let steps = feed(&mut t, &mut now, b"ab\x1b[Dc", TYPING);
        assert_eq!(steps, [Step::Echo('a'), Step::Echo('b'), Step::Echo('c')]);
        assert_eq!(feed(&mut t, &mut now, b"\x03", TYPING), [Step::Cancel]);
        assert_eq!(feed(&mut t, &mut now, b"\x04", TYPING), [Step::Cancel]);
    }

    #[test]
    fn utf8_is_assembled() {
        let mut t = Typist::new("ñandú", 8);
        let mut now = Instant::now();
        let steps = feed(&mut t, &mut now, "ñandú".as_bytes(), TYPING);
        assert_eq!(steps.last(), Some(&Step::Done("ñandú".into())));
    }
}
