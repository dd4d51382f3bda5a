//! `png` and `jpeg`: images checked from their header, decoded, and passed on without metadata.
//!
//! Before any pixel is decoded, the header is read: the bytes must be of the declared kind
//! (true-type check: a JPEG declared as PNG is refused, as is a PDF or a ZIP), and the image's
//! pixel count and its decompression ratio (decoded bytes over file bytes) must stay within
//! [`ImageLimits`], so a few kilobytes that would decode to gigabytes are refused unread.
//!
//! - **PNG** is decoded (the `image` crate's PNG codec) and re-encoded from the pixels alone:
//!   no text chunks (`tEXt`, `zTXt`, `iTXt`), no `eXIf`, no ICC profile, no gamma or other
//!   ancillary chunk, nothing after `IEND`; an animated PNG crosses as its first frame. The
//!   encoder is deterministic and lossless, so the rebuilt copy passes the filter again
//!   unchanged.
//! - **JPEG** is rebuilt from the segments that carry the image (quantisation and Huffman
//!   tables, restart interval, frame and scan headers with their entropy-coded data, and an
//!   Adobe colour-transform segment), dropping every other application segment (`APP1` EXIF and
//!   XMP, `APP2` ICC, JFIF thumbnails, ...), comments and anything after the end marker; the
//!   rebuilt copy is then decoded in full (the `image` crate's JPEG codec) to prove it is an
//!   image. Re-encoding the pixels would lose quality at every pass and make the receiving
//!   side's run differ from the sender's, so the compressed data is kept as it came.
//!   Arithmetic, lossless and hierarchical JPEG are refused.

use std::io::Cursor;

use ::image::codecs::png::{CompressionType, FilterType, PngEncoder};
use ::image::{ImageEncoder, ImageFormat, ImageReader, Limits};

use super::text::{check_size, steps};
use super::{Filter, FilterInput, Filtered, MemoryBound, Refusal, StepState};

/// The limits an image must keep, checked from its header before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// The most pixels (width × height).
    pub max_pixels: u64,
    /// The longest side, in pixels.
    pub max_side: u32,
    /// The most decoded bytes per byte of file.
    pub max_ratio: u32,
}

impl Default for ImageLimits {
    /// 50 megapixels (an A3 page at 600 dpi), 30,000 pixels a side, 256 decoded bytes per file
    /// byte (photographs and scans stay far below; a blank page may not).
    fn default() -> Self {
        Self {
            max_pixels: 50_000_000,
            max_side: 30_000,
            max_ratio: 256,
        }
    }
}

impl ImageLimits {
    /// The input and the new file, and the decoded pixels: at most `max_pixels` of at most 8
    /// bytes (RGBA, 16 bits a channel), whatever the file's length.
    fn memory(&self) -> MemoryBound {
        MemoryBound::Linear {
            per_byte: 2,
            plus: self.max_pixels.saturating_mul(8),
        }
    }
}

/// What the header says.
struct Header {
    width: u32,
    height: u32,
    /// Decoded bytes per pixel.
    bytes_per_pixel: u64,
}

/// The format the bytes are, by their first bytes.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    const MAGIC: [(&[u8], &str); 8] = [
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive (an OFD or office document?)"),
        (b"GIF8", "a GIF image"),
        (b"II*\0", "a TIFF image"),
        (b"MM\0*", "a TIFF image"),
        (b"RIFF", "a RIFF file (WebP, AVI or WAV)"),
    ];
    MAGIC
        .iter()
        .find(|(m, _)| bytes.starts_with(m))
        .map(|(_, what)| *what)
}

fn true_type(kind: &str, want: &'static str, bytes: &[u8]) -> Result<(), Refusal> {
    match sniff(bytes) {
        Some(what) if what == want => Ok(()),
        Some(what) => Err(Refusal::new(
            kind,
            format!("it is declared {kind}, but the bytes are {what}; declare its real kind"),
        )),
        None => Err(Refusal::new(
            kind,
            format!("it is declared {kind}, but the bytes are not {want}"),
        )),
    }
}

pub(super) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

pub(super) fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

fn png_header(bytes: &[u8]) -> Result<Header, Refusal> {
    let bad = || Refusal::new("png", "its header (IHDR) is missing or damaged");
    if bytes.get(12..16) != Some(b"IHDR") || be32(bytes, 8) != Some(13) {
        return Err(bad());
    }
    let width = be32(bytes, 16).ok_or_else(bad)?;
    let height = be32(bytes, 20).ok_or_else(bad)?;
    let depth = *bytes.get(24).ok_or_else(bad)?;
    let channels: u64 = match bytes.get(25).ok_or_else(bad)? {
        0 => 1,
        2 => 3,
        // Palette images decode to RGB or RGBA.
        3 | 6 => 4,
        4 => 2,
        _ => return Err(bad()),
    };
    Ok(Header {
        width,
        height,
        bytes_per_pixel: channels * if depth == 16 { 2 } else { 1 },
    })
}

