//! `ofd` (GB/T 33190, the national electronic-document format): a ZIP of XML parts, checked
//! entry by entry and rebuilt as a new ZIP from the parts the standard expects.
//!
//! **The container.** The bytes must start with a ZIP local header (true-type check). Limits
//! ([`OfdLimits`]) on entries, each entry's and all entries' uncompressed size (checked on what
//! is read, not only on what the directory declares) and each entry's compression ratio. Entry
//! names must be UTF-8, relative, without `..`, `.` or empty segments, backslashes, NUL or a
//! drive letter, and unique once folded to lower case (two names one file system would
//! merge). Encrypted entries, symbolic links and compression methods other than stored and
//! deflate are refused, as is any archive inside (a `.zip` or `.ofd` entry, or one whose bytes
//! start like an archive: the nested zip bomb).
//!
//! **The parts.** An allow-list by path: `OFD.xml` (required); in each `Doc_N/`:
//! `Document.xml`, `DocumentRes.xml`, `PublicRes.xml`, `Annotations.xml`,
//! `Pages/Page_N/Content.xml`, `Pages/Page_N/PageRes.xml`, `Tpls/Tpl_N/Content.xml`,
//! `Annots/**.xml`, and resources under `Res/` (the document's or a page's): fonts (`.ttf`,
//! `.otf`, `.ttc`, `.ttf` checked by their magic number and passed as they are), images
//! (`.png`, `.jpg`, `.jpeg`, each through the `png` or `jpeg` filter) and `.xml` parts.
//! Dropped, with the elements that point at them: signatures (`Signs/`: the rebuilt parts are
//! not the bytes that were signed, so a signature would no longer verify; check it before
//! submitting), attachments (`Attachs/`), custom tags (`Tags/`), extensions and versions (older
//! editions of the document, as a PDF's incremental updates are). Any other part is refused.
//!
//! **The XML.** Every part must be UTF-8 and well-formed, with one root, no DOCTYPE (so no DTD
//! and no entity definitions: the billion laughs), no processing instruction, no entity
//! reference but the five predefined ones and character references, and no control character.
//! It is written again canonically: the XML declaration, elements and attributes in their
//! order with values escaped one way, text as it was (CDATA made text), no comments. The
//! elements `Actions` (go-to, URI, sound and movie actions), `Attachments`, `CustomTags`,
//! `Extensions`, `Versions` and `Signatures` are dropped with their content; with
//! `strip-metadata`, so is every child of `DocInfo` but `DocID`.
//!
//! **The archive written.** Parts in name order (`OFD.xml` first), deflated, with a fixed
//! timestamp (1980-01-01) and permissions, no comments and no extra fields: the same parts
//! always make the same bytes, and the rebuilt copy passes the filter again unchanged. The
//! text of every `TextCode` element (and of `DocInfo` when it crosses) is the text for the
//! marking check.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read, Write};

use quick_xml::XmlVersion;
use quick_xml::events::Event;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use super::text::{check_size, steps};
use super::{
    Filter, FilterInput, Filtered, ImageLimits, JpegFilter, MemoryBound, PngFilter, Refusal,
    StepState,
};

/// The limits an OFD must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfdLimits {
    /// The most entries in the archive (a page is two or three).
    pub max_entries: usize,
    /// The most bytes one entry may hold uncompressed.
    pub max_entry: u64,
    /// The most bytes all entries may hold uncompressed.
    pub max_total: u64,
    /// The most uncompressed bytes per compressed byte of an entry over 64 KiB (XML
    /// compresses 5 to 20 times; a zip bomb a thousand times).
    pub max_ratio: u64,
    /// How deep the elements of one XML part may nest.
    pub max_depth: usize,
}

impl Default for OfdLimits {
    /// 10,000 entries, 64 MiB an entry, 256 MiB in all, 100:1, 64 elements deep.
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_entry: 64 << 20,
            max_total: 256 << 20,
            max_ratio: 100,
            max_depth: 64,
        }
    }
}

/// The `ofd` filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfdFilter {
    limits: OfdLimits,
}

impl OfdFilter {
    /// An `ofd` filter with `limits`.
    pub fn new(limits: OfdLimits) -> Self {
        Self { limits }
    }
}

