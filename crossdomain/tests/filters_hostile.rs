//! The hostile corpus's `text`, `json`, `png`, `jpeg`, `pdf` and `ofd` files
//! (crossdomain/tests/hostile/), run through this crate's filters: each refused with its
//! reason, each accepted file rebuilt, read again by a reader other than the filter
//! (serde_json for JSON, the image's own chunk list for PNG, lopdf for PDF, zip and quick-xml
//! for OFD), and passed through the filter again unchanged.
//!
//! `CROSSDOMAIN_WRITE_HOSTILE=1 cargo test -p tianping-crossdomain --test filters_hostile`
//! writes these files again and merges their lines into `manifest.tsv` (other kinds' lines are
//! kept; the manifest stays sorted by file name).

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use tianping_crossdomain::{
    FilterInput, Filtered, Filters, JpegFilter, JsonFilter, Mp4Filter, OfdFilter, PdfFilter,
    PngFilter, TextFilter, marking_check,
};
use tianping_policies::{DEFAULT_POLICY, check};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

/// This file's lines of the manifest: file, declared kind, outcome, reason (a substring of the
/// refusal, or what the accepted file shows).
const MINE: &[(&str, &str, &str, &str)] = &[
    (
        "jpeg-declared-png.png",
        "png",
        "refuse",
        "the bytes are a JPEG image",
    ),
    (
        "jpeg-exif-comment.jpg",
        "jpeg",
        "accept",
        "EXIF, XMP and comment dropped",
    ),
    (
        "jpeg-trailing-zip.jpg",
        "jpeg",
        "accept",
        "the ZIP after the end marker dropped",
    ),
    ("jpeg-truncated.jpg", "jpeg", "refuse", "cut short"),
    (
        "ofd-clean.ofd",
        "ofd",
        "accept",
        "rebuilt: comment, signature and attachment dropped",
    ),
    ("ofd-entity-bomb.ofd", "ofd", "refuse", "DOCTYPE"),
    (
        "ofd-nested-zip-bomb.ofd",
        "ofd",
        "refuse",
        "archive inside the archive",
    ),
    (
        "ofd-path-traversal.ofd",
        "ofd",
        "refuse",
        "climbs out of the archive",
    ),
    (
        "ofd-unexpected-part.ofd",
        "ofd",
        "refuse",
        "is not one an OFD document holds",
    ),
    (
        "pdf-cid-tounicode.pdf",
        "pdf",
        "accept",
        "CID font text decoded through ToUnicode",
    ),
    (
        "pdf-clean.pdf",
        "pdf",
        "accept",
        "rebuilt: Info and XMP dropped",
    ),
    (
        "pdf-embedded-file.pdf",
        "pdf",
        "accept",
        "the embedded file dropped",
    ),
    ("pdf-encrypted.pdf", "pdf", "refuse", "encrypted"),
    (
        "pdf-incremental-redaction.pdf",
        "pdf",
        "accept",
        "the old revision's text gone",
    ),
    (
        "pdf-javascript.pdf",
        "pdf",
        "refuse",
        "PDF holds JavaScript in object",
    ),
    ("pdf-jpeg-declared.pdf", "pdf", "refuse", "JPEG image"),
    ("pdf-launch.pdf", "pdf", "refuse", "Launch action"),
    (
        "pdf-marked-cid.pdf",
        "pdf",
        "accept",
        "carries 秘密 in a CID font (the marking check refuses it on a release)",
    ),
    ("pdf-truncated.pdf", "pdf", "refuse", "cut short"),
    (
        "pdf-undecodable-font.pdf",
        "pdf",
        "refuse",
        "cannot be checked for markings",
    ),
    (
        "pdf-zip-polyglot.pdf",
        "pdf",
        "accept",
        "the ZIP after %%EOF dropped",
    ),
    (
        "json-ansi-in-string.json",
        "json(filing-form)",
        "refuse",
        "escape character",
    ),
    (
        "json-assistance-notice.json",
        "json(assistance-notice)",
        "accept",
        "clean",
    ),
    (
        "json-big-integer.json",
        "json(inquiry-result)",
        "refuse",
        "outside the 64-bit range",
    ),
    ("json-case-file.json", "json(case-file)", "accept", "clean"),
    (
        "json-casework-form.json",
        "json(casework-form)",
        "accept",
        "clean",
    ),
    (
        "json-duplicate-key.json",
        "json(filing-form)",
        "refuse",
        "appears twice",
    ),
    (
        "json-filing-form.json",
        "json(filing-form)",
        "accept",
        "clean",
    ),
    (
        "json-inexact-float.json",
        "json(casework-form)",
        "refuse",
        "not exactly the 64-bit float",
    ),
    (
        "json-inquiry-result.json",
        "json(inquiry-result)",
        "accept",
        "clean",
    ),
    (
        "json-invalid-utf8.json",
        "json(filing-form)",
        "refuse",
        "not UTF-8",
    ),
    (
        "json-nested-100000.json",
        "json(filing-form)",
        "refuse",
        "deeper than 64",
    ),
    (
        "json-schema-violation.json",
        "json(filing-form)",
        "refuse",
        "does not follow schema",
    ),
    (
        "json-two-documents.json",
        "json(filing-form)",
        "refuse",
        "more follows the document",
    ),
    (
        "json-unknown-schema.json",
        "json(tax-return)",
        "refuse",
        "no schema `tax-return`",
    ),
    (
        "png-decompression-bomb.png",
        "png",
        "refuse",
        "would decode to",
    ),
    ("png-pixel-bomb.png", "png", "refuse", "over the limit of"),
    (
        "png-text-chunk.png",
        "png",
        "accept",
        "tEXt, zTXt and eXIf chunks dropped",
    ),
    ("png-truncated.png", "png", "refuse", "does not decode"),
    (
        "png-zip-polyglot.png",
        "png",
        "accept",
        "the ZIP after IEND dropped",
    ),
    ("text-ansi-escape.txt", "text", "refuse", "escape character"),
    ("text-bidi-override.txt", "text", "refuse", "override"),
    (
        "text-crlf-bom.txt",
        "text",
        "accept",
        "BOM dropped, CRLF made LF",
    ),
    ("text-invalid-utf8.txt", "text", "refuse", "not UTF-8"),
    (
        "text-marked-secret.txt",
        "text",
        "accept",
        "carries 秘密★ (the marking check refuses it on a release)",
    ),
    ("text-nul.txt", "text", "refuse", "control character"),
];

