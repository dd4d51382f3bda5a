//! The filters the exchange daemons run (both sides): every filter type `tianping_crossdomain`
//! exports, and the audit log's `audit-batch` decoder as a filter over `tianping_audit`.

use std::sync::Arc;

use tianping_core::{DataDir, ZoneName};
use tianping_crossdomain::{
    Filter, FilterInput, Filtered, Filters, ImageLimits, JpegFilter, JsonFilter, MemoryBound,
    Mp4Filter, OfdFilter, PdfFilter, PngFilter, ReceiptFilter, Refusal, Step, StepState,
    TextFilter,
};

/// The filters zone `zone` registers, by kind. `dir` is where zone-local filter settings will
/// be read from; today every other filter runs with its defaults.
/// The updates' validators (`policy-update`, `crl`, `trust-bundle`) check against the zone's
/// installed copies under `dir`. The `scan` step asks ClamAV's daemon at Debian's socket,
/// `/run/clamav/clamd.ctl`: no zone setting names another yet, and with no daemon there every
/// transfer whose flow asks `scan` is refused.
pub(crate) fn zone_filters(dir: &DataDir, zone: &ZoneName) -> miette::Result<Filters> {
    let mut f = Filters::new();
    f.register(Arc::new(TextFilter::new()));
    f.register(Arc::new(
        JsonFilter::with_default_schemas().map_err(|e| miette::miette!("{e}"))?,
    ));
    f.register(Arc::new(PngFilter::new(ImageLimits::default())));
    f.register(Arc::new(JpegFilter::new(ImageLimits::default())));
    f.register(Arc::new(PdfFilter::default()));
    f.register(Arc::new(OfdFilter::default()));
    f.register(Arc::new(Mp4Filter::default()));
    f.register(Arc::new(ReceiptFilter::new()));
    f.register(Arc::new(AuditBatchFilter));
    f.register(Arc::new(crate::install_filters::PolicyUpdateFilter::new(
        dir, zone,
    )));
    f.register(Arc::new(crate::install_filters::CrlFilter::new(
        dir,
        zone,
        Arc::new(tianping_core::SystemClock),
    )));
    f.register(Arc::new(crate::install_filters::TrustBundleFilter::new(
        dir, zone,
    )));
    let f = f.with_scanner(Arc::new(tianping_crossdomain::Clamd::new(
        tianping_crossdomain::Clamd::DEFAULT_SOCKET,
    )));
    Ok(f)
}

/// `audit-batch`: a shipping batch of the audit log, decoded by `tianping_audit` and encoded
/// again; only a batch that re-encodes to the bytes that came is passed, as those bytes.
#[derive(Debug)]
pub(crate) struct AuditBatchFilter;

impl Filter for AuditBatchFilter {
    fn kind(&self) -> &str {
        "audit-batch"
    }

    fn memory(&self) -> MemoryBound {
        MemoryBound::Proportional(3)
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        let batch = tianping_audit::AuditBatch::decode(bytes)
            .map_err(|e| Refusal::new("audit-batch", format!("not an audit batch: {e}")))?;
        let again = batch
            .encode()
            .map_err(|e| Refusal::new("audit-batch", format!("the batch does not encode: {e}")))?;
        if again != bytes {
            return Err(Refusal::new(
                "audit-batch",
                "the batch is not in its one canonical encoding",
            ));
        }
        let steps = input
            .steps
            .iter()
            .map(|s| {
                let state = match *s {
                    "validate" | "rebuild" => StepState::Done,
                    "strip-metadata" => StepState::NotApplicable,
                    _ => StepState::Unsupported,
                };
                Step::new(*s, state)
            })
            .collect();
        Ok(Filtered {
            bytes: again,
            steps,
            text: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_an_audit_batch() {
        let input = FilterInput {
            kind: "audit-batch",
            schema: None,
            steps: &["validate", "rebuild"],
            max_size: 1 << 20,
            release: false,
        };
        let got = AuditBatchFilter.run(&input, b"not a batch");
        assert!(got.is_err_and(|r| r.reason.contains("not an audit batch")));
    }
}