fn refuse(reason: impl Into<String>) -> Refusal {
    Refusal::new("ofd", reason)
}

/// What a part is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Xml,
    Png,
    Jpeg,
    Font,
    /// Not rebuilt, and not carried: why.
    Drop(&'static str),
}

fn numbered(seg: &str, prefix: &str) -> bool {
    seg.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The extension of a file name, lower case.
fn ext(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

fn resource(path: &str, file: &str) -> Result<Part, Refusal> {
    match ext(file).as_str() {
        "xml" => Ok(Part::Xml),
        "png" => Ok(Part::Png),
        "jpg" | "jpeg" => Ok(Part::Jpeg),
        "ttf" | "otf" | "ttc" => Ok(Part::Font),
        "zip" | "ofd" | "jar" | "rar" | "7z" | "gz" => Err(refuse(format!(
            "part `{path}` is an archive inside the archive (a nested zip bomb?), which is \
             refused"
        ))),
        e => Err(refuse(format!(
            "resource `{path}` is of type `.{e}`, which is not rebuilt (fonts .ttf, .otf, \
             .ttc and images .png, .jpg are)"
        ))),
    }
}

/// The part at `path`, by the standard's layout.
fn classify(path: &str) -> Result<Part, Refusal> {
    let segs: Vec<&str> = path.split('/').collect();
    let unexpected = || {
        refuse(format!(
            "part `{path}` is not one an OFD document holds; export the document again \
             without it"
        ))
    };
    match segs.as_slice() {
        ["OFD.xml"] => Ok(Part::Xml),
        [doc, rest @ ..] if numbered(doc, "Doc_") => match rest {
            ["Document.xml" | "DocumentRes.xml" | "PublicRes.xml" | "Annotations.xml"] => {
                Ok(Part::Xml)
            }
            ["Pages", page, "Content.xml" | "PageRes.xml"] if numbered(page, "Page_") => {
                Ok(Part::Xml)
            }
            ["Pages", page, "Res", file] if numbered(page, "Page_") => resource(path, file),
            ["Tpls", tpl, "Content.xml"] if numbered(tpl, "Tpl_") => Ok(Part::Xml),
            ["Annots", .., file] if ext(file) == "xml" => Ok(Part::Xml),
            ["Res", file] | ["Res", _, file] => resource(path, file),
            ["Signs", ..] | ["Signatures.xml"] => Ok(Part::Drop("signature")),
            ["Attachs", ..] | ["Attachments.xml"] => Ok(Part::Drop("attachment")),
            ["Tags", ..] | ["CustomTags.xml"] => Ok(Part::Drop("custom tag")),
            ["Extensions", ..] | ["Extensions.xml"] => Ok(Part::Drop("extension")),
            ["Versions", ..] => Ok(Part::Drop("older version")),
            _ => Err(unexpected()),
        },
        _ => Err(unexpected()),
    }
}

/// Checks an entry name: `Err` says what is wrong.
fn check_name(name: &str) -> Result<(), String> {
    if name.contains('\0') {
        return Err("holds a NUL byte".into());
    }
    if name.contains('\\') {
        return Err("holds a backslash".into());
    }
    if name.starts_with('/') {
        return Err("is absolute".into());
    }
    if name.as_bytes().get(1) == Some(&b':') {
        return Err("starts with a drive letter".into());
    }
    let body = name.strip_suffix('/').unwrap_or(name);
    for seg in body.split('/') {
        match seg {
            ".." => return Err("climbs out of the archive (`..`)".into()),
            "." | "" => return Err("has an empty or `.` segment".into()),
            s if s.chars().any(char::is_control) => return Err("holds a control character".into()),
            _ => {}
        }
    }
    Ok(())
}

/// Escapes text for an element's content.
fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// Escapes an attribute's value (quoted with `"`).
fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

fn check_chars(path: &str, s: &str) -> Result<(), Refusal> {
    if let Some(c) = s.chars().find(|c| {
        (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}')
    }) {
        return Err(refuse(format!(
            "part `{path}` holds the control character U+{:04X}, which XML does not allow",
            u32::from(c)
        )));
    }
    Ok(())
}

/// Elements dropped with their content.
const DROPPED: [&str; 6] = [
    "Actions",
    "Attachments",
    "CustomTags",
    "Extensions",
    "Versions",
    "Signatures",
];

/// One XML part written again canonically; its `TextCode` (and `DocInfo`) text pushed to `text`.
fn canonical(
    path: &str,
    bytes: &[u8],
    strip: bool,
    max_depth: usize,
    text: &mut Vec<String>,
) -> Result<Vec<u8>, Refusal> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let s = std::str::from_utf8(bytes).map_err(|e| {
        refuse(format!(
            "part `{path}` is not UTF-8 (byte {}); save it as UTF-8",
            e.valid_up_to()
        ))
    })?;
    let bad = |e: &dyn std::fmt::Display, at: u64| {
        refuse(format!(
            "part `{path}` is not well-formed XML: {e} (at byte {at})"
        ))
    };
    let mut r = quick_xml::Reader::from_str(s);
    r.config_mut().check_end_names = true;
    let mut out = String::with_capacity(s.len());
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let mut pending = String::new();
    // The open elements' local names.
    let mut stack: Vec<String> = Vec::new();
    let mut skipping = 0usize;
    let mut roots = 0usize;
    let mut first = true;
    let mut in_text: Option<String> = None;
    loop {
        let ev = r.read_event().map_err(|e| bad(&e, r.error_position()))?;
        let was_first = first;
        first = false;
        let markup = matches!(ev, Event::Start(_) | Event::Empty(_) | Event::End(_));
        if markup && !pending.is_empty() {
            if skipping == 0 {
                escape_text(&pending, &mut out);
            }
            pending.clear();
        }
        match ev {
            Event::Decl(d) => {
                if !was_first {
                    return Err(bad(
                        &"an XML declaration after the start",
                        r.buffer_position(),
                    ));
                }
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| bad(&e, r.buffer_position()))?;
                    if !enc.eq_ignore_ascii_case("utf-8") {
                        return Err(refuse(format!(
                            "part `{path}` declares the encoding {enc}; save it as UTF-8"
                        )));
                    }
                }
            }
            Event::DocType(_) => {
                return Err(refuse(format!(
                    "part `{path}` has a DOCTYPE, which can define entities (a billion laughs) \
                     and fetch files; OFD parts have none"
                )));
            }
            Event::PI(_) => {
                return Err(refuse(format!(
                    "part `{path}` holds a processing instruction, which OFD parts have none of"
                )));
            }
            Event::Comment(_) => {}
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                if stack.is_empty() {
                    roots += 1;
                    if roots > 1 {
                        return Err(bad(&"a second root element", r.buffer_position()));
                    }
                }
                if stack.len() >= max_depth {
                    return Err(refuse(format!(
                        "part `{path}` nests elements deeper than {max_depth}"
                    )));
                }
                let local = e.local_name().as_ref().to_owned();
                let parent = stack.last().map(String::as_str);
                let drop = DROPPED.contains(&local.as_str())
                    || (strip && parent == Some("DocInfo") && local != "DocID");
                if skipping > 0 || drop {
                    if !empty {
                        skipping += 1;
                    }
                } else {
                    out.push('<');
                    out.push_str(e.name().as_ref());
                    for a in e.attributes() {
                        let a = a.map_err(|e| bad(&e, r.buffer_position()))?;
                        let v = a
                            .normalized_value(XmlVersion::Implicit1_0)
                            .map_err(|e| bad(&e, r.buffer_position()))?;
                        check_chars(path, &v)?;
                        out.push(' ');
                        out.push_str(a.key.as_ref());
                        out.push_str("=\"");
                        escape_attr(&v, &mut out);
                        out.push('"');
                    }
                    out.push_str(if empty { "/>" } else { ">" });
                    if !empty && (local == "TextCode" || parent == Some("DocInfo")) {
                        in_text = Some(String::new());
                    }
                }
                if !empty {
                    stack.push(local);
                }
            }
            Event::End(e) => {
                stack.pop();
                if skipping > 0 {
                    skipping -= 1;
                } else {
                    if let Some(t) = in_text.take()
                        && !t.is_empty()
                    {
                        text.push(t);
                    }
                    out.push_str("</");
                    out.push_str(e.name().as_ref());
                    out.push('>');
                }
            }
            Event::Text(t) => {
                let t = t.xml10_content();
                if stack.is_empty() {
                    if !t.trim().is_empty() {
                        return Err(bad(&"text outside the root element", r.buffer_position()));
                    }
                    continue;
                }
                check_chars(path, &t)?;
                pending.push_str(&t);
                if skipping == 0
                    && let Some(buf) = in_text.as_mut()
                {
                    buf.push_str(&t);
                }
            }
            Event::CData(c) => {
                if stack.is_empty() {
                    return Err(bad(&"CDATA outside the root element", r.buffer_position()));
                }
                let t = c.xml10_content();
                check_chars(path, &t)?;
                pending.push_str(&t);
                if skipping == 0
                    && let Some(buf) = in_text.as_mut()
                {
                    buf.push_str(&t);
                }
            }
            Event::GeneralRef(g) => {
                let ch = if g.is_char_ref() {
                    g.resolve_char_ref()
                        .map_err(|e| bad(&e, r.buffer_position()))?
                        .map(String::from)
                } else {
                    quick_xml::escape::resolve_predefined_entity(&g.xml10_content())
                        .map(String::from)
                };
                let Some(ch) = ch else {
                    return Err(refuse(format!(
                        "part `{path}` refers to the entity `&{};`, which is not defined (OFD \
                         parts use only the five predefined ones)",
                        g.xml10_content()
                    )));
                };
                if stack.is_empty() {
                    return Err(bad(
                        &"a reference outside the root element",
                        r.buffer_position(),
                    ));
                }
                check_chars(path, &ch)?;
                pending.push_str(&ch);
                if skipping == 0
                    && let Some(buf) = in_text.as_mut()
                {
                    buf.push_str(&ch);
                }
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(bad(&"elements left open at the end", r.buffer_position()));
    }
    if roots != 1 {
        return Err(bad(&"no root element", r.buffer_position()));
    }
    Ok(out.into_bytes())
}

