//! One checked reader and writer for every binary format (audit events, records, batches,
//! archives; later bundles and datagrams).
//!
//! Integers are big-endian. Variable-length fields carry their length first, as a `u16` or a
//! `u32`. The reader never panics and never trusts a length: every read is checked against what
//! is left, and a count of items is checked against the least space those items take before a
//! caller allocates for them. The writer refuses a field longer than its length prefix can say
//! instead of truncating the length silently.
//!
//! ```
//! use tianping_core::{WireReader, WireWriter};
//!
//! let mut w = WireWriter::new();
//! w.u8(1);
//! w.str32("filing")?;
//! w.u64(42);
//! let bytes = w.into_bytes();
//!
//! let mut r = WireReader::new(&bytes);
//! assert_eq!(r.u8("version")?, 1);
//! assert_eq!(r.str32("flow")?, "filing");
//! assert_eq!(r.u64("sequence")?, 42);
//! r.finish()?;
//! # Ok::<(), tianping_core::WireError>(())
//! ```

/// What is wrong with bytes read, or a value too long to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes end inside the named field.
    #[error("truncated at `{0}`")]
    Truncated(&'static str),
    /// A string field is not UTF-8.
    #[error("`{0}` is not UTF-8")]
    Utf8(&'static str),
    /// Bytes are left after the last field.
    #[error("{0} bytes after the end")]
    Trailing(usize),
    /// A field is longer than its length prefix (or the format) allows.
    #[error("`{field}` is {len} bytes, more than {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most it may hold.
        max: usize,
    },
}

/// Reads fields one after another from a byte slice, checking every length.
#[derive(Debug, Clone)]
pub struct WireReader<'a> {
    rest: &'a [u8],
}

impl<'a> WireReader<'a> {
    /// Starts at the first byte of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// How many bytes are not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated(field));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let b = self.take(N, field)?;
        b.try_into().map_err(|_| WireError::Truncated(field))
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A `u32` length, as `usize`, refused when more than `max`.
    pub fn len32(&mut self, field: &'static str, max: usize) -> Result<usize, WireError> {
        let n = usize::try_from(self.u32(field)?).map_err(|_| WireError::TooLong {
            field,
            len: usize::MAX,
            max,
        })?;
        if n > max {
            return Err(WireError::TooLong { field, len: n, max });
        }
        Ok(n)
    }

    /// A `u32` count of items each taking at least `min_item` bytes, checked against what is
    /// left so that a caller may allocate for it.
    pub fn count32(&mut self, field: &'static str, min_item: usize) -> Result<usize, WireError> {
        let n = self.len32(field, usize::MAX)?;
        if n.saturating_mul(min_item) > self.rest.len() {
            return Err(WireError::Truncated(field));
        }
        Ok(n)
    }

    /// A `u16` count, checked as [`count32`](Self::count32) is.
    pub fn count16(&mut self, field: &'static str, min_item: usize) -> Result<usize, WireError> {
        let n = usize::from(self.u16(field)?);
        if n.saturating_mul(min_item) > self.rest.len() {
            return Err(WireError::Truncated(field));
        }
        Ok(n)
    }

    /// Bytes after a `u32` length.
    pub fn bytes32(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let n = self.len32(field, usize::MAX)?;
        self.take(n, field)
    }

    /// Bytes after a `u16` length.
    pub fn bytes16(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let n = usize::from(self.u16(field)?);
        self.take(n, field)
    }

    /// A UTF-8 string after a `u32` length.
    pub fn str32(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        utf8(self.bytes32(field)?, field)
    }

    /// A UTF-8 string after a `u16` length.
    pub fn str16(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        utf8(self.bytes16(field)?, field)
    }

    /// Succeeds only when every byte has been read.
    pub fn finish(self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.rest.len()))
        }
    }
}

fn utf8<'a>(b: &'a [u8], field: &'static str) -> Result<&'a str, WireError> {
    std::str::from_utf8(b).map_err(|_| WireError::Utf8(field))
}

/// Appends fields to a buffer; lengths that do not fit their prefix are refused.
#[derive(Debug, Clone, Default)]
pub struct WireWriter {
    out: Vec<u8>,
}

