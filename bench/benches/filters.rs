//! Content filter throughput in MB/s per format, each beside reading (a copy) and SHA-256
//! hashing (ring, the hash the bundles use) the same bytes in the same run, on realistic inputs:
//!
//! - `text`: 1 MB of a judgment's text (Chinese and ASCII lines);
//! - `json`: a 100 KB `inquiry-result` (a bank's answer, 700 accounts), against its schema;
//! - `png`: a 2 megapixel scan-like image (1600 × 1250, gradients and grain), PNG-encoded;
//! - `jpeg`: the same image as a JPEG of quality 85;
//! - `pdf`: a 40-page judgment (Helvetica text, about 4 KB of it a page, uncompressed);
//! - `ofd`: the same 40 pages as an OFD archive (one deflated `Content.xml` a page);
//! - `mp4`: a 3 MB MP4 of H.264 and AAC samples (random bytes in place of coded frames: the
//!   filter never decodes them), with its `moov` last as cameras write it.
//!
//! Criterion times each `copy`, `sha256` and `filter` in a group per format; after it, the
//! bench prints a table of the medians of 15 runs of each, with the ratio filter / hash.
//!
//! `cd bench && cargo bench --bench filters -- --warm-up-time 1 --measurement-time 3`
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a benchmark fails loudly on a broken set-up; its sizes fit in memory"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use tianping_crossdomain::{
    Filter, FilterInput, ImageLimits, JpegFilter, JsonFilter, Mp4Filter, OfdFilter, PdfFilter,
    PngFilter, TextFilter,
};

/// One format's input and the filter that runs over it.
struct Case {
    name: &'static str,
    filter: Arc<dyn Filter>,
    schema: Option<&'static str>,
    bytes: Vec<u8>,
}

impl Case {
    fn run(&self) -> usize {
        let input = FilterInput {
            kind: self.filter.kind(),
            schema: self.schema,
            steps: &["validate", "rebuild", "strip-metadata"],
            max_size: 1 << 30,
            release: true,
        };
        self.filter.run(&input, &self.bytes).unwrap().bytes.len()
    }
}

/// xorshift64*: seeded bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next().to_le_bytes()[7]).collect()
    }
}

fn text() -> Vec<u8> {
    let lines = [
        "北京市东城区人民法院民事判决书（2026）京0101民初1234号",
        "原告：张三，男，1990年1月1日出生，汉族，住北京市东城区某路1号。",
        "被告：某某有限公司，住所地北京市朝阳区某街2号。",
        "The plaintiff claims payment of RMB 100,000 under the sales contract of 3 March 2025.",
        "本院认为，当事人应当按照约定全面履行自己的义务。被告未按约定支付货款，应承担违约责任。",
        "\tArticle 577 of the Civil Code applies; costs of RMB 2,300 are borne by the defendant.",
    ];
    let mut out = String::new();
    let mut i = 0;
    while out.len() < 1 << 20 {
        out.push_str(lines[i % lines.len()]);
        out.push('\n');
        i += 1;
    }
    out.into_bytes()
}

fn inquiry_result() -> Vec<u8> {
    let accounts: Vec<serde_json::Value> = (0..700)
        .map(|i| {
            serde_json::json!({
                "account": format!("62220202{i:011}"),
                "currency": "CNY",
                "balance_fen": 1_234_567 + i * 31,
                "frozen_fen": 1_000 * i,
                "state": if i % 3 == 0 { "frozen" } else { "normal" },
            })
        })
        .collect();
    serde_json::to_vec_pretty(&serde_json::json!({
        "notice_no": "(2026)京0105执协1234号",
        "bank": "ICBC",
        "status": "found",
        "accounts": accounts,
        "answered_at": "2026-12-02T15:42:10+08:00",
    }))
    .unwrap()
}

