//! `mp4`: an MP4 file (ISO/IEC 14496-12 and -14) checked box by box and rebuilt from the boxes
//! that carry the media, with the sample data copied chunk by chunk into a new `mdat`.
//!
//! What is checked, in order, before anything is rebuilt:
//! - **True type**: the file starts with an `ftyp` box whose major brand is one of
//!   the allowed brands (`isom`, `iso2`–`iso6`, `mp41`, `mp42`, `avc1`, `M4V `, `M4A `; a QuickTime movie, a 3GP file or an unknown brand is refused);
//! - **Structure**, walked over the bytes with no copy: every box's size covers its header and
//!   stays inside its parent (no box past the end of the file, no 64-bit size beyond it, size 0
//!   only for a last top-level box), within [`Mp4Limits`]'s depth and box count; one `moov`, at
//!   least one `mdat`; a fragmented file (`moof`, `mvex`, `sidx`, `styp`, `mfra`) is refused;
//! - **Tracks**: each a video track of H.264 (`avc1` with a well-formed `avcC`) or an audio
//!   track of AAC (`mp4a` with an MPEG-4 audio `esds`), one sample description each, media in
//!   this file (a `dref` pointing elsewhere is refused), no encryption; every sample table of
//!   exactly the length its entry count declares, their counts agreeing (`stts` and `stsz`),
//!   every chunk inside an `mdat`, no two chunks overlapping;
//! - **Metadata** read again with `mozilla/mp4parse` (a parser written for hostile input), which
//!   must agree on the tracks and their codecs.
//!
//! The rebuilt file is `ftyp` (only the allowed brands), `moov` (`mvhd`, then each `trak` with
//! `tkhd`, `mdia` / `mdhd`, `hdlr`, `minf` / `vmhd` or `smhd`, `dinf` / `dref`, `stbl` / `stsd`,
//! `stts`, `stss`, `ctts`, `stsc`, `stsz`, `stco` or `co64`), then one `mdat` holding each chunk's
//! bytes in their order in the file, the chunk offsets written for their new places. Everything
//! else is dropped: `udta`, `meta`, `free`, `skip`, `uuid`, edit lists, sample groups, unknown
//! boxes, bytes in an `mdat` that no chunk refers to, and everything after the last box. The
//! creation and modification times in `mvhd`, `tkhd` and `mdhd` are zeroed, handler names and
//! the compressor name emptied, `avcC` and `esds` written again from their parsed fields. The
//! rebuild is deterministic and its output passes the filter again unchanged.
//!
//! Not done: the coded samples are carried as they came (an H.264 SEI message or AAC fill
//! element inside a sample is not stripped), and fragmented MP4 is refused, not defragmented.

use std::io::Cursor;

use super::image::{be16, be32};
use super::text::{check_size, steps};
use super::{Filter, FilterInput, Filtered, MemoryBound, Refusal, StepState};

/// The major and compatible brands that cross: ISO base media (`isom`, `iso2`–`iso6`), MP4
/// (`mp41`, `mp42`), AVC (`avc1`) and Apple's MP4 video and audio (`M4V `, `M4A `).
const BRANDS: [&[u8; 4]; 11] = [
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ",
    b"M4A ",
];

/// The limits an MP4 file must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mp4Limits {
    /// How deep boxes may nest below the file. The deepest box the rebuild keeps (`avcC` or
    /// `esds` in a sample entry) is 8 down: moov/trak/mdia/minf/stbl/stsd/avc1/avcC.
    pub max_depth: u32,
    /// The most box headers read in the whole file. A plain recording has a few dozen; the
    /// limit bounds the walk's time on a file of millions of empty boxes.
    pub max_boxes: u32,
    /// The most tracks. A recording has one video and one or two audio tracks.
    pub max_tracks: u32,
    /// The most samples (and entries of any sample table) a track may have: two hours of
    /// 60 fps video is 432,000 frames, of 48 kHz AAC 338,000. The tables are read into memory
    /// (at most 8 bytes an entry), so this bounds what a small file can make the filter hold.
    pub max_samples: u32,
}

impl Default for Mp4Limits {
    /// 8 deep, 100,000 boxes, 16 tracks, 4,000,000 samples a track.
    fn default() -> Self {
        Self {
            max_depth: 8,
            max_boxes: 100_000,
            max_tracks: 16,
            max_samples: 4_000_000,
        }
    }
}

/// The `mp4` filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mp4Filter {
    limits: Mp4Limits,
}

impl Mp4Filter {
    /// An `mp4` filter with `limits`.
    pub fn new(limits: Mp4Limits) -> Self {
        Self { limits }
    }
}

fn refuse(reason: impl Into<String>) -> Refusal {
    Refusal::new("mp4", reason)
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn usize_of(n: u64) -> Option<usize> {
    usize::try_from(n).ok()
}

/// A box type as it is written, or in hex when it is not printable.
fn name(kind: [u8; 4]) -> String {
    if kind.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        String::from_utf8_lossy(&kind).into_owned()
    } else {
        format!("0x{:08X}", u32::from_be_bytes(kind))
    }
}

/// What the first bytes are, when they are not an MP4 file.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    const MAGIC: [(&[u8], &str); 7] = [
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive (an OFD or office document?)"),
        (b"GIF8", "a GIF image"),
        (b"RIFF", "a RIFF file (WebP, AVI or WAV)"),
        (b"\x1aE\xdf\xa3", "a Matroska or WebM video"),
    ];
    MAGIC
        .iter()
        .find(|(m, _)| bytes.starts_with(m))
        .map(|(_, what)| *what)
}

/// A box: its type, where it starts, and its body (after the header) in the file.
#[derive(Debug, Clone, Copy)]
struct Bx {
    kind: [u8; 4],
    at: usize,
    start: usize,
    end: usize,
}

impl Bx {
    fn body<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        bytes.get(self.start..self.end).unwrap_or_default()
    }

    fn whole<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        bytes.get(self.at..self.end).unwrap_or_default()
    }

    fn is(&self, kind: &[u8; 4]) -> bool {
        &self.kind == kind
    }
}

/// The walk over the file's boxes, counting them.
struct Walk<'a> {
    bytes: &'a [u8],
    limits: &'a Mp4Limits,
    boxes: u32,
}

