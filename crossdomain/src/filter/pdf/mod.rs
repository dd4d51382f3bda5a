//! `pdf`: a PDF checked from its header, parsed (`lopdf`), and rebuilt as a new document from
//! an allow-list of the object types and keys that carry pages, text, fonts and images.
//!
//! **What is refused.** Bytes that are not a PDF (true-type check: `%PDF-1.0` to `%PDF-1.7`
//! or `%PDF-2.0` at the first byte; a JPEG declared as PDF is refused), a file whose
//! cross-reference data is damaged or that is cut short (`lopdf` would rebuild it by
//! guessing), encryption (the filter cannot read what it must check), JavaScript anywhere in
//! the file (`/JS`, a `/JavaScript` action or name tree) and `Launch` actions (which start a
//! program): a document that carries them was made to do something, so the sender must remove
//! them and export again rather than have the filter silently change what the document does.
//! Also refused, because the rebuilt page would no longer show what the sender saw: Type 3
//! fonts (glyphs drawn by content streams), inline images, images coded with `JBIG2Decode`
//! (a decoder with a history of exploits) or `JPXDecode`, colour spaces other than the device,
//! calibrated, `Lab`, `ICCBased` and `Indexed` ones, and limits exceeded ([`PdfLimits`]).
//!
//! **What is dropped** (content disarm and reconstruction: what is not on the allow-list is
//! not rebuilt): `OpenAction` and every additional action (`AA`), annotations (so links and
//! their `URI` actions, widgets, `RichMedia`, `Movie`, `Sound`, file attachments), the
//! `AcroForm` (with XFA), the `Names` tree (with `EmbeddedFiles`), structure tree, optional
//! content, page labels, thumbnails, XMP `Metadata` streams, patterns and shadings, the
//! `Info` dictionary when the flow asks `strip-metadata` (else only its text fields cross),
//! every object no page reaches, and every older revision: incremental updates are collapsed
//! into one revision with one fresh cross-reference table (old revisions are how redacted
//! PDFs leak). Outline items cross with their titles and explicit `GoTo` destinations only.
//!
//! **What is rebuilt.** A new catalog and one flat page tree whose pages carry their
//! inherited `MediaBox`, `CropBox`, `Rotate` and `Resources`; each page's content streams
//! parsed, kept to the allowed operators, written again as one Flate stream; fonts with their
//! descriptors, embedded font files and `ToUnicode` maps (the maps parsed and written again in
//! one canonical form); image XObjects with allowed filters (a `DCTDecode` image through the
//! `jpeg` filter, so its metadata goes too) and form XObjects like pages. Objects are numbered
//! in the order the pages reach them, so the rebuild is deterministic, and the rebuilt file
//! passes the filter again unchanged.
//!
//! **Text.** Shown strings are decoded through each font's `ToUnicode` map, or a simple
//! font's standard encoding; outline titles and `Info` strings are text too. On a release
//! ([`FilterInput::release`]) a string that cannot be decoded refuses the document, since its
//! markings cannot be checked.

mod cmap;
mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use lopdf::content::{Content, Operation};
use lopdf::xref::XrefType;
use lopdf::{Dictionary, Document, LoadOptions, Object, ObjectId, Stream};

use self::cmap::CMap;
use self::text::{FontText, allowed_operator, shown, single_table};
use super::text::{check_size, steps};
use super::{Filter, FilterInput, Filtered, JpegFilter, MemoryBound, Refusal, StepState};

/// The limits a PDF must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdfLimits {
    /// The most indirect objects in the file: what `lopdf` holds parsed at once.
    pub max_objects: usize,
    /// The most pages.
    pub max_pages: usize,
    /// How deep arrays and dictionaries, the page tree, the outline and form XObjects within
    /// form XObjects may nest (a loop of references is deep too).
    pub max_depth: usize,
    /// The most bytes one stream may decode to.
    pub max_stream: usize,
    /// The most bytes all decoded streams together may take, per byte of file (plus 1 MiB, so a
    /// small file with a plain page passes).
    pub max_ratio: u32,
}

impl Default for PdfLimits {
    /// 200,000 objects and 5,000 pages (a thick case file), nesting 32 deep (real files stay
    /// under 10), 64 MiB per decoded stream (a scanned page's image is a few), 64 decoded bytes
    /// per file byte (text content compresses 3 to 10 times).
    fn default() -> Self {
        Self {
            max_objects: 200_000,
            max_pages: 5_000,
            max_depth: 32,
            max_stream: 64 << 20,
            max_ratio: 64,
        }
    }
}

/// The `pdf` filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct PdfFilter {
    limits: PdfLimits,
}

impl PdfFilter {
    /// A `pdf` filter with `limits`.
    pub fn new(limits: PdfLimits) -> Self {
        Self { limits }
    }
}

fn refuse(reason: impl Into<String>) -> Refusal {
    Refusal::new("pdf", reason)
}

fn sniff_other(bytes: &[u8]) -> &'static str {
    const MAGIC: [(&[u8], &str); 6] = [
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"PK\x03\x04", "a ZIP archive (an OFD or office document?)"),
        (b"GIF8", "a GIF image"),
        (b"II*\0", "a TIFF image"),
        (b"MM\0*", "a TIFF image"),
    ];
    MAGIC
        .iter()
        .find(|(m, _)| bytes.starts_with(m))
        .map_or("not a PDF document", |(_, what)| *what)
}

fn true_type(bytes: &[u8]) -> Result<(), Refusal> {
    let version = bytes.get(..8);
    let ok = matches!(
        version,
        Some([b'%', b'P', b'D', b'F', b'-', b'1', b'.', b'0'..=b'7'])
    ) || version == Some(b"%PDF-2.0");
    if ok {
        return Ok(());
    }
    if bytes.starts_with(b"%PDF-") {
        return Err(refuse(
            "its header names a PDF version this filter does not know",
        ));
    }
    Err(refuse(format!(
        "it is declared pdf, but the bytes are {}; declare its real kind",
        sniff_other(bytes)
    )))
}

fn name_of(o: &Object) -> Option<&[u8]> {
    o.as_name().ok()
}

/// Whether `o` (within object `id`) holds JavaScript or a Launch action; the reason if so.
fn active(o: &Object, id: ObjectId, depth: usize, limits: &PdfLimits) -> Result<(), Refusal> {
    if depth > limits.max_depth {
        return Err(refuse(format!(
            "object {} nests deeper than {}",
            id.0, limits.max_depth
        )));
    }
    let dict = match o {
        Object::Dictionary(d) => d,
        Object::Stream(s) => &s.dict,
        Object::Array(a) => {
            for x in a {
                active(x, id, depth + 1, limits)?;
            }
            return Ok(());
        }
        _ => return Ok(()),
    };
    let s = dict.get(b"S").ok().and_then(name_of);
    if dict.has(b"JS") || s == Some(b"JavaScript") || dict.has(b"JavaScript") {
        return Err(refuse(format!(
            "PDF holds JavaScript in object {}; remove the script and export the PDF again",
            id.0
        )));
    }
    if s == Some(b"Launch") {
        return Err(refuse(format!(
            "PDF holds a Launch action (which starts a program) in object {}; remove it and \
             export the PDF again",
            id.0
        )));
    }
    for (_, v) in dict.iter() {
        active(v, id, depth + 1, limits)?;
    }
    Ok(())
}