fn filters() -> Filters {
    let mut f = Filters::new();
    f.register(Arc::new(TextFilter::new()));
    f.register(Arc::new(JsonFilter::with_default_schemas().unwrap()));
    f.register(Arc::new(PngFilter::default()));
    f.register(Arc::new(JpegFilter::default()));
    f.register(Arc::new(Mp4Filter::default()));
    f.register(Arc::new(PdfFilter::default()));
    f.register(Arc::new(OfdFilter::default()));
    f
}

/// (kind, schema) of a manifest's declared kind.
fn kind(declared: &str) -> (&str, Option<&str>) {
    match declared
        .strip_prefix("json(")
        .and_then(|s| s.strip_suffix(')'))
    {
        Some(schema) => ("json", Some(schema)),
        None => (declared, None),
    }
}

fn run(declared: &str, bytes: &[u8]) -> Result<Filtered, tianping_crossdomain::Refusal> {
    let (kind, schema) = kind(declared);
    filters().run(
        &FilterInput {
            kind,
            schema,
            steps: &["validate", "rebuild", "strip-metadata"],
            max_size: 64 << 20,
            release: true,
        },
        bytes,
    )
}

/// PNG chunk types in order.
fn png_chunks(b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 8;
    while at + 8 <= b.len() {
        let len = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&b[at + 4..at + 8]).into_owned());
        at += 12 + len;
    }
    out
}

#[test]
fn hostile_text_json_and_images() {
    maybe_write();
    let manifest = std::fs::read_to_string(dir().join("manifest.tsv")).unwrap();
    let mut seen = 0;
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let [file, declared, outcome, reason] = cols[..] else {
            panic!("bad manifest line {line:?}");
        };
        if !MINE.iter().any(|m| m.0 == file) {
            continue;
        }
        seen += 1;
        let bytes = std::fs::read(dir().join(file)).unwrap();
        match (outcome, run(declared, &bytes)) {
            ("refuse", Err(r)) => assert!(r.reason.contains(reason), "{file}: {r}"),
            ("accept", Ok(out)) => {
                let again = run(declared, &out.bytes).unwrap();
                assert_eq!(again.bytes, out.bytes, "{file}: not idempotent");
                match kind(declared).0 {
                    "json" => {
                        let a: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                        let b: serde_json::Value = serde_json::from_slice(&out.bytes).unwrap();
                        assert_eq!(a, b, "{file}: the rebuilt JSON means something else");
                    }
                    "png" => {
                        let chunks = png_chunks(&out.bytes);
                        assert_eq!(chunks.first().map(String::as_str), Some("IHDR"));
                        assert_eq!(chunks.last().map(String::as_str), Some("IEND"));
                        assert!(
                            chunks
                                .iter()
                                .all(|c| ["IHDR", "IDAT", "IEND"].contains(&c.as_str())),
                            "{file}: {chunks:?}"
                        );
                        assert!(!out.bytes.windows(4).any(|w| w == b"PK\x03\x04"));
                    }
                    "jpeg" => {
                        for needle in [
                            &b"Exif"[..],
                            b"http://ns.adobe.com/xap",
                            b"PK\x03\x04",
                            b"a comment",
                        ] {
                            assert!(
                                !out.bytes.windows(needle.len()).any(|w| w == needle),
                                "{file}"
                            );
                        }
                        assert!(out.bytes.ends_with(b"\xff\xd9"));
                    }
                    "pdf" => check_pdf(file, &out),
                    "ofd" => check_ofd(file, &out),
                    _ => assert!(std::str::from_utf8(&out.bytes).is_ok()),
                }
            }
            (want, got) => panic!("{file}: want {want}, got {got:?}"),
        }
    }
    assert_eq!(
        seen,
        MINE.len(),
        "every file of this test has its manifest line"
    );
}

#[test]
fn marked_text_is_refused_on_a_release_and_accepted_on_an_import() {
    let p = check("default.tp", DEFAULT_POLICY).into_policy().unwrap();
    let bytes = std::fs::read(dir().join("text-marked-secret.txt")).unwrap();
    let out = run("text", &bytes).unwrap();
    let release = p.flow("judgment-publication").unwrap();
    let r = marking_check(&release, &out).unwrap_err();
    assert!(r.reason.contains("`secret`"), "{r}");
    let import = p.flow("classified-import").unwrap();
    assert!(marking_check(&import, &out).is_ok());
    let json = std::fs::read(dir().join("json-filing-form.json")).unwrap();
    let out = run("json(filing-form)", &json).unwrap();
    let online = p.flow("filing-receipt").unwrap();
    assert!(marking_check(&online, &out).is_ok());
}