/// Whether `b` starts like an archive or compressed file.
fn archive_magic(b: &[u8]) -> bool {
    [
        &b"PK\x03\x04"[..],
        b"PK\x05\x06",
        b"PK\x07\x08",
        b"\x1f\x8b",
        b"7z\xbc\xaf\x27\x1c",
        b"Rar!",
        b"BZh",
        b"\xfd7zXZ\0",
    ]
    .iter()
    .any(|m| b.starts_with(m))
}

fn font_magic(b: &[u8]) -> bool {
    [&b"\0\x01\0\0"[..], b"OTTO", b"true", b"ttcf", b"typ1"]
        .iter()
        .any(|m| b.starts_with(m))
}

impl OfdFilter {
    fn rebuild(
        &self,
        input: &FilterInput<'_>,
        bytes: &[u8],
    ) -> Result<(Vec<u8>, Vec<String>), Refusal> {
        let l = &self.limits;
        let mut zip = ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| refuse(format!("it is not a readable ZIP archive ({e})")))?;
        if zip.len() > l.max_entries {
            return Err(refuse(format!(
                "it has {} entries, over the limit of {}",
                zip.len(),
                l.max_entries
            )));
        }
        let strip = input.steps.contains(&"strip-metadata");
        let mut names = BTreeSet::new();
        let mut parts: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut text = Vec::new();
        let mut total = 0u64;
        for i in 0..zip.len() {
            let mut f = zip
                .by_index(i)
                .map_err(|e| refuse(format!("entry {i} cannot be read ({e})")))?;
            let name = std::str::from_utf8(f.name_raw())
                .map_err(|_| refuse(format!("the name of entry {i} is not UTF-8")))?
                .to_owned();
            check_name(&name)
                .map_err(|why| refuse(format!("entry name `{}` {why}", name.escape_debug())))?;
            if !names.insert(name.to_lowercase()) {
                return Err(refuse(format!(
                    "entry name `{name}` appears twice (or twice but for case)"
                )));
            }
            if f.encrypted() {
                return Err(refuse(format!(
                    "entry `{name}` is encrypted, so it cannot be checked"
                )));
            }
            if f.is_symlink() {
                return Err(refuse(format!("entry `{name}` is a symbolic link")));
            }
            if !matches!(
                f.compression(),
                CompressionMethod::Stored | CompressionMethod::Deflated
            ) {
                return Err(refuse(format!(
                    "entry `{name}` uses a compression method other than stored or deflate"
                )));
            }
            if f.is_dir() {
                continue;
            }
            let part = classify(&name)?;
            if let Part::Drop(_) = part {
                continue;
            }
            let (size, packed) = (f.size(), f.compressed_size().max(1));
            if size > l.max_entry || total.saturating_add(size) > l.max_total {
                return Err(refuse(format!(
                    "entry `{name}` is {size} bytes uncompressed, over the limit of {} an entry \
                     or {} in all (a zip bomb?)",
                    l.max_entry, l.max_total
                )));
            }
            if size > 64 << 10 && size / packed > l.max_ratio {
                return Err(refuse(format!(
                    "entry `{name}` expands {}:1, over the limit of {}:1 (a zip bomb?)",
                    size / packed,
                    l.max_ratio
                )));
            }
            let mut data = Vec::new();
            (&mut f)
                .take(l.max_entry.min(size).saturating_add(1))
                .read_to_end(&mut data)
                .map_err(|e| refuse(format!("entry `{name}` does not decompress ({e})")))?;
            let got = u64::try_from(data.len()).unwrap_or(u64::MAX);
            if got != size {
                return Err(refuse(format!(
                    "entry `{name}` holds other than the {size} bytes its header declares"
                )));
            }
            total = total.saturating_add(got);
            if archive_magic(&data) {
                return Err(refuse(format!(
                    "entry `{name}` is an archive inside the archive (a nested zip bomb?), \
                     which is refused"
                )));
            }
            let image_input = |kind| FilterInput {
                kind,
                schema: None,
                steps: &["validate", "rebuild", "strip-metadata"],
                max_size: l.max_entry,
                release: false,
            };
            let rebuilt = match part {
                Part::Xml => canonical(&name, &data, strip, l.max_depth, &mut text)?,
                Part::Png => {
                    PngFilter::new(ImageLimits::default())
                        .run(&image_input("png"), &data)
                        .map_err(|r| refuse(format!("image `{name}`: {}", r.reason)))?
                        .bytes
                }
                Part::Jpeg => {
                    JpegFilter::new(ImageLimits::default())
                        .run(&image_input("jpeg"), &data)
                        .map_err(|r| refuse(format!("image `{name}`: {}", r.reason)))?
                        .bytes
                }
                Part::Font => {
                    if !font_magic(&data) {
                        return Err(refuse(format!(
                            "font `{name}` is not a TrueType or OpenType font"
                        )));
                    }
                    data
                }
                Part::Drop(_) => continue,
            };
            parts.insert(name, rebuilt);
        }
        let root = parts.remove("OFD.xml").ok_or_else(|| {
            refuse("it has no `OFD.xml` at its root, so it is not an OFD document")
        })?;
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(6))
            .last_modified_time(DateTime::DEFAULT)
            .unix_permissions(0o644);
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let write_err = |e: &dyn std::fmt::Display| {
            refuse(format!("the rebuilt archive cannot be written: {e}"))
        };
        for (name, data) in std::iter::once(("OFD.xml".to_owned(), root)).chain(parts) {
            w.start_file(name, opts).map_err(|e| write_err(&e))?;
            w.write_all(&data).map_err(|e| write_err(&e))?;
        }
        let out = w.finish().map_err(|e| write_err(&e))?.into_inner();
        Ok((out, text))
    }
}

