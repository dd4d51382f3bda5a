//! The true-type check: what the bytes are, from their magic numbers, against the kind the
//! manifest declares (the ACSC's "true type" content-filtering technique).
//!
//! [`sniff`] names the family of a payload whose first bytes carry a known signature; a payload
//! with none sniffs as `None` and is left to its kind's filter, which knows its format. A
//! family is accepted only under the kinds whose filter reads it ([`check`]): a JPEG declared as
//! `pdf`, a ZIP declared as `text` or an executable declared as anything is refused before any
//! filter runs, so a filter never sees bytes of another format that a reader downstream might
//! open by their content.
//!
//! Signatures are read where their readers look for them: at the start of the file, at byte 4
//! for ISO media's `ftyp` box, at the offset the DOS header names for a PE header, and anywhere
//! in the first 1024 bytes for `%PDF-` (PDF readers accept that much junk before the header;
//! past the first byte it is held only against `text`, see [`check`]).
//! A ZIP is sniffed only from its first local header: one appended after another format (a
//! PNG/ZIP polyglot) is that format's filter's to drop.

use super::Refusal;

/// How far into a file PDF readers look for `%PDF-`.
const PDF_WINDOW: usize = 1024;

/// The family of `bytes` from its magic numbers (`pdf`, `zip`, `png`, `jpeg`, `mp4`, `heif`,
/// `gif`, `gzip`, `bzip2`, `xz`, `7z`, `rar`, `ole2`, `elf`, `pe`, `mach-o`, `audit-batch`), or
/// `None` when it carries no signature this check knows.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| {
        bytes
            .get(offset..offset.saturating_add(magic.len()))
            .is_some_and(|b| b == magic)
    };
    let starts = |magic: &[u8]| at(0, magic);
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some("png");
    }
    if starts(b"\xff\xd8\xff") {
        return Some("jpeg");
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        return Some("zip");
    }
    if at(4, b"ftyp") {
        let heif = [
            &b"heic"[..],
            b"heix",
            b"heim",
            b"heis",
            b"hevc",
            b"hevx",
            b"mif1",
            b"msf1",
            b"avif",
            b"avis",
        ];
        return Some(if heif.iter().any(|brand| at(8, brand)) {
            "heif"
        } else {
            "mp4"
        });
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some("gif");
    }
    if starts(b"\x1f\x8b\x08") {
        return Some("gzip");
    }
    if starts(b"BZh") && bytes.get(3).is_some_and(|d| (b'1'..=b'9').contains(d)) && at(4, b"1AY&SY")
    {
        return Some("bzip2");
    }
    if starts(b"\xfd7zXZ\0") {
        return Some("xz");
    }
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return Some("7z");
    }
    if starts(b"Rar!\x1a\x07") {
        return Some("rar");
    }
    if starts(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") {
        return Some("ole2");
    }
    if starts(b"\x7fELF") {
        return Some("elf");
    }
    if starts(b"MZ") && pe_header(bytes) {
        return Some("pe");
    }
    let macho = [
        &b"\xfe\xed\xfa\xce"[..],
        b"\xce\xfa\xed\xfe",
        b"\xfe\xed\xfa\xcf",
        b"\xcf\xfa\xed\xfe",
        b"\xca\xfe\xba\xbe",
    ];
    if macho.iter().any(|m| starts(m)) {
        return Some("mach-o");
    }
    if starts(b"TPAUDITB") {
        return Some("audit-batch");
    }
    let window = bytes.get(..PDF_WINDOW).unwrap_or(bytes);
    if window.windows(5).any(|w| w == b"%PDF-") {
        return Some("pdf");
    }
    None
}

/// Whether the DOS header's `e_lfanew` points at a `PE\0\0` signature.
fn pe_header(bytes: &[u8]) -> bool {
    let Some(offset) = bytes
        .get(0x3c..0x40)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .and_then(|o| usize::try_from(o).ok())
    else {
        return false;
    };
    bytes
        .get(offset..offset.saturating_add(4))
        .is_some_and(|b| b == b"PE\0\0")
}

/// A family as a person reads it ("a JPEG image").
fn describe(family: &str) -> &'static str {
    match family {
        "pdf" => "a PDF document",
        "zip" => "a ZIP archive",
        "png" => "a PNG image",
        "jpeg" => "a JPEG image",
        "mp4" => "an MP4 (ISO media) file",
        "heif" => "a HEIF/AVIF image",
        "gif" => "a GIF image",
        "gzip" => "a gzip archive",
        "bzip2" => "a bzip2 archive",
        "xz" => "an xz archive",
        "7z" => "a 7-Zip archive",
        "rar" => "a RAR archive",
        "ole2" => "an OLE2 compound file (an old Office document)",
        "elf" => "an ELF executable",
        "pe" => "a Windows executable",
        "mach-o" => "a Mach-O executable",
        "audit-batch" => "an audit batch",
        _ => "of another format",
    }
}

