//! The problems found so far, and the lookups that report an unknown or malformed name where it
//! stands.

use std::collections::HashMap;

use tianping_core::{Acr, Clearance, Role};

use crate::diag::{Problem, Span};
use crate::model::{ALL_ROLES, Kind, role_bit};
use crate::syntax::{KindDecl, Name, RoleSet};

/// Every problem found in one policy text, in the order found.
#[derive(Default)]
pub(crate) struct Cx {
    pub(crate) problems: Vec<Problem>,
}

impl Cx {
    pub(crate) fn err(&mut self, message: impl Into<String>, span: Span, label: impl Into<String>) {
        self.problems.push(Problem::error(message, span, label));
    }

    /// Looks `n` up in one of the policy's name indexes; an unknown name is an error at its span.
    pub(crate) fn resolve<K>(
        &mut self,
        index: &HashMap<K, usize>,
        what: &str,
        n: &Name,
    ) -> Option<usize>
    where
        K: std::borrow::Borrow<str> + std::hash::Hash + Eq,
    {
        let found = index.get(n.text.as_str()).copied();
        if found.is_none() {
            self.err(
                format!("unknown {what} `{}`", n.text),
                n.span,
                format!("no {what} of this name is declared"),
            );
        }
        found
    }

    pub(crate) fn role(&mut self, n: &Name) -> Option<Role> {
        match n.text.parse::<Role>() {
            Ok(r) => Some(r),
            Err(_) => {
                self.problems.push(
                    Problem::error(format!("unknown role `{}`", n.text), n.span, "not a role")
                        .with_help(format!(
                            "roles are {}",
                            Role::ALL
                                .iter()
                                .map(|r| format!("`{r}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                );
                None
            }
        }
    }

    pub(crate) fn roles(&mut self, set: &RoleSet) -> u32 {
        match set {
            RoleSet::Any => ALL_ROLES,
            RoleSet::List(names) => names
                .iter()
                .filter_map(|n| self.role(n))
                .fold(0, |m, r| m | role_bit(r)),
        }
    }

    pub(crate) fn acr(&mut self, n: &Name) -> Option<Acr> {
        n.text.parse().map_or_else(
            |_| {
                self.err(
                    format!("unknown acr `{}`", n.text),
                    n.span,
                    "expected `pwd`, `otp` or `cert`",
                );
                None
            },
            Some,
        )
    }

    pub(crate) fn clearance(&mut self, n: &Name) -> Option<Clearance> {
        n.text.parse().map_or_else(
            |_| {
                self.err(
                    format!("unknown clearance `{}`", n.text),
                    n.span,
                    "expected `none`, `secret`, `confidential` or `top-secret`",
                );
                None
            },
            Some,
        )
    }

    pub(crate) fn kind(&mut self, k: &KindDecl) -> Option<(Kind, Option<String>)> {
        let Some(kind) = Kind::parse(&k.name.text) else {
            self.problems.push(
                Problem::error(
                    format!("unknown kind `{}`", k.name.text),
                    k.name.span,
                    "not a content kind",
                )
                .with_help(format!(
                    "kinds are {}",
                    Kind::ALL
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            return None;
        };
        match (&k.schema, kind) {
            (None, Kind::Json) => {
                self.err(
                    "`json` needs a schema name",
                    k.name.span,
                    "write `json(schema-name)`",
                );
                None
            }
            (Some(s), Kind::Json) => Some((kind, Some(s.text.clone()))),
            (Some(s), _) => {
                self.err(
                    format!("only `json` takes a schema, not `{}`", k.name.text),
                    s.span,
                    "remove this schema",
                );
                None
            }
            (None, _) => Some((kind, None)),
        }
    }

    pub(crate) fn name_ok(&mut self, n: &Name, what: &str) -> bool {
        let mut b = n.text.bytes();
        let ok = b.next().is_some_and(|c| c.is_ascii_lowercase())
            && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && n.text.len() <= 64;
        if !ok {
            self.err(
                format!("`{}` is not a {what} name", n.text),
                n.span,
                "names are lowercase-kebab: a letter, then `a-z`, `0-9` and `-`",
            );
        }
        ok
    }
}
