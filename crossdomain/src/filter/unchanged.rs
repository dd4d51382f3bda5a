//! Streaming checks that a payload is its filter's own rebuild, for payloads too large to hold.
//!
//! The receiving side delivers only bytes its own filter run reproduces. For most kinds that
//! run holds the payload ([`MemoryBound::Proportional`](super::MemoryBound)); a filter whose
//! rebuild is the identity on bytes already in its rebuilt form, and that can tell so in
//! bounded memory, offers an [`UnchangedCheck`] instead ([`Filter::unchanged`]), which reads the
//! payload in pieces. [`Filters::check_unchanged`] runs it with the same true-type and step
//! checks as [`Filters::run`], so a 1 GiB text crosses in megabytes of memory. A release is
//! never checked this way: its marking check reads the whole text.

use std::io::Read;

use super::{Filter, FilterInput, Filters, Refusal, Step, sniff};

/// The piece the payload is read in (and the prefix the true-type check sees).
pub const STREAM_PIECE: usize = 1 << 20;

/// A check over a payload fed in pieces that it passes its filter unchanged.
pub trait UnchangedCheck: Send {
    /// Takes the next piece; refuses as soon as the bytes so far cannot be a rebuilt copy.
    fn update(&mut self, piece: &[u8]) -> Result<(), Refusal>;

    /// Ends the payload: the steps the flow asked and how far the check got with each.
    fn finish(self: Box<Self>) -> Result<Vec<Step>, Refusal>;
}

/// How a streaming check ended.
#[derive(Debug)]
pub enum Unchanged {
    /// The payload is its filter's rebuild; the steps as its filter reported them.
    Passed(Vec<Step>),
    /// The filter refused it, or it is not in its rebuilt form.
    Refused(Refusal),
    /// Reading the payload failed: nothing was decided.
    Io(std::io::Error),
}

impl Filters {
    /// Checks the payload `reader` gives, in pieces, against the filter of `input.kind`, when
    /// that filter can check while streaming and the flow is not a release; `None` otherwise
    /// (the caller runs [`Filters::run`] over the whole payload).
    pub fn check_unchanged(
        &self,
        input: &FilterInput<'_>,
        reader: &mut dyn Read,
    ) -> Option<Unchanged> {
        if input.release || input.steps.contains(&"scan") {
            return None;
        }
        let filter: &dyn Filter = self.get(input.kind)?.as_ref();
        let mut check = filter.unchanged(input)?;
        let mut buf = vec![0u8; STREAM_PIECE];
        let mut first = true;
        loop {
            let n = match read_full(reader, &mut buf) {
                Ok(n) => n,
                Err(e) => return Some(Unchanged::Io(e)),
            };
            let piece = buf.get(..n).unwrap_or_default();
            if first {
                first = false;
                if let Err(r) = sniff::check(input.kind, piece) {
                    return Some(Unchanged::Refused(r));
                }
            }
            if n == 0 {
                break;
            }
            if let Err(r) = check.update(piece) {
                return Some(Unchanged::Refused(r));
            }
        }
        Some(
            match check
                .finish()
                .and_then(|s| super::check_steps(input, &s).map(|()| s))
            {
                Ok(steps) => Unchanged::Passed(steps),
                Err(r) => Unchanged::Refused(r),
            },
        )
    }
}

/// Fills `buf` as far as the reader goes: the bytes read (fewer only at the end).
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..) {
        if rest.is_empty() {
            break;
        }
        match reader.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::TextFilter;

    fn input(release: bool) -> FilterInput<'static> {
        FilterInput {
            kind: "text",
            schema: None,
            steps: &["validate", "rebuild"],
            max_size: 1 << 30,
            release,
        }
    }

    fn filters() -> Filters {
        let mut f = Filters::new();
        f.register(Arc::new(TextFilter::new()));
        f
    }

    fn check(bytes: &[u8]) -> Unchanged {
        filters()
            .check_unchanged(&input(false), &mut &bytes[..])
            .unwrap_or(Unchanged::Io(std::io::Error::other("no streaming check")))
    }

    #[test]
    fn text_in_its_rebuilt_form_passes_in_pieces_and_agrees_with_the_whole_run() {
        // several pieces, a three-byte character across every piece boundary
        let line = "天平 court order, line\n";
        let text = line.repeat(3 * STREAM_PIECE / line.len() + 7);
        assert!(matches!(check(text.as_bytes()), Unchanged::Passed(_)));
        let whole = filters().run(&input(false), text.as_bytes());
        assert!(whole.is_ok_and(|f| f.bytes == text.as_bytes()));
    }

    #[test]
    fn what_the_whole_run_would_change_or_refuse_is_refused() {
        let mut long = vec![b'a'; 2 * STREAM_PIECE];
        long.push(b'\n');
        for (bytes, why) in [
            (&b"one\r\ntwo\n"[..], "carriage return"),
            (b"\xef\xbb\xbfone\n", "byte-order mark"),
            (b"esc \x1b[31m\n", "escape character"),
            (b"cut \xe5\xa4", "not UTF-8"),
            (b"bad \xff here\n", "not UTF-8"),
            (&long, "longer than"),
            (b"PK\x03\x04zip\n", "declared as text"),
        ] {
            match check(bytes) {
                Unchanged::Refused(r) => assert!(r.to_string().contains(why), "{why}: {r}"),
                other => panic!("{why}: {other:?}"),
            }
            assert!(
                filters()
                    .run(&input(false), bytes)
                    .is_ok_and(|f| f.bytes == bytes)
                    .eq(&false),
                "{why}: the whole run must not pass it unchanged either"
            );
        }
    }

    #[test]
    fn a_release_is_not_checked_while_streaming() {
        assert!(
            filters()
                .check_unchanged(&input(true), &mut &b"text\n"[..])
                .is_none()
        );
    }
}