impl Filter for OfdFilter {
    fn kind(&self) -> &str {
        "ofd"
    }

    fn memory(&self) -> MemoryBound {
        // The archive and the rebuilt archive, and its parts uncompressed (never over
        // `max_total`, whatever the archive's length).
        MemoryBound::Linear {
            per_byte: 2,
            plus: self.limits.max_total,
        }
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        check_size("ofd", input, bytes)?;
        if !bytes.starts_with(b"PK\x03\x04") {
            return Err(refuse(
                "it is declared ofd, but the bytes are not a ZIP archive; declare its real kind",
            ));
        }
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
    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn input() -> FilterInput<'static> {
        FilterInput {
            kind: "ofd",
            schema: None,
            steps: &["validate", "rebuild"],
            max_size: 1 << 24,
            release: true,
        }
    }

    const ROOT: &[u8] =
        b"<ofd:OFD xmlns:ofd=\"http://www.ofdspec.org/2016\"><ofd:DocBody/></ofd:OFD>";

    #[test]
    fn names_are_checked() {
        for (name, why) in [
            ("../OFD.xml", "climbs out"),
            ("/etc/passwd", "absolute"),
            ("Doc_0\\Document.xml", "backslash"),
            ("C:/x", "drive letter"),
            ("Doc_0//Document.xml", "empty"),
        ] {
            assert!(check_name(name).unwrap_err().contains(why), "{name}");
        }
        let dup = zip_of(&[("OFD.xml", ROOT), ("ofd.XML", ROOT)]);
        let r = OfdFilter::default().run(&input(), &dup).unwrap_err();
        assert!(r.reason.contains("appears twice"), "{}", r.reason);
        let none = zip_of(&[("Doc_0/Document.xml", ROOT)]);
        let r = OfdFilter::default().run(&input(), &none).unwrap_err();
        assert!(r.reason.contains("no `OFD.xml`"), "{}", r.reason);
    }

