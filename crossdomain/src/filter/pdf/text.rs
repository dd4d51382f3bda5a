//! How shown strings become text for the marking check: through the font's `ToUnicode` map
//! (CID fonts, Identity-H included), else through a simple font's standard encoding
//! (`StandardEncoding`, `WinAnsiEncoding`, `MacRomanEncoding`, `MacExpertEncoding`, with
//! `Differences`), and the content operators that cross.

use lopdf::content::Operation;
use lopdf::{Dictionary, Document, Encoding, Object};

use super::cmap::CMap;

/// A font as far as its text goes.
#[derive(Debug, Clone, Default)]
pub(super) struct FontText {
    /// Its `ToUnicode` map, if it has one that parsed.
    pub(super) map: Option<CMap>,
    /// A simple font's one-byte encoding, when it is a standard one.
    pub(super) single: Option<Box<[Option<String>; 256]>>,
    /// Two-byte codes without a code space (Type 0 fonts).
    pub(super) wide: bool,
    /// UTF-16BE codes (the `UniGB-UCS2-H` and `UniGB-UTF16-H` CMaps).
    pub(super) utf16: bool,
}

impl FontText {
    /// The text of a shown string, `None` when some code cannot be decoded.
    pub(super) fn decode(&self, b: &[u8]) -> Option<String> {
        if let Some(map) = &self.map {
            return map.decode(b, if self.wide { 2 } else { 1 }, self.single.as_deref());
        }
        if self.utf16 {
            let u: Vec<u16> = b
                .chunks(2)
                .map(|p| {
                    u16::from_be_bytes([
                        p.first().copied().unwrap_or(0),
                        p.get(1).copied().unwrap_or(0),
                    ])
                })
                .collect();
            return char::decode_utf16(u).collect::<Result<String, _>>().ok();
        }
        let single = self.single.as_ref()?;
        b.iter()
            .map(|c| single.get(usize::from(*c)).cloned().flatten())
            .collect()
    }
}

/// The standard 14 fonts whose built-in encoding is `StandardEncoding`.
fn standard_latin(base: &[u8]) -> bool {
    [
        &b"Times-"[..],
        b"Helvetica",
        b"Courier",
        b"Arial",
        b"TimesNewRoman",
    ]
    .iter()
    .any(|p| base.starts_with(p))
}

/// A simple font's one-byte table, from its (already copied, plain) `/Encoding` and
/// `/BaseFont`, when it is one the filter knows; `None` otherwise.
pub(super) fn single_table(
    encoding: Option<&Object>,
    base: &[u8],
) -> Option<Box<[Option<String>; 256]>> {
    let mut probe = Dictionary::new();
    probe.set("Type", Object::Name(b"Font".to_vec()));
    match encoding {
        Some(Object::Name(n))
            if matches!(
                n.as_slice(),
                b"StandardEncoding"
                    | b"WinAnsiEncoding"
                    | b"MacRomanEncoding"
                    | b"MacExpertEncoding"
            ) => {}
        Some(Object::Dictionary(d)) => {
            if let Ok(b) = d.get(b"BaseEncoding")
                && !matches!(
                    b.as_name().ok(),
                    Some(
                        b"StandardEncoding"
                            | b"WinAnsiEncoding"
                            | b"MacRomanEncoding"
                            | b"MacExpertEncoding"
                    )
                )
            {
                return None;
            }
        }
        None if standard_latin(base) => {}
        _ => return None,
    }
    if let Some(e) = encoding {
        probe.set("Encoding", e.clone());
    }
    let doc = Document::new();
    let enc = probe.get_font_encoding(&doc).ok()?;
    // lopdf falls back to StandardEncoding when a `Differences` glyph is unknown: a table
    // with differences must come back as one.
    let wants_differences =
        matches!(encoding, Some(Object::Dictionary(d)) if d.has(b"Differences"));
    if wants_differences != matches!(enc, Encoding::Differences(_)) {
        return None;
    }
    let mut table: Box<[Option<String>; 256]> = Box::new(std::array::from_fn(|_| None));
    for (c, slot) in table.iter_mut().enumerate() {
        let byte = u8::try_from(c).unwrap_or(0);
        if let Ok(s) = enc.bytes_to_string(&[byte])
            && !s.is_empty()
        {
            *slot = Some(s);
        }
    }
    Some(table)
}

/// The content operators that cross (ISO 32000 annex A) but the compatibility sections
/// (`BX`/`EX`, inside which unknown operators hide), Type 3 glyph operators (`d0`, `d1`),
/// shading fills (`sh`: shadings do not cross) and inline images (`BI`, refused by the caller).
pub(super) fn allowed_operator(op: &str) -> bool {
    matches!(
        op,
        "b" | "B"
            | "b*"
            | "B*"
            | "BDC"
            | "BMC"
            | "BT"
            | "c"
            | "cm"
            | "CS"
            | "cs"
            | "d"
            | "Do"
            | "DP"
            | "EMC"
            | "ET"
            | "f"
            | "F"
            | "f*"
            | "G"
            | "g"
            | "gs"
            | "h"
            | "i"
            | "j"
            | "J"
            | "K"
            | "k"
            | "l"
            | "m"
            | "M"
            | "MP"
            | "n"
            | "q"
            | "Q"
            | "re"
            | "RG"
            | "rg"
            | "ri"
            | "s"
            | "S"
            | "SC"
            | "sc"
            | "SCN"
            | "scn"
            | "T*"
            | "Tc"
            | "Td"
            | "TD"
            | "Tf"
            | "Tj"
            | "TJ"
            | "TL"
            | "Tm"
            | "Tr"
            | "Ts"
            | "Tw"
            | "Tz"
            | "v"
            | "w"
            | "W"
            | "W*"
            | "y"
            | "'"
            | "\""
    )
}

/// The strings an operator shows.
pub(super) fn shown(op: &Operation) -> Vec<&[u8]> {
    fn string(o: &Object) -> Option<&[u8]> {
        match o {
            Object::String(s, _) => Some(s.as_slice()),
            _ => None,
        }
    }
    match op.operator.as_str() {
        "Tj" | "'" | "\"" => op.operands.last().and_then(string).into_iter().collect(),
        "TJ" => match op.operands.first() {
            Some(Object::Array(items)) => items.iter().filter_map(string).collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_encodings_and_differences() {
        let win = single_table(Some(&Object::Name(b"WinAnsiEncoding".to_vec())), b"X").unwrap();
        let f = FontText {
            single: Some(win),
            ..FontText::default()
        };
        assert_eq!(f.decode(b"Judgment").as_deref(), Some("Judgment"));
        let mut d = Dictionary::new();
        d.set(
            "Differences",
            Object::Array(vec![Object::Integer(65), Object::Name(b"eacute".to_vec())]),
        );
        let t = single_table(Some(&Object::Dictionary(d)), b"X").unwrap();
        assert_eq!(t[65].as_deref(), Some("é"));
        let mut bad = Dictionary::new();
        bad.set(
            "Differences",
            Object::Array(vec![Object::Integer(65), Object::Name(b"g1234".to_vec())]),
        );
        assert!(single_table(Some(&Object::Dictionary(bad)), b"X").is_none());
        assert!(single_table(None, b"ABCDEF+SimSun").is_none());
        assert!(single_table(None, b"Helvetica").is_some());
    }
}
