//! `text`: plain UTF-8 text, rebuilt character by character from an allow-list.
//!
//! What crosses: UTF-8 (a leading byte-order mark dropped), line ends made `\n` (`\r\n` and a
//! lone `\r` alike), and no character that steers a terminal or a renderer rather than being
//! read: no C0 control but tab and line feed, no DEL, no C1 control (so no ANSI escape
//! sequence, whose `ESC` or `CSI` is one of them), no bidirectional embedding, override or
//! isolate (U+202A–U+202E, U+2066–U+2069: the "Trojan Source" reordering), and no byte-order
//! mark past the start. Limits: the flow's `max-size` for the whole text, and
//! [`TextFilter::MAX_LINE`] bytes for one line (a longer "line" is data, not text). The rebuilt
//! text passes the filter again unchanged.

use super::{Filter, FilterInput, Filtered, MemoryBound, Refusal, Step, StepState};

/// The `text` filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextFilter;

impl TextFilter {
    /// The longest line, in bytes, that crosses.
    pub const MAX_LINE: usize = 1 << 20;

    /// A `text` filter.
    pub fn new() -> Self {
        Self
    }
}

/// Why `c` may not be part of text that crosses, or `None` when it may. Tab, line feed and
/// carriage return are the caller's to handle.
pub(super) fn refused_char(c: char) -> Option<&'static str> {
    match c {
        '\u{1b}' => Some("an escape character (the start of an ANSI escape sequence)"),
        '\u{9b}' => Some("a C1 control sequence introducer (an ANSI escape sequence)"),
        '\u{0}'..='\u{1f}' => Some("a control character"),
        '\u{7f}' => Some("a delete character"),
        '\u{80}'..='\u{9f}' => Some("a C1 control character"),
        '\u{202a}'..='\u{202e}' => Some("a bidirectional embedding or override character"),
        '\u{2066}'..='\u{2069}' => Some("a bidirectional isolate character"),
        '\u{feff}' => Some("a byte-order mark inside the text"),
        _ => None,
    }
}

/// Where `at` (a byte offset) stands, as `line L, column C` (1-based, columns in characters).
pub(super) fn position(text: &str, at: usize) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

/// The steps `input` asks, with `validate` and `rebuild` done and `strip-metadata` in state
/// `strip`; the rest (`scan`, `transcode`, `flatten`) are not this filter's to do.
pub(super) fn steps(input: &FilterInput<'_>, strip: StepState) -> Vec<Step> {
    let mut out = vec![
        Step::new("validate", StepState::Done),
        Step::new("rebuild", StepState::Done),
    ];
    for asked in input.steps {
        if out.iter().any(|s| s.name == *asked) {
            continue;
        }
        let state = match *asked {
            "strip-metadata" => strip,
            "transcode" | "flatten" => StepState::NotApplicable,
            _ => StepState::Unsupported,
        };
        out.push(Step::new(*asked, state));
    }
    out
}

/// The input's size against the flow's `max-size`, before any work.
pub(super) fn check_size(kind: &str, input: &FilterInput<'_>, bytes: &[u8]) -> Result<(), Refusal> {
    if u64::try_from(bytes.len()).map_or(true, |n| n > input.max_size) {
        return Err(Refusal::new(
            kind,
            format!(
                "it is {} bytes, over the flow's max-size of {}",
                bytes.len(),
                input.max_size
            ),
        ));
    }
    Ok(())
}