// ------------------------------------------------------------------------------ the files

fn maybe_write() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("CROSSDOMAIN_WRITE_HOSTILE").is_some() {
        ONCE.call_once(write);
    }
}

fn noisy(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v =
            (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)).wrapping_mul(2_246_822_519);
        let [_, r, g, b] = v.to_le_bytes();
        image::Rgb([r, g, b])
    })
}

fn png(img: &RgbImage, c: CompressionType) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, c, FilterType::Adaptive)
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

/// `png` with a chunk inserted after IHDR.
fn with_chunk(png: &[u8], kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out.extend_from_slice(&png[33..]);
    out
}

/// `jpeg` with segments inserted after SOI.
fn with_segments(jpeg: &[u8], segs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = b"\xff\xd8".to_vec();
    for (marker, body) in segs {
        out.extend_from_slice(&[0xff, *marker]);
        out.extend_from_slice(&u16::try_from(body.len() + 2).unwrap().to_be_bytes());
        out.extend_from_slice(body);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn filing_form() -> serde_json::Value {
    serde_json::json!({
        "court": "bj.01.03",
        "case_type": "civil",
        "plaintiffs": [{"kind": "person", "name": "张三", "id_type": "resident-id",
                        "id_number": "110101199001011234", "phone": "+86 138 0000 0000"}],
        "defendants": [{"kind": "organisation", "name": "某某有限公司",
                        "id_type": "unified-social-credit-code", "id_number": "91110000600037341L"}],
        "claims": "判令被告支付货款人民币十万元",
        "amount_claimed_fen": 10_000_000,
        "filed_by": {"role": "lawyer", "name": "李四", "bar_license": "11101200910123456",
                     "law_firm": "北京某律师事务所"},
        "attachments": [{"file": "complaint.pdf", "kind": "pdf",
                         "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}],
        "submitted_at": "2026-12-02T09:30:00+08:00"
    })
}

fn write() {
    let d = dir();
    std::fs::create_dir_all(&d).unwrap();
    let put = |name: &str, bytes: &[u8]| std::fs::write(d.join(name), bytes).unwrap();

    // JSON
    let form = filing_form();
    put(
        "json-filing-form.json",
        &serde_json::to_vec_pretty(&form).unwrap(),
    );
    put(
        "json-assistance-notice.json",
        &serde_json::to_vec_pretty(&serde_json::json!({
            "notice_no": "(2026)京0105执协1234号", "court": "bj.01.05",
            "case_number": "(2026)京0105执567号",
            "officer": {"name": "王五", "badge": "J-0105-031"},
            "subject": {"kind": "person", "name": "赵六", "id_type": "resident-id",
                        "id_number": "110101198501015678"},
            "bank": "ICBC", "actions": ["inquire", "freeze"], "amount_fen": 5_000_000,
            "valid_until": "2027-06-01", "issued_at": "2026-12-02T10:00:00+08:00"
        }))
        .unwrap(),
    );
    put(
        "json-inquiry-result.json",
        &serde_json::to_vec_pretty(&serde_json::json!({
            "notice_no": "(2026)京0105执协1234号", "bank": "ICBC", "status": "found",
            "accounts": [{"account": "6222020200001234567", "currency": "CNY",
                          "balance_fen": 1_234_567, "frozen_fen": 1_234_567, "state": "frozen"}],
            "answered_at": "2026-12-02T15:42:10+08:00"
        }))
        .unwrap(),
    );
    put(
        "json-casework-form.json",
        &serde_json::to_vec_pretty(&serde_json::json!({
            "case_number": "(2026)京0105执567号", "court": "bj.01.05",
            "officer": {"name": "王五", "badge": "J-0105-031"}, "action": "site-visit",
            "at": "2026-12-02T14:05:00+08:00",
            "location": {"lat": 39.9087, "lon": 116.3975, "address": "北京市东城区某路1号"},
            "persons_present": ["赵六"], "notes": "被执行人不在现场，已张贴公告"
        }))
        .unwrap(),
    );
    put("json-case-file.json", &serde_json::to_vec_pretty(&serde_json::json!({
        "case_number": "(2026)京0105执567号", "court": "bj.01.05", "title": "赵六买卖合同纠纷执行案",
        "stage": "enforcing", "judge": "孙七", "officers": ["王五"],
        "parties": [{"kind": "person", "name": "赵六"}],
        "hearings": [{"at": "2026-12-10T09:00:00+08:00", "room": "第三法庭"}],
        "amount_owed_fen": 5_000_000, "updated_at": "2026-12-02T16:00:00+08:00"
    })).unwrap());
    let mut nested = "[".repeat(100_000);
    nested.push_str(&"]".repeat(100_000));
    put("json-nested-100000.json", nested.as_bytes());
    let text = serde_json::to_string(&form).unwrap();
    put(
        "json-duplicate-key.json",
        text.replacen(
            "\"case_type\":\"civil\"",
            "\"case_type\":\"civil\",\"case_type\":\"administrative\"",
            1,
        )
        .as_bytes(),
    );
    put(
        "json-two-documents.json",
        format!("{text}\n{text}\n").as_bytes(),
    );
    put("json-big-integer.json",
        br#"{"notice_no":"n1","bank":"ICBC","status":"found","accounts":[{"account":"6222020200001234567","currency":"CNY","balance_fen":99999999999999999999}],"answered_at":"2026-12-02T15:42:10+08:00"}"#);
    put("json-inexact-float.json",
        br#"{"case_number":"c","court":"bj.01","officer":{"name":"w","badge":"b"},"action":"other","at":"2026-12-02T14:05:00+08:00","location":{"lat":39.90870000000000000001,"lon":116.3975}}"#);
    put(
        "json-invalid-utf8.json",
        &[&text.as_bytes()[..40], b"\xc3\x28", &text.as_bytes()[40..]].concat(),
    );
    put(
        "json-ansi-in-string.json",
        text.replacen("判令", "\\u001b[8m判令", 1).as_bytes(),
    );
    let mut missing = form.clone();
    missing.as_object_mut().unwrap().remove("defendants");
    missing["court"] = serde_json::json!("../../etc");
    put(
        "json-schema-violation.json",
        &serde_json::to_vec(&missing).unwrap(),
    );
    put("json-unknown-schema.json", b"{}");

    // Text
    put(
        "text-crlf-bom.txt",
        "\u{feff}判决书\r\n第一行\r\n第二行\r\n".as_bytes(),
    );
    put(
        "text-ansi-escape.txt",
        b"total: 100\x1b[2K\x1b[1Atotal: 0\n",
    );
    put(
        "text-bidi-override.txt",
        "access = \"user\u{202e} \u{2066}// admin\u{2069} \u{2066}\"\n".as_bytes(),
    );
    put("text-invalid-utf8.txt", b"caf\xe9 au lait\n");
    put("text-nul.txt", b"name\0hidden\n");
    put(
        "text-marked-secret.txt",
        "本文件密级：秘 密★\n内容从略。\n".as_bytes(),
    );

    // PNG
    let img = noisy(64, 48);
    let clean = png(&img, CompressionType::Default);
    let t = with_chunk(
        &clean,
        b"tEXt",
        b"Author\0Judge Wang, a comment that must not cross",
    );
    let t = with_chunk(&t, b"zTXt", b"Comment\0\0x\x9c\x03\0\0\0\0\x01");
    let t = with_chunk(&t, b"eXIf", b"MM\0*\0\0\0\x08\0\0");
    put("png-text-chunk.png", &t);
    let mut poly = clean.clone();
    poly.extend_from_slice(b"PK\x03\x04\x14\0\0\0\0\0 a zip archive after IEND");
    put("png-zip-polyglot.png", &poly);
    put("png-truncated.png", &clean[..clean.len() / 2]);
    // 6000 × 6000 of one colour: 108 MB of pixels from a few hundred kilobytes.
    put(
        "png-decompression-bomb.png",
        &png(&RgbImage::new(6000, 6000), CompressionType::Best),
    );
    // A valid small PNG whose header claims 100,000 × 100,000 pixels.
    let mut huge = png(&noisy(8, 8), CompressionType::Default);
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    put("png-pixel-bomb.png", &huge);

    // JPEG
    let j = jpeg(&noisy(64, 48));
    put("jpeg-declared-png.png", &j);
    let xmp =
        b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><dc:creator>Judge Wang</dc:creator></x:xmpmeta>";
    put(
        "jpeg-exif-comment.jpg",
        &with_segments(
            &j,
            &[
                (0xe1, b"Exif\0\0MM\0*\0\0\0\x08\0\0"),
                (0xe1, xmp),
                (0xe2, b"ICC_PROFILE\0\x01\x01not really a profile"),
                (0xfe, b"a comment that must not cross"),
            ],
        ),
    );
    let mut trailing = j.clone();
    trailing.extend_from_slice(b"PK\x03\x04\x14\0\0\0\0\0 a zip archive after EOI");
    put("jpeg-trailing-zip.jpg", &trailing);
    put("jpeg-truncated.jpg", &j[..j.len() - 64]);

    write_pdfs(&put);
    write_ofds(&put);

    // The manifest: other kinds' lines kept, this file's replaced, sorted by file name.
    let path = d.join("manifest.tsv");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut header: Vec<String> = Vec::new();
    let mut rows: BTreeMap<String, String> = BTreeMap::new();
    for line in old.lines() {
        if line.starts_with('#') {
            header.push(line.to_owned());
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
    let mut text: String = header.iter().map(|h| format!("{h}\n")).collect();
    for line in rows.values() {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

// ------------------------------------------------------------------------- pdf and ofd

use lopdf::{Dictionary, Document, Object, Stream, dictionary};

/// Every stream of a PDF decoded, with the raw bytes of the file: what a reader could find.
fn pdf_everything(bytes: &[u8]) -> Vec<u8> {
    let doc = Document::load_mem(bytes).unwrap();
    let mut all = bytes.to_vec();
    for o in doc.objects.values() {
        if let Object::Stream(s) = o {
            all.extend(
                s.decompressed_content()
                    .unwrap_or_else(|_| s.content.clone()),
            );
        }
    }
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The rebuilt PDF read again by lopdf: pages there, nothing active left.
fn check_pdf(file: &str, out: &Filtered) {
    let doc = Document::load_mem(&out.bytes).unwrap();
    assert!(!doc.get_pages().is_empty(), "{file}: no pages");
    assert_eq!(doc.revision_count(), 1, "{file}");
    let all = pdf_everything(&out.bytes);
    for needle in [
        &b"/JavaScript"[..],
        b"/JS",
        b"/OpenAction",
        b"/EmbeddedFile",
        b"/Metadata",
        b"PK\x03\x04",
        b"MZ-payload",
        b"SECRET-WITNESS",
        b"Judge Wang",
    ] {
        assert!(
            !contains(&all, needle),
            "{file}: {}",
            String::from_utf8_lossy(needle)
        );
    }
    assert!(!out.text.is_empty(), "{file}: no text extracted");
}

/// The rebuilt OFD read again by zip and quick-xml: every part well-formed, none dropped kept.
fn check_ofd(file: &str, out: &Filtered) {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&out.bytes)).unwrap();
    let mut names = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut data).unwrap();
        if name.ends_with(".xml") {
            let text = std::str::from_utf8(&data).unwrap();
            let mut r = quick_xml::Reader::from_str(text);
            loop {
                let ev = r.read_event().unwrap();
                assert!(
                    !matches!(
                        ev,
                        quick_xml::events::Event::Comment(_)
                            | quick_xml::events::Event::DocType(_)
                            | quick_xml::events::Event::PI(_)
                    ),
                    "{file}: {name}"
                );
                if matches!(ev, quick_xml::events::Event::Eof) {
                    break;
                }
            }
            assert!(
                !text.contains("Signatures") && !text.contains("Attachments"),
                "{file}: {name}"
            );
        }
        names.push(name);
    }
    assert_eq!(names.first().map(String::as_str), Some("OFD.xml"), "{file}");
    assert!(
        names
            .iter()
            .all(|n| !n.contains("Signs/") && !n.contains("Attachs/")),
        "{file}: {names:?}"
    );
    assert!(!out.text.is_empty(), "{file}: no TextCode text");
}

/// A PDF writer over lopdf with a fixed layout: catalog 1, pages 2, page 3, content 4, font 5.
struct Pdf {
    doc: Document,
}

impl Pdf {
    fn new(content: &[u8], font: Dictionary) -> Self {
        let mut doc = Document::with_version("1.7");
        doc.reference_table.cross_reference_type = lopdf::xref::XrefType::CrossReferenceTable;
        doc.objects.insert(
            (1, 0),
            Object::Dictionary(dictionary! {
                "Type" => "Catalog", "Pages" => Object::Reference((2, 0)),
            }),
        );
        doc.objects.insert((2, 0), Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![Object::Reference((3, 0))], "Count" => 1,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            "Resources" => dictionary! { "Font" => dictionary! { "F1" => Object::Reference((5, 0)) } },
        }));
        doc.objects.insert(
            (3, 0),
            Object::Dictionary(dictionary! {
                "Type" => "Page", "Parent" => Object::Reference((2, 0)),
                "Contents" => Object::Reference((4, 0)),
            }),
        );
        doc.objects.insert(
            (4, 0),
            Object::Stream(Stream::new(Dictionary::new(), content.to_vec())),
        );
        doc.objects.insert((5, 0), Object::Dictionary(font));
        doc.max_id = 5;
        doc.trailer.set("Root", Object::Reference((1, 0)));
        Self { doc }
    }

    fn helvetica(text: &str) -> Self {
        let content = format!("BT /F1 12 Tf 72 760 Td ({text}) Tj ET");
        Self::new(
            content.as_bytes(),
            dictionary! {
                "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
                "Encoding" => "WinAnsiEncoding",
            },
        )
    }

    /// A Type 0 font (Identity-H, a CIDFontType2 descendant) whose CIDs 1, 2, ... map to the
    /// characters of `alphabet` through its ToUnicode map; `shown` is drawn with it.
    fn cid(alphabet: &str, shown: &str) -> Self {
        let chars: Vec<char> = alphabet.chars().collect();
        let cid = |c: char| chars.iter().position(|x| *x == c).unwrap() + 1;
        let hex: String = shown.chars().map(|c| format!("{:04X}", cid(c))).collect();
        let content = format!("BT /F1 14 Tf 72 760 Td <{hex}> Tj ET");
        let mut cmap = String::from(
            "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
             1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
        );
        cmap.push_str(&format!("{} beginbfchar\n", chars.len()));
        for (i, c) in chars.iter().enumerate() {
            let mut u = [0u16; 2];
            let units: String = c
                .encode_utf16(&mut u)
                .iter()
                .map(|x| format!("{x:04X}"))
                .collect();
            cmap.push_str(&format!("<{:04X}> <{units}>\n", i + 1));
        }
        cmap.push_str(
            "endbfchar\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n",
        );
        let mut pdf = Self::new(
            content.as_bytes(),
            dictionary! {
                "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "SimSun",
                "Encoding" => "Identity-H",
                "DescendantFonts" => vec![Object::Reference((6, 0))],
                "ToUnicode" => Object::Reference((8, 0)),
            },
        );
        pdf.doc.objects.insert(
            (6, 0),
            Object::Dictionary(dictionary! {
                "Type" => "Font", "Subtype" => "CIDFontType2", "BaseFont" => "SimSun",
                "CIDSystemInfo" => dictionary! {
                    "Registry" => Object::string_literal("Adobe"),
                    "Ordering" => Object::string_literal("GB1"), "Supplement" => 2,
                },
                "FontDescriptor" => Object::Reference((7, 0)), "DW" => 1000,
                "CIDToGIDMap" => "Identity",
            }),
        );
        pdf.doc.objects.insert(
            (7, 0),
            Object::Dictionary(dictionary! {
                "Type" => "FontDescriptor", "FontName" => "SimSun", "Flags" => 4,
                "FontBBox" => vec![0.into(), (-141).into(), 996.into(), 855.into()],
                "ItalicAngle" => 0, "Ascent" => 859, "Descent" => -141, "CapHeight" => 683,
                "StemV" => 80,
            }),
        );
        let mut st = Stream::new(Dictionary::new(), cmap.into_bytes());
        st.compress().unwrap();
        pdf.doc.objects.insert((8, 0), Object::Stream(st));
        pdf.doc.max_id = 8;
        pdf
    }

    fn add(&mut self, o: Object) -> Object {
        self.doc.max_id += 1;
        let id = (self.doc.max_id, 0);
        self.doc.objects.insert(id, o);
        Object::Reference(id)
    }

    fn catalog(&mut self) -> &mut Dictionary {
        self.doc.get_dictionary_mut((1, 0)).unwrap()
    }

    fn bytes(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.doc.save_to(&mut out).unwrap();
        out
    }
}

/// `pdf` with an incremental update appended: object `id` replaced by `object`.
fn incremental_update(pdf: &[u8], id: u32, object: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(pdf);
    let prev: usize = text
        .rsplit("startxref")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut out = pdf.to_vec();
    out.push(b'\n');
    let at = out.len();
    out.extend_from_slice(format!("{id} 0 obj\n{object}\nendobj\n").as_bytes());
    let xref = out.len();
    out.extend_from_slice(
        format!(
            "xref\n{id} 1\n{at:010} 00000 n \ntrailer\n<< /Size {} /Root 1 0 R /Prev {prev} >>\nstartxref\n{xref}\n%%EOF\n",
            id + 1
        )
        .as_bytes(),
    );
    out
}

fn write_pdfs(put: &dyn Fn(&str, &[u8])) {
    let mut clean = Pdf::helvetica("Judgment of the court, first instance");
    let info = clean.add(Object::Dictionary(dictionary! {
        "Title" => Object::string_literal("Judgment"),
        "Author" => Object::string_literal("Judge Wang"),
    }));
    clean.doc.trailer.set("Info", info);
    let xmp = clean.add(Object::Stream(Stream::new(
        dictionary! { "Type" => "Metadata", "Subtype" => "XML" },
        b"<x:xmpmeta><dc:creator>Judge Wang</dc:creator></x:xmpmeta>".to_vec(),
    )));
    clean.catalog().set("Metadata", xmp);
    put("pdf-clean.pdf", &clean.bytes());

    put(
        "pdf-cid-tounicode.pdf",
        &Pdf::cid(
            "判决书北京市第一中级人民法院",
            "北京市第一中级人民法院判决书",
        )
        .bytes(),
    );
    put(
        "pdf-marked-cid.pdf",
        &Pdf::cid("本文件密级：秘★内容", "本文件密级：秘密★").bytes(),
    );

    let mut js = Pdf::helvetica("Pay the fine online");
    let action = js.add(Object::Dictionary(dictionary! {
        "S" => "JavaScript", "JS" => Object::string_literal("app.launchURL('http://evil.example/');"),
    }));
    js.catalog().set("OpenAction", action);
    put("pdf-javascript.pdf", &js.bytes());

    let mut launch = Pdf::helvetica("Open the attachment");
    let action = launch.add(Object::Dictionary(dictionary! {
        "S" => "Launch", "F" => Object::string_literal("cmd.exe"),
    }));
    launch.catalog().set("OpenAction", action);
    put("pdf-launch.pdf", &launch.bytes());

    let mut embedded = Pdf::helvetica("See the attached evidence");
    let file = embedded.add(Object::Stream(Stream::new(
        dictionary! { "Type" => "EmbeddedFile" },
        b"MZ-payload of an executable".to_vec(),
    )));
    let spec = embedded.add(Object::Dictionary(dictionary! {
        "Type" => "Filespec", "F" => Object::string_literal("evidence.exe"),
        "EF" => dictionary! { "F" => file },
    }));
    embedded.catalog().set(
        "Names",
        dictionary! {
            "EmbeddedFiles" => dictionary! {
                "Names" => vec![Object::string_literal("evidence.exe"), spec],
            },
        },
    );
    put("pdf-embedded-file.pdf", &embedded.bytes());

    let mut enc = Pdf::helvetica("Encrypted judgment");
    let e = enc.add(Object::Dictionary(dictionary! {
        "Filter" => "Standard", "V" => 1, "R" => 2, "P" => -3904,
        "O" => Object::String(vec![0x11; 32], lopdf::StringFormat::Hexadecimal),
        "U" => Object::String(vec![0x22; 32], lopdf::StringFormat::Hexadecimal),
    }));
    enc.doc.trailer.set("Encrypt", e);
    enc.doc.trailer.set(
        "ID",
        vec![
            Object::String(vec![1; 16], lopdf::StringFormat::Hexadecimal),
            Object::String(vec![1; 16], lopdf::StringFormat::Hexadecimal),
        ],
    );
    put("pdf-encrypted.pdf", &enc.bytes());

    // The first revision names the witness; the update "redacts" it by replacing the page's
    // content, and a reader of the old revision still finds it.
    let base = Pdf::helvetica("Witness: SECRET-WITNESS Li Si").bytes();
    let redacted = "BT /F1 12 Tf 72 760 Td (Witness: [redacted]) Tj ET";
    put(
        "pdf-incremental-redaction.pdf",
        &incremental_update(
            &base,
            4,
            &format!(
                "<< /Length {} >>\nstream\n{redacted}\nendstream",
                redacted.len()
            ),
        ),
    );

    let mut poly = Pdf::helvetica("Judgment with a passenger").bytes();
    poly.extend_from_slice(b"\nPK\x03\x04\x14\0\0\0\0\0 a zip archive after the end marker");
    put("pdf-zip-polyglot.pdf", &poly);

    put("pdf-jpeg-declared.pdf", &jpeg(&noisy(32, 24)));
    let whole = Pdf::helvetica("A judgment cut short in transit").bytes();
    put("pdf-truncated.pdf", &whole[..whole.len() / 2]);

    // A subset TrueType font with neither an encoding nor a ToUnicode map: its codes are
    // glyph numbers, and what they say cannot be known.
    put(
        "pdf-undecodable-font.pdf",
        &Pdf::new(
            b"BT /F1 12 Tf 72 760 Td <0102030405> Tj ET",
            dictionary! {
                "Type" => "Font", "Subtype" => "TrueType", "BaseFont" => "ABCDEF+SimSun",
            },
        )
        .bytes(),
    );
}

/// A ZIP of `entries` (stored or deflated), with a fixed time.
fn zip_of(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, deflate) in entries {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(if *deflate {
                zip::CompressionMethod::Deflated
            } else {
                zip::CompressionMethod::Stored
            })
            .last_modified_time(zip::DateTime::DEFAULT);
        w.start_file(*name, opts).unwrap();
        std::io::Write::write_all(&mut w, data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

const OFD_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016" Version="1.0" DocType="OFD">
  <ofd:DocBody>
    <ofd:DocInfo><ofd:DocID>6f1d2c7e0a</ofd:DocID><ofd:Title>判决书</ofd:Title><ofd:Author>王法官</ofd:Author></ofd:DocInfo>
    <ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot>
    <ofd:Signatures>Doc_0/Signs/Signatures.xml</ofd:Signatures>
  </ofd:DocBody>
</ofd:OFD>"#;

const DOCUMENT_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ofd:Document xmlns:ofd="http://www.ofdspec.org/2016">
  <!-- made by an editor -->
  <ofd:CommonData><ofd:MaxUnitID>10</ofd:MaxUnitID>
    <ofd:PageArea><ofd:PhysicalBox>0 0 210 297</ofd:PhysicalBox></ofd:PageArea>
    <ofd:DocumentRes>DocumentRes.xml</ofd:DocumentRes></ofd:CommonData>
  <ofd:Pages><ofd:Page ID="1" BaseLoc="Pages/Page_0/Content.xml"/></ofd:Pages>
  <ofd:Attachments>Attachs/Attachments.xml</ofd:Attachments>
</ofd:Document>"#;

const DOCUMENT_RES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ofd:Res xmlns:ofd="http://www.ofdspec.org/2016" BaseLoc="Res">
  <ofd:MultiMedias><ofd:MultiMedia ID="3" Type="Image"><ofd:MediaFile>seal.png</ofd:MediaFile></ofd:MultiMedia></ofd:MultiMedias>
</ofd:Res>"#;

fn page_xml(text: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ofd:Page xmlns:ofd="http://www.ofdspec.org/2016">
  <ofd:Content><ofd:Layer ID="2">
    <ofd:TextObject ID="4" Boundary="20 20 170 10" Font="5" Size="5">
      <ofd:TextCode X="0" Y="5">{text}</ofd:TextCode>
    </ofd:TextObject>
    <ofd:ImageObject ID="6" ResourceID="3" Boundary="150 250 40 40" CTM="40 0 0 40 0 0"/>
  </ofd:Layer></ofd:Content>
</ofd:Page>"#
    )
}

fn write_ofds(put: &dyn Fn(&str, &[u8])) {
    let seal = png(&noisy(32, 32), CompressionType::Default);
    let page = page_xml("北京市第一中级人民法院 民事判决书 &amp; 附件");
    let base: Vec<(&str, &[u8], bool)> = vec![
        ("OFD.xml", OFD_XML.as_bytes(), true),
        ("Doc_0/Document.xml", DOCUMENT_XML.as_bytes(), true),
        ("Doc_0/DocumentRes.xml", DOCUMENT_RES.as_bytes(), true),
        ("Doc_0/Pages/Page_0/Content.xml", page.as_bytes(), true),
        ("Doc_0/Res/seal.png", &seal, false),
    ];
    let mut clean = base.clone();
    clean.push((
        "Doc_0/Signs/Sign_0/SignedValue.dat",
        b"\x30\x82 a signature",
        false,
    ));
    clean.push((
        "Doc_0/Attachs/evidence.exe",
        b"MZ-payload of an executable",
        false,
    ));
    put("ofd-clean.ofd", &zip_of(&clean));

    let mut traversal = base.clone();
    traversal.push(("Doc_0/../../../etc/cron.d/evil", b"* * * * * root sh", true));
    put("ofd-path-traversal.ofd", &zip_of(&traversal));

    // 64 MiB of zeros, deflated into a ZIP stored as a "font": small outside, huge inside.
    let zeros = vec![0u8; 64 << 20];
    let inner = zip_of(&[("zeros.bin", &zeros, true), ("zeros2.bin", &zeros, true)]);
    let mut nested = base.clone();
    nested.push(("Doc_0/Res/font_1.ttf", &inner, false));
    put("ofd-nested-zip-bomb.ofd", &zip_of(&nested));

    let laughs = page.replacen(
        "<ofd:Page",
        "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>\n<ofd:Page",
        1,
    )
    .replacen("北京市", "&lol3;", 1);
    let mut bomb = base.clone();
    bomb[3] = ("Doc_0/Pages/Page_0/Content.xml", laughs.as_bytes(), true);
    put("ofd-entity-bomb.ofd", &zip_of(&bomb));

    let mut unexpected = base.clone();
    unexpected.push(("Doc_0/Scripts/run.js", b"app.alert('hi')", true));
    put("ofd-unexpected-part.ofd", &zip_of(&unexpected));
}

#[test]
fn incremental_update_is_collapsed_and_the_old_text_is_gone() {
    maybe_write();
    let bytes = std::fs::read(dir().join("pdf-incremental-redaction.pdf")).unwrap();
    assert!(
        contains(&bytes, b"SECRET-WITNESS"),
        "the old revision is in the file"
    );
    let out = run("pdf", &bytes).unwrap();
    assert!(
        out.text.iter().any(|t| t.contains("[redacted]")),
        "{:?}",
        out.text
    );
    assert!(out.text.iter().all(|t| !t.contains("SECRET-WITNESS")));
    let all = pdf_everything(&out.bytes);
    assert!(
        !contains(&all, b"SECRET-WITNESS"),
        "the old text is gone from every stream"
    );
    assert!(contains(&all, b"[redacted]"));
    assert_eq!(Document::load_mem(&out.bytes).unwrap().revision_count(), 1);
}

#[test]
fn marked_cid_pdf_is_refused_on_a_release_and_accepted_on_an_import() {
    maybe_write();
    let p = check("default.tp", DEFAULT_POLICY).into_policy().unwrap();
    let bytes = std::fs::read(dir().join("pdf-marked-cid.pdf")).unwrap();
    let out = run("pdf", &bytes).unwrap();
    assert!(
        out.text.iter().any(|t| t.contains("秘密★")),
        "{:?}",
        out.text
    );
    let release = p.flow("judgment-publication").unwrap();
    let r = marking_check(&release, &out).unwrap_err();
    assert!(r.reason.contains("`secret`"), "{r}");
    let import = p.flow("classified-import").unwrap();
    assert!(marking_check(&import, &out).is_ok());
    // A clean CID document crosses the release.
    let clean = std::fs::read(dir().join("pdf-cid-tounicode.pdf")).unwrap();
    let out = run("pdf", &clean).unwrap();
    assert!(
        out.text
            .iter()
            .any(|t| t.contains("北京市第一中级人民法院判决书")),
        "{:?}",
        out.text
    );
    assert!(marking_check(&release, &out).is_ok());
}

#[test]
fn pdf_metadata_crosses_only_when_not_stripped() {
    maybe_write();
    let bytes = std::fs::read(dir().join("pdf-clean.pdf")).unwrap();
    // an import's steps: no strip-metadata, no marking check
    let import = FilterInput {
        kind: "pdf",
        schema: None,
        steps: &["validate", "rebuild"],
        max_size: 64 << 20,
        release: false,
    };
    let keep = filters().run(&import, &bytes).unwrap();
    assert!(
        contains(&keep.bytes, b"Judge Wang"),
        "Info kept without strip-metadata"
    );
    assert!(
        !contains(&pdf_everything(&keep.bytes), b"xmpmeta"),
        "XMP never crosses"
    );
    let stripped = run("pdf", &bytes).unwrap();
    assert!(!contains(&stripped.bytes, b"Judge Wang"));
    // An undecodable font crosses an import (no marking check), not a release.
    let undecodable = std::fs::read(dir().join("pdf-undecodable-font.pdf")).unwrap();
    let crossed = filters().run(&import, &undecodable);
    assert!(crossed.is_ok(), "{crossed:?}");
}

#[test]
fn ofd_text_and_metadata() {
    maybe_write();
    let bytes = std::fs::read(dir().join("ofd-clean.ofd")).unwrap();
    let out = run("ofd", &bytes).unwrap();
    assert!(
        out.text.iter().any(|t| t.contains("民事判决书 & 附件")),
        "{:?}",
        out.text
    );
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&out.bytes)).unwrap();
    let mut ofd = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("OFD.xml").unwrap(), &mut ofd).unwrap();
    assert!(ofd.contains("<ofd:DocID>6f1d2c7e0a</ofd:DocID>"), "{ofd}");
    assert!(
        !ofd.contains("王法官"),
        "strip-metadata drops the author: {ofd}"
    );
    let mut doc = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("Doc_0/Document.xml").unwrap(), &mut doc)
        .unwrap();
    assert!(
        !doc.contains("made by an editor") && !doc.contains("Attachs"),
        "{doc}"
    );
}
