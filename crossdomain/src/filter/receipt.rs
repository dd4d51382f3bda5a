//! `receipt`: a signed delivery or read receipt ([`crate::Receipt`]), decoded, its structure
//! and its signature (under the key it carries) checked, and passed on only in its one
//! canonical encoding. Who may sign receipts is the keeping zone's question, not the filter's.
//!
//! Steps: `validate` and `rebuild` are done (the bytes passed on are the receipt encoded
//! again), `strip-metadata` is not applicable (a receipt holds nothing but its fields), and
//! `scan`, `transcode` and `flatten` are unsupported. The text for the marking check is the
//! receipt's strings: its kind, transfer id, service, zone and reader.

use super::text::check_size;
use super::{Filter, FilterInput, Filtered, MemoryBound, Refusal, Step, StepState};
use crate::receipt::{MAX_RECEIPT, Receipt};

/// The `receipt` filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiptFilter;

impl ReceiptFilter {
    /// A `receipt` filter.
    pub fn new() -> Self {
        Self
    }
}

impl Filter for ReceiptFilter {
    fn kind(&self) -> &str {
        "receipt"
    }

    fn memory(&self) -> MemoryBound {
        // a receipt is decoded whole, and never longer than MAX_RECEIPT
        MemoryBound::Streaming(4 * MAX_RECEIPT as u64)
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        check_size("receipt", input, bytes)?;
        let receipt = Receipt::decode(bytes)
            .map_err(|e| Refusal::new("receipt", format!("not a signed receipt: {e}")))?;
        let again = receipt
            .encode()
            .map_err(|e| Refusal::new("receipt", format!("the receipt does not encode: {e}")))?;
        if again != bytes {
            return Err(Refusal::new(
                "receipt",
                "the receipt is not in its one canonical encoding",
            ));
        }
        let mut steps = vec![
            Step::new("validate", StepState::Done),
            Step::new("rebuild", StepState::Done),
        ];
        for asked in input.steps {
            if steps.iter().any(|s| s.name == *asked) {
                continue;
            }
            let state = match *asked {
                "strip-metadata" => StepState::NotApplicable,
                _ => StepState::Unsupported,
            };
            steps.push(Step::new(*asked, state));
        }
        Ok(Filtered {
            bytes: again,
            steps,
            text: receipt.text(),
        })
    }
}

#[cfg(test)]
mod tests {
    use tianping_core::{Algorithm, RingSigner, UnixTime, ZoneName};

    use super::*;
    use crate::receipt::{ReceiptKind, Receipting};

    fn input<'a>(steps: &'a [&'a str]) -> FilterInput<'a> {
        FilterInput {
            kind: "receipt",
            schema: None,
            steps,
            max_size: 64 * 1024,
            release: true,
        }
    }

    fn receipt() -> Vec<u8> {
        let (s, _) = RingSigner::generate(Algorithm::Es256).unwrap();
        let zone: ZoneName = "private".parse().unwrap();
        Receipt::sign(
            &Receipting {
                kind: ReceiptKind::Delivery,
                transfer_id: "internet:7",
                content_hash: [3; 32],
                service: "filing-intake",
                zone: &zone,
                reader: None,
                time: UnixTime::from_millis(5),
            },
            vec![b"cert".to_vec()],
            &s,
        )
        .unwrap()
        .encode()
        .unwrap()
    }

    #[test]
    fn passes_a_receipt_unchanged_with_its_strings() {
        let bytes = receipt();
        let out = ReceiptFilter
            .run(&input(&["validate", "strip-metadata"]), &bytes)
            .unwrap();
        assert_eq!(out.bytes, bytes);
        assert!(out.text.contains(&"internet:7".to_owned()));
        assert!(out.text.contains(&"filing-intake".to_owned()));
        let strip = out.steps.iter().find(|s| s.name == "strip-metadata");
        assert_eq!(strip.map(|s| s.state), Some(StepState::NotApplicable));
        let scan = ReceiptFilter.run(&input(&["scan"]), &bytes).unwrap();
        let scan = scan.steps.iter().find(|s| s.name == "scan");
        assert_eq!(scan.map(|s| s.state), Some(StepState::Unsupported));
    }

    #[test]
    fn refuses_what_is_not_a_receipt() {
        let got = ReceiptFilter.run(&input(&[]), b"{\"receipt\": true}");
        assert!(got.is_err_and(|r| r.reason.contains("not a signed receipt")));
        let mut bytes = receipt();
        if let Some(b) = bytes.get_mut(40) {
            *b ^= 4;
        }
        assert!(ReceiptFilter.run(&input(&[]), &bytes).is_err());
        let mut small = input(&[]);
        small.max_size = 10;
        let got = ReceiptFilter.run(&small, &receipt());
        assert!(got.is_err_and(|r| r.reason.contains("max-size")));
    }
}
