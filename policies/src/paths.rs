//! Path patterns and the segment trie the engine walks.

use std::collections::HashMap;

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// This exact segment.
    Lit(Box<str>),
    /// Any one segment (`*`).
    Any,
    /// Any one segment, read as a court code (`{court}`).
    Court,
    /// Zero or more segments (`**`, last only).
    Rest,
}

/// The most segments a pattern may have (keeps matching shallow).
pub(crate) const MAX_SEGMENTS: usize = 64;

/// The first segment of the gateway's own endpoints, which no route may declare (DESIGN §9).
pub(crate) const RESERVED_SEGMENT: &str = ".tianping";

/// Whether a pattern names a path under `/.tianping/` (its first segment is that literal).
pub(crate) fn is_reserved(segs: &[Seg]) -> bool {
    matches!(segs.first(), Some(Seg::Lit(s)) if &**s == RESERVED_SEGMENT)
}

/// Parses `/cases/*/files/**`; `Err` says what is wrong.
pub(crate) fn parse_pattern(p: &str) -> Result<Vec<Seg>, String> {
    let Some(body) = p.strip_prefix('/') else {
        return Err("a path pattern starts with `/`".to_owned());
    };
    let mut segs = Vec::new();
    let mut courts = 0;
    let parts: Vec<&str> = if body.is_empty() {
        Vec::new()
    } else {
        body.split('/').collect()
    };
    let n = parts.len();
    if n > MAX_SEGMENTS {
        return Err(format!(
            "a path pattern has at most {MAX_SEGMENTS} segments"
        ));
    }
    for (i, part) in parts.into_iter().enumerate() {
        let seg = match part {
            "" => return Err("empty segment (`//` or a trailing `/`)".to_owned()),
            "*" => Seg::Any,
            "**" if i + 1 == n => Seg::Rest,
            "**" => return Err("`**` may only end a pattern".to_owned()),
            "{court}" => {
                courts += 1;
                Seg::Court
            }
            s if s.contains(['*', '{', '}', '?', '%']) => {
                return Err(format!(
                    "segment `{s}` mixes text with `*`, `{{`, `}}`, `?` or `%`"
                ));
            }
            "." | ".." => {
                return Err("`.` and `..` are not segments of a normalized path".to_owned());
            }
            s => Seg::Lit(s.into()),
        };
        segs.push(seg);
    }
    if courts > 1 {
        return Err("at most one `{court}` segment".to_owned());
    }
    Ok(segs)
}

/// Whether every path matched by `b` is matched by `a`.
pub(crate) fn covers(a: &[Seg], b: &[Seg]) -> bool {
    match (a.split_first(), b.split_first()) {
        (None, None) => true,
        (Some((Seg::Rest, _)), _) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(_), Some((Seg::Rest, _))) => false,
        (Some((Seg::Lit(x), ar)), Some((Seg::Lit(y), br))) => x == y && covers(ar, br),
        (Some((Seg::Lit(_), _)), Some(_)) => false,
        (Some((Seg::Any | Seg::Court, ar)), Some((_, br))) => covers(ar, br),
    }
}

/// Whether some path is matched by both `a` and `b`.
pub(crate) fn overlaps(a: &[Seg], b: &[Seg]) -> bool {
    match (a.split_first(), b.split_first()) {
        (None, None) | (Some((Seg::Rest, _)), _) | (_, Some((Seg::Rest, _))) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some((Seg::Lit(x), ar)), Some((Seg::Lit(y), br))) => x == y && overlaps(ar, br),
        (Some((_, ar)), Some((_, br))) => overlaps(ar, br),
    }
}

/// Whether the pattern has a `{court}` segment.
pub(crate) fn has_court(p: &[Seg]) -> bool {
    p.contains(&Seg::Court)
}

/// A node of the segment trie; route ids in each list are ascending (policy order).
#[derive(Debug, Default)]
pub(crate) struct Node {
    lit: HashMap<Box<str>, Node>,
    any: Option<Box<Node>>,
    court: Option<Box<Node>>,
    /// Routes whose pattern ends here.
    end: Vec<u32>,
    /// Routes whose pattern ends here with `**`.
    rest: Vec<u32>,
}

