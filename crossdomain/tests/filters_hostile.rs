//! The hostile corpus's `text`, `json`, `png` and `jpeg` files (crossdomain/tests/hostile/),
//! run through this crate's filters: each refused with its reason, each accepted file rebuilt,
//! read again by a reader other than the filter (serde_json for JSON, the image's own chunk
//! list for PNG), and passed through the filter again unchanged.
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
use tianping_crossdomain::Mp4Filter;
use tianping_crossdomain::{
    FilterInput, Filtered, Filters, JpegFilter, JsonFilter, PngFilter, TextFilter, marking_check,
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
