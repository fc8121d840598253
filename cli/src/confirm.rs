//! `ncd unlock --confirm`: typing the daemon's passage at a keyboard. ncdd hands
//! the passage out one part at a time and takes each back only when it is right
//! and took at least a typist's time (it keeps the clock; see
//! `ncd_config::control::MIN_MS_PER_CHAR`). Here, in raw mode, the same pace is
//! checked first, kindly: a part whose keys came faster than that is refused before
//! it is sent, and the rest of a paste is thrown away. [`Typist`] is the pure logic
//! (keys, pace, one part) fed with bytes and their arrival times; [`run`] drives it
//! from the terminal and talks to ncdd.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ncd_config::control::{Challenge, ErrorCode, UnlockScope, UnlockState};

use crate::client::{Client, ClientError};
use crate::terminal::RawMode;

/// After a part is refused as too fast, bytes that keep coming less than this
/// apart are the rest of the paste and are thrown away. A person leaves 30–100 ms
/// between keys; a paste or a program delivers its bytes within microseconds.
pub(crate) const BURST_GAP: Duration = Duration::from_millis(5);

/// Runs `ncd unlock --confirm`.
pub(crate) fn run(client: &Client) -> anyhow::Result<ExitCode> {
    if !io::stdin().is_terminal() {
        bail!("Confirming needs you at a keyboard: stdin is not a terminal.");
    }
    // Best effort: the reason and the scope are shown back, but their absence does
    // not stand in the way.
    let before = client.status().ok();
    let challenge = client.unlock_challenge()?;
    if challenge.parts == 0 {
        bail!(
            "This ncdd hands out the passage whole, as versions before typed parts did; update ncd and ncdd together."
        );
    }
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
    writeln!(out, "Ctrl-C stops; nothing is confirmed until the last part.")?;
    out.flush()?;

    let mut typist = Typist::new(&challenge);
    let typed = {
        let raw = RawMode::enter().context("could not put the terminal in raw mode")?;
        let typed = type_passage(&raw, client, &mut typist, &mut out);
        raw.restore().context("could not restore the terminal")?;
        typed?
    };
    let Some(typed) = typed else {
        writeln!(
            out,
            "\nStopped. Nothing was confirmed. Your request is still there; `ncd status` shows its window."
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

/// Shows the parts and feeds the keys to `typist`, handing each typed part to
/// ncdd, until the whole passage is typed (`Some`, the passage), or the person
/// cancels or input ends (`None`).
fn type_passage(
    raw: &RawMode,
    client: &Client,
    typist: &mut Typist,
    out: &mut impl Write,
) -> anyhow::Result<Option<String>> {
    let mut passage = String::new();
    show_part(out, typist)?;
    loop {
        let Some((byte, at)) = raw.read_byte()? else {
            return Ok(None);
        };
        for step in typist.feed(byte, at) {
            match step {
                Step::Echo(c) => write!(out, "{c}")?,
                Step::Erase(n) => out.write_all("\x08 \x08".repeat(n).as_bytes())?,
                Step::TooFast => {
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
                Step::Typed(part) => {
                    write!(out, "\r\n")?;
                    out.flush()?;
                    match client.unlock_chunk(part.clone()) {
                        Ok(next) if next.done => {
                            passage.push_str(&part);
                            return Ok(Some(passage));
                        }
                        Ok(next) => {
                            passage.push_str(&part);
                            typist.next_part(&next);
                        }
                        // ncdd's own check of the pace or the text: this part again,
                        // as long as the request is still open.
                        Err(ClientError::Daemon {
                            code: code @ (ErrorCode::Conflict | ErrorCode::Mismatch),
                            message,
                        }) if code == ErrorCode::Mismatch || still_open(client) => {
                            raw.discard_input();
                            write!(out, "  {message}\r\n")?;
                        }
                        Err(error) => return Err(error.into()),
                    }
                    show_part(out, typist)?;
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

/// Whether the unlock request can still be confirmed (a refused part may be typed
/// again), or has closed under us (expired, withdrawn, the period over).
fn still_open(client: &Client) -> bool {
    client
        .status()
        .is_ok_and(|status| status.unlock.state == UnlockState::Confirmable)
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
    /// The part's input was discarded: its keys came faster than anyone types.
    TooFast,
    /// The typed part differs from the passage at character `at`; type it again.
    Mismatch { at: usize, typed: String },
    /// The part is typed right here: hand it to ncdd.
    Typed(String),
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

/// The part to type, what has been typed of it, and when its keys came.
#[derive(Debug)]
pub(crate) struct Typist {
    chunk: Vec<char>,
    part: usize,
    parts: usize,
    /// The least time between a part's first and last key, per key after the first.
    min_gap: Duration,
    input: Vec<char>,
    /// When the first key of the input came.
    first_key: Option<Instant>,
    rhythm: Rhythm,
    decoder: Decoder,
    /// After a refusal: bytes keep being thrown away while they still come fast.
    draining: bool,
}

impl Typist {
    pub(crate) fn new(challenge: &Challenge) -> Self {
        let mut typist = Self {
            chunk: Vec::new(),
            part: 0,
            parts: 0,
            min_gap: Duration::from_millis(challenge.min_ms_per_char),
            input: Vec::new(),
            first_key: None,
            rhythm: Rhythm::default(),
            decoder: Decoder::default(),
            draining: false,
        };
        typist.next_part(challenge);
        typist
    }

    /// The part ncdd handed out next.
    pub(crate) fn next_part(&mut self, challenge: &Challenge) {
        self.chunk = challenge.passage.chars().collect();
        self.part = challenge.part;
        self.parts = challenge.parts;
        self.min_gap = Duration::from_millis(challenge.min_ms_per_char);
        self.input.clear();
        self.first_key = None;
    }

    /// The part to type now.
    pub(crate) fn chunk(&self) -> &[char] {
        &self.chunk
    }

    /// (this part, counting from 1; how many parts).
    pub(crate) fn part(&self) -> (usize, usize) {
        (self.part, self.parts)
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
            Key::Enter => vec![self.judge(at)],
            Key::Char(c) => {
                if self.input.is_empty() {
                    self.first_key = Some(at);
                }
                self.input.push(c);
                if self.input.len() < self.chunk.len() {
                    vec![Step::Echo(c)]
                } else {
                    match self.judge(at) {
                        Step::TooFast => vec![Step::TooFast],
                        step => vec![Step::Echo(c), step],
                    }
                }
            }
        }
    }

    /// True when the input's keys, from the first to the one at `at`, came faster
    /// than [`Typist::min_gap`] each on average: faster than anyone types.
    fn too_fast(&self, at: Instant) -> bool {
        let keys = u32::try_from(self.input.len().saturating_sub(1)).unwrap_or(u32::MAX);
        let took = self
            .first_key
            .map_or(Duration::ZERO, |first| at.saturating_duration_since(first));
        took < self.min_gap.saturating_mul(keys)
    }

    /// Judges the input: its pace first, then its text.
    fn judge(&mut self, at: Instant) -> Step {
        if self.too_fast(at) {
            self.input.clear();
            self.first_key = None;
            self.decoder.reset();
            self.draining = true;
            return Step::TooFast;
        }
        let input = std::mem::take(&mut self.input);
        self.first_key = None;
        if input == self.chunk {
            return Step::Typed(input.into_iter().collect());
        }
        let at = input
            .iter()
            .zip(&self.chunk)
            .position(|(a, b)| a != b)
            .unwrap_or(input.len().min(self.chunk.len()));
        Step::Mismatch {
            at,
            typed: input.into_iter().collect(),
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

    /// Feeds `text` in pieces of `piece` bytes, each piece at once, `pause` apart.
    fn feed_pieces(typist: &mut Typist, now: &mut Instant, text: &[u8], piece: usize, pause: Duration) -> Vec<Step> {
        let mut steps = Vec::new();
        for bytes in text.chunks(piece) {
            *now += pause;
            steps.extend(feed(typist, now, bytes, Duration::from_micros(20)));
        }
        steps
    }

    /// A person at 150 words a minute: 80 ms a key.
    const TYPING: Duration = Duration::from_millis(80);
    const PASTE: Duration = Duration::from_micros(50);

    fn part(text: &str, part: usize, parts: usize) -> Challenge {
        Challenge {
            passage: text.into(),
            chunk_chars: 40,
            part,
            parts,
            min_ms_per_char: 50,
            done: false,
        }
    }

    #[test]
    fn a_typed_part_is_handed_on_and_the_next_one_follows() {
        let mut t = Typist::new(&part("quiet ri", 1, 3));
        assert_eq!(t.part(), (1, 3));
        let mut now = Instant::now();
        let steps = feed(&mut t, &mut now, b"quiet ri", TYPING);
        assert_eq!(steps.last(), Some(&Step::Typed("quiet ri".into())));
        t.next_part(&part("ver ston", 2, 3));
        assert_eq!((t.part(), t.chunk().len()), ((2, 3), 8));
        let steps = feed(&mut t, &mut now, b"ver ston", TYPING);
        assert_eq!(
            steps[steps.len() - 2..],
            [Step::Echo('n'), Step::Typed("ver ston".into())]
        );
    }

    #[test]
    fn a_wrong_character_is_shown_and_the_part_retyped() {
        let mut t = Typist::new(&part("abcdefgh", 1, 1));
        let mut now = Instant::now();
        let steps = feed(&mut t, &mut now, b"abcxefgh", TYPING);
        assert_eq!(
            steps.last(),
            Some(&Step::Mismatch {
                at: 3,
                typed: "abcxefgh".into()
            })
        );
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
        assert_eq!(steps.last(), Some(&Step::Typed("abcdefgh".into())));
    }

    #[test]
    fn a_paste_is_discarded_and_the_rest_of_it_drained() {
        let mut t = Typist::new(&part("abcdefgh", 1, 2));
        let mut now = Instant::now();
        // The whole passage at once: the part is refused when it is complete, and
        // the other 8 bytes, still fast, are thrown away.
        let steps = feed(&mut t, &mut now, b"abcdefghijklmnop", PASTE);
        assert_eq!(steps.last(), Some(&Step::TooFast), "{steps:?}");
        assert_eq!(steps.iter().filter(|s| **s == Step::TooFast).count(), 1, "{steps:?}");
        // Typed after a pause, it counts.
        let steps = feed(&mut t, &mut now, b"abcdefgh", TYPING);
        assert_eq!(steps.last(), Some(&Step::Typed("abcdefgh".into())));
    }

    #[test]
    fn small_pieces_a_little_apart_are_judged_by_the_pace_of_the_whole_part() {
        // 7 bytes at once, 6 ms apart: no run of 8 fast bytes, but 40 characters
        // in ~36 ms, where a typist takes seconds.
        let text = "river quiet morning window garden patien";
        let mut t = Typist::new(&part(text, 1, 5));
        let mut now = Instant::now();
        let steps = feed_pieces(&mut t, &mut now, text.as_bytes(), 7, Duration::from_millis(6));
        assert_eq!(steps.last(), Some(&Step::TooFast), "{steps:?}");
        assert!(!steps.iter().any(|s| matches!(s, Step::Typed(_))));
        // Even a little slower than that, as long as the part as a whole comes
        // faster than 50 ms a character.
        let steps = feed_pieces(&mut t, &mut now, text.as_bytes(), 2, Duration::from_millis(90));
        assert_eq!(steps.last(), Some(&Step::TooFast), "{steps:?}");
        // Key rollover (a few keys at once) in a person's overall pace is fine.
        let steps = feed_pieces(&mut t, &mut now, text.as_bytes(), 3, Duration::from_millis(200));
        assert_eq!(steps.last(), Some(&Step::Typed(text.into())), "{steps:?}");
    }

    #[test]
    fn the_pace_limit_is_the_daemons() {
        let mut t = Typist::new(&part("abcdefghij", 1, 1));
        let mut now = Instant::now();
        // 9 gaps of 49 ms: just faster than 50 ms a character.
        let steps = feed(&mut t, &mut now, b"abcdefghij", Duration::from_millis(49));
        assert_eq!(steps.last(), Some(&Step::TooFast));
        now += Duration::from_secs(1);
        let steps = feed(&mut t, &mut now, b"abcdefghij", Duration::from_millis(51));
        assert_eq!(steps.last(), Some(&Step::Typed("abcdefghij".into())));
    }

    #[test]
    fn a_short_last_part_pasted_whole_is_refused() {
        let mut t = Typist::new(&part("12345", 2, 2));
        let mut now = Instant::now();
        let steps = feed(&mut t, &mut now, b"12345", PASTE);
        assert_eq!(steps.last(), Some(&Step::TooFast));
        now += Duration::from_secs(1);
        let steps = feed(&mut t, &mut now, b"12345", TYPING);
        assert_eq!(steps.last(), Some(&Step::Typed("12345".into())));
    }

    #[test]
    fn ctrl_c_and_ctrl_d_cancel_and_arrow_keys_are_ignored() {
        let mut t = Typist::new(&part("abcdefgh", 1, 1));
        let mut now = Instant::now();
        let steps = feed(&mut t, &mut now, b"ab\x1b[Dc", TYPING);
        assert_eq!(steps, [Step::Echo('a'), Step::Echo('b'), Step::Echo('c')]);
        assert_eq!(feed(&mut t, &mut now, b"\x03", TYPING), [Step::Cancel]);
        assert_eq!(feed(&mut t, &mut now, b"\x04", TYPING), [Step::Cancel]);
    }

    #[test]
    fn utf8_is_assembled() {
        let mut t = Typist::new(&part("ñandú", 1, 1));
        let mut now = Instant::now();
        let steps = feed(&mut t, &mut now, "ñandú".as_bytes(), TYPING);
        assert_eq!(steps.last(), Some(&Step::Typed("ñandú".into())));
    }
}