impl WireWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that appends to `out` (kept, so buffers can be reused).
    pub fn from_vec(out: Vec<u8>) -> Self {
        Self { out }
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            out: Vec::with_capacity(n),
        }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.out
    }

    /// How many bytes have been written.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The buffer.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// Raw bytes with no length (fixed-size fields).
    pub fn raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// A length or count as a `u32`, refused when it does not fit.
    pub fn len32(&mut self, n: usize, field: &'static str) -> Result<(), WireError> {
        let v = u32::try_from(n).map_err(|_| WireError::TooLong {
            field,
            len: n,
            max: u32::MAX as usize,
        })?;
        self.u32(v);
        Ok(())
    }

    /// A length or count as a `u16`, refused when it does not fit.
    pub fn len16(&mut self, n: usize, field: &'static str) -> Result<(), WireError> {
        let v = u16::try_from(n).map_err(|_| WireError::TooLong {
            field,
            len: n,
            max: usize::from(u16::MAX),
        })?;
        self.u16(v);
        Ok(())
    }

    /// Bytes after a `u32` length.
    pub fn bytes32(&mut self, b: &[u8], field: &'static str) -> Result<(), WireError> {
        self.len32(b.len(), field)?;
        self.raw(b);
        Ok(())
    }

    /// Bytes after a `u16` length.
    pub fn bytes16(&mut self, b: &[u8], field: &'static str) -> Result<(), WireError> {
        self.len16(b.len(), field)?;
        self.raw(b);
        Ok(())
    }

    /// A string after a `u32` length.
    pub fn str32(&mut self, s: &str) -> Result<(), WireError> {
        self.bytes32(s.as_bytes(), "string")
    }

    /// A string after a `u16` length.
    pub fn str16(&mut self, s: &str) -> Result<(), WireError> {
        self.bytes16(s.as_bytes(), "string")
    }
}

/// The encoded size of a `u32`-prefixed field of `n` bytes (for `encoded_len` functions that
/// must agree with the writer).
pub const fn len32_size(n: usize) -> usize {
    4 + n
}

/// The encoded size of a `u16`-prefixed field of `n` bytes.
pub const fn len16_size(n: usize) -> usize {
    2 + n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_read_is_checked() {
        let mut r = WireReader::new(&[0, 0, 0, 9, b'a']);
        assert_eq!(r.str32("name"), Err(WireError::Truncated("name")));
        let mut r = WireReader::new(&[0, 0, 0, 2, 0xff, 0xfe]);
        assert_eq!(r.str32("name"), Err(WireError::Utf8("name")));
        let mut r = WireReader::new(&[0, 0, 0, 200, 1, 2]);
        assert_eq!(r.count32("items", 4), Err(WireError::Truncated("items")));
        let mut r = WireReader::new(&[0, 0, 1, 0]);
        assert!(matches!(
            r.len32("body", 255),
            Err(WireError::TooLong {
                len: 256,
                max: 255,
                ..
            })
        ));
        let r = WireReader::new(&[1]);
        assert_eq!(r.finish(), Err(WireError::Trailing(1)));
        assert_eq!(
            WireReader::new(&[]).u64("time"),
            Err(WireError::Truncated("time"))
        );
    }

    #[test]
    fn the_writer_refuses_lengths_that_do_not_fit() {
        let mut w = WireWriter::new();
        let long = vec![0u8; usize::from(u16::MAX) + 1];
        assert!(matches!(
            w.bytes16(&long, "proof"),
            Err(WireError::TooLong { field: "proof", .. })
        ));
        assert!(w.is_empty(), "nothing is written for a refused field");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(9), ..ProptestConfig::default() })]
        #[test]
        fn what_is_written_reads_back(a in any::<u8>(), b in any::<u16>(), c in any::<u32>(),
                                      d in any::<u64>(), s in ".{0,40}", v in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut w = WireWriter::new();
            w.u8(a);
            w.u16(b);
            w.u32(c);
            w.u64(d);
            w.str32(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
            w.bytes16(&v, "v").map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(w.len(), 1 + 2 + 4 + 8 + len32_size(s.len()) + len16_size(v.len()));
            let bytes = w.into_bytes();
            let mut r = WireReader::new(&bytes);
            prop_assert_eq!(r.u8("a").ok(), Some(a));
            prop_assert_eq!(r.u16("b").ok(), Some(b));
            prop_assert_eq!(r.u32("c").ok(), Some(c));
            prop_assert_eq!(r.u64("d").ok(), Some(d));
            prop_assert_eq!(r.str32("s").ok(), Some(s.as_str()));
            prop_assert_eq!(r.bytes16("v").ok(), Some(v.as_slice()));
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn any_prefix_is_refused_cleanly(cut in 0usize..20) {
            let mut w = WireWriter::new();
            w.u32(7);
            w.str32("transfer").map_err(|e| TestCaseError::fail(e.to_string()))?;
            let bytes = w.into_bytes();
            let cut = cut.min(bytes.len() - 1);
            let mut r = WireReader::new(bytes.get(..cut).unwrap_or_default());
            let read = r.u32("n").and_then(|_| r.str32("s").map(|_| ()));
            prop_assert!(read.is_err());
        }
    }
}
