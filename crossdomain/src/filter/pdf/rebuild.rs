//! The rebuild's core: the new document's objects numbered as pages reach them, plain values
//! copied, streams copied or decoded within the budget, the page tree flattened with what pages
//! inherit, content streams kept to the allowed operators with their text decoded, and the
//! outline with its explicit destinations.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Document, Object, ObjectId, Stream};

use super::text::{FontText, allowed_operator, shown};
use super::{PdfLimits, name_of, refuse};
use crate::filter::{Filter, FilterInput, JpegFilter, Refusal};
/// The text decoders of a resource dictionary's fonts, by resource name.
pub(super) type FontsByName = BTreeMap<Vec<u8>, Rc<FontText>>;

/// The attributes a page inherits from its tree.
#[derive(Clone, Default)]
pub(super) struct Inherited {
    pub(super) resources: Option<Object>,
    pub(super) media: Option<Object>,
    pub(super) crop: Option<Object>,
    pub(super) rotate: Option<Object>,
}

/// The rebuild of one document.
pub(super) struct Rebuild<'a> {
    pub(super) src: &'a Document,
    pub(super) limits: &'a PdfLimits,
    pub(super) release: bool,
    pub(super) objects: BTreeMap<ObjectId, Object>,
    pub(super) next: u32,
    /// Old object to new, for what pages share (fonts, images, forms, font files).
    pub(super) memo: BTreeMap<ObjectId, ObjectId>,
    /// Text decoders of the new font objects.
    pub(super) fonts: BTreeMap<ObjectId, Rc<FontText>>,
    /// Old page object to new.
    pub(super) pages: BTreeMap<ObjectId, ObjectId>,
    /// Decoded bytes left.
    pub(super) budget: usize,
    pub(super) text: Vec<String>,
}

impl<'a> Rebuild<'a> {
    pub(super) fn alloc(&mut self) -> ObjectId {
        let id = (self.next, 0);
        self.next += 1;
        id
    }

    pub(super) fn deref<'o>(
        &'o self,
        mut o: &'o Object,
        depth: usize,
    ) -> Result<&'o Object, Refusal> {
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

    pub(super) fn depth(&self, depth: usize) -> Result<(), Refusal> {
        if depth > self.limits.max_depth {
            return Err(refuse(format!(
                "it nests deeper than {}",
                self.limits.max_depth
            )));
        }
        Ok(())
    }

    /// A plain value (numbers, names, strings, arrays of them), references resolved.
    pub(super) fn plain(&self, o: &Object, depth: usize) -> Result<Object, Refusal> {
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
    pub(super) fn plain_dict(
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

    pub(super) fn decoded(&mut self, s: &Stream, what: &str) -> Result<Vec<u8>, Refusal> {
        let limit = self.limits.max_stream.min(self.budget);
        let out = s
            .decompressed_content_with_limit(limit)
            .map_err(|e| match e {
                lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded {
                    ..
                }) if limit < self.limits.max_stream => refuse(format!(
                    "its streams decode to more than {} bytes per byte of file (a decompression \
                     bomb, or a document with almost nothing in it)",
                    self.limits.max_ratio
                )),
                lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded {
                    ..
                }) => refuse(format!("{what} decodes to more than {limit} bytes")),
                e => refuse(format!("{what} does not decode ({e}); the file is damaged")),
            })?;
        self.budget = self.budget.saturating_sub(out.len());
        Ok(out)
    }

    /// A stream copied with its raw bytes, its dictionary kept to `keys` and its filters to
    /// the allowed ones.
    pub(super) fn raw_stream(
        &mut self,
        old: ObjectId,
        s: &Stream,
        keys: &[&str],
    ) -> Result<Stream, Refusal> {
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
    pub(super) fn shared(
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

    /// Content streams parsed, kept to the allowed operators and written again; their text
    /// decoded.
    pub(super) fn content(
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
    pub(super) fn walk(
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

    pub(super) fn page(
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
    pub(super) fn destination(&self, item: &Dictionary) -> Option<Object> {
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
    pub(super) fn outline_items(
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

    pub(super) fn emit_outline(
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
pub(super) struct OutlineItem {
    pub(super) title: Object,
    pub(super) dest: Option<Object>,
    pub(super) kids: Vec<OutlineItem>,
}
