//! The marking check (ACSC "dirty word" and "protective marking" checks): a release that
//! refuses a label refuses content whose text carries any word of that label's `marking` in
//! the policy (`marking secret words "秘密", "机密", "绝密", ...`).
//!
//! Text and words are compared after [`normalize_marking`]: full-width forms folded to their
//! half-width letters, digits and signs (`ＳＥＣＲＥＴ` is `SECRET`), case folded, and
//! whitespace and invisible characters dropped, so `秘 密`, `秘\u{200b}密` and `秘　密` carry
//! `秘密`. A filter that cannot decode a document's text on a release must refuse it itself
//! ([`FilterInput::release`](super::FilterInput)): this check reads only what it was given.

use tianping_policies::FlowInfo;

use super::{Filtered, Refusal};

/// `s` folded for matching markings: full-width ASCII forms (U+FF01–U+FF5E) and the
/// ideographic space to half-width, lowercase, and without whitespace or invisible format
/// characters (zero-width spaces and joiners, word joiner, soft hyphen, byte-order mark).
pub fn normalize_marking(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = match u32::from(c) {
            cp @ 0xff01..=0xff5e => char::from_u32(cp - 0xfee0).unwrap_or(c),
            _ => c,
        };
        if c.is_whitespace()
            || matches!(
                c,
                '\u{ad}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}'
            )
        {
            continue;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Refuses `filtered` when `flow` is a release refusing a label whose marking words its text
/// carries; `Ok` otherwise (and always on flows that refuse no marked label).
pub fn marking_check(flow: &FlowInfo<'_>, filtered: &Filtered) -> Result<(), Refusal> {
    let marked: Vec<(&str, Vec<(&String, String)>)> = flow
        .refused_markings()
        .map(|(label, words)| {
            (
                label,
                words
                    .iter()
                    .map(|w| (w, normalize_marking(w)))
                    .filter(|(_, n)| !n.is_empty())
                    .collect(),
            )
        })
        .collect();
    if marked.is_empty() {
        return Ok(());
    }
    for text in &filtered.text {
        let text = normalize_marking(text);
        for (label, words) in &marked {
            if let Some((word, _)) = words.iter().find(|(_, n)| text.contains(n.as_str())) {
                return Err(Refusal::new(
                    "marking",
                    format!(
                        "its text carries `{word}`, a marking of `{label}`, which flow `{}` \
                         refuses to release; send it by a flow that may carry `{label}`",
                        flow.name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tianping_policies::{DEFAULT_POLICY, check};

    use super::*;

    fn filtered(text: &str) -> Filtered {
        Filtered {
            bytes: Vec::new(),
            steps: Vec::new(),
            text: vec!["first part".to_owned(), text.to_owned()],
        }
    }

    #[test]
    fn normalizes_width_case_and_space() {
        assert_eq!(normalize_marking("ＳＥＣ Ｒｅｔ"), "secret");
        assert_eq!(normalize_marking("秘\u{3000}密 ★"), "秘密★");
        assert_eq!(normalize_marking("机\u{200b}密\n"), "机密");
    }

    #[test]
    fn a_release_refusing_secret_refuses_marked_text() {
        let p = check("default.tp", DEFAULT_POLICY).into_policy().unwrap();
        let release = p.flow("service-of-documents").unwrap();
        for marked in [
            "本文件属绝密★级",
            "秘 密",
            "机\u{200b}密",
            "（密级：秘密★十年）",
        ] {
            let r = marking_check(&release, &filtered(marked)).unwrap_err();
            assert_eq!(r.filter, "marking");
            assert!(r.reason.contains("`secret`"), "{}", r.reason);
            assert!(r.reason.contains("service-of-documents"), "{}", r.reason);
        }
        assert!(marking_check(&release, &filtered("公开的判决书")).is_ok());
        // An import into the classified zone refuses nothing.
        let import = p.flow("classified-import").unwrap();
        assert!(marking_check(&import, &filtered("绝密★")).is_ok());
    }
}