impl Walk<'_> {
    /// The boxes filling `start..end` (the body of `parent`, `depth` below the file).
    fn children(
        &mut self,
        start: usize,
        end: usize,
        depth: u32,
        parent: &str,
    ) -> Result<Vec<Bx>, Refusal> {
        if depth > self.limits.max_depth {
            return Err(refuse(format!(
                "its boxes nest deeper than {} inside {parent}",
                self.limits.max_depth
            )));
        }
        let top = depth == 0;
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            self.boxes += 1;
            if self.boxes > self.limits.max_boxes {
                return Err(refuse(format!(
                    "it has more than {} boxes",
                    self.limits.max_boxes
                )));
            }
            let left = end - at;
            let cut = || {
                refuse(format!(
                    "the {left} bytes at byte {at} inside {parent} are too few for a box header \
                     (the file is cut short or damaged)"
                ))
            };
            if left < 8 {
                return Err(cut());
            }
            let size32 = be32(self.bytes, at).ok_or_else(cut)?;
            let kind: [u8; 4] = self
                .bytes
                .get(at + 4..at + 8)
                .and_then(|k| k.try_into().ok())
                .ok_or_else(cut)?;
            let (header, size) = match size32 {
                0 if top => (8, u64::try_from(left).unwrap_or(u64::MAX)),
                0 => {
                    return Err(refuse(format!(
                        "box `{}` at byte {at} inside {parent} declares size 0 (up to the end of \
                         the file), which only a top-level box may",
                        name(kind)
                    )));
                }
                1 => (16, be64(self.bytes, at + 8).ok_or_else(cut)?),
                n => (8, u64::from(n)),
            };
            if size < header {
                return Err(refuse(format!(
                    "box `{}` at byte {at} declares {size} bytes, fewer than its own header",
                    name(kind)
                )));
            }
            let left64 = u64::try_from(left).unwrap_or(u64::MAX);
            if size > left64 {
                let of = if top {
                    "the file".to_owned()
                } else {
                    parent.to_owned()
                };
                return Err(refuse(format!(
                    "box `{}` at byte {at} declares {size} bytes, past the end of {of} \
                     ({left} bytes left); the file is cut short or damaged",
                    name(kind)
                )));
            }
            let size = usize_of(size).ok_or_else(cut)?;
            let header = usize_of(header).ok_or_else(cut)?;
            out.push(Bx {
                kind,
                at,
                start: at + header,
                end: at + size,
            });
            at += size;
        }
        Ok(out)
    }

    /// The children of `b`, a box `depth` below the file.
    fn inside(&mut self, b: &Bx, depth: u32) -> Result<Vec<Bx>, Refusal> {
        self.children(b.start, b.end, depth, &format!("`{}`", name(b.kind)))
    }
}

/// The one box of `kind` among `boxes`, refused when there is none or more than one.
fn one(boxes: &[Bx], kind: &[u8; 4], parent: &str) -> Result<Bx, Refusal> {
    opt(boxes, kind, parent)?
        .ok_or_else(|| refuse(format!("{parent} has no `{}` box", name(*kind))))
}

/// The box of `kind` among `boxes` if there is one, refused when there are more.
fn opt(boxes: &[Bx], kind: &[u8; 4], parent: &str) -> Result<Option<Bx>, Refusal> {
    let mut found = boxes.iter().filter(|b| b.is(kind));
    let first = found.next().copied();
    if found.next().is_some() {
        return Err(refuse(format!("{parent} has two `{}` boxes", name(*kind))));
    }
    Ok(first)
}

/// A box of `kind` around `body`.
fn boxed(kind: &[u8; 4], body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let size = body
        .len()
        .checked_add(8)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| refuse(format!("its `{}` box would be over 4 GiB", name(*kind))))?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    Ok(out)
}

/// `parts` joined.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A full box's body, as long as its version says, with its flags cleared and the byte
/// ranges `zero` (creation and modification times) zeroed.
fn fixed(
    bytes: &[u8],
    b: &Bx,
    lens: (usize, usize),
    zero: (std::ops::Range<usize>, std::ops::Range<usize>),
) -> Result<Vec<u8>, Refusal> {
    let body = b.body(bytes);
    let (want, times) = match body.first() {
        Some(0) => (lens.0, zero.0),
        Some(1) => (lens.1, zero.1),
        _ => {
            return Err(refuse(format!(
                "its `{}` box has an unknown version",
                name(b.kind)
            )));
        }
    };
    if body.len() != want {
        return Err(refuse(format!(
            "its `{}` box is {} bytes, not the {want} its version has",
            name(b.kind),
            body.len()
        )));
    }
    let mut out = body.to_vec();
    for i in times.chain(1..4) {
        if let Some(x) = out.get_mut(i) {
            *x = 0;
        }
    }
    Ok(out)
}

/// A sample table: its version, its entry count and its entries, which must fill the box.
fn table<'a>(
    bytes: &'a [u8],
    b: &Bx,
    entry: usize,
    limits: &Mp4Limits,
    track: usize,
) -> Result<(u8, u32, &'a [u8]), Refusal> {
    let body = b.body(bytes);
    let what = format!("the `{}` box of track {track}", name(b.kind));
    let count = be32(body, 4).ok_or_else(|| refuse(format!("{what} is cut short")))?;
    if count > limits.max_samples {
        return Err(refuse(format!(
            "{what} has {count} entries, over the limit of {}",
            limits.max_samples
        )));
    }
    let entries = body.get(8..).unwrap_or_default();
    let want = usize_of(u64::from(count) * entry as u64);
    if want != Some(entries.len()) {
        return Err(refuse(format!(
            "{what} declares {count} entries but holds {} bytes for them",
            entries.len()
        )));
    }
    Ok((*body.first().unwrap_or(&0), count, entries))
}

/// A table box rebuilt: version kept, flags cleared, count and entries as read.
fn table_box(kind: &[u8; 4], version: u8, count: u32, entries: &[u8]) -> Result<Vec<u8>, Refusal> {
    boxed(
        kind,
        &cat(&[&[version, 0, 0, 0], &count.to_be_bytes(), entries]),
    )
}

/// The `avcC` body written again from its fields (ISO/IEC 14496-15 §5.3.3.1).
fn avcc(body: &[u8], track: usize) -> Result<Vec<u8>, Refusal> {
    let bad = |what: &str| {
        refuse(format!(
            "the H.264 configuration (`avcC`) of track {track} {what}"
        ))
    };
    let head = body.get(..6).ok_or_else(|| bad("is cut short"))?;
    let [version, profile, compat, level, lsm, nsps] = head else {
        return Err(bad("is cut short"));
    };
    if *version != 1 {
        return Err(bad("has an unknown version"));
    }
    if lsm & 3 == 2 {
        return Err(bad("declares 3-byte NAL unit lengths"));
    }
    let mut out = vec![
        1,
        *profile,
        *compat,
        *level,
        0xfc | (lsm & 3),
        0xe0 | (nsps & 0x1f),
    ];
    let mut at = 6;
    let units = |n: u8, nal: u8, at: &mut usize, out: &mut Vec<u8>| -> Result<(), Refusal> {
        for _ in 0..n {
            let len = usize::from(be16(body, *at).ok_or_else(|| bad("is cut short"))?);
            let unit = body
                .get(*at + 2..*at + 2 + len)
                .ok_or_else(|| bad("is cut short"))?;
            if unit.first().map(|h| h & 0x1f) != Some(nal) {
                return Err(bad("holds a parameter set of the wrong type"));
            }
            out.extend_from_slice(body.get(*at..*at + 2).unwrap_or_default());
            out.extend_from_slice(unit);
            *at += 2 + len;
        }
        Ok(())
    };
    if nsps & 0x1f == 0 {
        return Err(bad("has no sequence parameter set"));
    }
    units(nsps & 0x1f, 7, &mut at, &mut out)?;
    let npps = *body.get(at).ok_or_else(|| bad("is cut short"))?;
    if npps == 0 {
        return Err(bad("has no picture parameter set"));
    }
    out.push(npps);
    at += 1;
    units(npps, 8, &mut at, &mut out)?;
    // The high profiles' chroma and bit depth fields, kept when they are there whole.
    if matches!(profile, 100 | 110 | 122 | 144) {
        let fields: Option<[u8; 4]> = body.get(at..at + 4).and_then(|b| b.try_into().ok());
        if let Some([c, l, d, n]) = fields {
            let mut ext = vec![0xfc | (c & 3), 0xf8 | (l & 7), 0xf8 | (d & 7), n];
            let mut at2 = at + 4;
            let mut ok = true;
            for _ in 0..n {
                let len = be16(body, at2).map(usize::from).unwrap_or(usize::MAX - 2);
                match body.get(at2..at2.saturating_add(2 + len)) {
                    Some(unit) => {
                        ext.extend_from_slice(unit);
                        at2 += 2 + len;
                    }
                    None => ok = false,
                }
            }
            if ok {
                out.extend_from_slice(&ext);
            }
        }
    }
    Ok(out)
}

