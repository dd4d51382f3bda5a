//! `marking LABEL words "...", "..."`: the words whose presence in a payload's text marks it as
//! carrying a label, for the exchange's marking check on release flows.

use std::collections::HashMap;

use crate::cx::Cx;
use crate::diag::Problem;
use crate::model::{Flow, Marking};
use crate::syntax::Ast;

/// The markings of `ast`; a label marked twice, an empty word or a word repeated is an error,
/// a marking no release refuses is a warning (it would never be checked).
pub(super) fn markings(cx: &mut Cx, ast: &Ast, flows: &[Flow]) -> Vec<Marking> {
    let mut out: Vec<Marking> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for m in &ast.markings {
        if seen.contains_key(m.label.text.as_str()) {
            cx.problems.push(
                Problem::error(
                    format!("label `{}` is marked twice", m.label.text),
                    m.label.span,
                    "a second `marking` of this label",
                )
                .with_help(format!(
                    "put every word in the first `marking {}`",
                    m.label.text
                )),
            );
            continue;
        }
        let mut words: Vec<String> = Vec::new();
        for w in &m.words {
            if w.text.chars().all(char::is_whitespace) {
                cx.err(
                    "a marking word is empty",
                    w.span,
                    "an empty word would match every text",
                );
            } else if words.contains(&w.text) {
                cx.err(
                    format!("marking word `{}` is listed twice", w.text),
                    w.span,
                    "already a word of this marking",
                );
            } else {
                words.push(w.text.clone());
            }
        }
        let refused = flows.iter().any(|f| {
            f.release
                .as_ref()
                .is_some_and(|r| r.refuse.contains(&m.label.text))
        });
        if !refused {
            cx.problems.push(
                Problem::warning(
                    format!("marking `{}` is never checked", m.label.text),
                    m.label.span,
                    "no release refuses this label",
                )
                .with_help(format!(
                    "add `refuse {}` to the release of the flows it must not leave by",
                    m.label.text
                )),
            );
        }
        seen.insert(m.label.text.as_str(), out.len());
        out.push(Marking {
            label: m.label.text.clone(),
            words,
        });
    }
    out
}