/// A scan-like image: soft gradients, some grain.
fn scan() -> RgbImage {
    let mut rng = Rng(0x5ca9);
    RgbImage::from_fn(1600, 1250, |x, y| {
        let g = (rng.next() % 12) as u8;
        image::Rgb([
            (x / 8) as u8 ^ g,
            (y / 6) as u8 ^ g,
            ((x + y) / 12) as u8 ^ g,
        ])
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

fn bx(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
    let body = parts.concat();
    [&((body.len() + 8) as u32).to_be_bytes()[..], kind, &body].concat()
}

fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_be_bytes()).collect()
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn trak(id: u32, video: bool, frames: u32, sizes: &[u32], offsets: &[u32]) -> Vec<u8> {
    let dur = frames * if video { 40 } else { 1024 };
    let tkhd = bx(
        b"tkhd",
        &[
            &[0, 0, 0, 3],
            &words(&[0, 0, id, 0, dur, 0, 0, 0, 0]),
            &words(&MATRIX),
            &words(if video {
                &[1280 << 16, 720 << 16]
            } else {
                &[0, 0]
            }),
        ],
    );
    let mdhd = bx(
        b"mdhd",
        &[
            &[0; 4],
            &words(&[0, 0, if video { 1000 } else { 44100 }, dur]),
            &[0x55, 0xc4, 0, 0],
        ],
    );
    let hdlr = bx(
        b"hdlr",
        &[&[0; 8], if video { b"vide" } else { b"soun" }, &[0; 13]],
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
        let avcc = bx(
            b"avcC",
            &[
                &[1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 10],
                &[0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8],
                &[1, 0, 4, 0x68, 0xce, 0x3c, 0x80],
            ],
        );
        bx(
            b"avc1",
            &[
                &[0, 0, 0, 0, 0, 0, 0, 1],
                &[0; 16],
                &[5, 0, 2, 208],
                &[0, 0x48, 0, 0, 0, 0x48, 0, 0],
                &[0; 4],
                &[0, 1],
                &[0; 32],
                &[0, 0x18, 0xff, 0xff],
                &avcc,
            ],
        )
    } else {
        let esds = [
            0, 0, 0, 0, 0x03, 0x19, 0x00, 0x01, 0x00, 0x04, 0x11, 0x40, 0x15, 0, 0, 0, 0, 1, 0xf4,
            0, 0, 1, 0xf4, 0, 0x05, 0x02, 0x12, 0x10, 0x06, 0x01, 0x02,
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
    let stts = bx(
        b"stts",
        &[&words(&[0, 1, frames, if video { 40 } else { 1024 }])],
    );
    let stsc = bx(b"stsc", &[&words(&[0, 1, 1, 2, 1])]);
    let mut z = vec![0, 0, frames];
    z.extend_from_slice(sizes);
    let stsz = bx(b"stsz", &[&words(&z)]);
    let mut co = vec![0, offsets.len() as u32];
    co.extend_from_slice(offsets);
    let stco = bx(b"stco", &[&words(&co)]);
    let stbl = bx(b"stbl", &[&stsd, &stts, &stsc, &stsz, &stco]);
    let minf = bx(b"minf", &[&xmhd, &dinf, &stbl]);
    bx(b"trak", &[&tkhd, &bx(b"mdia", &[&mdhd, &hdlr, &minf])])
}

/// `frames` video frames of about 12 KB and as many AAC frames of about 400 bytes, two a
/// chunk, in turn, `mdat` before `moov`.
fn mp4(frames: u32) -> Vec<u8> {
    let mut rng = Rng(0x3b4);
    let ftyp = bx(b"ftyp", &[b"isom", &[0, 0, 2, 0], b"isomiso2avc1mp41"]);
    let vs: Vec<u32> = (0..frames)
        .map(|i| {
            if i % 25 == 0 {
                40_000
            } else {
                11_000 + (rng.next() % 2000) as u32
            }
        })
        .collect();
    let au: Vec<u32> = (0..frames)
        .map(|_| 350 + (rng.next() % 100) as u32)
        .collect();
    let base = (ftyp.len() + 8) as u32;
    let (mut payload, mut vo, mut ao) = (Vec::new(), Vec::new(), Vec::new());
    for c in 0..frames as usize / 2 {
        vo.push(base + payload.len() as u32);
        payload.extend(rng.bytes((vs[2 * c] + vs[2 * c + 1]) as usize));
        ao.push(base + payload.len() as u32);
        payload.extend(rng.bytes((au[2 * c] + au[2 * c + 1]) as usize));
    }
    let mvhd = bx(
        b"mvhd",
        &[
            &[0; 4],
            &words(&[0, 0, 1000, frames * 40, 0x0001_0000]),
            &[1, 0],
            &[0; 10],
            &words(&MATRIX),
            &[0; 24],
            &words(&[3]),
        ],
    );
    let moov = bx(
        b"moov",
        &[
            &mvhd,
            &trak(1, true, frames, &vs, &vo),
            &trak(2, false, frames, &au, &ao),
        ],
    );
    [ftyp, bx(b"mdat", &[&payload]), moov].concat()
}

/// The text of page `p` of the judgment, `lines` lines of it.
fn page_lines(p: usize, lines: usize) -> Vec<String> {
    (0..lines)
        .map(|l| {
            format!(
                "Page {p}, line {l}: the court finds that the defendant failed to pay the sum \
                 due under the contract"
            )
        })
        .collect()
}

fn pdf(pages: usize) -> Vec<u8> {
    use lopdf::{Document, Object, Stream, dictionary};
    let mut doc = Document::with_version("1.7");
    doc.reference_table.cross_reference_type = lopdf::xref::XrefType::CrossReferenceTable;
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let pages_id = doc.new_object_id();
    let mut kids = Vec::new();
    for p in 0..pages {
        let mut content = String::from("BT /F1 10 Tf 50 800 Td 12 TL\n");
        for line in page_lines(p, 40) {
            content.push_str(&format!("({line}) '\n"));
        }
        content.push_str("ET\n");
        let c = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
        let page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => c,
        });
        kids.push(Object::Reference(page));
    }
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => pages as i64,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn ofd(pages: usize) -> Vec<u8> {
    use std::io::Write;
    let ns = "http://www.ofdspec.org/2016";
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::DEFAULT);
    let mut put = |name: &str, text: &str| {
        w.start_file(name, opts).unwrap();
        w.write_all(text.as_bytes()).unwrap();
    };
    put(
        "OFD.xml",
        &format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<ofd:OFD xmlns:ofd="{ns}" Version="1.0" DocType="OFD"><ofd:DocBody><ofd:DocInfo><ofd:DocID>6f1d2c7e0a</ofd:DocID></ofd:DocInfo><ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>"#
        ),
    );
    let list: String = (0..pages)
        .map(|p| {
            format!(
                r#"<ofd:Page ID="{}" BaseLoc="Pages/Page_{p}/Content.xml"/>"#,
                p + 10
            )
        })
        .collect();
    put(
        "Doc_0/Document.xml",
        &format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<ofd:Document xmlns:ofd="{ns}"><ofd:CommonData><ofd:MaxUnitID>{}</ofd:MaxUnitID><ofd:PageArea><ofd:PhysicalBox>0 0 210 297</ofd:PhysicalBox></ofd:PageArea></ofd:CommonData><ofd:Pages>{list}</ofd:Pages></ofd:Document>"#,
            pages * 100 + 10
        ),
    );
    for p in 0..pages {
        let texts: String = page_lines(p, 40)
            .iter()
            .enumerate()
            .map(|(i, l)| {
                format!(
                    r#"<ofd:TextObject ID="{}" Boundary="10 {} 190 5" Font="1" Size="3"><ofd:TextCode X="0" Y="3">{l}</ofd:TextCode></ofd:TextObject>"#,
                    pages * 100 + p * 41 + i + 20,
                    10 + i * 6
                )
            })
            .collect();
        put(
            &format!("Doc_0/Pages/Page_{p}/Content.xml"),
            &format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<ofd:Page xmlns:ofd="{ns}"><ofd:Content><ofd:Layer ID="{}">{texts}</ofd:Layer></ofd:Content></ofd:Page>"#,
                pages * 100 + p * 41 + 19
            ),
        );
    }
    w.finish().unwrap().into_inner()
}

