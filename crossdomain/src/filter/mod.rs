//! Content filters: every payload that crosses is validated and rebuilt by a filter that
//! understands its kind, on both sides of the link (DESIGN §6).
//!
//! A [`Filter`] takes the bytes that arrived and either refuses them with a reason a person can
//! act on ([`Refusal`]) or returns a rebuilt copy ([`Filtered`]): bytes made again from an
//! allow-list of what the format may hold, never the bytes that arrived with a deny-list applied.
//! The sending side spools the rebuilt copy; the receiving side runs its own filter again and
//! delivers only when that run reproduces the signed bytes, so a filter's rebuild must be
//! deterministic and idempotent (its output passes it again unchanged).
//!
//! Each filter reports every sanitize step the flow asks ([`Step`]): done, not applicable (there
//! is no metadata in plain text to strip) or unsupported; [`Filters::run`] refuses when any
//! asked step is unsupported, and when no filter is registered for the kind: a format no filter
//! can rebuild is refused, never passed through.
//!
//! Filters are pure functions of bytes and limits. The binary registers them ([`Filters`]),
//! including other crates' validators (the audit log's `audit-batch`, the IdP's
//! `directory-update`), which this crate knows only through the trait.

mod image;
mod json;
mod marking;
mod mp4;
mod ofd;
mod pdf;
mod receipt;
mod scan;
mod sniff;
mod text;
mod unchanged;

pub use self::image::{ImageLimits, JpegFilter, PngFilter};
pub use json::{JsonFilter, SchemaError};
pub use marking::{marking_check, normalize_marking};
pub use mp4::{Mp4Filter, Mp4Limits};
pub use ofd::{OfdFilter, OfdLimits};
pub use pdf::{PdfFilter, PdfLimits};
pub use receipt::ReceiptFilter;
#[cfg(feature = "daemon")]
pub use scan::Clamd;
pub use scan::{Scanner, Verdict};
pub use sniff::sniff;
pub use text::TextFilter;
pub use unchanged::{STREAM_PIECE, Unchanged, UnchangedCheck};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// How far a filter got with one sanitize step of the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// The step was carried out.
    Done,
    /// The step has nothing to do on this kind (no metadata in plain text).
    NotApplicable,
    /// The filter cannot carry out the step on this kind: the transfer is refused.
    Unsupported,
}

impl StepState {
    /// The state's name in audit records and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Done => "done",
            StepState::NotApplicable => "not-applicable",
            StepState::Unsupported => "unsupported",
        }
    }
}

/// One sanitize step (`validate`, `rebuild`, `strip-metadata`, `scan`, `transcode`, `flatten`)
/// and how far the filter got with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The step's name, as the policy's `sanitize` line spells it.
    pub name: String,
    /// What the filter did.
    pub state: StepState,
}

impl Step {
    /// A step in `state`.
    pub fn new(name: impl Into<String>, state: StepState) -> Self {
        Self {
            name: name.into(),
            state,
        }
    }
}

/// Why a filter refused a payload: what is wrong, said so that the submitter can fix it
/// ("PDF holds JavaScript in object 12; remove the script and export again").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{filter} filter refused it: {reason}")]
pub struct Refusal {
    /// The filter that refused (its kind), or `filters` when none could run.
    pub filter: String,
    /// What is wrong with the payload.
    pub reason: String,
}

impl Refusal {
    /// A refusal by the filter of `filter`.
    pub fn new(filter: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            filter: filter.into(),
            reason: reason.into(),
        }
    }
}

/// The memory a filter needs at most, so `policy check` can warn when a flow's `max-size`
/// exceeds what a filter of its kind holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryBound {
    /// The filter streams: a fixed number of bytes whatever the input's size.
    Streaming(u64),
    /// The filter holds the whole input: at most this many times its length.
    Proportional(u32),
    /// The filter holds the input and what it makes of it, `per_byte` times its length, and
    /// besides them at most `plus` bytes whatever the input's size (decoded pixels,
    /// uncompressed parts: bounded by limits of their own).
    Linear {
        /// Bytes held per byte of input.
        per_byte: u32,
        /// Bytes held besides, at most.
        plus: u64,
    },
}