/// An MPEG-4 descriptor of `tag` around `body` (ISO/IEC 14496-1 §8.3.3, one length byte when
/// it fits, else four).
fn descriptor(tag: u8, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|n| *n < 1 << 28)
        .ok_or_else(|| refuse("an audio descriptor is too long"))?;
    let mut out = vec![tag];
    if len < 0x80 {
        out.extend_from_slice(&len.to_be_bytes()[3..]);
    } else {
        let b = |s: u32| ((len >> s) & 0x7f).to_be_bytes()[3];
        out.extend_from_slice(&[0x80 | b(21), 0x80 | b(14), 0x80 | b(7), b(0)]);
    }
    out.extend_from_slice(body);
    Ok(out)
}

/// The `esds` body of an AAC track, from its decoder configuration (AudioSpecificConfig).
fn esds(config: &[u8]) -> Result<Vec<u8>, Refusal> {
    let specific = descriptor(0x05, config)?;
    // objectTypeIndication 0x40 (MPEG-4 audio), streamType 5 (audio), no buffer or bitrates.
    let mut dc = vec![0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    dc.extend_from_slice(&specific);
    let dc = descriptor(0x04, &dc)?;
    let sl = descriptor(0x06, &[0x02])?;
    let es = descriptor(0x03, &cat(&[&[0, 0, 0], &dc, &sl]))?;
    Ok(cat(&[&[0, 0, 0, 0], &es]))
}

/// What the rebuild keeps of a track.
struct Track {
    video: bool,
    tkhd: Vec<u8>,
    mdhd: Vec<u8>,
    handler: [u8; 4],
    /// The sample entry's own fields (after the box header), and its configuration box.
    entry: Vec<u8>,
    config: Vec<u8>,
    tables: Vec<Vec<u8>>,
    /// Each chunk: where it was, how long it is.
    chunks: Vec<(u64, u64)>,
}

/// The sample sizes of `stsz`: a common size, or one each.
enum Sizes<'a> {
    Same(u32),
    Each(&'a [u8]),
}

impl Sizes<'_> {
    fn get(&self, i: usize) -> u64 {
        match self {
            Sizes::Same(n) => u64::from(*n),
            Sizes::Each(b) => u64::from(be32(b, i * 4).unwrap_or(0)),
        }
    }
}

impl Mp4Filter {
    #[expect(clippy::too_many_lines, reason = "one track, box by box")]
    fn track(&self, w: &mut Walk<'_>, trak: &Bx, n: usize) -> Result<Track, Refusal> {
        let bytes = w.bytes;
        let limits = &self.limits;
        let here = format!("track {n}");
        let kids = w.inside(trak, 2)?;
        let tkhd = one(&kids, b"tkhd", &here)?;
        let tkhd = fixed(bytes, &tkhd, (84, 96), (4..12, 4..20))?;
        let mdia = one(&kids, b"mdia", &here)?;
        let mkids = w.inside(&mdia, 3)?;
        let mdhd = fixed(
            bytes,
            &one(&mkids, b"mdhd", &here)?,
            (24, 36),
            (4..12, 4..20),
        )?;
        let hdlr = one(&mkids, b"hdlr", &here)?;
        let handler: [u8; 4] = hdlr
            .body(bytes)
            .get(8..12)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| refuse(format!("the handler (`hdlr`) of {here} is cut short")))?;
        let video = match &handler {
            b"vide" => true,
            b"soun" => false,
            h => {
                return Err(refuse(format!(
                    "{here} is a `{}` track; only video (H.264) and audio (AAC) tracks cross",
                    name(*h)
                )));
            }
        };
        let minf = one(&mkids, b"minf", &here)?;
        let ikids = w.inside(&minf, 4)?;
        let media_header: &[u8; 4] = if video { b"vmhd" } else { b"smhd" };
        one(&ikids, media_header, &here)?;
        let dinf = one(&ikids, b"dinf", &here)?;
        let dref = one(&w.inside(&dinf, 5)?, b"dref", &here)?;
        let dbody = dref.body(bytes);
        let entries = w.children(
            dref.start.saturating_add(8).min(dref.end),
            dref.end,
            6,
            "`dref`",
        )?;
        let self_contained = be32(dbody, 4) == Some(1)
            && entries.len() == 1
            && entries.iter().all(|e| {
                e.is(b"url ")
                    && e.body(bytes).len() == 4
                    && e.body(bytes).get(3).is_some_and(|f| f & 1 == 1)
            });
        if !self_contained {
            return Err(refuse(format!(
                "the media of {here} is in another file (its data reference is not this file); \
                 only self-contained files cross"
            )));
        }
        let stbl = one(&ikids, b"stbl", &here)?;
        let skids = w.inside(&stbl, 5)?;
        if opt(&skids, b"stz2", &here)?.is_some() {
            return Err(refuse(format!(
                "{here} has compact sample sizes (`stz2`), which are not rebuilt"
            )));
        }

        // The sample description: one entry, of the track's codec.
        let stsd = one(&skids, b"stsd", &here)?;
        if be32(stsd.body(bytes), 4) != Some(1) {
            return Err(refuse(format!(
                "{here} has other than one sample description"
            )));
        }
        let descs = w.children(
            stsd.start.saturating_add(8).min(stsd.end),
            stsd.end,
            6,
            "`stsd`",
        )?;
        let [desc] = descs.as_slice() else {
            return Err(refuse(format!(
                "{here} has other than one sample description"
            )));
        };
        let body = desc.body(bytes);
        let (entry, config) = if video {
            if !desc.is(b"avc1") {
                return Err(refuse(format!(
                    "{here} is `{}` video; only H.264 (`avc1`) video crosses",
                    name(desc.kind)
                )));
            }
            let (Some(width), Some(height)) = (be16(body, 24), be16(body, 26)) else {
                return Err(refuse(format!(
                    "the video sample entry of {here} is cut short"
                )));
            };
            let inner = w.children(desc.start + 78, desc.end, 7, "`avc1`")?;
            let cfg = one(&inner, b"avcC", &format!("the `avc1` entry of {here}"))?;
            // Data reference 1, the size, 72 dpi, one frame a sample, no compressor name,
            // 24-bit colour.
            let e = cat(&[
                &[0, 0, 0, 0, 0, 0, 0, 1],
                &[0; 16],
                &width.to_be_bytes(),
                &height.to_be_bytes(),
                &[0, 0x48, 0, 0, 0, 0x48, 0, 0],
                &[0; 4],
                &[0, 1],
                &[0; 32],
                &[0, 0x18, 0xff, 0xff],
            ]);
            (e, boxed(b"avcC", &avcc(cfg.body(bytes), n)?)?)
        } else {
            if !desc.is(b"mp4a") {
                return Err(refuse(format!(
                    "{here} is `{}` audio; only AAC (`mp4a`) audio crosses",
                    name(desc.kind)
                )));
            }
            let (Some(version), Some(channels), Some(bits), Some(rate)) = (
                be16(body, 8),
                be16(body, 16),
                be16(body, 18),
                be32(body, 24),
            ) else {
                return Err(refuse(format!(
                    "the audio sample entry of {here} is cut short"
                )));
            };
            if version != 0 {
                return Err(refuse(format!(
                    "the audio sample entry of {here} is a QuickTime version {version} entry"
                )));
            }
            let inner = w.children(desc.start + 28, desc.end, 7, "`mp4a`")?;
            let esds = one(&inner, b"esds", &format!("the `mp4a` entry of {here}"))?;
            let e = cat(&[
                &[0, 0, 0, 0, 0, 0, 0, 1],
                &[0; 8],
                &channels.to_be_bytes(),
                &bits.to_be_bytes(),
                &[0; 4],
                &rate.to_be_bytes(),
            ]);
            // Kept as it came for mp4parse to read, then written again from what it read (see
            // `rebuild`).
            (e, esds.whole(bytes).to_vec())
        };