/// The text decoders of a resource dictionary's fonts, by resource name.
type FontsByName = BTreeMap<Vec<u8>, Rc<FontText>>;

/// The attributes a page inherits from its tree.
#[derive(Clone, Default)]
struct Inherited {
    resources: Option<Object>,
    media: Option<Object>,
    crop: Option<Object>,
    rotate: Option<Object>,
}

/// The rebuild of one document.
struct Rebuild<'a> {
    src: &'a Document,
    limits: &'a PdfLimits,
    release: bool,
    objects: BTreeMap<ObjectId, Object>,
    next: u32,
    /// Old object to new, for what pages share (fonts, images, forms, font files).
    memo: BTreeMap<ObjectId, ObjectId>,
    /// Text decoders of the new font objects.
    fonts: BTreeMap<ObjectId, Rc<FontText>>,
    /// Old page object to new.
    pages: BTreeMap<ObjectId, ObjectId>,
    /// Decoded bytes left.
    budget: usize,
    text: Vec<String>,
}

impl<'a> Rebuild<'a> {
    fn alloc(&mut self) -> ObjectId {
        let id = (self.next, 0);
        self.next += 1;
        id
    }

    fn deref<'o>(&'o self, mut o: &'o Object, depth: usize) -> Result<&'o Object, Refusal> {
        let mut hops = 0;
        while let Object::Reference(id) = o {
            hops += 1;
            if hops + depth > self.limits.max_depth {
                return Err(refuse(format!("references from object {} loop", id.0)));
            }
            o = self.src.get_object(*id).unwrap_or(&Object::Null);
        }
        Ok(o)
    }

    fn depth(&self, depth: usize) -> Result<(), Refusal> {
        if depth > self.limits.max_depth {
            return Err(refuse(format!(
                "it nests deeper than {}",
                self.limits.max_depth
            )));
        }
        Ok(())
    }

