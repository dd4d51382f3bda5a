//! Errors and warnings with the place in the policy text they point at, rendered by `miette`.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, SourceCode};

use crate::snippet::{self, Snippet};

/// A byte range of the policy text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Span {
    /// The range of `len` bytes from `offset`.
    pub const fn new(offset: usize, len: usize) -> Self {
        Self { offset, len }
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The policy still checks; something is probably not what its author meant.
    Warning,
    /// The policy is refused.
    Error,
}

/// One error or warning found in a policy, with where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in one lowercase sentence.
    pub message: String,
    /// The offending text.
    pub span: Span,
    /// The label printed under the offending text.
    pub label: String,
    /// A hint or a counterexample, when one helps.
    pub help: Option<String>,
    /// Another place the problem concerns (the first of two statements), with its label
    /// (boxed: most problems have none, and the parser returns problems by value).
    pub related: Option<Box<(Span, String)>>,
    /// 1-based line of the span's start (filled in by [`crate::check`]).
    pub line: usize,
    /// 1-based column (in characters) of the span's start.
    pub column: usize,
}

impl Problem {
    pub(crate) fn error(message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            span,
            label: label.into(),
            help: None,
            related: None,
            line: 0,
            column: 0,
        }
    }

    pub(crate) fn warning(
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(message, span, label)
        }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn with_related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related = Some(Box::new((span, label.into())));
        self
    }

    /// Fills in line and column from the text's line index.
    pub(crate) fn locate(&mut self, lines: &Lines<'_>) {
        (self.line, self.column) = lines.line_col(self.span.offset);
    }
}

/// Where each line of a text starts, so that locating a problem costs a search, not a scan of
/// the text before it.
pub(crate) struct Lines<'s> {
    text: &'s str,
    starts: Vec<usize>,
}

impl<'s> Lines<'s> {
    pub(crate) fn new(text: &'s str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    pub(crate) fn text(&self) -> &'s str {
        self.text
    }

    /// 1-based line and column (in characters) of byte `offset`, clamped to the text.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |t| t.chars().count());
        (line, column + 1)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A problem together with the named source it points into, as a `miette` diagnostic.
#[derive(Debug)]
pub struct SourceProblem {
    problem: Problem,
    /// The lines the problem points into, cut from the file.
    source: Snippet,
}

impl SourceProblem {
    /// The problem and the file it points into.
    pub fn new(problem: Problem, file: &str, source: Arc<str>) -> Self {
        let spans: Vec<Span> = std::iter::once(problem.span)
            .chain(problem.related.as_deref().map(|r| r.0))
            .collect();
        let source = Snippet::new(file, &source, &spans, problem.line);
        Self { problem, source }
    }

    /// The problem itself.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// The diagnostic drawn as text, the offending text underlined (no colours).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_context_lines(snippet::CONTEXT);
        if handler.render_report(&mut out, self).is_err() {
            out = format!(
                "{}: {} at line {}, column {}\n",
                self.problem.severity_word(),
                self.problem.message,
                self.problem.line,
                self.problem.column
            );
        }
        out
    }
}

impl Problem {
    fn severity_word(&self) -> &'static str {
        match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for SourceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem.message)
    }
}

impl std::error::Error for SourceProblem {}

impl Diagnostic for SourceProblem {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.problem.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.problem
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(
            Some(self.problem.label.clone()),
            self.source.span(self.problem.span),
        );
        let related = self.problem.related.as_deref().map(|(s, label)| {
            LabeledSpan::new_with_span(Some(label.clone()), self.source.span(*s))
        });
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}