impl MemoryBound {
    /// The most bytes the filter holds to check and rebuild a payload of `size` bytes.
    pub fn for_size(self, size: u64) -> u64 {
        match self {
            Self::Streaming(n) => n,
            Self::Proportional(k) => size.saturating_mul(u64::from(k)),
            Self::Linear { per_byte, plus } => size
                .saturating_mul(u64::from(per_byte))
                .saturating_add(plus),
        }
    }
}

/// What the flow asks of a filter run.
#[derive(Debug, Clone, Copy)]
pub struct FilterInput<'a> {
    /// The payload's kind (`pdf`, `json`, `text`, ...), as the manifest declares it.
    pub kind: &'a str,
    /// For `json`, the schema the payload must follow.
    pub schema: Option<&'a str>,
    /// The sanitize steps the flow asks, in its order.
    pub steps: &'a [&'a str],
    /// The flow's `max-size`: no output may be longer.
    pub max_size: u64,
    /// Whether the flow is a release (to lower confidentiality): the filter must extract the
    /// text a marking check reads, and refuse content whose text it cannot decode.
    pub release: bool,
}

/// What a filter made of a payload it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    /// The rebuilt payload: what is spooled and delivered.
    pub bytes: Vec<u8>,
    /// Every step the flow asked, with how far the filter got (`validate` and `rebuild` are
    /// reported too, even when the flow does not name them).
    pub steps: Vec<Step>,
    /// The text the content carries (document text, JSON strings, file names), for the marking
    /// check; empty when the kind carries none.
    pub text: Vec<String>,
}

/// A content filter for one kind.
pub trait Filter: Send + Sync + fmt::Debug {
    /// The kind it filters, as the policy spells it (`pdf`, `json`, `receipt`...).
    fn kind(&self) -> &str;

    /// The most memory a run holds.
    fn memory(&self) -> MemoryBound;

    /// Validates and rebuilds `bytes`, or refuses them.
    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal>;

    /// A check over the bytes in pieces that they pass [`run`](Self::run) unchanged, for a
    /// filter that can tell in bounded memory ([`UnchangedCheck`]); `None`, the default, when
    /// it needs the whole input.
    fn unchanged(&self, input: &FilterInput<'_>) -> Option<Box<dyn UnchangedCheck>> {
        let _ = input;
        None
    }
}

/// The filters a node runs, by kind, and the virus scanner of the `scan` step.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    by_kind: BTreeMap<String, Arc<dyn Filter>>,
    scanner: Option<Arc<dyn Scanner>>,
}

impl Filters {
    /// No filters: every kind is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `filter` for its kind, replacing one registered before for the same kind.
    pub fn register(&mut self, filter: Arc<dyn Filter>) -> &mut Self {
        self.by_kind.insert(filter.kind().to_owned(), filter);
        self
    }