        // The sample tables, each exactly as long as it says.
        let stts = one(&skids, b"stts", &here)?;
        let (v, count, stts_e) = table(bytes, &stts, 8, limits, n)?;
        let mut timed = 0u64;
        for e in stts_e.chunks_exact(8) {
            timed += u64::from(be32(e, 0).unwrap_or(0));
        }
        let mut tables = vec![table_box(b"stts", v, count, stts_e)?];
        let stsz = one(&skids, b"stsz", &here)?;
        let zbody = stsz.body(bytes);
        let (Some(common), Some(samples)) = (be32(zbody, 4), be32(zbody, 8)) else {
            return Err(refuse(format!("the `stsz` box of {here} is cut short")));
        };
        if samples > limits.max_samples {
            return Err(refuse(format!(
                "{here} has {samples} samples, over the limit of {}",
                limits.max_samples
            )));
        }
        let each = zbody.get(12..).unwrap_or_default();
        let want = if common == 0 {
            u64::from(samples) * 4
        } else {
            0
        };
        if usize_of(want) != Some(each.len()) {
            return Err(refuse(format!(
                "the `stsz` box of {here} declares {samples} samples but holds {} bytes of sizes",
                each.len()
            )));
        }
        if timed != u64::from(samples) {
            return Err(refuse(format!(
                "the `stts` box of {here} times {timed} samples but `stsz` lists {samples}"
            )));
        }
        let sizes = if common == 0 {
            Sizes::Each(each)
        } else {
            Sizes::Same(common)
        };
        if let Some(stss) = opt(&skids, b"stss", &here)? {
            let (v, count, e) = table(bytes, &stss, 4, limits, n)?;
            if e.chunks_exact(4)
                .any(|s| be32(s, 0).is_none_or(|i| i == 0 || i > samples))
            {
                return Err(refuse(format!(
                    "the `stss` box of {here} names a sample that does not exist"
                )));
            }
            tables.push(table_box(b"stss", v, count, e)?);
        }
        if let Some(ctts) = opt(&skids, b"ctts", &here)? {
            let (v, count, e) = table(bytes, &ctts, 8, limits, n)?;
            tables.push(table_box(b"ctts", v, count, e)?);
        }
        let stsc = one(&skids, b"stsc", &here)?;
        let (v, count, stsc_e) = table(bytes, &stsc, 12, limits, n)?;
        tables.push(table_box(b"stsc", v, count, stsc_e)?);
        tables.push(boxed(
            b"stsz",
            &cat(&[&[0; 4], zbody.get(4..).unwrap_or_default()]),
        )?);

