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
//! Font programs and image data other than JPEG are carried as they came (within their allowed
//! filters): they are not parsed here, so a viewer's font and image decoders still read them.
//!
//! **Text.** Shown strings are decoded through each font's `ToUnicode` map, or a simple
//! font's standard encoding; outline titles and `Info` strings are text too. On a release
//! ([`FilterInput::release`]) a string that cannot be decoded refuses the document, since its
//! markings cannot be checked.

mod cmap;
mod rebuild;
mod resources;
mod text;

use std::collections::{BTreeMap, BTreeSet};

use lopdf::xref::XrefType;
use lopdf::{Dictionary, Document, LoadOptions, Object, ObjectId};

use self::rebuild::{Inherited, Rebuild};
use super::text::{check_size, steps};
use super::{Filter, FilterInput, Filtered, MemoryBound, Refusal, StepState};

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
    use lopdf::{Stream, dictionary};

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
        // A page whose 16 MiB content compresses to a few kilobytes.
        let mut doc = Document::with_version("1.7");
        let mut bomb = Stream::new(Dictionary::new(), vec![b' '; 16 << 20]);
        bomb.compress().unwrap();
        let content = doc.add_object(bomb);
        let pages = doc.new_object_id();
        let page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages, "Contents" => content,
            "MediaBox" => vec![0.into(), 0.into(), 10.into(), 10.into()],
        });
        doc.objects.insert(
            pages,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Count" => 1, "Kids" => vec![Object::Reference(page)],
            }),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages });
        doc.trailer.set("Root", catalog);
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        assert!(out.len() < 1 << 16);
        let r = PdfFilter::default().run(&input(false), &out).unwrap_err();
        assert!(r.reason.contains("per byte of file"), "{}", r.reason);

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