impl Node {
    pub(crate) fn insert(&mut self, segs: &[Seg], id: u32) {
        match segs.split_first() {
            None => push_sorted(&mut self.end, id),
            Some((Seg::Rest, _)) => push_sorted(&mut self.rest, id),
            Some((Seg::Lit(s), tail)) => self.lit.entry(s.clone()).or_default().insert(tail, id),
            Some((Seg::Any, tail)) => self.any.get_or_insert_with(Box::default).insert(tail, id),
            Some((Seg::Court, tail)) => {
                self.court.get_or_insert_with(Box::default).insert(tail, id);
            }
        }
    }

    /// Calls `visit(route, captured court)` for each route whose pattern matches the rest of the
    /// path, stopping when `visit` returns `true`. `rest` has no leading `/`.
    pub(crate) fn walk<'p>(
        &self,
        rest: &'p str,
        court: Option<&'p str>,
        visit: &mut impl FnMut(u32, Option<&'p str>) -> bool,
    ) -> bool {
        for &id in &self.rest {
            if visit(id, court) {
                return true;
            }
        }
        let rest = rest.trim_start_matches('/');
        if rest.is_empty() {
            return self.end.iter().any(|&id| visit(id, court));
        }
        let (seg, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some(n) = self.lit.get(seg) {
            if n.walk(tail, court, visit) {
                return true;
            }
        }
        if let Some(n) = &self.any {
            if n.walk(tail, court, visit) {
                return true;
            }
        }
        if let Some(n) = &self.court {
            if n.walk(tail, Some(seg), visit) {
                return true;
            }
        }
        false
    }

    /// Collects every route with a pattern that [`covers`] `b` (each route once per such
    /// pattern, in no order), walking only the branches such a pattern can take.
    pub(crate) fn covering(&self, b: &[Seg], out: &mut Vec<u32>) {
        // A `**` here covers whatever `b` still holds.
        out.extend_from_slice(&self.rest);
        let Some((first, tail)) = b.split_first() else {
            out.extend_from_slice(&self.end);
            return;
        };
        if let Seg::Lit(s) = first {
            if let Some(n) = self.lit.get(s) {
                n.covering(tail, out);
            }
        }
        if !matches!(first, Seg::Rest) {
            for n in [&self.any, &self.court].into_iter().flatten() {
                n.covering(tail, out);
            }
        }
    }
}

fn push_sorted(v: &mut Vec<u32>, id: u32) {
    let at = v.partition_point(|&x| x < id);
    v.insert(at, id);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Seg> {
        parse_pattern(s).unwrap()
    }

    #[test]
    fn patterns() {
        assert_eq!(p("/"), vec![]);
        assert_eq!(p("/a/*/**").len(), 3);
        assert!(parse_pattern("a").is_err());
        assert!(parse_pattern("/a/**/b").is_err());
        assert!(parse_pattern("/a//b").is_err());
        assert!(parse_pattern("/a*").is_err());
        assert!(parse_pattern("/{court}/{court}").is_err());
    }

    #[test]
    fn coverage() {
        assert!(covers(&p("/a/**"), &p("/a/b/c")));
        assert!(covers(&p("/a/**"), &p("/a")));
        assert!(covers(&p("/*/b"), &p("/a/b")));
        assert!(!covers(&p("/a/b"), &p("/a/*")));
        assert!(!covers(&p("/a/*"), &p("/a/**")));
        assert!(covers(&p("/**"), &p("/x/**")));
    }

    #[test]
    fn covering_finds_what_covers() {
        let pats = ["/a/**", "/a/b", "/*/b", "/{court}/*", "/a/*/c", "/**", "/x"];
        let mut root = Node::default();
        for (i, s) in (0u32..).zip(pats) {
            root.insert(&p(s), i);
        }
        for b in ["/a/b", "/a", "/q/b", "/a/*", "/a/**", "/", "/a/z/c", "/x"] {
            let mut got = Vec::new();
            root.covering(&p(b), &mut got);
            got.sort_unstable();
            let want: Vec<u32> = (0u32..)
                .zip(pats)
                .filter(|(_, a)| covers(&p(a), &p(b)))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(got, want, "{b}");
        }
    }

    #[test]
    fn walk_order() {
        let mut root = Node::default();
        root.insert(&p("/cases/**"), 3);
        root.insert(&p("/cases/{court}/x"), 1);
        root.insert(&p("/cases/*/x"), 2);
        let mut seen = Vec::new();
        root.walk("cases/bj.01/x", None, &mut |id, c| {
            seen.push((id, c));
            false
        });
        assert_eq!(seen, vec![(3, None), (2, None), (1, Some("bj.01"))]);
    }
}