/// The checks made from the header, before any decoding.
fn check_header(
    kind: &str,
    limits: &ImageLimits,
    h: &Header,
    file_len: usize,
) -> Result<u64, Refusal> {
    if h.width == 0 || h.height == 0 {
        return Err(Refusal::new(kind, "its header declares an empty image"));
    }
    let pixels = u64::from(h.width) * u64::from(h.height);
    if h.width > limits.max_side || h.height > limits.max_side || pixels > limits.max_pixels {
        return Err(Refusal::new(
            kind,
            format!(
                "it is {}×{} pixels, over the limit of {} pixels ({} a side); scale it down",
                h.width, h.height, limits.max_pixels, limits.max_side
            ),
        ));
    }
    let decoded = pixels.saturating_mul(h.bytes_per_pixel);
    let file = u64::try_from(file_len).unwrap_or(u64::MAX).max(1);
    if decoded / file > u64::from(limits.max_ratio) {
        return Err(Refusal::new(
            kind,
            format!(
                "its {file} bytes would decode to {decoded} bytes, over {}:1 \
                 (a decompression bomb, or an image with almost nothing in it)",
                limits.max_ratio
            ),
        ));
    }
    Ok(decoded)
}

fn decode(
    kind: &str,
    format: ImageFormat,
    bytes: &[u8],
    h: &Header,
    decoded: u64,
) -> Result<::image::DynamicImage, Refusal> {
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(h.width);
    limits.max_image_height = Some(h.height);
    // The output buffer and the decoder's own tables.
    limits.max_alloc = Some(decoded.saturating_mul(2).saturating_add(16 << 20));
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| Refusal::new(kind, format!("it does not decode as an image: {e}")))?;
    if img.width() != h.width || img.height() != h.height {
        return Err(Refusal::new(
            kind,
            "it decodes to another size than its header declares",
        ));
    }
    Ok(img)
}

/// The `png` filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct PngFilter {
    limits: ImageLimits,
}

impl PngFilter {
    /// A `png` filter with `limits`.
    pub fn new(limits: ImageLimits) -> Self {
        Self { limits }
    }
}

impl Filter for PngFilter {
    fn kind(&self) -> &str {
        "png"
    }

    fn memory(&self) -> MemoryBound {
        self.limits.memory()
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        check_size("png", input, bytes)?;
        true_type("png", "a PNG image", bytes)?;
        let h = png_header(bytes)?;
        let decoded = check_header("png", &self.limits, &h, bytes.len())?;
        let img = decode("png", ImageFormat::Png, bytes, &h, decoded)?;
        let mut out = Vec::new();
        PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
            .write_image(
                img.as_bytes(),
                img.width(),
                img.height(),
                img.color().into(),
            )
            .map_err(|e| Refusal::new("png", format!("it cannot be encoded again: {e}")))?;
        Ok(Filtered {
            bytes: out,
            steps: steps(input, StepState::Done),
            text: Vec::new(),
        })
    }
}

/// The `jpeg` filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct JpegFilter {
    limits: ImageLimits,
}

impl JpegFilter {
    /// A `jpeg` filter with `limits`.
    pub fn new(limits: ImageLimits) -> Self {
        Self { limits }
    }
}

fn jpeg_refuse(reason: impl Into<String>) -> Refusal {
    Refusal::new("jpeg", reason)
}