/// Validates and rebuilds plain text: the rebuilt text, or why it cannot cross.
fn rebuild(bytes: &[u8]) -> Result<String, Refusal> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let good = bytes.get(..e.valid_up_to()).unwrap_or_default();
        let at = std::str::from_utf8(good)
            .map(|g| position(g, g.len()))
            .unwrap_or_default();
        Refusal::new(
            "text",
            format!(
                "it is not UTF-8: byte {} ({at}) starts an invalid sequence; save it as UTF-8",
                e.valid_up_to()
            ),
        )
    })?;
    let mut out = String::with_capacity(text.len());
    let mut line = 0usize;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '\n' | '\r' => {
                if c == '\r' && chars.peek().is_some_and(|(_, n)| *n == '\n') {
                    chars.next();
                }
                out.push('\n');
                line = 0;
                continue;
            }
            '\t' => {}
            c => {
                if let Some(why) = refused_char(c) {
                    return Err(Refusal::new(
                        "text",
                        format!(
                            "it holds {why} (U+{:04X}) at {}; remove it",
                            u32::from(c),
                            position(text, at)
                        ),
                    ));
                }
            }
        }
        line += c.len_utf8();
        if line > TextFilter::MAX_LINE {
            return Err(Refusal::new(
                "text",
                format!(
                    "its line at {} is longer than {} bytes: that is data, not text",
                    position(text, at),
                    TextFilter::MAX_LINE
                ),
            ));
        }
        out.push(c);
    }
    Ok(out)
}

/// The streaming form of the text filter's fixed point: UTF-8 with no byte-order mark, no
/// carriage return, no refused character and no line over [`TextFilter::MAX_LINE`], within the
/// flow's `max-size` — exactly the bytes [`rebuild`] gives back unchanged.
#[derive(Debug)]
struct TextUnchanged {
    /// Bytes taken so far.
    seen: u64,
    /// The flow's `max-size`.
    max: u64,
    /// The length of the line so far.
    line: usize,
    /// The start of a character cut by the end of the last piece (at most 3 bytes).
    carry: Vec<u8>,
    /// What the steps came to.
    steps: Vec<Step>,
}

impl TextUnchanged {
    fn refuse(&self, at: u64, why: &str) -> Refusal {
        Refusal::new(
            "text",
            format!("{why} at byte {at}, so it is not text as the sending zone rebuilt it"),
        )
    }
}

impl super::UnchangedCheck for TextUnchanged {
    fn update(&mut self, piece: &[u8]) -> Result<(), Refusal> {
        let start = self.seen - self.carry.len() as u64;
        self.seen += piece.len() as u64;
        if self.seen > self.max {
            return Err(Refusal::new(
                "text",
                format!("it is over the flow's max-size of {}", self.max),
            ));
        }
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(piece);
        if start == 0 && bytes.starts_with(b"\xef\xbb\xbf") {
            return Err(self.refuse(0, "a byte-order mark"));
        }
        let (text, rest) = match std::str::from_utf8(&bytes) {
            Ok(t) => (t, &b""[..]),
            Err(e) if e.error_len().is_none() => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                (std::str::from_utf8(good).unwrap_or_default(), rest)
            }
            Err(e) => {
                return Err(Refusal::new(
                    "text",
                    format!(
                        "it is not UTF-8: byte {} starts an invalid sequence; save it as UTF-8",
                        start + e.valid_up_to() as u64
                    ),
                ));
            }
        };
        for (at, c) in text.char_indices() {
            let at = start + at as u64;
            match c {
                '\n' => {
                    self.line = 0;
                    continue;
                }
                '\r' => return Err(self.refuse(at, "a carriage return")),
                '\t' => {}
                c => {
                    if let Some(why) = refused_char(c) {
                        return Err(Refusal::new(
                            "text",
                            format!(
                                "it holds {why} (U+{:04X}) at byte {at}; remove it",
                                u32::from(c)
                            ),
                        ));
                    }
                }
            }
            self.line += c.len_utf8();
            if self.line > TextFilter::MAX_LINE {
                return Err(Refusal::new(
                    "text",
                    format!(
                        "its line at byte {at} is longer than {} bytes: that is data, not text",
                        TextFilter::MAX_LINE
                    ),
                ));
            }
        }
        self.carry = rest.to_vec();
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Vec<Step>, Refusal> {
        if !self.carry.is_empty() {
            return Err(Refusal::new(
                "text",
                format!(
                    "it is not UTF-8: it ends inside a character at byte {}; save it as UTF-8",
                    self.seen - self.carry.len() as u64
                ),
            ));
        }
        Ok(self.steps)
    }
}

impl Filter for TextFilter {
    fn kind(&self) -> &str {
        "text"
    }