    /// A plain value (numbers, names, strings, arrays of them), references resolved.
    fn plain(&self, o: &Object, depth: usize) -> Result<Object, Refusal> {
        self.depth(depth)?;
        Ok(match self.deref(o, depth)? {
            Object::Real(r) if !r.is_finite() => Object::Integer(0),
            Object::Array(a) => Object::Array(
                a.iter()
                    .map(|x| self.plain(x, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Object::Dictionary(d) => Object::Dictionary(self.plain_dict(d, None, depth + 1)?),
            Object::Stream(_) => Object::Null,
            Object::Reference(_) => Object::Null,
            x => x.clone(),
        })
    }

    /// A dictionary of plain values, kept to `keys` (all when `None`).
    fn plain_dict(
        &self,
        d: &Dictionary,
        keys: Option<&[&str]>,
        depth: usize,
    ) -> Result<Dictionary, Refusal> {
        self.depth(depth)?;
        let mut out = Dictionary::new();
        for (k, v) in d.iter() {
            let keep = keys.is_none_or(|keys| keys.iter().any(|x| x.as_bytes() == k.as_slice()));
            if keep {
                out.set(k.clone(), self.plain(v, depth + 1)?);
            }
        }
        Ok(out)
    }

    fn decoded(&mut self, s: &Stream, what: &str) -> Result<Vec<u8>, Refusal> {
        let limit = self.limits.max_stream.min(self.budget);
        let out = s
            .decompressed_content_with_limit(limit)
            .map_err(|e| refuse(format!("{what} does not decode within {limit} bytes: {e}")))?;
        self.budget = self.budget.saturating_sub(out.len());
        Ok(out)
    }

    /// A stream copied with its raw bytes, its dictionary kept to `keys` and its filters to
    /// the allowed ones.
    fn raw_stream(&mut self, old: ObjectId, s: &Stream, keys: &[&str]) -> Result<Stream, Refusal> {
        const FILTERS: [&[u8]; 7] = [
            b"FlateDecode",
            b"LZWDecode",
            b"ASCIIHexDecode",
            b"ASCII85Decode",
            b"RunLengthDecode",
            b"DCTDecode",
            b"CCITTFaxDecode",
        ];
        let filters = if s.dict.has(b"Filter") {
            s.filters()
                .map_err(|_| refuse(format!("stream object {} names no valid filter", old.0)))?
        } else {
            Vec::new()
        };
        for f in &filters {
            if !FILTERS.contains(f) {
                return Err(refuse(format!(
                    "stream object {} is coded with {}, which is not rebuilt{}; export it with \
                     Flate or JPEG compression",
                    old.0,
                    String::from_utf8_lossy(f),
                    if *f == b"JBIG2Decode" {
                        " (JBIG2 decoders have been exploited)"
                    } else {
                        ""
                    }
                )));
            }
        }
        let mut dict = self.plain_dict(&s.dict, Some(keys), 1)?;
        for k in ["Filter", "DecodeParms"] {
            if let Ok(v) = s.dict.get(k.as_bytes()) {
                dict.set(k, self.plain(v, 1)?);
            }
        }
        let mut content = s.content.clone();
        if filters == [b"DCTDecode".as_slice()] {
            let input = FilterInput {
                kind: "jpeg",
                schema: None,
                steps: &["validate", "rebuild", "strip-metadata"],
                max_size: u64::MAX,
                release: false,
            };
            content = JpegFilter::default()
                .run(&input, &content)
                .map_err(|r| refuse(format!("the JPEG image in object {}: {}", old.0, r.reason)))?
                .bytes;
        }
        Ok(Stream::new(dict, content))
    }

    /// A stream object `o` (a reference) copied by `make`, once per old object.
    fn shared(
        &mut self,
        o: &Object,
        what: &str,
        make: &mut dyn FnMut(&mut Self, ObjectId, &Stream) -> Result<Object, Refusal>,
    ) -> Result<Object, Refusal> {
        let Object::Reference(old) = o else {
            return Err(refuse(format!("{what} is not a stream object")));
        };
        if let Some(new) = self.memo.get(old) {
            return Ok(Object::Reference(*new));
        }
        let Ok(Object::Stream(s)) = self.src.get_object(*old) else {
            return Err(refuse(format!("{what} (object {}) is not a stream", old.0)));
        };
        let new = self.alloc();
        self.memo.insert(*old, new);
        let made = make(self, *old, s)?;
        self.objects.insert(new, made);
        Ok(Object::Reference(new))
    }

    fn colour_space(&mut self, o: &Object, depth: usize) -> Result<Object, Refusal> {
        self.depth(depth)?;
        let cs = self.deref(o, depth)?.clone();
        match &cs {
            Object::Name(n)
                if matches!(n.as_slice(), b"DeviceGray" | b"DeviceRGB" | b"DeviceCMYK") =>
            {
                Ok(cs)
            }
            Object::Array(a) => {
                let family = a.first().and_then(name_of).unwrap_or_default();
                match family {
                    b"CalGray" | b"CalRGB" | b"Lab" => self.plain(&cs, depth + 1),
                    b"ICCBased" => {
                        let icc = a.get(1).cloned().unwrap_or(Object::Null);
                        let icc = self.shared(&icc, "an ICC profile", &mut |r, old, s| {
                            let mut st = r.raw_stream(old, s, &["N", "Range"])?;
                            if let Ok(alt) = s.dict.get(b"Alternate") {
                                let alt = r.colour_space(alt, depth + 2)?;
                                st.dict.set("Alternate", alt);
                            }
                            Ok(Object::Stream(st))
                        })?;
                        Ok(Object::Array(vec![Object::Name(b"ICCBased".to_vec()), icc]))
                    }
                    b"Indexed" => {
                        let base =
                            self.colour_space(a.get(1).unwrap_or(&Object::Null), depth + 1)?;
                        let hival = self.plain(a.get(2).unwrap_or(&Object::Null), depth + 1)?;
                        let lookup = match a.get(3) {
                            Some(r @ Object::Reference(_))
                                if matches!(self.deref(r, depth)?, Object::Stream(_)) =>
                            {
                                self.shared(r, "a colour lookup table", &mut |r, old, s| {
                                    Ok(Object::Stream(r.raw_stream(old, s, &[])?))
                                })?
                            }
                            Some(x) => self.plain(x, depth + 1)?,
                            None => Object::Null,
                        };
                        Ok(Object::Array(vec![
                            Object::Name(b"Indexed".to_vec()),
                            base,
                            hival,
                            lookup,
                        ]))
                    }
                    other => Err(refuse(format!(
                        "it uses the colour space {}, which is not rebuilt; export it with RGB, \
                         grey or CMYK colours",
                        String::from_utf8_lossy(other)
                    ))),
                }
            }
            Object::Name(n) => Err(refuse(format!(
                "it uses the colour space {}, which is not rebuilt",
                String::from_utf8_lossy(n)
            ))),
            _ => Err(refuse("a colour space is malformed")),
        }
    }

    fn image(&mut self, old: ObjectId, s: &Stream, depth: usize) -> Result<Object, Refusal> {
        self.depth(depth)?;
        let mut st = self.raw_stream(
            old,
            s,
            &[
                "Type",
                "Subtype",
                "Width",
                "Height",
                "BitsPerComponent",
                "Decode",
                "ImageMask",
                "Interpolate",
                "Intent",
            ],
        )?;
        if let Ok(cs) = s.dict.get(b"ColorSpace") {
            let cs = self.colour_space(cs, depth + 1)?;
            st.dict.set("ColorSpace", cs);
        }
        for key in ["SMask", "Mask"] {
            match s.dict.get(key.as_bytes()) {
                Ok(r @ Object::Reference(_)) => {
                    let m = self.shared(r, "an image mask", &mut |r, old, s| {
                        r.image(old, s, depth + 1)
                    })?;
                    st.dict.set(key, m);
                }
                Ok(Object::Array(a)) if key == "Mask" => {
                    let a = self.plain(&Object::Array(a.clone()), depth + 1)?;
                    st.dict.set(key, a);
                }
                _ => {}
            }
        }
        Ok(Object::Stream(st))
    }

    fn font(&mut self, name: &[u8], o: &Object, depth: usize) -> Result<Object, Refusal> {
        let fname = String::from_utf8_lossy(name).into_owned();
        if let Object::Reference(old) = o
            && let Some(new) = self.memo.get(old)
        {
            return Ok(Object::Reference(*new));
        }
        let d = match self.deref(o, depth)? {
            Object::Dictionary(d) => d.clone(),
            _ => return Err(refuse(format!("font {fname} is not a font dictionary"))),
        };
        let new = self.alloc();
        if let Object::Reference(old) = o {
            self.memo.insert(*old, new);
        }
        let subtype = d.get(b"Subtype").ok().and_then(name_of).unwrap_or_default();
        let (dict, text) = match subtype {
            b"Type1" | b"MMType1" | b"TrueType" => self.simple_font(&fname, &d, depth)?,
            b"Type0" => self.type0_font(&fname, &d, depth)?,
            b"Type3" => {
                return Err(refuse(format!(
                    "font {fname} is a Type 3 font (its glyphs are drawn by content streams), \
                     which is not rebuilt; embed a TrueType or OpenType font instead"
                )));
            }
            other => {
                return Err(refuse(format!(
                    "font {fname} is of type {}, which is not rebuilt",
                    String::from_utf8_lossy(other)
                )));
            }
        };
        self.objects.insert(new, Object::Dictionary(dict));
        self.fonts.insert(new, Rc::new(text));
        Ok(Object::Reference(new))
    }

    /// The `ToUnicode` map, parsed and written again as a new stream; `None` when it is
    /// missing or does not parse (the font's text is then undecodable).
    fn unicode_map(
        &mut self,
        d: &Dictionary,
        depth: usize,
    ) -> Result<Option<(Object, CMap)>, Refusal> {
        let Ok(o) = d.get(b"ToUnicode") else {
            return Ok(None);
        };
        let Object::Stream(s) = self.deref(o, depth)? else {
            return Ok(None);
        };
        let s = s.clone();
        let bytes = self.decoded(&s, "a ToUnicode map")?;
        let Ok(map) = CMap::parse(&bytes) else {
            return Ok(None);
        };
        let id = self.alloc();
        let mut st = Stream::new(Dictionary::new(), map.write());
        st.compress()
            .map_err(|e| refuse(format!("a ToUnicode map cannot be compressed: {e}")))?;
        self.objects.insert(id, Object::Stream(st));
        Ok(Some((Object::Reference(id), map)))
    }

    fn descriptor(&mut self, d: &Dictionary, depth: usize) -> Result<Option<Object>, Refusal> {
        let Ok(o) = d.get(b"FontDescriptor") else {
            return Ok(None);
        };
        if let Object::Reference(old) = o
            && let Some(new) = self.memo.get(old)
        {
            return Ok(Some(Object::Reference(*new)));
        }
        let Object::Dictionary(fd) = self.deref(o, depth)?.clone() else {
            return Ok(None);
        };
        let new = self.alloc();
        if let Object::Reference(old) = o {
            self.memo.insert(*old, new);
        }
        let mut out = self.plain_dict(
            &fd,
            Some(&[
                "Type",
                "FontName",
                "FontFamily",
                "FontStretch",
                "FontWeight",
                "Flags",
                "FontBBox",
                "ItalicAngle",
                "Ascent",
                "Descent",
                "Leading",
                "CapHeight",
                "XHeight",
                "StemV",
                "StemH",
                "AvgWidth",
                "MaxWidth",
                "MissingWidth",
                "CharSet",
                "Lang",
            ]),
            depth + 1,
        )?;
        for key in ["FontFile", "FontFile2", "FontFile3", "CIDSet"] {
            if let Ok(f) = fd.get(key.as_bytes()) {
                let f = self.shared(f, "an embedded font file", &mut |r, old, s| {
                    Ok(Object::Stream(r.raw_stream(
                        old,
                        s,
                        &["Length1", "Length2", "Length3", "Subtype"],
                    )?))
                })?;
                out.set(key, f);
            }
        }
        self.objects.insert(new, Object::Dictionary(out));
        Ok(Some(Object::Reference(new)))
    }

    fn simple_font(
        &mut self,
        _name: &str,
        d: &Dictionary,
        depth: usize,
    ) -> Result<(Dictionary, FontText), Refusal> {
        let mut out = self.plain_dict(
            d,
            Some(&[
                "Type",
                "Subtype",
                "BaseFont",
                "FirstChar",
                "LastChar",
                "Widths",
                "Encoding",
            ]),
            depth + 1,
        )?;
        if let Some(fd) = self.descriptor(d, depth + 1)? {
            out.set("FontDescriptor", fd);
        }
        let base = out
            .get(b"BaseFont")
            .ok()
            .and_then(name_of)
            .unwrap_or_default()
            .to_vec();
        let single = single_table(out.get(b"Encoding").ok(), &base);
        let map = match self.unicode_map(d, depth + 1)? {
            Some((stream, map)) => {
                out.set("ToUnicode", stream);
                Some(map)
            }
            None => None,
        };
        Ok((
            out,
            FontText {
                map,
                single,
                wide: false,
                utf16: false,
            },
        ))
    }

    fn type0_font(
        &mut self,
        name: &str,
        d: &Dictionary,
        depth: usize,
    ) -> Result<(Dictionary, FontText), Refusal> {
        let mut out = self.plain_dict(d, Some(&["Type", "Subtype", "BaseFont"]), depth + 1)?;
        let enc = match d.get(b"Encoding").map(|e| self.deref(e, depth)) {
            Ok(Ok(Object::Name(n))) => n.clone(),
            _ => {
                return Err(refuse(format!(
                    "font {name} has an embedded encoding CMap, which is not rebuilt; use \
                     Identity-H or a predefined CMap"
                )));
            }
        };
        out.set("Encoding", Object::Name(enc.clone()));
        let desc = d
            .get(b"DescendantFonts")
            .ok()
            .map(|o| self.deref(o, depth))
            .transpose()?
            .and_then(|o| o.as_array().ok())
            .and_then(|a| a.first())
            .cloned()
            .ok_or_else(|| refuse(format!("font {name} has no descendant font")))?;
        let Object::Dictionary(cid) = self.deref(&desc, depth)?.clone() else {
            return Err(refuse(format!(
                "font {name}'s descendant font is malformed"
            )));
        };
        let sub = cid
            .get(b"Subtype")
            .ok()
            .and_then(name_of)
            .unwrap_or_default();
        if !matches!(sub, b"CIDFontType0" | b"CIDFontType2") {
            return Err(refuse(format!(
                "font {name}'s descendant font is of an unknown type"
            )));
        }
        let cid_id = self.alloc();
        let mut cid_out = self.plain_dict(
            &cid,
            Some(&[
                "Type",
                "Subtype",
                "BaseFont",
                "CIDSystemInfo",
                "DW",
                "W",
                "DW2",
                "W2",
            ]),
            depth + 1,
        )?;
        if let Some(fd) = self.descriptor(&cid, depth + 1)? {
            cid_out.set("FontDescriptor", fd);
        }
        match cid.get(b"CIDToGIDMap") {
            Ok(Object::Name(n)) if n == b"Identity" => {
                cid_out.set("CIDToGIDMap", Object::Name(n.clone()));
            }
            Ok(r @ Object::Reference(_)) => {
                let m = self.shared(r, "a CID to glyph map", &mut |r, old, s| {
                    Ok(Object::Stream(r.raw_stream(old, s, &[])?))
                })?;
                cid_out.set("CIDToGIDMap", m);
            }
            _ => {}
        }
        self.objects.insert(cid_id, Object::Dictionary(cid_out));
        out.set(
            "DescendantFonts",
            Object::Array(vec![Object::Reference(cid_id)]),
        );
        let map = match self.unicode_map(d, depth + 1)? {
            Some((stream, map)) => {
                out.set("ToUnicode", stream);
                Some(map)
            }
            None => None,
        };
        let utf16 = matches!(enc.as_slice(), b"UniGB-UCS2-H" | b"UniGB-UTF16-H");
        Ok((
            out,
            FontText {
                map,
                single: None,
                wide: true,
                utf16,
            },
        ))
    }

    /// A resource dictionary rebuilt, with the text decoders of its fonts by name.
    fn resources(
        &mut self,
        o: Option<&Object>,
        depth: usize,
    ) -> Result<(Dictionary, FontsByName), Refusal> {
        self.depth(depth)?;
        let mut out = Dictionary::new();
        let mut fonts = BTreeMap::new();
        let Some(o) = o else {
            return Ok((out, fonts));
        };
        let Object::Dictionary(res) = self.deref(o, depth)?.clone() else {
            return Ok((out, fonts));
        };
        let sub = |r: &Self, key: &[u8]| -> Result<Option<Dictionary>, Refusal> {
            match res.get(key) {
                Ok(x) => match r.deref(x, depth)? {
                    Object::Dictionary(d) => Ok(Some(d.clone())),
                    _ => Ok(None),
                },
                Err(_) => Ok(None),
            }
        };
        if let Some(fd) = sub(self, b"Font")? {
            let mut f = Dictionary::new();
            for (name, font) in fd.iter() {
                let new = self.font(name, font, depth + 1)?;
                if let Object::Reference(id) = new
                    && let Some(t) = self.fonts.get(&id)
                {
                    fonts.insert(name.clone(), Rc::clone(t));
                }
                f.set(name.clone(), new);
            }
            out.set("Font", f);
        }
        if let Some(xd) = sub(self, b"XObject")? {
            let mut x = Dictionary::new();
            for (name, xo) in xd.iter() {
                if let Some(new) = self.xobject(xo, depth + 1)? {
                    x.set(name.clone(), new);
                }
            }
            out.set("XObject", x);
        }
        if let Some(gd) = sub(self, b"ExtGState")? {
            let mut g = Dictionary::new();
            for (name, gs) in gd.iter() {
                if let Object::Dictionary(gs) = self.deref(gs, depth + 1)? {
                    let gs = self.plain_dict(
                        gs,
                        Some(&[
                            "Type", "LW", "LC", "LJ", "ML", "D", "RI", "OP", "op", "OPM", "FL",
                            "SM", "SA", "BM", "CA", "ca", "AIS", "TK",
                        ]),
                        depth + 2,
                    )?;
                    g.set(name.clone(), gs);
                }
            }
            out.set("ExtGState", g);
        }
        if let Some(cd) = sub(self, b"ColorSpace")? {
            let mut c = Dictionary::new();
            for (name, cs) in cd.iter() {
                let cs = self.colour_space(cs, depth + 1)?;
                c.set(name.clone(), cs);
            }
            out.set("ColorSpace", c);
        }
        if let Ok(p) = res.get(b"ProcSet") {
            out.set("ProcSet", self.plain(p, depth + 1)?);
        }
        Ok((out, fonts))
    }

    /// An image or form XObject rebuilt; `None` for the kinds that are dropped (PostScript).
    fn xobject(&mut self, o: &Object, depth: usize) -> Result<Option<Object>, Refusal> {
        self.depth(depth)?;
        let Object::Reference(old) = o else {
            return Ok(None);
        };
        if let Some(new) = self.memo.get(old) {
            return Ok(Some(Object::Reference(*new)));
        }
        let Ok(Object::Stream(s)) = self.src.get_object(*old) else {
            return Ok(None);
        };
        match s.dict.get(b"Subtype").ok().and_then(name_of) {
            Some(b"Image") => {
                let r = self.shared(o, "an image", &mut |r, old, s| r.image(old, s, depth + 1))?;
                Ok(Some(r))
            }
            Some(b"Form") => {
                let new = self.alloc();
                self.memo.insert(*old, new);
                let where_ = format!("the form XObject in object {}", old.0);
                let (res, fonts) = self.resources(s.dict.get(b"Resources").ok(), depth + 1)?;
                let bytes = self.decoded(s, &where_)?;
                let content = self.content(&[bytes], &fonts, &where_)?;
                let mut dict = self.plain_dict(
                    &s.dict,
                    Some(&["Type", "Subtype", "BBox", "Matrix", "FormType"]),
                    depth + 1,
                )?;
                dict.set("Resources", res);
                let mut st = Stream::new(dict, content);
                st.compress()
                    .map_err(|e| refuse(format!("{where_} cannot be compressed: {e}")))?;
                self.objects.insert(new, Object::Stream(st));
                Ok(Some(Object::Reference(new)))
            }
            _ => Ok(None),
        }
    }

    /// Content streams parsed, kept to the allowed operators and written again; their text
    /// decoded.
    fn content(
        &mut self,
        parts: &[Vec<u8>],
        fonts: &FontsByName,
        where_: &str,
    ) -> Result<Vec<u8>, Refusal> {
        let joined = parts.join(&b"\n"[..]);
        let parsed = Content::decode_strict(&joined).map_err(|e| {
            refuse(format!(
                "the content of {where_} does not parse ({e}); the file is damaged"
            ))
        })?;
        let mut ops: Vec<Operation> = Vec::with_capacity(parsed.operations.len());
        let mut text = String::new();
        let mut font: Option<(Vec<u8>, Option<Rc<FontText>>)> = None;
        for op in parsed.operations {
            if op.operator == "BI" {
                return Err(refuse(format!(
                    "{where_} holds an inline image, which is not rebuilt; export the image \
                     as an image object"
                )));
            }
            if !allowed_operator(&op.operator) {
                continue;
            }
            if op.operator == "Tf"
                && let Some(Object::Name(n)) = op.operands.first()
            {
                font = Some((n.clone(), fonts.get(n).cloned()));
            }
            for s in shown(&op) {
                if s.is_empty() {
                    continue;
                }
                let decoded = font
                    .as_ref()
                    .and_then(|(_, f)| f.as_ref())
                    .and_then(|f| f.decode(s));
                match decoded {
                    Some(t) => text.push_str(&t),
                    None if self.release => {
                        let name = font.as_ref().map_or("(none)".into(), |(n, _)| {
                            String::from_utf8_lossy(n).into_owned()
                        });
                        return Err(refuse(format!(
                            "text in font {name} on {where_} cannot be decoded, so it cannot be \
                             checked for markings; embed the font with a ToUnicode map (PDF/A \
                             export does) and export again"
                        )));
                    }
                    None => {}
                }
            }
            ops.push(op);
        }
        if !text.is_empty() {
            self.text.push(text);
        }
        Content { operations: ops }
            .encode()
            .map_err(|e| refuse(format!("the content of {where_} cannot be written: {e}")))
    }

    /// The page tree below `node`, pages in order with what they inherit.
    fn walk(
        &self,
        node: ObjectId,
        inh: &Inherited,
        depth: usize,
        seen: &mut BTreeSet<ObjectId>,
        out: &mut Vec<(ObjectId, Inherited)>,
    ) -> Result<(), Refusal> {
        self.depth(depth)?;
        if !seen.insert(node) {
            return Err(refuse(format!("the page tree loops at object {}", node.0)));
        }
        let Ok(d) = self.src.get_dictionary(node) else {
            return Err(refuse(format!(
                "page tree node {} is not a dictionary",
                node.0
            )));
        };
        let mut inh = inh.clone();
        for (key, slot) in [
            (&b"Resources"[..], &mut inh.resources),
            (b"MediaBox", &mut inh.media),
            (b"CropBox", &mut inh.crop),
            (b"Rotate", &mut inh.rotate),
        ] {
            if let Ok(v) = d.get(key) {
                *slot = Some(v.clone());
            }
        }
        let kids = d
            .get(b"Kids")
            .ok()
            .map(|k| self.deref(k, depth))
            .transpose()?;
        match (d.get(b"Type").ok().and_then(name_of), kids) {
            (Some(b"Pages") | None, Some(Object::Array(kids))) => {
                for k in kids {
                    let Object::Reference(k) = k else {
                        return Err(refuse("a page tree node's kid is not an object reference"));
                    };
                    self.walk(*k, &inh, depth + 1, seen, out)?;
                }
            }
            (Some(b"Page") | None, _) => {
                out.push((node, inh));
                if out.len() > self.limits.max_pages {
                    return Err(refuse(format!(
                        "it has more than {} pages",
                        self.limits.max_pages
                    )));
                }
            }
            _ => return Err(refuse(format!("page tree node {} is malformed", node.0))),
        }
        Ok(())
    }

    fn page(
        &mut self,
        n: usize,
        old: ObjectId,
        inh: &Inherited,
        parent: ObjectId,
    ) -> Result<(), Refusal> {
        let new = self.alloc();
        self.pages.insert(old, new);
        let where_ = format!("page {n}");
        let mut page = Dictionary::new();
        page.set("Type", Object::Name(b"Page".to_vec()));
        page.set("Parent", Object::Reference(parent));
        let media = inh
            .media
            .as_ref()
            .ok_or_else(|| refuse(format!("{where_} has no MediaBox")))?;
        page.set("MediaBox", self.plain(media, 1)?);
        if let Some(c) = &inh.crop {
            page.set("CropBox", self.plain(c, 1)?);
        }
        if let Some(r) = &inh.rotate {
            let r = self.plain(r, 1)?;
            if r.as_i64().is_ok_and(|r| r % 90 == 0) {
                page.set("Rotate", r);
            }
        }
        let (res, fonts) = self.resources(inh.resources.as_ref(), 1)?;
        page.set("Resources", res);
        let d = self
            .src
            .get_dictionary(old)
            .map_err(|_| refuse("a page is malformed"))?;
        let mut parts = Vec::new();
        let contents: Vec<Object> = match d.get(b"Contents").map(|c| self.deref(c, 1)) {
            Ok(Ok(Object::Array(a))) => a.clone(),
            Ok(Ok(_)) => d.get(b"Contents").into_iter().cloned().collect(),
            Ok(Err(e)) => return Err(e),
            Err(_) => Vec::new(),
        };
        for c in contents {
            let s = match self.deref(&c, 1)? {
                Object::Stream(s) => s.clone(),
                _ => return Err(refuse(format!("{where_}'s content is not a stream"))),
            };
            parts.push(self.decoded(&s, &format!("{where_}'s content"))?);
        }
        let content = self.content(&parts, &fonts, &where_)?;
        let cid = self.alloc();
        let mut st = Stream::new(Dictionary::new(), content);
        st.compress()
            .map_err(|e| refuse(format!("{where_} cannot be compressed: {e}")))?;
        self.objects.insert(cid, Object::Stream(st));
        page.set("Contents", Object::Reference(cid));
        self.objects.insert(new, Object::Dictionary(page));
        Ok(())
    }

    /// A destination kept when it is explicit and its page crossed.
    fn destination(&self, item: &Dictionary) -> Option<Object> {
        let dest = match item.get(b"Dest") {
            Ok(d) => self.deref(d, 1).ok()?.clone(),
            Err(_) => {
                let a = self.deref(item.get(b"A").ok()?, 1).ok()?.as_dict().ok()?;
                if a.get(b"S").ok().and_then(name_of) != Some(b"GoTo") {
                    return None;
                }
                self.deref(a.get(b"D").ok()?, 1).ok()?.clone()
            }
        };
        let Object::Array(d) = dest else { return None };
        let Object::Reference(page) = d.first()? else {
            return None;
        };
        let page = *self.pages.get(page)?;
        let mut out = vec![Object::Reference(page)];
        for x in d.get(1..)? {
            out.push(self.plain(x, 2).ok()?);
        }
        Some(Object::Array(out))
    }

    /// The outline items below `first`: (title, destination, children).
    fn outline_items(
        &mut self,
        first: Option<&Object>,
        depth: usize,
        count: &mut usize,
    ) -> Result<Vec<OutlineItem>, Refusal> {
        self.depth(depth)?;
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut at = first.cloned();
        while let Some(Object::Reference(id)) = at {
            *count += 1;
            if !seen.insert(id) || *count > 10_000 {
                return Err(refuse("its outline loops or has more than 10,000 items"));
            }
            let Ok(item) = self.src.get_dictionary(id) else {
                break;
            };
            let item = item.clone();
            let title = match item.get(b"Title").map(|t| self.deref(t, depth)) {
                Ok(Ok(t @ Object::String(..))) => t.clone(),
                _ => Object::String(Vec::new(), lopdf::StringFormat::Literal),
            };
            if let Ok(t) = lopdf::decode_text_string(&title)
                && !t.is_empty()
            {
                self.text.push(t);
            }
            let dest = self.destination(&item);
            let kids = self.outline_items(item.get(b"First").ok(), depth + 1, count)?;
            out.push(OutlineItem { title, dest, kids });
            at = item.get(b"Next").ok().cloned();
        }
        Ok(out)
    }

    fn emit_outline(
        &mut self,
        items: Vec<OutlineItem>,
        parent: ObjectId,
    ) -> (Option<ObjectId>, Option<ObjectId>, i64) {
        let ids: Vec<ObjectId> = items.iter().map(|_| self.alloc()).collect();
        let mut total = 0i64;
        for (i, OutlineItem { title, dest, kids }) in items.into_iter().enumerate() {
            let Some(id) = ids.get(i).copied() else {
                continue;
            };
            let mut d = Dictionary::new();
            d.set("Title", title);
            d.set("Parent", Object::Reference(parent));
            if let Some(p) = i.checked_sub(1).and_then(|p| ids.get(p)) {
                d.set("Prev", Object::Reference(*p));
            }
            if let Some(n) = ids.get(i + 1) {
                d.set("Next", Object::Reference(*n));
            }
            if let Some(dest) = dest {
                d.set("Dest", dest);
            }
            let (first, last, count) = self.emit_outline(kids, id);
            if let (Some(f), Some(l)) = (first, last) {
                d.set("First", Object::Reference(f));
                d.set("Last", Object::Reference(l));
                d.set("Count", Object::Integer(count));
            }
            total += 1 + count;
            self.objects.insert(id, Object::Dictionary(d));
        }
        (ids.first().copied(), ids.last().copied(), total)
    }
}

/// One outline item: its title, its destination if kept, its children.
struct OutlineItem {
    title: Object,
    dest: Option<Object>,
    kids: Vec<OutlineItem>,
}

/// The `Info` fields that cross when metadata is not stripped.
const INFO_KEYS: [&str; 8] = [
    "Title",
    "Author",
    "Subject",
    "Keywords",
    "Creator",
    "Producer",
    "CreationDate",
    "ModDate",
];

impl PdfFilter {
    fn rebuild(
        &self,
        input: &FilterInput<'_>,
        bytes: &[u8],
    ) -> Result<(Vec<u8>, Vec<String>), Refusal> {
        let l = &self.limits;
        let options = LoadOptions {
            strict: false,
            max_decompressed_size: Some(l.max_stream),
            ..LoadOptions::default()
        };
        let encrypted = || {
            refuse(
                "it is encrypted, so its content cannot be checked; save it without a password \
                 or restrictions and submit it again",
            )
        };
        let src = Document::load_mem_with_options(bytes, options).map_err(|e| {
            if matches!(
                e,
                lopdf::Error::Decryption(_) | lopdf::Error::InvalidPassword
            ) || bytes.windows(8).any(|w| w == b"/Encrypt")
            {
                encrypted()
            } else {
                refuse(format!(
                    "it does not parse as a PDF ({e}); the file is damaged or cut short"
                ))
            }
        })?;
        if src.trailer.has(b"Encrypt") || src.encryption_state.is_some() {
            return Err(encrypted());
        }
        if src.xref_recovery.is_some() {
            return Err(refuse(
                "its cross-reference table is damaged or the file is cut short; export the PDF \
                 again",
            ));
        }
        if src.objects.len() > l.max_objects {
            return Err(refuse(format!(
                "it holds {} objects, over the limit of {}",
                src.objects.len(),
                l.max_objects
            )));
        }
        for (id, o) in &src.objects {
            active(o, *id, 0, l)?;
        }
        for (_, o) in src.trailer.iter() {
            active(o, (0, 0), 0, l)?;
        }
        let budget = usize::try_from(l.max_ratio)
            .unwrap_or(usize::MAX)
            .saturating_mul(bytes.len())
            .saturating_add(1 << 20);
        let mut r = Rebuild {
            src: &src,
            limits: l,
            release: input.release,
            objects: BTreeMap::new(),
            next: 1,
            memo: BTreeMap::new(),
            fonts: BTreeMap::new(),
            pages: BTreeMap::new(),
            budget,
            text: Vec::new(),
        };
        let catalog = src
            .catalog()
            .map_err(|_| refuse("it has no document catalog"))?
            .clone();
        let Ok(Object::Reference(root)) = catalog.get(b"Pages") else {
            return Err(refuse("its catalog has no page tree"));
        };
        let mut list = Vec::new();
        r.walk(
            *root,
            &Inherited::default(),
            0,
            &mut BTreeSet::new(),
            &mut list,
        )?;
        if list.is_empty() {
            return Err(refuse("it has no pages"));
        }
        let cat_id = r.alloc();
        let pages_id = r.alloc();
        let mut kids = Vec::with_capacity(list.len());
        for (n, (old, inh)) in list.iter().enumerate() {
            r.page(n + 1, *old, inh, pages_id)?;
            if let Some(new) = r.pages.get(old) {
                kids.push(Object::Reference(*new));
            }
        }
        let mut pages = Dictionary::new();
        pages.set("Type", Object::Name(b"Pages".to_vec()));
        pages.set(
            "Count",
            Object::Integer(i64::try_from(kids.len()).unwrap_or(0)),
        );
        pages.set("Kids", Object::Array(kids));
        r.objects.insert(pages_id, Object::Dictionary(pages));
        let mut cat = Dictionary::new();
        cat.set("Type", Object::Name(b"Catalog".to_vec()));
        cat.set("Pages", Object::Reference(pages_id));
        if let Ok(Object::Dictionary(o)) = catalog
            .get(b"Outlines")
            .map(|o| r.deref(o, 0))
            .unwrap_or(Ok(&Object::Null))
        {
            let o = o.clone();
            let items = r.outline_items(o.get(b"First").ok(), 1, &mut 0)?;
            if !items.is_empty() {
                let oid = r.alloc();
                let (first, last, count) = r.emit_outline(items, oid);
                let mut od = Dictionary::new();
                od.set("Type", Object::Name(b"Outlines".to_vec()));
                if let (Some(f), Some(l)) = (first, last) {
                    od.set("First", Object::Reference(f));
                    od.set("Last", Object::Reference(l));
                }
                od.set("Count", Object::Integer(count));
                r.objects.insert(oid, Object::Dictionary(od));
                cat.set("Outlines", Object::Reference(oid));
            }
        }
        r.objects.insert(cat_id, Object::Dictionary(cat));
        let strip = input.steps.contains(&"strip-metadata");
        let mut info_id = None;
        let info = match src.trailer.get(b"Info").map(|i| r.deref(i, 0)) {
            Ok(Ok(Object::Dictionary(d))) => Some(d.clone()),
            _ => None,
        };
        {
            if let Some(info) = info {
                let mut out = Dictionary::new();
                for key in INFO_KEYS {
                    let v = match info.get(key.as_bytes()).map(|v| r.deref(v, 1)) {
                        Ok(Ok(v @ Object::String(..))) => Some(v.clone()),
                        _ => None,
                    };
                    if let Some(v) = v {
                        if let Ok(t) = lopdf::decode_text_string(&v)
                            && !t.is_empty()
                        {
                            r.text.push(t);
                        }
                        out.set(key, v);
                    }
                }
                if !strip && !out.is_empty() {
                    let id = r.alloc();
                    r.objects.insert(id, Object::Dictionary(out));
                    info_id = Some(id);
                }
            }
        }
        let mut doc = Document::with_version("1.7");
        doc.reference_table.cross_reference_type = XrefType::CrossReferenceTable;
        doc.max_id = r.next.saturating_sub(1);
        doc.objects = std::mem::take(&mut r.objects);
        doc.trailer.set("Root", Object::Reference(cat_id));
        if let Some(id) = info_id {
            doc.trailer.set("Info", Object::Reference(id));
        }
        let mut out = Vec::new();
        doc.save_to(&mut out)
            .map_err(|e| refuse(format!("the rebuilt document cannot be written: {e}")))?;
        Ok((out, r.text))
    }
}

impl Filter for PdfFilter {
    fn kind(&self) -> &str {
        "pdf"
    }

    fn memory(&self) -> MemoryBound {
        // The file, lopdf's parsed objects (a few times the file), the decoded streams (at
        // most the ratio times the file) and the rebuilt copy.
        MemoryBound::Proportional(self.limits.max_ratio.saturating_add(8))
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        check_size("pdf", input, bytes)?;
        true_type(bytes)?;
        let (out, text) = self.rebuild(input, bytes)?;
        Ok(Filtered {
            bytes: out,
            steps: steps(input, StepState::Done),
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use lopdf::dictionary;

    use super::*;

    fn input(release: bool) -> FilterInput<'static> {
        FilterInput {
            kind: "pdf",
            schema: None,
            steps: &["validate", "rebuild", "strip-metadata"],
            max_size: 1 << 24,
            release,
        }
    }

    /// Two pages under an intermediate node that gives them their resources and media box,
    /// a form XObject drawing text, a Flate image with a soft mask, an ICC colour space, an
    /// outline with a GoTo action and a URI action, a link annotation and an AcroForm.
    fn rich() -> Vec<u8> {
        let mut doc = Document::with_version("1.5");
        let font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Times-Roman",
        });
        let form = doc.add_object(Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Form",
                "BBox" => vec![0.into(), 0.into(), 100.into(), 20.into()],
                "Resources" => dictionary! { "Font" => dictionary! { "F2" => font } },
            },
            b"BT /F2 9 Tf (stamped by the registry) Tj ET".to_vec(),
        ));
        let mut mask = Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => 2, "Height" => 2,
                "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
            },
            vec![0, 255, 255, 0],
        );
        mask.compress().unwrap();
        let mask = doc.add_object(mask);
        let icc = doc.add_object(Stream::new(dictionary! { "N" => 3 }, vec![7; 64]));
        let image = doc.add_object(Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => 2, "Height" => 2,
                "ColorSpace" => vec!["ICCBased".into(), Object::Reference(icc)],
                "BitsPerComponent" => 8, "SMask" => mask,
                "Metadata" => Object::Reference(icc),
            },
            vec![1; 12],
        ));
        let pages = doc.new_object_id();
        let node = doc.new_object_id();
        let mut kids = Vec::new();
        for n in 1..=2 {
            let content = doc.add_object(Stream::new(
                Dictionary::new(),
                format!(
                    "q 1 0 0 1 10 10 cm /Im1 Do Q BX /Weird 1 zz EX /Fm1 Do \
                     BT /F1 12 Tf 72 720 Td [(Page ) -250 ({n})] TJ ET 0.5 g 0 0 10 10 re f"
                )
                .into_bytes(),
            ));
            let link = doc.add_object(dictionary! {
                "Type" => "Annot", "Subtype" => "Link",
                "A" => dictionary! { "S" => "URI", "URI" => Object::string_literal("http://x.example/") },
            });
            kids.push(Object::Reference(doc.add_object(dictionary! {
                "Type" => "Page", "Parent" => node, "Contents" => content,
                "Annots" => vec![Object::Reference(link)],
                "AA" => dictionary! { "O" => dictionary! { "S" => "GoTo", "D" => vec![] } },
            })));
        }
        let first_page = kids.first().cloned().unwrap();
        doc.objects.insert(node, Object::Dictionary(dictionary! {
            "Type" => "Pages", "Parent" => pages, "Count" => 2, "Kids" => kids,
            "Resources" => dictionary! {
                "Font" => dictionary! { "F1" => font },
                "XObject" => dictionary! { "Im1" => image, "Fm1" => form },
                "ExtGState" => dictionary! { "G1" => dictionary! { "CA" => 0.5, "TR" => "Identity" } },
            },
        }));
        doc.objects.insert(
            pages,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Count" => 2, "Kids" => vec![Object::Reference(node)],
                "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            }),
        );
        let item2 = doc.new_object_id();
        let outline = doc.new_object_id();
        let item1 = doc.add_object(dictionary! {
            "Title" => Object::string_literal("Judgment"), "Parent" => outline,
            "Next" => item2,
            "A" => dictionary! { "S" => "GoTo", "D" => vec![first_page, "Fit".into()] },
        });
        doc.objects.insert(item2, Object::Dictionary(dictionary! {
            "Title" => Object::string_literal("Evidence"), "Parent" => outline, "Prev" => item1,
            "A" => dictionary! { "S" => "URI", "URI" => Object::string_literal("http://x.example/") },
        }));
        doc.objects.insert(
            outline,
            Object::Dictionary(dictionary! {
                "Type" => "Outlines", "First" => item1, "Last" => item2, "Count" => 2,
            }),
        );
        let catalog = doc.add_object(dictionary! {
            "Type" => "Catalog", "Pages" => pages, "Outlines" => outline,
            "AcroForm" => dictionary! { "Fields" => vec![], "XFA" => Object::string_literal("<xdp/>") },
        });
        doc.trailer.set("Root", catalog);
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn a_rich_document_is_rebuilt_from_its_allow_list_and_idempotently() {
        let bytes = rich();
        let once = PdfFilter::default().run(&input(true), &bytes).unwrap();
        let twice = PdfFilter::default().run(&input(true), &once.bytes).unwrap();
        assert_eq!(once.bytes, twice.bytes, "the rebuild is idempotent");
        assert_eq!(once.text, twice.text);
        let joined = once.text.join("|");
        for t in [
            "stamped by the registry",
            "Page 1",
            "Page 2",
            "Judgment",
            "Evidence",
        ] {
            assert!(joined.contains(t), "{t} in {joined}");
        }
        let doc = Document::load_mem(&once.bytes).unwrap();
        assert_eq!(doc.get_pages().len(), 2);
        let mut all = once.bytes.clone();
        for o in doc.objects.values() {
            if let Object::Stream(s) = o {
                all.extend(s.decompressed_content().unwrap_or_default());
            }
        }
        let has = |n: &[u8]| all.windows(n.len()).any(|w| w == n);
        for gone in [
            &b"/Annots"[..],
            b"/URI",
            b"/AA",
            b"/AcroForm",
            b"/XFA",
            b"/Metadata",
            b"/TR",
            b"zz",
            b"BX",
        ] {
            assert!(!has(gone), "{}", String::from_utf8_lossy(gone));
        }
        for kept in [
            &b"/SMask"[..],
            b"/ICCBased",
            b"/Fm1 Do",
            b"/Im1 Do",
            b"/CA 0.5",
            b"/Dest",
        ] {
            assert!(has(kept), "{}", String::from_utf8_lossy(kept));
        }
        // Every page carries its inherited resources and media box.
        for (_, id) in doc.get_pages() {
            let page = doc.get_dictionary(id).unwrap();
            assert!(page.has(b"Resources") && page.has(b"MediaBox"));
        }
    }

    #[test]
    fn limits_and_damage_refuse() {
        let bytes = rich();
        let tight = PdfLimits {
            max_objects: 5,
            ..PdfLimits::default()
        };
        let r = PdfFilter::new(tight)
            .run(&input(false), &bytes)
            .unwrap_err();
        assert!(r.reason.contains("objects, over the limit"), "{}", r.reason);
        let r = PdfFilter::default()
            .run(&input(false), b"%PDF-1.7\n%%EOF")
            .unwrap_err();
        assert!(r.reason.contains("damaged"), "{}", r.reason);
        let r = PdfFilter::default()
            .run(&input(false), b"%PDF-9.9\n")
            .unwrap_err();
        assert!(r.reason.contains("version"), "{}", r.reason);
        let r = PdfFilter::default()
            .run(&input(false), b"PK\x03\x04 an archive")
            .unwrap_err();
        assert!(r.reason.contains("ZIP archive"), "{}", r.reason);
    }
}