    #[test]
    fn xml_is_written_again_canonically() {
        let mut text = Vec::new();
        let src = "<?xml version='1.0' encoding='utf-8'?>\n<!-- c -->\n<a:P xmlns:a='u' k=\"1&amp;2\" t='x&#9;y'><a:TextCode X='0'>秘&lt;密<![CDATA[&]]></a:TextCode><a:Actions><a:Action/></a:Actions><a:E/></a:P>\n";
        let once = canonical("p.xml", src.as_bytes(), false, 64, &mut text).unwrap();
        let once_s = String::from_utf8(once.clone()).unwrap();
        assert_eq!(
            once_s,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a:P xmlns:a=\"u\" k=\"1&amp;2\" t=\"x&#9;y\"><a:TextCode X=\"0\">秘&lt;密&amp;</a:TextCode><a:E/></a:P>"
        );
        assert_eq!(text, vec!["秘<密&".to_owned()]);
        let twice = canonical("p.xml", &once, false, 64, &mut Vec::new()).unwrap();
        assert_eq!(once, twice);
        for (bad, why) in [
            ("<a>&ent;</a>", "entity"),
            ("<a><b></a>", "well-formed"),
            ("<a/><b/>", "second root"),
            ("<?pi x?><a/>", "processing instruction"),
            ("<a>\u{1}</a>", "control character"),
            ("<?xml version='1.0' encoding='GB18030'?><a/>", "encoding"),
            ("<a>", "left open"),
            ("text<a/>", "outside the root"),
        ] {
            let r = canonical("p.xml", bad.as_bytes(), false, 64, &mut Vec::new()).unwrap_err();
            assert!(r.reason.contains(why), "{bad}: {}", r.reason);
        }
        let deep = format!("{}{}", "<a>".repeat(70), "</a>".repeat(70));
        let r = canonical("p.xml", deep.as_bytes(), false, 64, &mut Vec::new()).unwrap_err();
        assert!(r.reason.contains("deeper"), "{}", r.reason);
    }

