//! The resources pages and forms use, rebuilt from their allow-lists: fonts (simple and
//! Type 0 with their CID fonts, descriptors, embedded font files and `ToUnicode` maps),
//! images with their masks, colour spaces, graphics states and form XObjects.

use std::collections::BTreeMap;
use std::rc::Rc;

use lopdf::{Dictionary, Object, ObjectId, Stream};

use super::cmap::CMap;
use super::rebuild::{FontsByName, Rebuild};
use super::text::{FontText, single_table};
use super::{name_of, refuse};
use crate::filter::Refusal;

impl Rebuild<'_> {
    pub(super) fn colour_space(&mut self, o: &Object, depth: usize) -> Result<Object, Refusal> {
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

    pub(super) fn image(
        &mut self,
        old: ObjectId,
        s: &Stream,
        depth: usize,
    ) -> Result<Object, Refusal> {
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

    pub(super) fn font(
        &mut self,
        name: &[u8],
        o: &Object,
        depth: usize,
    ) -> Result<Object, Refusal> {
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
    pub(super) fn unicode_map(
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

    pub(super) fn descriptor(
        &mut self,
        d: &Dictionary,
        depth: usize,
    ) -> Result<Option<Object>, Refusal> {
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

    pub(super) fn simple_font(
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

    pub(super) fn type0_font(
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
    pub(super) fn resources(
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
    pub(super) fn xobject(&mut self, o: &Object, depth: usize) -> Result<Option<Object>, Refusal> {
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
}