/// The JPEG rebuilt from the segments that carry the image, and its frame header.
fn jpeg_rebuild(bytes: &[u8]) -> Result<(Vec<u8>, Header), Refusal> {
    let truncated = || jpeg_refuse("it is cut short (no end-of-image marker)");
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(b"\xff\xd8");
    let mut pos = 2;
    let mut frame: Option<Header> = None;
    loop {
        if bytes.get(pos) != Some(&0xff) {
            return Err(jpeg_refuse(format!(
                "byte {pos} should start a segment but does not; the file is damaged"
            )));
        }
        while bytes.get(pos) == Some(&0xff) {
            pos += 1;
        }
        let marker = *bytes.get(pos).ok_or_else(truncated)?;
        pos += 1;
        if marker == 0xd9 {
            out.extend_from_slice(b"\xff\xd9");
            break;
        }
        if matches!(marker, 0x00 | 0x01 | 0xd0..=0xd8) {
            return Err(jpeg_refuse(format!(
                "marker 0xFF{marker:02X} at byte {pos} stands outside a scan; the file is damaged"
            )));
        }
        let len = usize::from(be16(bytes, pos).ok_or_else(truncated)?);
        let seg = bytes.get(pos..pos + len).ok_or_else(truncated)?;
        if len < 2 {
            return Err(jpeg_refuse("a segment declares a length below 2"));
        }
        let body = seg.get(2..).unwrap_or_default();
        let keep = match marker {
            0xc0..=0xc2 => {
                if frame.is_some() {
                    return Err(jpeg_refuse("it has two frame headers"));
                }
                let h = be16(body, 1).unwrap_or(0);
                let w = be16(body, 3).unwrap_or(0);
                let comps = *body.get(5).unwrap_or(&0);
                if !matches!(comps, 1 | 3 | 4) || body.first() != Some(&8) {
                    return Err(jpeg_refuse(
                        "its frame is not 8-bit with 1, 3 or 4 components",
                    ));
                }
                frame = Some(Header {
                    width: u32::from(w),
                    height: u32::from(h),
                    bytes_per_pixel: u64::from(comps),
                });
                true
            }
            0xc4 | 0xdb | 0xdd => true,
            0xda => {
                if frame.is_none() {
                    return Err(jpeg_refuse("a scan comes before the frame header"));
                }
                true
            }
            // Adobe's segment says how colours are transformed; its 12 bytes carry nothing else.
            0xee => body.starts_with(b"Adobe") && len == 14,
            0xe0..=0xef | 0xfe => false,
            0xc3 | 0xc5..=0xc7 | 0xc9..=0xcb | 0xcd..=0xcf => {
                return Err(jpeg_refuse(
                    "it is a lossless, hierarchical or arithmetic-coded JPEG, which is not \
                     rebuilt; save it as a baseline or progressive JPEG",
                ));
            }
            m => {
                return Err(jpeg_refuse(format!(
                    "it holds segment 0xFF{m:02X}, which is not part of a JPEG image"
                )));
            }
        };
        if keep {
            out.extend_from_slice(&[0xff, marker]);
            out.extend_from_slice(seg);
        }
        pos += len;
        if marker == 0xda {
            // The entropy-coded data: up to a marker that is neither stuffing nor a restart.
            let start = pos;
            loop {
                match bytes.get(pos) {
                    None => return Err(truncated()),
                    Some(0xff) => match bytes.get(pos + 1) {
                        None => return Err(truncated()),
                        Some(0x00 | 0xd0..=0xd7) => pos += 2,
                        Some(_) => break,
                    },
                    Some(_) => pos += 1,
                }
            }
            out.extend_from_slice(bytes.get(start..pos).unwrap_or_default());
        }
    }
    let frame = frame.ok_or_else(|| jpeg_refuse("it has no frame header"))?;
    Ok((out, frame))
}

impl Filter for JpegFilter {
    fn kind(&self) -> &str {
        "jpeg"
    }

    fn memory(&self) -> MemoryBound {
        self.limits.memory()
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        check_size("jpeg", input, bytes)?;
        true_type("jpeg", "a JPEG image", bytes)?;
        let (out, h) = jpeg_rebuild(bytes)?;
        let decoded = check_header("jpeg", &self.limits, &h, out.len())?;
        decode("jpeg", ImageFormat::Jpeg, &out, &h, decoded)?;
        Ok(Filtered {
            bytes: out,
            steps: steps(input, StepState::Done),
            text: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use ::image::codecs::jpeg::JpegEncoder;
    use ::image::{ExtendedColorType, RgbImage};
    use proptest::prelude::*;

    use super::*;

    fn input(kind: &'static str) -> FilterInput<'static> {
        FilterInput {
            kind,
            schema: None,
            steps: &["validate", "rebuild", "strip-metadata"],
            max_size: 1 << 26,
            release: false,
        }
    }

    /// A noisy image (so it does not compress past the ratio limit), seeded.
    fn pixels(w: u32, h: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed)
                .wrapping_mul(2_246_822_519);
            let [_, r, g, b] = v.to_le_bytes();
            ::image::Rgb([r, g, b])
        })
    }

    fn png(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgb8,
            )
            .unwrap();
        out
    }