    /// The filter for `kind`, if one is registered.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Filter>> {
        self.by_kind.get(kind)
    }

    /// The most bytes the filter of `kind` holds to check and rebuild a payload of `size`
    /// bytes ([`MemoryBound::for_size`]); `None` when no filter is registered for the kind.
    pub fn memory_for(&self, kind: &str, size: u64) -> Option<u64> {
        self.get(kind).map(|f| f.memory().for_size(size))
    }

    /// The kinds with a filter, in order.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.by_kind.keys().map(String::as_str)
    }

    /// The same filters with `scanner` doing the `scan` step ([`Scanner`]); without one, a
    /// flow asking `scan` is refused.
    pub fn with_scanner(mut self, scanner: Arc<dyn Scanner>) -> Self {
        self.scanner = Some(scanner);
        self
    }

    /// Scans the bytes that arrived and the rebuilt copy (when it differs) with the node's
    /// scanner: the `scan` step is done only when every answer was clean.
    fn scan(&self, arrived: &[u8], out: &mut Filtered) -> Result<(), Refusal> {
        let Some(scanner) = &self.scanner else {
            return Err(Refusal::new(
                "scan",
                "the flow asks `scan` and this node has no virus scanner, so it cannot cross \
                 unscanned",
            ));
        };
        let rebuilt = (out.bytes != arrived).then_some(out.bytes.as_slice());
        for bytes in std::iter::once(arrived).chain(rebuilt) {
            match scanner.scan(bytes) {
                Verdict::Clean => {}
                Verdict::Finding(name) => {
                    return Err(Refusal::new(
                        "scan",
                        format!("the virus scanner found `{name}` in it"),
                    ));
                }
                Verdict::Error(e) => {
                    return Err(Refusal::new(
                        "scan",
                        format!(
                            "the virus scan did not complete ({e}), so it cannot cross unscanned"
                        ),
                    ));
                }
            }
        }
        out.steps.retain(|s| s.name != "scan");
        out.steps.push(Step::new("scan", StepState::Done));
        Ok(())
    }

    /// Runs the filter of `input.kind` over `bytes`: refused when the bytes are of another
    /// format than the kind declared (the true-type check, [`sniff()`]), when no filter is
    /// registered for the kind, when the filter refuses, when any step the flow asks is
    /// unsupported or not reported, when the rebuilt copy is longer than the flow allows, or,
    /// on a flow asking `scan`, unless the node's scanner finds both clean.
    pub fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        sniff::check(input.kind, bytes)?;
        let Some(filter) = self.get(input.kind) else {
            return Err(Refusal::new(
                "filters",
                format!(
                    "no filter can rebuild kind `{}`, so it cannot cross",
                    input.kind
                ),
            ));
        };
        let mut out = filter.run(input, bytes)?;
        check_steps(input, &out.steps)?;
        if u64::try_from(out.bytes.len()).map_or(true, |n| n > input.max_size) {
            return Err(Refusal::new(
                input.kind,
                format!(
                    "the rebuilt copy is {} bytes, over the flow's max-size of {}",
                    out.bytes.len(),
                    input.max_size
                ),
            ));
        }
        if input.steps.contains(&"scan") {
            self.scan(bytes, &mut out)?;
        }
        Ok(out)
    }
}

