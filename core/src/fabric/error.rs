//! Why a `fabric.toml` was refused: a `miette` diagnostic pointing at the offending text, as the
//! policy's errors are.

use std::fmt;
use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode,
    SourceSpan,
};

/// Why a `fabric.toml` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FabricError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        reason: String,
    },
    /// A syntax error, an unknown key, a bad value or an inconsistency, at a place in the file.
    #[error("{0}")]
    Invalid(Box<FabricProblem>),
}

/// What is wrong at one place of a `fabric.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricProblem {
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong, in the user's terms.
    pub message: String,
    /// The label printed under the offending text.
    pub label: String,
    /// A hint, when one helps.
    pub help: Option<String>,
    /// The offending text.
    pub span: SourceSpan,
    text: NamedSource<Arc<str>>,
}

impl fmt::Display for FabricProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The text of one `fabric.toml` and its name, from which problems are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FabricSource {
    name: String,
    text: Arc<str>,
}

impl FabricSource {
    pub(crate) fn new(name: &str, text: &str) -> Self {
        Self {
            name: name.to_owned(),
            text: Arc::from(text),
        }
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// A problem at `span` of the text.
    pub(crate) fn problem(
        &self,
        span: impl Into<SourceSpan>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) -> FabricError {
        let span: SourceSpan = span.into();
        let offset = span.offset().min(self.text.len());
        let before = self.text.get(..offset).unwrap_or_default();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        FabricError::Invalid(Box::new(FabricProblem {
            line: before.matches('\n').count() + 1,
            column: before.get(line_start..).unwrap_or_default().chars().count() + 1,
            message: message.into(),
            label: label.into(),
            help,
            span: SourceSpan::new(offset.into(), span.len().min(self.text.len() - offset)),
            text: NamedSource::new(&self.name, Arc::clone(&self.text)),
        }))
    }
}

impl FabricError {
    /// The problem at a place of the file, if this is one.
    pub fn problem(&self) -> Option<&FabricProblem> {
        match self {
            FabricError::Io { .. } => None,
            FabricError::Invalid(p) => Some(p),
        }
    }

    /// The diagnostic drawn as text, the offending text underlined (no colours).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let handler =
            GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_width(100);
        if handler.render_report(&mut out, self).is_err() {
            out = match self.problem() {
                Some(p) => format!("{} at line {}, column {}\n", p.message, p.line, p.column),
                None => format!("{self}\n"),
            };
        }
        out
    }
}

impl Diagnostic for FabricError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("tianping::fabric"))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.problem()?
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.problem().map(|p| &p.text as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let p = self.problem()?;
        Some(Box::new(std::iter::once(
            LabeledSpan::new_primary_with_span(Some(p.label.clone()), p.span),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_know_their_line_and_render_it() {
        let src = FabricSource::new("fabric.toml", "[fabric]\nname = 1\n");
        let err = src.problem(
            16..17,
            "`name` must be text",
            "a number",
            Some("quote it".into()),
        );
        let p = err.problem().unwrap();
        assert_eq!((p.line, p.column), (2, 8));
        let shown = err.render();
        for want in [
            "fabric.toml:2:8",
            "name = 1",
            "a number",
            "quote it",
            "must be text",
        ] {
            assert!(shown.contains(want), "{want} in {shown}");
        }
        // a span past the end is clamped, never a panic
        let err = src.problem(500..900, "x", "y", None);
        assert_eq!(err.problem().unwrap().line, 3);
        assert!(!err.render().is_empty());
    }
}