fn cases() -> Vec<Case> {
    let img = scan();
    let lax = ImageLimits {
        max_ratio: 1 << 16,
        ..ImageLimits::default()
    };
    vec![
        Case {
            name: "text",
            filter: Arc::new(TextFilter::new()),
            schema: None,
            bytes: text(),
        },
        Case {
            name: "json",
            filter: Arc::new(JsonFilter::with_default_schemas().unwrap()),
            schema: Some("inquiry-result"),
            bytes: inquiry_result(),
        },
        Case {
            name: "png",
            filter: Arc::new(PngFilter::new(lax)),
            schema: None,
            bytes: png(&img),
        },
        Case {
            name: "jpeg",
            filter: Arc::new(JpegFilter::new(lax)),
            schema: None,
            bytes: jpeg(&img),
        },
        Case {
            name: "pdf",
            filter: Arc::new(PdfFilter::default()),
            schema: None,
            bytes: pdf(40),
        },
        Case {
            name: "ofd",
            filter: Arc::new(OfdFilter::default()),
            schema: None,
            bytes: ofd(40),
        },
        Case {
            name: "mp4",
            filter: Arc::new(Mp4Filter::default()),
            schema: None,
            bytes: mp4(250),
        },
    ]
}

fn sha256(b: &[u8]) -> u8 {
    ring::digest::digest(&ring::digest::SHA256, b).as_ref()[0]
}

fn filters(c: &mut Criterion) {
    for case in cases() {
        case.run();
        let mut g = c.benchmark_group(format!("filters/{}", case.name));
        g.throughput(Throughput::Bytes(case.bytes.len() as u64));
        g.sample_size(10);
        g.bench_function("copy", |b| b.iter(|| black_box(case.bytes.to_vec())));
        g.bench_function("sha256", |b| b.iter(|| black_box(sha256(&case.bytes))));
        g.bench_function("filter", |b| b.iter(|| black_box(case.run())));
        g.finish();
    }
}

/// The median MB/s of 15 timed runs of `f` over `n` bytes.
fn median_mbs(n: usize, mut f: impl FnMut()) -> f64 {
    let mut rates: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            f();
            n as f64 / 1e6 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[7]
}

fn table() {
    println!("\n| format | input | copy MB/s | SHA-256 MB/s | filter MB/s | filter / hash |");
    println!("|---|---|---|---|---|---|");
    for case in cases() {
        let n = case.bytes.len();
        let copy = median_mbs(n, || {
            black_box(case.bytes.to_vec());
        });
        let hash = median_mbs(n, || {
            black_box(sha256(&case.bytes));
        });
        let filter = median_mbs(n, || {
            black_box(case.run());
        });
        println!(
            "| {} | {:.1} KB | {copy:.0} | {hash:.0} | {filter:.1} | {:.3} |",
            case.name,
            n as f64 / 1e3,
            filter / hash
        );
    }
}

criterion_group!(benches, filters);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    table();
}