/// Refuses unless every step the flow asks but `scan` (the node's scanner does that one) is
/// among `steps` and supported.
fn check_steps(input: &FilterInput<'_>, steps: &[Step]) -> Result<(), Refusal> {
    for asked in input.steps.iter().filter(|s| **s != "scan") {
        match steps.iter().find(|s| s.name == *asked) {
            Some(s) if s.state != StepState::Unsupported => {}
            Some(_) => {
                return Err(Refusal::new(
                    input.kind,
                    format!("the flow asks `{asked}`, which this filter cannot do"),
                ));
            }
            None => {
                return Err(Refusal::new(
                    input.kind,
                    format!("the flow asks `{asked}`, and the filter did not report it"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Upper;

    impl Filter for Upper {
        fn kind(&self) -> &str {
            "upper"
        }
        fn memory(&self) -> MemoryBound {
            MemoryBound::Proportional(1)
        }
        fn run(&self, _: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
            if bytes.is_empty() {
                return Err(Refusal::new("upper", "empty"));
            }
            Ok(Filtered {
                bytes: bytes.to_ascii_uppercase(),
                steps: vec![
                    Step::new("validate", StepState::Done),
                    Step::new("rebuild", StepState::Done),
                    Step::new("strip-metadata", StepState::NotApplicable),
                    Step::new("scan", StepState::Unsupported),
                ],
                text: Vec::new(),
            })
        }
    }

    fn input<'a>(kind: &'a str, steps: &'a [&'a str]) -> FilterInput<'a> {
        FilterInput {
            kind,
            schema: None,
            steps,
            max_size: 8,
            release: false,
        }
    }

    #[test]
    fn runs_the_kinds_filter_and_checks_its_steps() {
        let mut filters = Filters::new();
        filters.register(Arc::new(Upper));
        let ok = filters.run(&input("upper", &["validate", "strip-metadata"]), b"abc");
        assert_eq!(ok.map(|f| f.bytes), Ok(b"ABC".to_vec()));

        let unknown = filters.run(&input("pdf", &[]), b"abc");
        assert!(unknown.is_err_and(|r| r.filter == "filters"));

        let unsupported = filters.run(&input("upper", &["scan"]), b"abc");
        assert!(unsupported.is_err_and(|r| r.reason.contains("`scan`")));

        let unreported = filters.run(&input("upper", &["flatten"]), b"abc");
        assert!(unreported.is_err_and(|r| r.reason.contains("did not report")));

        let long = filters.run(&input("upper", &[]), b"abcdefghij");
        assert!(long.is_err_and(|r| r.reason.contains("max-size")));

        assert!(filters.run(&input("upper", &[]), b"").is_err());
    }

    #[test]
    fn the_declared_kind_must_be_what_the_bytes_are() {
        let mut filters = Filters::new();
        filters.register(Arc::new(Upper));
        let jpeg = filters.run(&input("upper", &[]), b"\xff\xd8\xff\xe0");
        assert!(jpeg.is_err_and(|r| r.reason == "the bytes are a JPEG image, declared as upper"));
        // checked before the kind's filter is looked for
        let pdf = filters.run(&input("pdf", &[]), b"\x89PNG\r\n\x1a\n");
        assert!(pdf.is_err_and(|r| r.reason.contains("a PNG image, declared as pdf")));
    }

    /// Says `verdict` of everything, and counts what it was asked.
    #[derive(Debug)]
    struct Says(Verdict, std::sync::atomic::AtomicUsize);

    impl Scanner for Says {
        fn scan(&self, _: &[u8]) -> Verdict {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.clone()
        }
    }

    fn scanning(verdict: Verdict) -> (Filters, Arc<Says>) {
        let says = Arc::new(Says(verdict, 0.into()));
        let mut filters = Filters::new();
        filters.register(Arc::new(Upper));
        (
            filters.with_scanner(Arc::clone(&says) as Arc<dyn Scanner>),
            says,
        )
    }

    #[test]
    fn scan_is_done_only_when_the_scanner_says_clean() {
        let (clean, says) = scanning(Verdict::Clean);
        let out = clean.run(&input("upper", &["validate", "scan"]), b"abc");
        let steps = out.map(|o| o.steps);
        assert!(
            steps.is_ok_and(|s| s.contains(&Step::new("scan", StepState::Done))
                && !s.contains(&Step::new("scan", StepState::Unsupported)))
        );
        // the bytes that came and the rebuilt copy, which differs
        assert_eq!(says.1.load(std::sync::atomic::Ordering::Relaxed), 2);
        // not asked: not scanned
        assert!(clean.run(&input("upper", &["validate"]), b"ABC").is_ok());
        assert_eq!(says.1.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert!(clean.run(&input("upper", &["scan"]), b"ABC").is_ok());
        assert_eq!(says.1.load(std::sync::atomic::Ordering::Relaxed), 3);

        let (found, _) = scanning(Verdict::Finding("Eicar-Signature".into()));
        let r = found.run(&input("upper", &["scan"]), b"abc");
        assert!(r.is_err_and(|r| r.filter == "scan" && r.reason.contains("`Eicar-Signature`")));

        let (broken, _) = scanning(Verdict::Error("no clamd answers".into()));
        let r = broken.run(&input("upper", &["scan"]), b"abc");
        assert!(r.is_err_and(|r| r.reason.contains("no clamd answers")));

        // no scanner: refused, whatever the filter said of the step
        let mut none = Filters::new();
        none.register(Arc::new(Upper));
        let r = none.run(&input("upper", &["scan"]), b"abc");
        assert!(r.is_err_and(|r| r.reason.contains("no virus scanner")));
    }
}