        // The chunks: where each is and how long, from the chunk offsets, `stsc` and `stsz`.
        let offsets: Vec<u64> = match (opt(&skids, b"stco", &here)?, opt(&skids, b"co64", &here)?) {
            (Some(b), None) => {
                let (_, _, e) = table(bytes, &b, 4, limits, n)?;
                e.chunks_exact(4)
                    .map(|c| u64::from(be32(c, 0).unwrap_or(0)))
                    .collect()
            }
            (None, Some(b)) => {
                let (_, _, e) = table(bytes, &b, 8, limits, n)?;
                e.chunks_exact(8).map(|c| be64(c, 0).unwrap_or(0)).collect()
            }
            _ => {
                return Err(refuse(format!(
                    "{here} must have one chunk offset box (`stco` or `co64`)"
                )));
            }
        };
        let runs: Vec<(u32, u32, u32)> = stsc_e
            .chunks_exact(12)
            .map(|e| {
                (
                    be32(e, 0).unwrap_or(0),
                    be32(e, 4).unwrap_or(0),
                    be32(e, 8).unwrap_or(0),
                )
            })
            .collect();
        let bad_stsc = |what: &str| refuse(format!("the `stsc` box of {here} {what}"));
        let mut prev = 0u32;
        for (first, per, desc) in &runs {
            if *first <= prev || u64::from(*first) > offsets.len() as u64 {
                return Err(bad_stsc("names its chunks out of order or past the last"));
            }
            if *per == 0 || *desc != 1 {
                return Err(bad_stsc(
                    "has a run of no samples or another sample description",
                ));
            }
            prev = *first;
        }
        if !offsets.is_empty() && runs.first().map(|r| r.0) != Some(1) {
            return Err(bad_stsc("does not start at the first chunk"));
        }
        let mut chunks = Vec::with_capacity(offsets.len());
        let (mut run, mut sample) = (0usize, 0u64);
        for (i, off) in offsets.iter().enumerate() {
            while runs
                .get(run + 1)
                .is_some_and(|r| u64::from(r.0) <= i as u64 + 1)
            {
                run += 1;
            }
            let per = u64::from(runs.get(run).map_or(0, |r| r.1));
            if sample + per > u64::from(samples) {
                return Err(refuse(format!(
                    "the chunks of {here} hold more samples than its `stsz` lists ({samples})"
                )));
            }
            let mut len = 0u64;
            for s in sample..sample + per {
                len += sizes.get(usize_of(s).unwrap_or(usize::MAX));
            }
            sample += per;
            chunks.push((*off, len));
        }
        if sample != u64::from(samples) {
            return Err(refuse(format!(
                "the chunks of {here} hold {sample} samples but its `stsz` lists {samples}"
            )));
        }
        Ok(Track {
            video,
            tkhd: boxed(b"tkhd", &tkhd)?,
            mdhd: boxed(b"mdhd", &mdhd)?,
            handler,
            entry,
            config,
            tables,
            chunks,
        })
    }

    /// The `moov` of the rebuilt file, the chunks at `offsets` (each track's, in order).
    fn moov(
        mvhd: &[u8],
        tracks: &[Track],
        offsets: &[Vec<u64>],
        wide: bool,
    ) -> Result<Vec<u8>, Refusal> {
        let mut traks = Vec::new();
        for (t, offs) in tracks.iter().zip(offsets) {
            let hdlr = boxed(b"hdlr", &cat(&[&[0; 8], &t.handler, &[0; 13]]))?;
            let xmhd = if t.video {
                boxed(b"vmhd", &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])?
            } else {
                boxed(b"smhd", &[0; 8])?
            };
            let dinf = boxed(
                b"dinf",
                &boxed(
                    b"dref",
                    &cat(&[&[0, 0, 0, 0, 0, 0, 0, 1], &boxed(b"url ", &[0, 0, 0, 1])?]),
                )?,
            )?;
            let kind: &[u8; 4] = if t.video { b"avc1" } else { b"mp4a" };
            let entry = boxed(kind, &cat(&[&t.entry, &t.config]))?;
            let stsd = boxed(b"stsd", &cat(&[&[0, 0, 0, 0, 0, 0, 0, 1], &entry]))?;
            let count = u32::try_from(offs.len()).map_err(|_| refuse("too many chunks"))?;
            let co = if wide {
                let e: Vec<u8> = offs.iter().flat_map(|o| o.to_be_bytes()).collect();
                table_box(b"co64", 0, count, &e)?
            } else {
                let mut e = Vec::with_capacity(offs.len() * 4);
                for o in offs {
                    let o = u32::try_from(*o).map_err(|_| refuse("a chunk offset overflows"))?;
                    e.extend_from_slice(&o.to_be_bytes());
                }
                table_box(b"stco", 0, count, &e)?
            };
            let mut stbl = stsd;
            for tb in &t.tables {
                stbl.extend_from_slice(tb);
            }
            stbl.extend_from_slice(&co);
            let minf = boxed(b"minf", &cat(&[&xmhd, &dinf, &boxed(b"stbl", &stbl)?]))?;
            let mdia = boxed(b"mdia", &cat(&[&t.mdhd, &hdlr, &minf]))?;
            traks.extend_from_slice(&boxed(b"trak", &cat(&[&t.tkhd, &mdia]))?);
        }
        boxed(b"moov", &cat(&[&boxed(b"mvhd", mvhd)?, &traks]))
    }

    #[expect(clippy::too_many_lines, reason = "the file, box by box")]
    fn rebuild(&self, bytes: &[u8]) -> Result<Vec<u8>, Refusal> {
        if bytes.get(4..8) != Some(b"ftyp") {
            return Err(refuse(match sniff(bytes) {
                Some(what) => {
                    format!("it is declared mp4, but the bytes are {what}; declare its real kind")
                }
                None => "it is declared mp4, but the bytes are not an MP4 file (it does not start \
                         with an `ftyp` box)"
                    .to_owned(),
            }));
        }
        let mut w = Walk {
            bytes,
            limits: &self.limits,
            boxes: 0,
        };
        let top = w.children(0, bytes.len(), 0, "the file")?;
        let (mut moov, mut mdats) = (None, Vec::new());
        for (i, b) in top.iter().enumerate() {
            match &b.kind {
                b"ftyp" if i > 0 => return Err(refuse("it has a second `ftyp` box")),
                b"moov" if moov.is_some() => return Err(refuse("it has two `moov` boxes")),
                b"moov" => moov = Some(*b),
                b"mdat" => mdats.push((b.start as u64, b.end as u64)),
                b"moof" | b"mfra" | b"sidx" | b"styp" | b"ssix" | b"emsg" => {
                    return Err(refuse(format!(
                        "it is a fragmented MP4 (`{}` at byte {}), which is not rebuilt; \
                         export it as a plain MP4",
                        name(b.kind),
                        b.at
                    )));
                }
                _ => {}
            }
        }
        let ftyp = top
            .first()
            .copied()
            .ok_or_else(|| refuse("it has no boxes"))?;
        let fbody = ftyp.body(bytes);
        if fbody.len() < 8 || fbody.len() % 4 != 0 {
            return Err(refuse("its `ftyp` box is damaged"));
        }
        let brand = |b: &[u8]| BRANDS.iter().find(|x| x.as_slice() == b).copied();
        let major = brand(fbody.get(..4).unwrap_or_default()).ok_or_else(|| {
            refuse(format!(
                "its brand `{}` is not an MP4 brand that crosses ({}); a QuickTime movie or 3GP \
                 file must be exported as MP4",
                String::from_utf8_lossy(fbody.get(..4).unwrap_or_default()),
                BRANDS
                    .iter()
                    .map(|b| String::from_utf8_lossy(*b).trim().to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let mut brands: Vec<&[u8; 4]> = Vec::new();
        for c in fbody.get(8..).unwrap_or_default().chunks_exact(4) {
            if let Some(b) = brand(c).filter(|b| !brands.contains(b)) {
                brands.push(b);
            }
        }
        let mut ftyp_out = cat(&[major, fbody.get(4..8).unwrap_or_default()]);
        for b in &brands {
            ftyp_out.extend_from_slice(*b);
        }
        let ftyp_out = boxed(b"ftyp", &ftyp_out)?;
        let moov = moov.ok_or_else(|| refuse("it has no `moov` box (no track metadata)"))?;
        if mdats.is_empty() {
            return Err(refuse("it has no `mdat` box (no media data)"));
        }
        let kids = w.inside(&moov, 1)?;
        if kids.iter().any(|b| b.is(b"mvex")) {
            return Err(refuse(
                "it is a fragmented MP4 (`mvex` in `moov`), which is not rebuilt; export it as a \
                 plain MP4",
            ));
        }
        let mvhd = fixed(
            bytes,
            &one(&kids, b"mvhd", "`moov`")?,
            (100, 112),
            (4..12, 4..20),
        )?;
        let traks: Vec<&Bx> = kids.iter().filter(|b| b.is(b"trak")).collect();
        if traks.is_empty() {
            return Err(refuse("it has no tracks"));
        }
        if traks.len() > usize_of(u64::from(self.limits.max_tracks)).unwrap_or(usize::MAX) {
            return Err(refuse(format!(
                "it has {} tracks, over the limit of {}",
                traks.len(),
                self.limits.max_tracks
            )));
        }
        let mut tracks = Vec::with_capacity(traks.len());
        for (i, t) in traks.iter().enumerate() {
            tracks.push(self.track(&mut w, t, i + 1)?);
        }

        // mp4parse reads the metadata as it will be rebuilt (only the boxes kept, each table as
        // long as its count says, so no dropped box's count makes it allocate) and must agree;
        // the AAC configuration is what it read of the `esds`.
        let zeros: Vec<Vec<u64>> = tracks.iter().map(|t| vec![0; t.chunks.len()]).collect();
        let head = cat(&[&ftyp_out, &Self::moov(&mvhd, &tracks, &zeros, false)?]);
        let ctx = mp4parse::read_mp4(&mut Cursor::new(head))
            .map_err(|e| refuse(format!("its track metadata does not parse (mp4parse: {e})")))?;
        if ctx.tracks.len() != tracks.len() || ctx.mvex.is_some() {
            return Err(refuse(
                "its track metadata does not parse the same way twice",
            ));
        }
        for (i, (t, p)) in tracks.iter_mut().zip(ctx.tracks.iter()).enumerate() {
            let n = i + 1;
            let descs = p.stsd.as_ref().map(|s| s.descriptions.as_slice());
            match (t.video, &p.track_type, descs) {
                (true, mp4parse::TrackType::Video, Some([mp4parse::SampleEntry::Video(v)])) => {
                    if v.codec_type != mp4parse::CodecType::H264 || !v.protection_info.is_empty() {
                        return Err(refuse(format!(
                            "track {n} is not plain H.264 video ({:?})",
                            v.codec_type
                        )));
                    }
                }
                (false, mp4parse::TrackType::Audio, Some([mp4parse::SampleEntry::Audio(a)])) => {
                    let mp4parse::AudioCodecSpecific::ES_Descriptor(es) = &a.codec_specific else {
                        return Err(refuse(format!("track {n} is not AAC audio")));
                    };
                    if a.codec_type != mp4parse::CodecType::AAC
                        || !a.protection_info.is_empty()
                        || es.decoder_specific_data.is_empty()
                        || es.decoder_specific_data.len() > 64
                    {
                        return Err(refuse(format!(
                            "track {n} is not plain AAC audio ({:?})",
                            a.codec_type
                        )));
                    }
                    t.config = boxed(b"esds", &esds(&es.decoder_specific_data)?)?;
                }
                _ => {
                    return Err(refuse(format!(
                        "track {n} is read as another kind of track than its handler says"
                    )));
                }
            }
        }

        // The chunks in their order in the file, each inside an `mdat`, none overlapping.
        let mut order: Vec<(u64, u64, usize, usize)> = Vec::new();
        for (ti, t) in tracks.iter().enumerate() {
            for (ci, (off, len)) in t.chunks.iter().enumerate() {
                let end = off.checked_add(*len).unwrap_or(u64::MAX);
                if !mdats.iter().any(|(s, e)| off >= s && end <= *e) {
                    return Err(refuse(format!(
                        "chunk {} of track {} at byte {off} ({len} bytes) lies outside the media \
                         data (`mdat`)",
                        ci + 1,
                        ti + 1
                    )));
                }
                order.push((*off, *len, ti, ci));
            }
        }
        order.sort_unstable();
        let mut offsets: Vec<Vec<u64>> = tracks.iter().map(|t| vec![0; t.chunks.len()]).collect();
        let (mut payload, mut prev_end) = (0u64, 0u64);
        for (off, len, ti, ci) in &order {
            if *len > 0 && *off < prev_end {
                return Err(refuse(format!(
                    "chunk {} of track {} overlaps another chunk",
                    ci + 1,
                    ti + 1
                )));
            }
            prev_end = prev_end.max(off + len);
            if let Some(o) = offsets.get_mut(*ti).and_then(|t| t.get_mut(*ci)) {
                *o = payload;
            }
            payload += len;
        }

        // Offsets are 32-bit unless the new file is too large for them.
        let probe = Self::moov(&mvhd, &tracks, &offsets, false)?;
        let mdat_header = if payload + 8 > u64::from(u32::MAX) {
            16
        } else {
            8
        };
        let wide =
            (ftyp_out.len() + probe.len()) as u64 + mdat_header + payload > u64::from(u32::MAX);
        let moov_len = Self::moov(&mvhd, &tracks, &offsets, wide)?.len();
        let base = (ftyp_out.len() + moov_len) as u64 + mdat_header;
        for t in &mut offsets {
            for o in t.iter_mut() {
                *o += base;
            }
        }
        let moov_out = Self::moov(&mvhd, &tracks, &offsets, wide)?;
        let total = usize_of(base + payload).ok_or_else(|| refuse("it is too large"))?;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&ftyp_out);
        out.extend_from_slice(&moov_out);
        if mdat_header == 16 {
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(b"mdat");
            out.extend_from_slice(&(payload + 16).to_be_bytes());
        } else {
            let size = u32::try_from(payload + 8).map_err(|_| refuse("it is too large"))?;
            out.extend_from_slice(&size.to_be_bytes());
            out.extend_from_slice(b"mdat");
        }
        for (off, len, _, _) in &order {
            let (Some(s), Some(e)) = (usize_of(*off), usize_of(off + len)) else {
                return Err(refuse("a chunk lies past the end of the file"));
            };
            out.extend_from_slice(
                bytes
                    .get(s..e)
                    .ok_or_else(|| refuse("a chunk lies past the end of the file"))?,
            );
        }
        Ok(out)
    }
}

impl Filter for Mp4Filter {
    fn kind(&self) -> &str {
        "mp4"
    }

    fn memory(&self) -> MemoryBound {
        // The input, the rebuilt copy (no longer than the input's chunks) and the sample
        // tables (no more entries than the input has bytes for).
        MemoryBound::Proportional(3)
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        check_size("mp4", input, bytes)?;
        let out = self.rebuild(bytes)?;
        Ok(Filtered {
            bytes: out,
            steps: steps(input, StepState::Done),
            text: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::Filters;

    fn bx(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
        let body = parts.concat();
        let size = u32::try_from(body.len() + 8).unwrap();
        [&size.to_be_bytes()[..], kind, &body].concat()
    }

    const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_be_bytes()).collect()
    }

    /// A hand-made MP4: `ftyp`, the extra top-level boxes, `mdat` (gap bytes, then chunks of two
    /// samples, video and audio in turn), `moov` (with its extra boxes).
    #[derive(Clone)]
    struct Spec {
        brand: [u8; 4],
        video_codec: [u8; 4],
        audio_handler: [u8; 4],
        frames: u32,
        sample: usize,
        top_extra: Vec<Vec<u8>>,
        moov_extra: Vec<Vec<u8>>,
        gap: Vec<u8>,
        seed: u64,
    }

    impl Default for Spec {
        fn default() -> Self {
            Self {
                brand: *b"isom",
                video_codec: *b"avc1",
                audio_handler: *b"soun",
                frames: 8,
                sample: 300,
                top_extra: Vec::new(),
                moov_extra: Vec::new(),
                gap: Vec::new(),
                seed: 7,
            }
        }
    }

    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 56).to_le_bytes()[0]
            })
            .collect()
    }

    fn trak(id: u32, video: bool, s: &Spec, sizes: &[u32], offsets: &[u32]) -> Vec<u8> {
        let dur = s.frames * if video { 40 } else { 1024 };
        let tkhd = bx(
            b"tkhd",
            &[
                &[0, 0, 0, 3],
                &words(&[0x1111_1111, 0x2222_2222, id, 0, dur]),
                &[0; 8],
                &[0, 0, 0, 0],
                &if video { [0, 0, 0, 0] } else { [1, 0, 0, 0] },
                &words(&MATRIX),
                &words(if video {
                    &[320 << 16, 240 << 16]
                } else {
                    &[0, 0]
                }),
            ],
        );
        let mdhd = bx(
            b"mdhd",
            &[
                &[0; 4],
                &words(&[
                    0x1111_1111,
                    0x2222_2222,
                    if video { 1000 } else { 44100 },
                    dur,
                ]),
                &[0x55, 0xc4, 0, 0],
            ],
        );
        let handler: [u8; 4] = if video { *b"vide" } else { s.audio_handler };
        let hdlr = bx(
            b"hdlr",
            &[
                &[0; 8],
                &handler,
                &[0; 12],
                b"Recorded by Judge Wang's phone\0",
            ],
        );
        let xmhd = if video {
            bx(b"vmhd", &[&[0, 0, 0, 1], &[0; 8]])
        } else {
            bx(b"smhd", &[&[0; 8]])
        };
        let dinf = bx(
            b"dinf",
            &[&bx(
                b"dref",
                &[&[0, 0, 0, 0, 0, 0, 0, 1], &bx(b"url ", &[&[0, 0, 0, 1]])],
            )],
        );
        let entry = if video {
            let sps = [0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8];
            let pps = [0x68, 0xce, 0x3c, 0x80];
            let avcc = bx(
                b"avcC",
                &[
                    &[1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 10],
                    &sps,
                    &[1, 0, 4],
                    &pps,
                ],
            );
            let mut name = [0u8; 32];
            name[..5].copy_from_slice(b"\x04x264");
            bx(
                &s.video_codec,
                &[
                    &[0, 0, 0, 0, 0, 0, 0, 1],
                    &[0; 16],
                    &[1, 64, 0, 240],
                    &[0, 0x48, 0, 0, 0, 0x48, 0, 0],
                    &[0; 4],
                    &[0, 1],
                    &name,
                    &[0, 0x18, 0xff, 0xff],
                    &avcc,
                    &bx(b"pasp", &[&words(&[1, 1])]),
                ],
            )
        } else {
            let esds = [
                0, 0, 0, 0, 0x03, 0x19, 0x00, 0x01, 0x00, 0x04, 0x11, 0x40, 0x15, 0, 0, 0, 0, 1,
                0xf4, 0, 0, 1, 0xf4, 0, 0x05, 0x02, 0x12, 0x10, 0x06, 0x01, 0x02,
            ];
            bx(
                b"mp4a",
                &[
                    &[0, 0, 0, 0, 0, 0, 0, 1],
                    &[0; 8],
                    &[0, 2, 0, 16],
                    &[0; 4],
                    &words(&[44100 << 16]),
                    &bx(b"esds", &[&esds]),
                ],
            )
        };
        let stsd = bx(b"stsd", &[&[0, 0, 0, 0, 0, 0, 0, 1], &entry]);
        let delta = if video { 40 } else { 1024 };
        let stts = bx(b"stts", &[&words(&[0, 1, s.frames, delta])]);
        let stss = bx(b"stss", &[&words(&[0, 1, 1])]);
        let stsc = bx(b"stsc", &[&words(&[0, 1, 1, 2, 1])]);
        let stsz = if video {
            let mut w = vec![0, 0, s.frames];
            w.extend_from_slice(sizes);
            bx(b"stsz", &[&words(&w)])
        } else {
            bx(b"stsz", &[&words(&[0, sizes[0], s.frames])])
        };
        let mut co = vec![0, u32::try_from(offsets.len()).unwrap()];
        co.extend_from_slice(offsets);
        let stco = bx(b"stco", &[&words(&co)]);
        let mut stbl = vec![stsd, stts];
        if video {
            stbl.push(stss);
        }
        stbl.extend([stsc, stsz, stco, bx(b"sgpd", &[&[0; 8]])]);
        let stbl = bx(b"stbl", &stbl.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let minf = bx(b"minf", &[&xmhd, &dinf, &stbl]);
        let mdia = bx(b"mdia", &[&mdhd, &hdlr, &minf]);
        let edts = bx(
            b"edts",
            &[&bx(b"elst", &[&words(&[0, 1, dur, 0, 0x0001_0000])])],
        );
        bx(b"trak", &[&tkhd, &edts, &mdia])
    }

    /// The file of `s`, and where its `mdat` payload starts.
    fn mp4(s: &Spec) -> Vec<u8> {
        let ftyp = bx(b"ftyp", &[&s.brand, &[0, 0, 2, 0], b"isomiso2avc1mp41"]);
        let extra: Vec<u8> = s.top_extra.concat();
        let vsizes: Vec<u32> = (0..s.frames)
            .map(|i| u32::try_from(s.sample).unwrap() + i % 7)
            .collect();
        let asize = u32::try_from(s.sample / 2).unwrap();
        let mut payload = s.gap.clone();
        let base = u32::try_from(ftyp.len() + extra.len() + 8).unwrap();
        let (mut voff, mut aoff) = (Vec::new(), Vec::new());
        for c in 0..s.frames as usize / 2 {
            voff.push(base + u32::try_from(payload.len()).unwrap());
            for i in 0..2 {
                let n = vsizes[c * 2 + i] as usize;
                payload.extend(noise(s.seed + (c * 2 + i) as u64, n));
            }
            aoff.push(base + u32::try_from(payload.len()).unwrap());
            for i in 0..2 {
                payload.extend(noise(s.seed + 1000 + (c * 2 + i) as u64, asize as usize));
            }
        }
        let mvhd = bx(
            b"mvhd",
            &[
                &[0; 4],
                &words(&[0x1111_1111, 0x2222_2222, 1000, s.frames * 40, 0x0001_0000]),
                &[1, 0],
                &[0; 10],
                &words(&MATRIX),
                &[0; 24],
                &words(&[3]),
            ],
        );
        let mut moov: Vec<Vec<u8>> = vec![
            mvhd,
            trak(1, true, s, &vsizes, &voff),
            trak(2, false, s, &[asize], &aoff),
        ];
        moov.extend(s.moov_extra.iter().cloned());
        let moov = bx(b"moov", &moov.iter().map(Vec::as_slice).collect::<Vec<_>>());
        [ftyp, extra, bx(b"mdat", &[&payload]), moov].concat()
    }

    fn input() -> FilterInput<'static> {
        FilterInput {
            kind: "mp4",
            schema: None,
            steps: &["validate", "rebuild", "strip-metadata"],
            max_size: 1 << 26,
            release: true,
        }
    }

    fn run(bytes: &[u8]) -> Result<Vec<u8>, Refusal> {
        Mp4Filter::default().run(&input(), bytes).map(|f| f.bytes)
    }

    fn has(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    fn metadata_spec() -> Spec {
        Spec {
            top_extra: vec![
                bx(
                    b"udta",
                    &[&bx(b"\xa9nam", &[b"Judge Wang, hearing of 3 March"])],
                ),
                bx(b"free", &[b"free text that must not cross"]),
                bx(b"uuid", &[&[0x42; 16], b"XMP: creator Judge Wang"]),
            ],
            moov_extra: vec![
                bx(b"udta", &[&bx(b"\xa9xyz", &[b"+39.9087+116.3975/"])]),
                bx(
                    b"meta",
                    &[&[0; 4], &bx(b"hdlr", &[&[0; 8], b"mdir", &[0; 13]])],
                ),
            ],
            gap: b"PK\x03\x04 a hidden archive in the media data".to_vec(),
            ..Spec::default()
        }
    }

    /// The refused variants: (file, what is done to the clean file, the reason's substring).
    fn hostile() -> Vec<(&'static str, Vec<u8>, &'static str)> {
        let clean = mp4(&Spec::default());
        let ftyp_len = 32;
        let mut past_end = clean.clone();
        let size = be32(&past_end, ftyp_len).unwrap() + 1000;
        past_end[ftyp_len..ftyp_len + 4].copy_from_slice(&size.to_be_bytes());
        // The mdat's size as a 64-bit size of a terabyte.
        let mdat = be32(&clean, ftyp_len).unwrap() as usize;
        let large = [
            &clean[..ftyp_len],
            &1u32.to_be_bytes(),
            b"mdat",
            &(1u64 << 40).to_be_bytes(),
            &clean[ftyp_len + 8..ftyp_len + mdat],
            &clean[ftyp_len + mdat..],
        ]
        .concat();
        // The first video chunk's offset pointed at the `ftyp`.
        let mut outside = clean.clone();
        let at = clean.windows(4).position(|w| w == b"stco").unwrap() + 12;
        outside[at..at + 4].copy_from_slice(&0u32.to_be_bytes());
        let mut fragmented = clean.clone();
        fragmented.extend(bx(b"moof", &[&bx(b"mfhd", &[&[0, 0, 0, 0, 0, 0, 0, 1]])]));
        let mut png = Vec::new();
        ::image::ImageEncoder::write_image(
            ::image::codecs::png::PngEncoder::new(&mut png),
            &[200; 48],
            4,
            4,
            ::image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        vec![
            ("mp4-box-past-end.mp4", past_end, "past the end of the file"),
            (
                "mp4-chunk-outside-mdat.mp4",
                outside,
                "outside the media data",
            ),
            ("mp4-declared-png.png", png, "the bytes are a PNG image"),
            ("mp4-fragmented.mp4", fragmented, "fragmented MP4"),
            (
                "mp4-hevc.mp4",
                mp4(&Spec {
                    video_codec: *b"hvc1",
                    ..Spec::default()
                }),
                "only H.264",
            ),
            (
                "mp4-largesize-past-end.mp4",
                large,
                "past the end of the file",
            ),
            (
                "mp4-quicktime.mov",
                mp4(&Spec {
                    brand: *b"qt  ",
                    ..Spec::default()
                }),
                "is not an MP4 brand",
            ),
            (
                "mp4-subtitle-track.mp4",
                mp4(&Spec {
                    audio_handler: *b"sbtl",
                    ..Spec::default()
                }),
                "only video (H.264) and audio (AAC) tracks",
            ),
        ]
    }

    /// The accepted files: (file, bytes, what the manifest says of them).
    fn clean_files() -> Vec<(&'static str, Vec<u8>, &'static str)> {
        vec![
            (
                "mp4-clean.mp4",
                mp4(&Spec::default()),
                "clean; moov moved before mdat",
            ),
            (
                "mp4-udta-metadata.mp4",
                mp4(&metadata_spec()),
                "udta, meta, free, uuid, names and times dropped",
            ),
        ]
    }

    #[test]
    fn a_clean_file_is_rebuilt_moov_first_and_parses_again() {
        let clean = mp4(&Spec::default());
        let out = run(&clean).unwrap();
        assert_eq!(out.get(4..8), Some(&b"ftyp"[..]));
        let moov_at = be32(&out, 0).unwrap() as usize;
        assert_eq!(out.get(moov_at + 4..moov_at + 8), Some(&b"moov"[..]));
        let ctx = mp4parse::read_mp4(&mut Cursor::new(out.clone())).unwrap();
        assert_eq!(ctx.tracks.len(), 2);
        assert_eq!(ctx.tracks[0].track_type, mp4parse::TrackType::Video);
        assert_eq!(ctx.tracks[1].track_type, mp4parse::TrackType::Audio);
        // The media data is the old one, whole and in order; every chunk's bytes moved with it.
        let mdat_at = moov_at + be32(&out, moov_at).unwrap() as usize;
        assert_eq!(out.get(mdat_at + 4..mdat_at + 8), Some(&b"mdat"[..]));
        let old_end = 32 + be32(&clean, 32).unwrap() as usize;
        assert_eq!(out[mdat_at + 8..], clean[40..old_end]);
        let before = mp4parse::read_mp4(&mut Cursor::new(clean.clone())).unwrap();
        for (t, (new, old)) in ctx.tracks.iter().zip(&before.tracks).enumerate() {
            let new = &new.stco.as_ref().unwrap().offsets;
            let old = &old.stco.as_ref().unwrap().offsets;
            assert_eq!(new.len(), 4);
            for (c, (n, o)) in new.iter().zip(old.iter()).enumerate() {
                let (n, o) = (usize::try_from(*n).unwrap(), usize::try_from(*o).unwrap());
                assert_eq!(out[n..n + 150], clean[o..o + 150], "track {t} chunk {c}");
            }
        }
        assert_eq!(run(&out).unwrap(), out, "the rebuild is idempotent");
    }

    #[test]
    fn metadata_and_hidden_bytes_are_dropped() {
        let marked = mp4(&metadata_spec());
        let out = run(&marked).unwrap();
        for needle in [
            &b"Judge Wang"[..],
            b"free text",
            b"+39.9087",
            b"PK\x03\x04",
            b"x264",
            b"udta",
            b"meta",
            b"uuid",
            b"edts",
            b"sgpd",
            b"pasp",
            &0x1111_1111u32.to_be_bytes(),
        ] {
            assert!(!has(&out, needle), "{}", String::from_utf8_lossy(needle));
        }
        assert_eq!(
            out,
            run(&mp4(&Spec::default())).unwrap(),
            "what is left is the clean file's rebuild"
        );
    }

    #[test]
    fn hostile_variants_are_refused_with_their_reason() {
        for (file, bytes, why) in hostile() {
            let r = run(&bytes).unwrap_err();
            assert!(r.reason.contains(why), "{file}: {}", r.reason);
        }
        let limits = Mp4Limits {
            max_boxes: 10,
            ..Mp4Limits::default()
        };
        let r = Mp4Filter::new(limits)
            .run(&input(), &mp4(&Spec::default()))
            .unwrap_err();
        assert!(r.reason.contains("more than 10 boxes"), "{}", r.reason);
        let limits = Mp4Limits {
            max_samples: 4,
            ..Mp4Limits::default()
        };
        let r = Mp4Filter::new(limits)
            .run(&input(), &mp4(&Spec::default()))
            .unwrap_err();
        assert!(r.reason.contains("over the limit of 4"), "{}", r.reason);
        // Cut anywhere, the file is refused, never a panic.
        let clean = mp4(&Spec::default());
        for cut in (0..clean.len()).step_by(37) {
            assert!(run(&clean[..cut]).is_err(), "cut at {cut}");
        }
    }

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
    }

    /// `CROSSDOMAIN_WRITE_HOSTILE=1 cargo test -p tianping-crossdomain --lib filter::mp4`
    /// writes the corpus's `mp4-*` files, their manifest lines (others kept, sorted by file)
    /// and the `filter_mp4` fuzz seeds.
    fn maybe_write() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        if std::env::var_os("CROSSDOMAIN_WRITE_HOSTILE").is_none() {
            return;
        }
        ONCE.call_once(|| {
            let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/filter_mp4");
            std::fs::create_dir_all(&seeds).unwrap();
            let path = dir().join("manifest.tsv");
            let old = std::fs::read_to_string(&path).unwrap_or_default();
            let mut header = String::new();
            let mut rows: BTreeMap<String, String> = BTreeMap::new();
            for line in old.lines() {
                if line.starts_with('#') {
                    header.push_str(line);
                    header.push('\n');
                } else if let Some((file, _)) = line.split_once('\t') {
                    rows.insert(file.to_owned(), line.to_owned());
                }
            }
            let all = hostile()
                .into_iter()
                .map(|(f, b, r)| (f, b, "refuse", r))
                .chain(
                    clean_files()
                        .into_iter()
                        .map(|(f, b, r)| (f, b, "accept", r)),
                );
            for (file, bytes, outcome, reason) in all {
                std::fs::write(dir().join(file), &bytes).unwrap();
                std::fs::write(seeds.join(file), &bytes).unwrap();
                rows.insert(file.to_owned(), format!("{file}\tmp4\t{outcome}\t{reason}"));
            }
            let mut text = header;
            for line in rows.values() {
                text.push_str(line);
                text.push('\n');
            }
            std::fs::write(path, text).unwrap();
        });
    }

    /// The corpus's `mp4` lines, through the filters as a node runs them: each refused with its
    /// reason, each accepted file rebuilt, parsed again by mp4parse and passed again unchanged.
    #[test]
    fn the_hostile_corpus_mp4_lines() {
        maybe_write();
        let mut filters = Filters::new();
        filters.register(Arc::new(Mp4Filter::default()));
        let manifest = std::fs::read_to_string(dir().join("manifest.tsv")).unwrap();
        let mut seen = 0;
        for line in manifest.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            let [file, "mp4", outcome, reason] = cols[..] else {
                continue;
            };
            seen += 1;
            let bytes = std::fs::read(dir().join(file)).unwrap();
            match (outcome, filters.run(&input(), &bytes)) {
                ("refuse", Err(r)) => assert!(r.reason.contains(reason), "{file}: {r}"),
                ("accept", Ok(out)) => {
                    let again = filters.run(&input(), &out.bytes).unwrap();
                    assert_eq!(again.bytes, out.bytes, "{file}: not idempotent");
                    let ctx = mp4parse::read_mp4(&mut Cursor::new(out.bytes.clone())).unwrap();
                    assert_eq!(ctx.tracks.len(), 2, "{file}");
                    assert!(ctx.userdata.is_none(), "{file}: udta kept");
                    assert!(!has(&out.bytes, b"Judge Wang"), "{file}");
                }
                (want, got) => panic!("{file}: want {want}, got {got:?}"),
            }
        }
        assert_eq!(seen, hostile().len() + clean_files().len());
    }
}