/// Whether a payload of `family` may be declared as `kind`: only under the kind whose filter
/// reads that format (an OFD document is a ZIP).
fn fits(kind: &str, family: &str) -> bool {
    matches!(
        (kind, family),
        ("pdf", "pdf")
            | ("ofd" | "zip", "zip")
            | ("png", "png")
            | ("jpeg", "jpeg")
            | ("mp4", "mp4")
            | ("audit-batch", "audit-batch")
    )
}

/// Refuses `bytes` declared as `kind` when they sniff as a family that kind does not hold:
/// "the bytes are a JPEG image, declared as pdf".
///
/// A PDF header after the first byte counts only against `text`, the one kind whose filter
/// passes a document a PDF reader would open: in a machine format (JSON, a receipt, a
/// directory update) it is someone's words, read whole by that kind's own filter, and refusing
/// it there would let one person's name hold up a batch of everyone's.
pub(super) fn check(kind: &str, bytes: &[u8]) -> Result<(), Refusal> {
    match sniff(bytes) {
        Some("pdf") if kind != "text" && !bytes.starts_with(b"%PDF-") => Ok(()),
        Some(family) if !fits(kind, family) => Err(Refusal::new(
            kind,
            format!("the bytes are {}, declared as {kind}", describe(family)),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_is_sniffed_from_its_magic() {
        let mut pe = b"MZ".to_vec();
        pe.resize(0x3c, 0);
        pe.extend_from_slice(&0x40u32.to_le_bytes());
        pe.extend_from_slice(b"PE\0\0\x4c\x01");
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some("png")),
            (b"\xff\xd8\xff\xe0\0\x10JFIF", Some("jpeg")),
            (b"PK\x03\x04\x14\0\0\0", Some("zip")),
            (b"PK\x05\x06\0\0\0\0", Some("zip")),
            (b"\0\0\0\x18ftypisom\0\0\x02\0", Some("mp4")),
            (b"\0\0\0\x18ftypheic\0\0\0\0", Some("heif")),
            (b"GIF89a\x01\0\x01\0", Some("gif")),
            (b"\x1f\x8b\x08\0\0\0\0\0", Some("gzip")),
            (b"BZh91AY&SY", Some("bzip2")),
            (b"\xfd7zXZ\0\0", Some("xz")),
            (b"7z\xbc\xaf\x27\x1c\0\x04", Some("7z")),
            (b"Rar!\x1a\x07\x01\0", Some("rar")),
            (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", Some("ole2")),
            (b"\x7fELF\x02\x01\x01", Some("elf")),
            (&pe, Some("pe")),
            (b"\xcf\xfa\xed\xfe\x07\0\0\x01", Some("mach-o")),
            (b"TPAUDITB\x01\0\0", Some("audit-batch")),
            (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", Some("pdf")),
            (b"junk before it\n%PDF-1.4\n", Some("pdf")),
            // text that only looks like a signature
            (b"MZ Holdings annual report\n", None),
            (b"BZh is not enough\n", None),
            (b"PK is a name\n", None),
            (b"{\"court\": \"bj.01\"}", None),
            (b"", None),
            (b"\xff", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff(bytes), *want, "{bytes:?}");
        }
        let mut late = vec![b' '; PDF_WINDOW];
        late.extend_from_slice(b"%PDF-1.7");
        assert_eq!(sniff(&late), None, "past the window PDF readers look in");
    }

    #[test]
    fn a_family_passes_only_under_its_own_kind() {
        let jpeg = b"\xff\xd8\xff\xe0\0\x10JFIF";
        let r = check("pdf", jpeg).unwrap_err();
        assert_eq!(r.reason, "the bytes are a JPEG image, declared as pdf");
        assert!(check("jpeg", jpeg).is_ok());
        let png = b"\x89PNG\r\n\x1a\n";
        assert!(check("jpeg", png).is_err_and(|r| r.reason.contains("a PNG image")));
        let zip = b"PK\x03\x04\x14\0";
        assert!(check("text", zip).is_err_and(|r| r.reason.contains("a ZIP archive")));
        assert!(check("ofd", zip).is_ok());
        let elf = b"\x7fELF\x02\x01";
        for kind in ["text", "pdf", "json", "policy-update", "mp4"] {
            assert!(check(kind, elf).is_err(), "{kind}");
        }
        // bytes with no signature are the kind's filter's to judge
        assert!(check("png", b"plain words").is_ok());
        assert!(check("text", b"plain words").is_ok());
        // a PDF header past the first byte: a document to a PDF reader, words in JSON
        let late = b"note\n%PDF-1.4\n1 0 obj";
        assert!(check("text", late).is_err_and(|r| r.reason.contains("a PDF document")));
        assert!(check("pdf", late).is_ok());
        assert!(check("json", br#"{"name": "%PDF-1.7"}"#).is_ok());
        assert!(check("json", b"%PDF-1.7").is_err());
    }

    // ------------------------------------------------------------ the hostile corpus

    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use crate::filter::{FilterInput, Filters};

    fn hostile() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
    }

    /// This file's lines of the hostile corpus's manifest.
    const MINE: &[(&str, &str, &str, &str)] = &[
        (
            "sniff-elf-declared-text.txt",
            "text",
            "refuse",
            "the bytes are an ELF executable, declared as text",
        ),
        (
            "sniff-jpeg-declared-pdf.pdf",
            "pdf",
            "refuse",
            "the bytes are a JPEG image, declared as pdf",
        ),
        (
            "sniff-zip-declared-text.txt",
            "text",
            "refuse",
            "the bytes are a ZIP archive, declared as text",
        ),
    ];

    #[test]
    fn hostile_files_of_another_true_type_are_refused_before_any_filter() {
        if std::env::var_os("CROSSDOMAIN_WRITE_HOSTILE").is_some() {
            write(&hostile());
        }
        let manifest = std::fs::read_to_string(hostile().join("manifest.tsv")).unwrap();
        let mut seen = 0;
        for line in manifest.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            let [file, kind, outcome, reason] = cols.as_slice() else {
                continue;
            };
            if !MINE.iter().any(|m| m.0 == *file) {
                continue;
            }
            seen += 1;
            assert_eq!(*outcome, "refuse");
            let bytes = std::fs::read(hostile().join(file)).unwrap();
            // no filter registered: the true type is checked first
            let got = Filters::new().run(
                &FilterInput {
                    kind,
                    schema: None,
                    steps: &["validate", "rebuild"],
                    max_size: 1 << 20,
                    release: false,
                },
                &bytes,
            );
            assert!(
                got.as_ref().is_err_and(|r| r.reason == *reason),
                "{file}: {got:?}"
            );
        }
        assert_eq!(
            seen,
            MINE.len(),
            "every file of this test has its manifest line"
        );
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

    /// A ZIP archive holding `name` stored (not compressed).
    fn zip(name: &str, data: &[u8]) -> Vec<u8> {
        let (n, len, crc) = (
            u16::try_from(name.len()).unwrap(),
            u32::try_from(data.len()).unwrap(),
            crc32(data),
        );
        let mut z = b"PK\x03\x04\x14\0\0\0\0\0\0\0\0\0".to_vec();
        for v in [crc, len, len] {
            z.extend_from_slice(&v.to_le_bytes());
        }
        z.extend_from_slice(&n.to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z.extend_from_slice(name.as_bytes());
        z.extend_from_slice(data);
        let central = u32::try_from(z.len()).unwrap();
        z.extend_from_slice(b"PK\x01\x02\x14\0\x14\0\0\0\0\0\0\0\0\0");
        for v in [crc, len, len] {
            z.extend_from_slice(&v.to_le_bytes());
        }
        z.extend_from_slice(&n.to_le_bytes());
        z.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
        z.extend_from_slice(&0u32.to_le_bytes()); // the local header's offset
        z.extend_from_slice(name.as_bytes());
        let size = u32::try_from(z.len()).unwrap() - central;
        z.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
        z.extend_from_slice(&size.to_le_bytes());
        z.extend_from_slice(&central.to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z
    }

    /// Writes this test's corpus files and merges its lines into the manifest (others' lines
    /// kept, sorted by file name): `CROSSDOMAIN_WRITE_HOSTILE=1`.
    fn write(d: &Path) {
        let put = |name: &str, bytes: &[u8]| std::fs::write(d.join(name), bytes).unwrap();
        // an ELF64 header of an x86-64 executable, nothing after it
        let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
        elf.resize(16, 0);
        elf.extend_from_slice(&[2, 0, 0x3e, 0, 1, 0, 0, 0]);
        elf.resize(64, 0);
        put("sniff-elf-declared-text.txt", &elf);
        put(
            "sniff-jpeg-declared-pdf.pdf",
            &std::fs::read(d.join("jpeg-exif-comment.jpg")).unwrap(),
        );
        put(
            "sniff-zip-declared-text.txt",
            &zip("statement.txt", "a statement of claim\n".as_bytes()),
        );

        let path = d.join("manifest.tsv");
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
        for (file, kind, outcome, reason) in MINE {
            rows.insert(
                (*file).to_owned(),
                format!("{file}\t{kind}\t{outcome}\t{reason}"),
            );
        }
        let mut text = header;
        for line in rows.values() {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(path, text).unwrap();
    }
}