    #[test]
    fn ratio_and_sizes_are_checked_before_and_while_reading() {
        let zeros = vec![b' '; 4 << 20];
        let mut xml = b"<ofd:OFD>".to_vec();
        xml.extend_from_slice(&zeros);
        xml.extend_from_slice(b"</ofd:OFD>");
        let bomb = zip_of(&[("OFD.xml", &xml)]);
        let r = OfdFilter::default().run(&input(), &bomb).unwrap_err();
        assert!(r.reason.contains("expands"), "{}", r.reason);
        let small = OfdLimits {
            max_entry: 1 << 20,
            max_ratio: 1 << 30,
            ..OfdLimits::default()
        };
        let r = OfdFilter::new(small).run(&input(), &bomb).unwrap_err();
        assert!(r.reason.contains("over the limit"), "{}", r.reason);
        let ok = zip_of(&[
            ("OFD.xml", ROOT),
            ("Doc_0/Signs/Sign_0/SignedValue.dat", b"sig"),
        ]);
        let out = OfdFilter::default().run(&input(), &ok).unwrap();
        let again = OfdFilter::default().run(&input(), &out.bytes).unwrap();
        assert_eq!(out.bytes, again.bytes);
        assert_eq!(ZipArchive::new(Cursor::new(&out.bytes)).unwrap().len(), 1);
    }
}
