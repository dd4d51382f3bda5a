//! The lines a diagnostic shows, cut out of the policy text for `miette` to draw: only the
//! lines around what it points at, a line too long to draw (miette's layout fails past
//! column 65535) clipped around the spans on it, and lines and columns as the parser counts
//! them (a lone CR is a space, a column counts characters).

use std::sync::Arc;

use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

use crate::diag::Span;

/// A line longer than this (in bytes) is clipped.
const LONG_LINE: usize = 1000;
/// Bytes kept on each side of a span on a clipped line.
const PAD: usize = 60;
/// The most of one span shown on a clipped line, in bytes.
const SPAN_SHOWN: usize = 400;
/// Lines shown before and after a span (miette's context).
pub(crate) const CONTEXT: usize = 1;
/// What stands where a clipped line lost text.
const CUT: &str = "…";

/// A stretch of the text kept as it is: `len` bytes from `orig` in the policy text, from
/// `view` in the region's text.
#[derive(Debug, Clone, Copy)]
struct Kept {
    orig: usize,
    view: usize,
    len: usize,
}

/// Whole lines of the text around one or more spans, long lines clipped.
#[derive(Debug)]
struct Region {
    text: String,
    /// Where the region's text starts in the snippet's offsets (regions follow each other).
    start: usize,
    /// 1-based line of the region's first line in the policy text.
    first_line: usize,
    kept: Vec<Kept>,
}

impl Region {
    /// The region's offset of text offset `o` (the next kept byte when `o` was cut).
    fn view_start(&self, o: usize) -> usize {
        self.kept
            .iter()
            .find(|k| o < k.orig + k.len)
            .map_or(self.text.len(), |k| k.view + o.saturating_sub(k.orig))
    }

    /// The text offset of region offset `v` (the next kept byte's when `v` is in a cut).
    fn orig(&self, v: usize) -> Option<usize> {
        self.kept
            .iter()
            .find(|k| v < k.view + k.len)
            .map(|k| k.orig + v.saturating_sub(k.view))
    }

    /// The region's offset of an end at text offset `o` (the last kept byte when `o` was cut).
    fn view_end(&self, o: usize) -> usize {
        self.kept
            .iter()
            .rev()
            .find(|k| o > k.orig)
            .map_or(0, |k| k.view + (o - k.orig).min(k.len))
    }
}

/// The lines of a policy text one diagnostic shows, as a `miette` source.
#[derive(Debug)]
pub(crate) struct Snippet {
    name: String,
    text: Arc<str>,
    regions: Vec<Region>,
}

/// Offset of the start of the line holding byte `o`.
fn line_start(text: &str, o: usize) -> usize {
    text.get(..o)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1)
}

/// Offset just past the `\n` ending the line holding byte `o` (the text's end on its last line).
fn line_end(text: &str, o: usize) -> usize {
    text.get(o..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |i| o + i + 1)
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// `text` with each CR not followed by LF replaced by a space (the same length).
fn lone_cr_as_space(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(if c == '\r' && chars.peek() != Some(&'\n') {
            ' '
        } else {
            c
        });
    }
    out
}

fn count_newlines(text: &str, from: usize, to: usize) -> usize {
    text.get(from..to).map_or(0, |t| t.matches('\n').count())
}