    fn png_best(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgb8,
            )
            .unwrap();
        out
    }

    fn jpeg(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 85)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgb8,
            )
            .unwrap();
        out
    }

    /// `png` with a chunk of `kind` and `data` inserted after IHDR.
    fn with_chunk(png: &[u8], kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = png[..33].to_vec();
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&[0; 4]);
        let crc = crc32(&out[out.len() - 4 - data.len() - 4..out.len() - 4]);
        let n = out.len();
        out[n - 4..].copy_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&png[33..]);
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for b in data {
            c ^= u32::from(*b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn png_metadata_is_dropped_and_rebuild_is_idempotent() {
        let img = pixels(40, 30, 1);
        let marked = with_chunk(&png(&img), b"tEXt", b"Author\0Judge Wang");
        let marked = with_chunk(&marked, b"eXIf", b"MM\0*\0\0\0\x08\0\0");
        let once = PngFilter::default().run(&input("png"), &marked).unwrap();
        assert!(!once.bytes.windows(4).any(|w| w == b"tEXt" || w == b"eXIf"));
        assert!(!once.bytes.windows(5).any(|w| w == b"Judge"));
        let back = ::image::load_from_memory(&once.bytes).unwrap().to_rgb8();
        assert_eq!(back, img, "the pixels are kept");
        let twice = PngFilter::default()
            .run(&input("png"), &once.bytes)
            .unwrap();
        assert_eq!(once.bytes, twice.bytes);
        assert!(
            once.steps
                .iter()
                .any(|s| s.name == "strip-metadata" && s.state == StepState::Done)
        );
    }

    #[test]
    fn jpeg_segments_are_rebuilt_without_metadata() {
        let img = pixels(48, 32, 2);
        let plain = jpeg(&img);
        // An EXIF segment and a comment after SOI, trailing bytes after EOI.
        let mut marked = b"\xff\xd8\xff\xe1\x00\x11Exif\0\0GPS-39.9N\xff\xfe\x00\x07hello".to_vec();
        marked.extend_from_slice(&plain[2..]);
        marked.extend_from_slice(b"PK\x03\x04 a zip after the image");
        let once = JpegFilter::default().run(&input("jpeg"), &marked).unwrap();
        assert!(
            !once
                .bytes
                .windows(4)
                .any(|w| w == b"Exif" || w == b"PK\x03\x04")
        );
        assert!(!once.bytes.windows(5).any(|w| w == b"hello"));
        let a = ::image::load_from_memory(&once.bytes).unwrap().to_rgb8();
        let b = ::image::load_from_memory(&plain).unwrap().to_rgb8();
        assert_eq!(a, b, "the same pixels decode");
        let twice = JpegFilter::default()
            .run(&input("jpeg"), &once.bytes)
            .unwrap();
        assert_eq!(once.bytes, twice.bytes);
    }

    #[test]
    fn true_type_and_limits_are_checked_before_decoding() {
        let j = jpeg(&pixels(16, 16, 3));
        let r = PngFilter::default().run(&input("png"), &j).unwrap_err();
        assert!(
            r.reason.contains("the bytes are a JPEG image"),
            "{}",
            r.reason
        );
        let p = png(&pixels(16, 16, 3));
        let r = JpegFilter::default().run(&input("jpeg"), &p).unwrap_err();
        assert!(
            r.reason.contains("the bytes are a PNG image"),
            "{}",
            r.reason
        );
        let r = PngFilter::default()
            .run(&input("png"), b"%PDF-1.7")
            .unwrap_err();
        assert!(r.reason.contains("PDF"), "{}", r.reason);

        // A header claiming 100,000 × 100,000 pixels: refused from the header alone.
        let mut huge = p.clone();
        huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let r = PngFilter::default().run(&input("png"), &huge).unwrap_err();
        assert!(r.reason.contains("pixels"), "{}", r.reason);

        // A flat image compresses far past the ratio limit.
        let flat = RgbImage::new(2000, 2000);
        let r = PngFilter::default()
            .run(&input("png"), &png_best(&flat))
            .unwrap_err();
        assert!(r.reason.contains("would decode to"), "{}", r.reason);
        let lax = ImageLimits {
            max_ratio: 1 << 20,
            ..ImageLimits::default()
        };
        assert!(
            PngFilter::new(lax)
                .run(&input("png"), &png_best(&flat))
                .is_ok()
        );

        let cut = &j[..j.len() - 40];
        assert!(JpegFilter::default().run(&input("jpeg"), cut).is_err());
        let cut = &p[..p.len() - 20];
        assert!(PngFilter::default().run(&input("png"), cut).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 24,
            rng_seed: proptest::test_runner::RngSeed::Fixed(18),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Both filters' output passes them again unchanged.
        #[test]
        fn rebuild_is_idempotent(w in 1u32..64, h in 1u32..64, seed in any::<u32>()) {
            let img = pixels(w, h, seed);
            let lax = ImageLimits { max_ratio: 1 << 20, ..ImageLimits::default() };
            let p = PngFilter::new(lax).run(&input("png"), &png(&img)).unwrap();
            prop_assert_eq!(&PngFilter::new(lax).run(&input("png"), &p.bytes).unwrap().bytes, &p.bytes);
            let j = JpegFilter::new(lax).run(&input("jpeg"), &jpeg(&img)).unwrap();
            prop_assert_eq!(&JpegFilter::new(lax).run(&input("jpeg"), &j.bytes).unwrap().bytes, &j.bytes);
        }
    }
}