    fn memory(&self) -> MemoryBound {
        // The input and its rebuilt copy, which is never longer.
        MemoryBound::Proportional(2)
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        check_size("text", input, bytes)?;
        let text = rebuild(bytes)?;
        Ok(Filtered {
            bytes: text.clone().into_bytes(),
            steps: steps(input, StepState::NotApplicable),
            text: vec![text],
        })
    }

    fn unchanged(&self, input: &FilterInput<'_>) -> Option<Box<dyn super::UnchangedCheck>> {
        Some(Box::new(TextUnchanged {
            seen: 0,
            max: input.max_size,
            line: 0,
            carry: Vec::new(),
            steps: steps(input, StepState::NotApplicable),
        }))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn input(steps: &'static [&'static str]) -> FilterInput<'static> {
        FilterInput {
            kind: "text",
            schema: None,
            steps,
            max_size: 1 << 24,
            release: true,
        }
    }

    fn run(bytes: &[u8]) -> Result<Filtered, Refusal> {
        TextFilter.run(&input(&["validate", "strip-metadata"]), bytes)
    }

    #[test]
    fn line_ends_and_bom_are_normalized() {
        let out = run(b"\xef\xbb\xbfone\r\ntwo\rthree\n\tfour \xe5\xa7\x93").unwrap();
        assert_eq!(out.bytes, "one\ntwo\nthree\n\tfour 姓".as_bytes());
        assert_eq!(out.text, vec!["one\ntwo\nthree\n\tfour 姓".to_owned()]);
        assert!(
            out.steps
                .contains(&Step::new("strip-metadata", StepState::NotApplicable))
        );
        assert!(out.steps.contains(&Step::new("rebuild", StepState::Done)));
    }

    #[test]
    fn controls_escapes_and_bidi_are_refused() {
        for (bad, want) in [
            ("red \u{1b}[31mtext", "escape character"),
            ("csi \u{9b}31m", "C1 control sequence"),
            ("nul \u{0}", "control character"),
            ("bell \u{7}", "control character"),
            ("del \u{7f}", "delete"),
            ("c1 \u{85}", "C1 control"),
            ("abc \u{202e}cba", "override"),
            ("abc \u{2067}x\u{2069}", "isolate"),
            ("a\u{feff}b", "byte-order mark"),
        ] {
            let r = run(bad.as_bytes()).unwrap_err();
            assert!(r.reason.contains(want), "{bad:?}: {}", r.reason);
            assert!(r.reason.contains("line 1, column"), "{}", r.reason);
        }
        let r = run(b"ok\nsecond \xff line").unwrap_err();
        assert!(
            r.reason.contains("not UTF-8") && r.reason.contains("line 2"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn limits_hold() {
        let long = vec![b'a'; TextFilter::MAX_LINE + 1];
        assert!(run(&long).unwrap_err().reason.contains("longer than"));
        let mut lines = vec![b'a'; TextFilter::MAX_LINE];
        lines.push(b'\n');
        lines.extend_from_slice(b"short");
        assert!(run(&lines).is_ok());
        let mut small = input(&[]);
        small.max_size = 3;
        assert!(
            TextFilter
                .run(&small, b"four")
                .unwrap_err()
                .reason
                .contains("max-size")
        );
        let scan = TextFilter.run(&input(&["scan"]), b"x").unwrap();
        assert!(
            scan.steps
                .contains(&Step::new("scan", StepState::Unsupported))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(16),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever the filter accepts, its output passes it again unchanged.
        #[test]
        fn rebuild_is_idempotent(bytes in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'\t'), Just(0xe5), Just(0xa7), Just(0x93),
                        Just(0xef), Just(0xbb), Just(0xbf), 0x20u8..0x7f, any::<u8>()], 0..200)) {
            if let Ok(once) = run(&bytes) {
                let twice = run(&once.bytes).unwrap();
                prop_assert_eq!(&once.bytes, &twice.bytes);
                prop_assert!(!once.bytes.contains(&b'\r'));
            }
        }
    }
}
