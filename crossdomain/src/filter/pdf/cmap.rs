//! `ToUnicode` CMaps: read (code space ranges, `bfchar` and `bfrange`), and written again in
//! one canonical form, so what crosses is the map the filter understood, not the program that
//! arrived (a CMap is PostScript).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The most mappings one map may hold (`bfchar` entries plus `bfrange` ranges).
pub(super) const MAX_ENTRIES: usize = 1 << 16;
/// The most codes one `bfrange` may span.
const MAX_SPAN: u32 = 1 << 16;
/// The most UTF-16 code units one code may map to (a ligature, a short sequence).
const MAX_DEST: usize = 32;

/// Where a range of codes goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dest {
    /// The first code's UTF-16 units; each next code adds one to the last unit.
    Start(Vec<u16>),
    /// One destination per code.
    List(Vec<Vec<u16>>),
}

/// A parsed `ToUnicode` map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct CMap {
    /// (code length in bytes, low, high).
    spaces: Vec<(u8, u32, u32)>,
    /// (code length, code) to UTF-16 units.
    chars: BTreeMap<(u8, u32), Vec<u16>>,
    /// (code length, low, high, destination).
    ranges: Vec<(u8, u32, u32, Dest)>,
}

enum Tok<'a> {
    Hex(Vec<u8>),
    Word(&'a [u8]),
    Open,
    Close,
    Other,
}

struct Lexer<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Lexer<'a> {
    fn next(&mut self) -> Option<Tok<'a>> {
        loop {
            let c = *self.b.get(self.at)?;
            if c.is_ascii_whitespace() || c == 0 {
                self.at += 1;
            } else if c == b'%' {
                while self
                    .b
                    .get(self.at)
                    .is_some_and(|c| *c != b'\n' && *c != b'\r')
                {
                    self.at += 1;
                }
            } else {
                break;
            }
        }
        let c = *self.b.get(self.at)?;
        self.at += 1;
        Some(match c {
            b'<' if self.b.get(self.at) == Some(&b'<') => {
                self.at += 1;
                Tok::Other
            }
            b'<' => {
                let mut digits = Vec::new();
                loop {
                    let d = *self.b.get(self.at)?;
                    self.at += 1;
                    match d {
                        b'>' => break,
                        d if d.is_ascii_whitespace() => {}
                        d => digits.push(char::from(d).to_digit(16)?),
                    }
                }
                if digits.len() & 1 == 1 {
                    digits.push(0);
                }
                Tok::Hex(
                    digits
                        .chunks(2)
                        .map(|p| {
                            let hi = p.first().copied().unwrap_or(0);
                            let lo = p.get(1).copied().unwrap_or(0);
                            u8::try_from(hi * 16 + lo).unwrap_or(0)
                        })
                        .collect(),
                )
            }
            b'>' => Tok::Other,
            b'[' => Tok::Open,
            b']' => Tok::Close,
            b'(' => {
                let mut depth = 1usize;
                while depth > 0 {
                    match *self.b.get(self.at)? {
                        b'\\' => self.at += 1,
                        b'(' => depth += 1,
                        b')' => depth -= 1,
                        _ => {}
                    }
                    self.at += 1;
                }
                Tok::Other
            }
            b'/' | b'{' | b'}' => {
                while self.b.get(self.at).is_some_and(|c| is_regular(*c)) {
                    self.at += 1;
                }
                Tok::Other
            }
            _ => {
                let start = self.at - 1;
                while self.b.get(self.at).is_some_and(|c| is_regular(*c)) {
                    self.at += 1;
                }
                Tok::Word(self.b.get(start..self.at).unwrap_or_default())
            }
        })
    }
}

fn is_regular(c: u8) -> bool {
    !c.is_ascii_whitespace() && !b"()<>[]{}/%".contains(&c) && c != 0
}

/// A source code: 1 to 4 bytes, big-endian.
fn code(h: &[u8]) -> Option<(u8, u32)> {
    if h.is_empty() || h.len() > 4 {
        return None;
    }
    let v = h.iter().fold(0u32, |v, b| (v << 8) | u32::from(*b));
    Some((u8::try_from(h.len()).ok()?, v))
}

fn units(h: &[u8]) -> Option<Vec<u16>> {
    if h.len() & 1 == 1 || h.len() / 2 > MAX_DEST {
        return None;
    }
    Some(
        h.chunks(2)
            .map(|p| {
                u16::from_be_bytes([
                    p.first().copied().unwrap_or(0),
                    p.get(1).copied().unwrap_or(0),
                ])
            })
            .collect(),
    )
}