impl Snippet {
    /// The lines around `spans` of `text`, whose first span starts on 1-based `line` (0 when
    /// not known).
    pub(crate) fn new(name: &str, source: &Arc<str>, spans: &[Span], line: usize) -> Self {
        let text: &str = source;
        let spans: Vec<Span> = spans
            .iter()
            .map(|s| {
                let offset = floor_boundary(text, s.offset);
                let end = ceil_boundary(text, s.offset.saturating_add(s.len)).max(offset);
                Span::new(offset, end - offset)
            })
            .collect();
        let anchor = spans.first().map_or(0, |s| s.offset);
        let anchor_line = if line == 0 {
            1 + count_newlines(text, 0, anchor)
        } else {
            line
        };
        let line_of = |o: usize| {
            if o >= anchor {
                anchor_line + count_newlines(text, anchor, o)
            } else {
                anchor_line.saturating_sub(count_newlines(text, o, anchor))
            }
        };

        // Whole lines around each span, CONTEXT lines either side, merged where they touch.
        let mut ranges: Vec<(usize, usize)> = spans
            .iter()
            .map(|s| {
                let mut a = line_start(text, s.offset);
                for _ in 0..CONTEXT {
                    a = line_start(text, a.saturating_sub(1));
                }
                let mut b = line_end(text, (s.offset + s.len).saturating_sub(1).max(s.offset));
                for _ in 0..CONTEXT {
                    b = line_end(text, b);
                }
                (a, b)
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }

        let mut regions = Vec::new();
        let mut start = 0;
        for (a, b) in merged {
            let region = Self::region(text, a, b, &spans, start, line_of(a));
            start += region.text.len();
            regions.push(region);
        }
        Self {
            name: name.to_owned(),
            text: source.clone(),
            regions,
        }
    }

    /// Lines `a..b` of `text`, each line over [`LONG_LINE`] clipped around `spans`.
    fn region(
        text: &str,
        a: usize,
        b: usize,
        spans: &[Span],
        start: usize,
        first_line: usize,
    ) -> Region {
        let mut out = String::new();
        let mut kept = Vec::new();
        let mut keep = |out: &mut String, from: usize, to: usize| {
            if let Some(t) = text.get(from..to) {
                kept.push(Kept {
                    orig: from,
                    view: out.len(),
                    len: to - from,
                });
                out.push_str(t);
            }
        };
        let mut ls = a;
        while ls < b {
            let next = line_end(text, ls).min(b);
            let le = if text.get(..next).is_some_and(|t| t.ends_with('\n')) {
                next - 1
            } else {
                next
            };
            if le - ls <= LONG_LINE {
                keep(&mut out, ls, next);
                ls = next;
                continue;
            }
            // The parts of the line around each span on it (its first bytes when none is).
            let mut windows: Vec<(usize, usize)> = spans
                .iter()
                .filter(|s| s.offset <= le && s.offset + s.len >= ls)
                .map(|s| {
                    let shown_end = (s.offset + s.len).min(s.offset + SPAN_SHOWN);
                    (
                        s.offset.saturating_sub(PAD).max(ls),
                        (shown_end + PAD).min(le),
                    )
                })
                .collect();
            if windows.is_empty() {
                windows.push((ls, ls + SPAN_SHOWN));
            }
            windows.sort_unstable();
            let mut at = ls;
            for (w0, w1) in windows {
                let w0 = floor_boundary(text, w0.max(at));
                let w1 = ceil_boundary(text, w1);
                if w1 <= w0 {
                    continue;
                }
                if w0 > at {
                    out.push_str(CUT);
                }
                keep(&mut out, w0, w1);
                at = w1;
            }
            if at < le {
                out.push_str(CUT);
            }
            keep(&mut out, le, next);
            ls = next;
        }
        // A lone CR is whitespace to the lexer and to `Lines`; miette would break the line there.
        let out = lone_cr_as_space(&out);
        Region {
            text: out,
            start,
            first_line,
            kept,
        }
    }

    /// Where text span `s` stands in the snippet.
    pub(crate) fn span(&self, s: Span) -> (usize, usize) {
        let Some(r) = self
            .regions
            .iter()
            .rev()
            .find(|r| r.kept.first().is_some_and(|k| k.orig <= s.offset))
        else {
            return (0, 0);
        };
        let from = r.view_start(s.offset);
        let to = if s.len == 0 {
            from
        } else {
            r.view_end(s.offset + s.len).max(from)
        };
        (r.start + from, to - from)
    }
}

impl SourceCode for Snippet {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let region = self
            .regions
            .iter()
            .find(|r| {
                r.start <= span.offset() && span.offset() + span.len() <= r.start + r.text.len()
            })
            .ok_or(MietteError::OutOfBounds)?;
        let local = SourceSpan::new((span.offset() - region.start).into(), span.len());
        let inner =
            region
                .text
                .as_str()
                .read_span(&local, context_lines_before, context_lines_after)?;
        // The column of a span's own start (the header's) counts characters of the text's line,
        // as `Problem::column` does, not bytes of the clipped line.
        let column = match region.orig(local.offset()) {
            Some(o) if context_lines_before == 0 => self
                .text
                .get(line_start(&self.text, o)..o)
                .map_or(0, |t| t.chars().count()),
            _ => inner.column(),
        };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            SourceSpan::new(
                (inner.span().offset() + region.start).into(),
                inner.span().len(),
            ),
            (inner.line() + region.first_line).saturating_sub(1),
            column,
            inner.line_count(),
        )))
    }
}