impl CMap {
    /// Parses a `ToUnicode` CMap; `Err` says what is wrong with it.
    pub(super) fn parse(b: &[u8]) -> Result<CMap, &'static str> {
        let mut lx = Lexer { b, at: 0 };
        let mut map = CMap::default();
        let mut entries = 0usize;
        let mut count = |n: usize| {
            entries += n;
            if entries > MAX_ENTRIES {
                Err("it holds more mappings than a font has glyphs")
            } else {
                Ok(())
            }
        };
        while let Some(t) = lx.next() {
            let Tok::Word(w) = t else { continue };
            match w {
                b"begincodespacerange" => loop {
                    match lx.next() {
                        Some(Tok::Word(b"endcodespacerange")) => break,
                        Some(Tok::Hex(lo)) => {
                            let Some(Tok::Hex(hi)) = lx.next() else {
                                return Err("a code space range is cut short");
                            };
                            let ((n, lo), (m, hi)) =
                                (code(&lo).ok_or("bad code")?, code(&hi).ok_or("bad code")?);
                            if n != m || lo > hi {
                                return Err("a code space range is malformed");
                            }
                            count(1)?;
                            map.spaces.push((n, lo, hi));
                        }
                        _ => return Err("a code space range is malformed"),
                    }
                },
                b"beginbfchar" => loop {
                    match lx.next() {
                        Some(Tok::Word(b"endbfchar")) => break,
                        Some(Tok::Hex(src)) => {
                            let src = code(&src).ok_or("a bfchar code is not 1 to 4 bytes")?;
                            match lx.next() {
                                Some(Tok::Hex(dst)) => {
                                    let dst =
                                        units(&dst).ok_or("a bfchar destination is malformed")?;
                                    count(1)?;
                                    map.chars.insert(src, dst);
                                }
                                // A glyph name: not a Unicode value, the code stays unmapped.
                                Some(Tok::Other) => {}
                                _ => return Err("a bfchar entry is malformed"),
                            }
                        }
                        _ => return Err("a bfchar entry is malformed"),
                    }
                },
                b"beginbfrange" => loop {
                    match lx.next() {
                        Some(Tok::Word(b"endbfrange")) => break,
                        Some(Tok::Hex(lo)) => {
                            let Some(Tok::Hex(hi)) = lx.next() else {
                                return Err("a bfrange is cut short");
                            };
                            let ((n, lo), (m, hi)) =
                                (code(&lo).ok_or("bad code")?, code(&hi).ok_or("bad code")?);
                            if n != m || lo > hi || hi - lo >= MAX_SPAN {
                                return Err("a bfrange is malformed or too wide");
                            }
                            let dest = match lx.next() {
                                Some(Tok::Hex(d)) => {
                                    let d =
                                        units(&d).ok_or("a bfrange destination is malformed")?;
                                    if d.is_empty() {
                                        return Err("a bfrange destination is empty");
                                    }
                                    Dest::Start(d)
                                }
                                Some(Tok::Open) => {
                                    let mut list = Vec::new();
                                    loop {
                                        match lx.next() {
                                            Some(Tok::Close) => break,
                                            Some(Tok::Hex(d)) => list.push(
                                                units(&d)
                                                    .ok_or("a bfrange destination is malformed")?,
                                            ),
                                            _ => return Err("a bfrange array is malformed"),
                                        }
                                    }
                                    if u32::try_from(list.len()).ok() != Some(hi - lo + 1) {
                                        return Err(
                                            "a bfrange array has another length than its range",
                                        );
                                    }
                                    count(list.len())?;
                                    Dest::List(list)
                                }
                                _ => return Err("a bfrange entry is malformed"),
                            };
                            count(1)?;
                            map.ranges.push((n, lo, hi, dest));
                        }
                        _ => return Err("a bfrange entry is malformed"),
                    }
                },
                _ => {}
            }
        }
        if map.chars.is_empty() && map.ranges.is_empty() {
            return Err("it maps no code");
        }
        Ok(map)
    }

    /// The length in bytes of the code at the start of `b`, by the code space ranges (or
    /// `default` when the map declares none).
    fn code_len(&self, b: &[u8], default: u8) -> Option<u8> {
        if self.spaces.is_empty() {
            return Some(default);
        }
        (1u8..=4).find(|n| {
            b.get(..usize::from(*n))
                .and_then(code)
                .is_some_and(|(_, c)| {
                    self.spaces
                        .iter()
                        .any(|(m, lo, hi)| m == n && *lo <= c && c <= *hi)
                })
        })
    }

    /// The text of one code, if the map has it.
    fn lookup(&self, n: u8, c: u32) -> Option<Vec<u16>> {
        if let Some(d) = self.chars.get(&(n, c)) {
            return Some(d.clone());
        }
        let (_, lo, _, dest) = self
            .ranges
            .iter()
            .find(|(m, lo, hi, _)| *m == n && *lo <= c && c <= *hi)?;
        let off = c - lo;
        match dest {
            Dest::Start(start) => {
                let mut u = start.clone();
                let last = u.last_mut()?;
                *last = last.checked_add(u16::try_from(off).ok()?)?;
                Some(u)
            }
            Dest::List(list) => list.get(usize::try_from(off).ok()?).cloned(),
        }
    }

    /// Decodes a shown string: `default` is the code length without code space ranges;
    /// `single` maps one-byte codes the map lacks (a simple font's encoding). `None` when a
    /// code maps to nothing.
    pub(super) fn decode(
        &self,
        b: &[u8],
        default: u8,
        single: Option<&[Option<String>; 256]>,
    ) -> Option<String> {
        let mut out = String::new();
        let mut at = 0usize;
        while at < b.len() {
            let rest = b.get(at..)?;
            let n = self.code_len(rest, default)?;
            let (_, c) = rest.get(..usize::from(n)).and_then(code)?;
            match self.lookup(n, c) {
                Some(u) => {
                    for ch in char::decode_utf16(u) {
                        out.push(ch.ok()?);
                    }
                }
                None => out.push_str(single?.get(usize::try_from(c).ok()?)?.as_deref()?),
            }
            at += usize::from(n);
        }
        Some(out)
    }

    /// The map written again: one code space section, then every `bfchar` and `bfrange`
    /// in order, at most 100 entries a section (as the CMap format asks).
    pub(super) fn write(&self) -> Vec<u8> {
        let hex = |n: u8, c: u32| {
            let mut s = String::from("<");
            for i in (0..n).rev() {
                let _ = write!(s, "{:02X}", (c >> (8 * u32::from(i))) & 0xff);
            }
            s.push('>');
            s
        };
        let dest = |u: &[u16]| {
            let mut s = String::from("<");
            for x in u {
                let _ = write!(s, "{x:04X}");
            }
            s.push('>');
            s
        };
        let mut out = String::from(
            "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
             /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
             /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n",
        );
        for chunk in self.spaces.chunks(100) {
            let _ = writeln!(out, "{} begincodespacerange", chunk.len());
            for (n, lo, hi) in chunk {
                let _ = writeln!(out, "{} {}", hex(*n, *lo), hex(*n, *hi));
            }
            out.push_str("endcodespacerange\n");
        }
        let chars: Vec<_> = self.chars.iter().collect();
        for chunk in chars.chunks(100) {
            let _ = writeln!(out, "{} beginbfchar", chunk.len());
            for ((n, c), u) in chunk {
                let _ = writeln!(out, "{} {}", hex(*n, *c), dest(u));
            }
            out.push_str("endbfchar\n");
        }
        for chunk in self.ranges.chunks(100) {
            let _ = writeln!(out, "{} beginbfrange", chunk.len());
            for (n, lo, hi, d) in chunk {
                let d = match d {
                    Dest::Start(u) => dest(u),
                    Dest::List(l) => {
                        let items: Vec<String> = l.iter().map(|u| dest(u)).collect();
                        format!("[{}]", items.join(" "))
                    }
                };
                let _ = writeln!(out, "{} {} {d}", hex(*n, *lo), hex(*n, *hi));
            }
            out.push_str("endbfrange\n");
        }
        out.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &[u8] = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n\
        1 begincodespacerange <0000> <FFFF> endcodespacerange\n\
        2 beginbfchar <0001> <79D8> <0002> <5BC6> endbfchar\n\
        2 beginbfrange <0010> <0012> <0041> <0020> <0021> [<0066 0069> <D83D DE00>] endbfrange\n\
        endcmap";

    #[test]
    fn bfchar_and_bfrange_decode_and_write_again() {
        let m = CMap::parse(MAP).unwrap();
        assert_eq!(
            m.decode(b"\x00\x01\x00\x02", 2, None).as_deref(),
            Some("秘密")
        );
        assert_eq!(
            m.decode(b"\x00\x10\x00\x12", 2, None).as_deref(),
            Some("AC")
        );
        assert_eq!(
            m.decode(b"\x00\x20\x00\x21", 2, None).as_deref(),
            Some("fi😀")
        );
        assert_eq!(m.decode(b"\x00\x05", 2, None), None, "an unmapped code");
        let again = CMap::parse(&m.write()).unwrap();
        assert_eq!(again, m);
        assert_eq!(CMap::parse(&again.write()).unwrap().write(), m.write());
    }

    #[test]
    fn damaged_maps_are_refused() {
        assert!(CMap::parse(b"begincmap endcmap").is_err());
        assert!(CMap::parse(b"1 beginbfrange <0000> <FFFFFF> <0041> endbfrange").is_err());
        assert!(CMap::parse(b"1 beginbfchar <0001>").is_err());
        assert!(CMap::parse(b"1 beginbfrange <0001> <0003> [<0041>] endbfrange").is_err());
    }
}
