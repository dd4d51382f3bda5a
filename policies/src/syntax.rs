//! Lexer and parser: text to a syntax tree whose every name carries its span.

use crate::diag::{Problem, Span};

/// One token of the policy text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok<'s> {
    /// A word: names, keywords, levels, sizes, times.
    Word(&'s str),
    /// A path pattern, starting with `/`.
    Path(&'s str),
    /// A quoted string (without its quotes).
    Str(&'s str),
    /// `{`, `}`, `,`, `(`, `)`, `<`, `->`, `>=`.
    Punct(&'static str),
    /// The end of a line (statements end there).
    Newline,
    /// The end of the text.
    Eof,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+')
}

/// Splits the text into tokens; comments run from `#` to the end of the line.
pub(crate) fn lex(src: &str) -> Result<Vec<(Tok<'_>, Span)>, Problem> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let start = i;
        match b {
            b'\n' => {
                out.push((Tok::Newline, Span::new(i, 1)));
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'{' | b'}' | b',' | b'(' | b')' | b'<' => {
                let p = match b {
                    b'{' => "{",
                    b'}' => "}",
                    b',' => ",",
                    b'(' => "(",
                    b')' => ")",
                    _ => "<",
                };
                out.push((Tok::Punct(p), Span::new(i, 1)));
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'>') => {
                out.push((Tok::Punct("->"), Span::new(i, 2)));
                i += 2;
            }
            b'>' if bytes.get(i + 1) == Some(&b'=') => {
                out.push((Tok::Punct(">="), Span::new(i, 2)));
                i += 2;
            }
            b'"' => {
                i += 1;
                while bytes.get(i).is_some_and(|&c| c != b'"' && c != b'\n') {
                    i += 1;
                }
                if bytes.get(i) != Some(&b'"') {
                    return Err(Problem::error(
                        "unterminated string",
                        Span::new(start, i - start),
                        "this string has no closing `\"` on its line",
                    ));
                }
                i += 1;
                let text = src.get(start + 1..i - 1).unwrap_or_default();
                out.push((Tok::Str(text), Span::new(start, i - start)));
            }
            b'/' => {
                while bytes
                    .get(i)
                    .is_some_and(|&c| !c.is_ascii_whitespace() && c != b',' && c != b'#')
                {
                    i += 1;
                }
                out.push((
                    Tok::Path(src.get(start..i).unwrap_or_default()),
                    Span::new(start, i - start),
                ));
            }
            c if is_word_byte(c) => {
                while bytes.get(i).is_some_and(|&c| is_word_byte(c)) {
                    // `a->b` ends the word before the arrow.
                    if bytes.get(i) == Some(&b'-') && bytes.get(i + 1) == Some(&b'>') {
                        break;
                    }
                    i += 1;
                }
                out.push((
                    Tok::Word(src.get(start..i).unwrap_or_default()),
                    Span::new(start, i - start),
                ));
            }
            _ => {
                let len = src
                    .get(i..)
                    .and_then(|s| s.chars().next())
                    .map_or(1, char::len_utf8);
                let text = src.get(i..i + len).unwrap_or("?");
                return Err(Problem::error(
                    format!("unexpected character `{text}`"),
                    Span::new(i, len),
                    "not part of the policy language",
                ));
            }
        }
    }
    out.push((Tok::Eof, Span::new(src.len(), 0)));
    Ok(out)
}

/// A name with where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Name {
    pub(crate) text: String,
    pub(crate) span: Span,
}

/// Everything the parser read, in source order.
#[derive(Debug, Default)]
pub(crate) struct Ast {
    pub(crate) levels: Vec<LevelsDecl>,
    pub(crate) zones: Vec<ZoneDecl>,
    pub(crate) services: Vec<ServiceDecl>,
    pub(crate) routes: Vec<RouteDecl>,
    pub(crate) flows: Vec<FlowDecl>,
    pub(crate) expects: Vec<ExpectDecl>,
    pub(crate) tests: Vec<TestDecl>,
    pub(crate) markings: Vec<MarkingDecl>,
}

/// `marking LABEL words "...", "..."`: the words that mark content as carrying `LABEL`.
#[derive(Debug)]
pub(crate) struct MarkingDecl {
    pub(crate) label: Name,
    /// Each word as written (without its quotes), its span covering the quotes.
    pub(crate) words: Vec<Name>,
}

/// Which of the two level lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Axis {
    Confidentiality,
    Integrity,
}

#[derive(Debug)]
pub(crate) struct LevelsDecl {
    pub(crate) axis: Axis,
    pub(crate) keyword: Span,
    pub(crate) names: Vec<Name>,
}

/// `any` or a list of roles.
#[derive(Debug, Clone)]
pub(crate) enum RoleSet {
    Any,
    List(Vec<Name>),
}

#[derive(Debug)]
pub(crate) struct ZoneDecl {
    pub(crate) name: Name,
    pub(crate) confidentiality: Option<Name>,
    pub(crate) integrity: Option<Name>,
    pub(crate) sealed: bool,
    pub(crate) acr: Vec<(RoleSet, Name)>,
}

#[derive(Debug)]
pub(crate) struct ServiceDecl {
    pub(crate) name: Name,
    pub(crate) zone: Name,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetKind {
    Service,
    Flow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CourtRule {
    Same,
    Within,
}

#[derive(Debug)]
pub(crate) enum CourtCond {
    /// The `{court}` segment of the path against the subject's court.
    Path(CourtRule, Span),
    /// The subject's court is within a fixed court.
    In(Name),
}

#[derive(Debug)]
pub(crate) struct RouteDecl {
    pub(crate) name: Name,
    pub(crate) zone: Name,
    pub(crate) paths: Vec<Name>,
    pub(crate) methods: Vec<Name>,
    pub(crate) target: Option<(TargetKind, Name)>,
    pub(crate) roles: Option<RoleSet>,
    pub(crate) court: Option<CourtCond>,
    pub(crate) clearance: Option<Name>,
    pub(crate) acr: Option<Name>,
    pub(crate) time: Option<(Name, Option<Name>)>,
}

#[derive(Debug)]
pub(crate) struct KindDecl {
    pub(crate) name: Name,
    pub(crate) schema: Option<Name>,
}

#[derive(Debug)]
pub(crate) struct ReleaseDecl {
    pub(crate) keyword: Span,
    pub(crate) redact: bool,
    pub(crate) refuse: Vec<Name>,
    pub(crate) approvers: Option<(Name, Vec<Name>)>,
}

#[derive(Debug)]
pub(crate) struct CredentialDecl {
    pub(crate) creds: Vec<Name>,
    pub(crate) for_roles: Option<RoleSet>,
}

#[derive(Debug)]
pub(crate) struct FlowDecl {
    pub(crate) name: Name,
    pub(crate) from: Name,
    pub(crate) to: Name,
    pub(crate) kinds: Vec<KindDecl>,
    pub(crate) max_size: Option<Name>,
    /// `max-size SIZE for KIND, ...`: a lower limit for some of the flow's kinds.
    pub(crate) kind_sizes: Vec<(Name, Vec<KindDecl>)>,
    pub(crate) submitters: Vec<Name>,
    pub(crate) deliver: Option<Name>,
    pub(crate) rate: Option<(Name, Name)>,
    pub(crate) sanitize: Vec<Name>,
    pub(crate) release: Option<ReleaseDecl>,
    pub(crate) reply: Option<Name>,
    pub(crate) accounts: Option<RoleSet>,
    pub(crate) attributes: Vec<Name>,
    pub(crate) credentials: Vec<CredentialDecl>,
}

#[derive(Debug)]
pub(crate) enum ExpectKind {
    NoPath {
        from: Name,
        to: Name,
    },
    OnlyFlows {
        flows: Vec<Name>,
        from: Name,
        to: Name,
    },
    RouteAcr {
        route: Name,
        acr: Name,
    },
}

#[derive(Debug)]
pub(crate) struct ExpectDecl {
    pub(crate) span: Span,
    pub(crate) kind: ExpectKind,
}

#[derive(Debug)]
pub(crate) enum TestInput {
    Request {
        zone: Name,
        method: Name,
        path: Name,
        roles: Vec<Name>,
        court: Option<Name>,
        clearance: Option<Name>,
        acr: Option<Name>,
        at: Option<Name>,
    },
    Transfer {
        flow: Name,
        kind: Option<KindDecl>,
        size: Option<Name>,
        by: Vec<Name>,
        labels: Vec<Name>,
        redacted: bool,
        approvals: Vec<Name>,
    },
}

#[derive(Debug)]
pub(crate) struct TestDecl {
    pub(crate) span: Span,
    pub(crate) input: TestInput,
    pub(crate) allow: bool,
    pub(crate) rule: Option<Name>,
}

/// The statements of one block (or test) that may stand once, each as first given: a second
/// would silently replace the first, so it is an error pointing at both.
#[derive(Default)]
struct Once(Vec<Name>);

impl Once {
    /// Notes statement `kw` of `within` (such as "route `read`").
    fn note(&mut self, kw: &Name, within: &str) -> PResult<()> {
        if let Some(first) = self.0.iter().find(|f| f.text == kw.text) {
            return Err(Problem::error(
                format!("`{}` is given twice in {within}", kw.text),
                kw.span,
                "given again here",
            )
            .with_related(first.span, "first given here")
            .with_help(format!(
                "`{}` may stand once in {within}; keep the one that is meant",
                kw.text
            )));
        }
        self.0.push(kw.clone());
        Ok(())
    }
}

struct Parser<'s> {
    toks: Vec<(Tok<'s>, Span)>,
    pos: usize,
}

type PResult<T> = Result<T, Problem>;

fn describe(t: Tok<'_>) -> String {
    match t {
        Tok::Word(w) => format!("`{w}`"),
        Tok::Path(p) => format!("`{p}`"),
        Tok::Str(s) => format!("`\"{s}\"`"),
        Tok::Punct(p) => format!("`{p}`"),
        Tok::Newline => "the end of the line".to_owned(),
        Tok::Eof => "the end of the file".to_owned(),
    }
}

impl<'s> Parser<'s> {
    fn peek(&self) -> (Tok<'s>, Span) {
        self.toks
            .get(self.pos)
            .copied()
            .unwrap_or((Tok::Eof, Span::new(0, 0)))
    }

    fn bump(&mut self) -> (Tok<'s>, Span) {
        let t = self.peek();
        if t.0 != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    fn unexpected<T>(&self, wanted: &str) -> PResult<T> {
        let (t, span) = self.peek();
        // Point at something visible: a newline token points at the end of the line.
        let span = if t == Tok::Newline {
            Span::new(span.offset, 0)
        } else {
            span
        };
        Err(Problem::error(
            format!("expected {wanted}, found {}", describe(t)),
            span,
            format!("expected {wanted} here"),
        ))
    }

    fn skip_newlines(&mut self) {
        while self.peek().0 == Tok::Newline {
            self.pos += 1;
        }
    }

    fn word(&mut self, what: &str) -> PResult<Name> {
        match self.peek() {
            (Tok::Word(w), span) => {
                self.pos += 1;
                Ok(Name {
                    text: w.to_owned(),
                    span,
                })
            }
            _ => self.unexpected(what),
        }
    }

    fn keyword(&mut self, kw: &str) -> PResult<Span> {
        match self.peek() {
            (Tok::Word(w), span) if w == kw => {
                self.pos += 1;
                Ok(span)
            }
            _ => self.unexpected(&format!("`{kw}`")),
        }
    }

    fn is_word(&self, kw: &str) -> bool {
        matches!(self.peek().0, Tok::Word(w) if w == kw)
    }

    fn punct(&mut self, p: &str) -> PResult<Span> {
        match self.peek() {
            (Tok::Punct(q), span) if q == p => {
                self.pos += 1;
                Ok(span)
            }
            _ => self.unexpected(&format!("`{p}`")),
        }
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if matches!(self.peek().0, Tok::Punct(q) if q == p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn end_of_statement(&mut self) -> PResult<()> {
        match self.peek().0 {
            Tok::Newline => {
                self.pos += 1;
                Ok(())
            }
            Tok::Eof | Tok::Punct("}") => Ok(()),
            _ => self.unexpected("the end of the statement"),
        }
    }

    /// `a, b, c` (a newline may follow a comma).
    fn word_list(&mut self, what: &str) -> PResult<Vec<Name>> {
        let mut out = vec![self.word(what)?];
        while self.eat_punct(",") {
            self.skip_newlines();
            out.push(self.word(what)?);
        }
        Ok(out)
    }

    /// `"a", "b"` (a newline may follow a comma).
    fn strings(&mut self, what: &str) -> PResult<Vec<Name>> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                (Tok::Str(text), span) => {
                    self.pos += 1;
                    out.push(Name {
                        text: text.to_owned(),
                        span,
                    });
                }
                _ => return self.unexpected(what),
            }
            if !self.eat_punct(",") {
                return Ok(out);
            }
            self.skip_newlines();
        }
    }

    fn role_set(&mut self) -> PResult<RoleSet> {
        if self.is_word("any") {
            self.bump();
            return Ok(RoleSet::Any);
        }
        Ok(RoleSet::List(self.word_list("a role")?))
    }

    fn open_block(&mut self) -> PResult<()> {
        self.punct("{")?;
        self.skip_newlines();
        Ok(())
    }

    /// Runs `stmt` for each statement of a block until its `}`.
    fn block(&mut self, mut stmt: impl FnMut(&mut Self, Name) -> PResult<()>) -> PResult<()> {
        self.open_block()?;
        loop {
            self.skip_newlines();
            if self.eat_punct("}") {
                return Ok(());
            }
            if self.peek().0 == Tok::Eof {
                return self.unexpected("`}`");
            }
            let kw = self.word("a statement")?;
            stmt(self, kw)?;
            self.end_of_statement()?;
        }
    }

    fn kind(&mut self) -> PResult<KindDecl> {
        let name = self.word("a content kind")?;
        let schema = if self.eat_punct("(") {
            let s = self.word("a schema name")?;
            self.punct(")")?;
            Some(s)
        } else {
            None
        };
        Ok(KindDecl { name, schema })
    }

    fn paths(&mut self) -> PResult<Vec<Name>> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                (Tok::Path(p), span) => {
                    self.pos += 1;
                    out.push(Name {
                        text: p.to_owned(),
                        span,
                    });
                }
                _ => return self.unexpected("a path pattern starting with `/`"),
            }
            if !self.eat_punct(",") {
                return Ok(out);
            }
            self.skip_newlines();
        }
    }

    fn parse(mut self) -> PResult<Ast> {
        let mut ast = Ast::default();
        loop {
            self.skip_newlines();
            let (t, span) = self.peek();
            let Tok::Word(w) = t else {
                if t == Tok::Eof {
                    return Ok(ast);
                }
                return self.unexpected(
                    "`levels`, `zone`, `service`, `route`, `flow`, `marking`, `expect` or `test`",
                );
            };
            match w {
                "levels" => {
                    self.pos += 1;
                    let axis_name = self.word("`confidentiality` or `integrity`")?;
                    let axis = match axis_name.text.as_str() {
                        "confidentiality" => Axis::Confidentiality,
                        "integrity" => Axis::Integrity,
                        _ => {
                            return Err(Problem::error(
                                format!(
                                    "expected `confidentiality` or `integrity`, found `{}`",
                                    axis_name.text
                                ),
                                axis_name.span,
                                "the two level lists are `confidentiality` and `integrity`",
                            ));
                        }
                    };
                    let mut names = vec![self.word("a level name")?];
                    while self.eat_punct("<") {
                        names.push(self.word("a level name")?);
                    }
                    self.end_of_statement()?;
                    ast.levels.push(LevelsDecl {
                        axis,
                        keyword: span,
                        names,
                    });
                }
                "zone" => {
                    self.pos += 1;
                    let name = self.word("a zone name")?;
                    let within = format!("zone `{}`", name.text);
                    let mut once = Once::default();
                    let mut z = ZoneDecl {
                        name,
                        confidentiality: None,
                        integrity: None,
                        sealed: false,
                        acr: Vec::new(),
                    };
                    self.block(|p, kw| {
                        if ZONE_ONCE.contains(&kw.text.as_str()) {
                            once.note(&kw, &within)?;
                        }
                        match kw.text.as_str() {
                            "confidentiality" => z.confidentiality = Some(p.word("a level")?),
                            "integrity" => z.integrity = Some(p.word("a level")?),
                            "sealed" => z.sealed = true,
                            "acr" => {
                                let roles = p.role_set()?;
                                p.punct(">=")?;
                                z.acr.push((roles, p.word("`pwd`, `otp` or `cert`")?));
                            }
                            _ => return bad_statement(&kw, "zone", ZONE_STMTS),
                        }
                        Ok(())
                    })?;
                    ast.zones.push(z);
                }
                "service" => {
                    self.pos += 1;
                    let name = self.word("a service name")?;
                    self.keyword("in")?;
                    let zone = self.word("a zone name")?;
                    self.end_of_statement()?;
                    ast.services.push(ServiceDecl { name, zone });
                }
                "route" => {
                    self.pos += 1;
                    let name = self.word("a route name")?;
                    self.keyword("in")?;
                    let zone = self.word("a zone name")?;
                    let within = format!("route `{}`", name.text);
                    let mut once = Once::default();
                    let mut r = RouteDecl {
                        name,
                        zone,
                        paths: Vec::new(),
                        methods: Vec::new(),
                        target: None,
                        roles: None,
                        court: None,
                        clearance: None,
                        acr: None,
                        time: None,
                    };
                    self.block(|p, kw| {
                        if ROUTE_ONCE.contains(&kw.text.as_str()) {
                            once.note(&kw, &within)?;
                        }
                        match kw.text.as_str() {
                            "path" => r.paths.extend(p.paths()?),
                            "methods" => r.methods.extend(p.word_list("a method")?),
                            "to" => {
                                let k = p.word("`service` or `flow`")?;
                                let kind = match k.text.as_str() {
                                    "service" => TargetKind::Service,
                                    "flow" => TargetKind::Flow,
                                    _ => return bad_word(&k, "`service` or `flow`"),
                                };
                                r.target = Some((kind, p.word("a name")?));
                            }
                            "roles" => r.roles = Some(p.role_set()?),
                            "court" => {
                                let k = p.word("`same`, `within` or `in`")?;
                                r.court = Some(match k.text.as_str() {
                                    "same" => CourtCond::Path(CourtRule::Same, k.span),
                                    "within" => CourtCond::Path(CourtRule::Within, k.span),
                                    "in" => CourtCond::In(p.word("a court code")?),
                                    _ => return bad_word(&k, "`same`, `within` or `in`"),
                                });
                            }
                            "clearance" => {
                                p.punct(">=")?;
                                r.clearance = Some(p.word("a clearance")?);
                            }
                            "acr" => {
                                p.punct(">=")?;
                                r.acr = Some(p.word("`pwd`, `otp` or `cert`")?);
                            }
                            "time" => {
                                let w = p.word("a window such as `08:00-18:00`")?;
                                let off = match p.peek().0 {
                                    Tok::Word(_) => Some(p.word("an offset")?),
                                    _ => None,
                                };
                                r.time = Some((w, off));
                            }
                            _ => return bad_statement(&kw, "route", ROUTE_STMTS),
                        }
                        Ok(())
                    })?;
                    ast.routes.push(r);
                }
                "flow" => {
                    self.pos += 1;
                    let name = self.word("a flow name")?;
                    let from = self.word("the source zone")?;
                    self.punct("->")?;
                    let to = self.word("the destination zone")?;
                    let within = format!("flow `{}`", name.text);
                    let mut once = Once::default();
                    let mut f = FlowDecl {
                        name,
                        from,
                        to,
                        kinds: Vec::new(),
                        max_size: None,
                        kind_sizes: Vec::new(),
                        submitters: Vec::new(),
                        deliver: None,
                        rate: None,
                        sanitize: Vec::new(),
                        release: None,
                        reply: None,
                        accounts: None,
                        attributes: Vec::new(),
                        credentials: Vec::new(),
                    };
                    self.block(|p, kw| {
                        if FLOW_ONCE.contains(&kw.text.as_str()) {
                            once.note(&kw, &within)?;
                        }
                        match kw.text.as_str() {
                            "kinds" => {
                                f.kinds.push(p.kind()?);
                                while p.eat_punct(",") {
                                    p.skip_newlines();
                                    f.kinds.push(p.kind()?);
                                }
                            }
                            "max-size" => {
                                let size = p.word("a size such as `20MiB`")?;
                                if p.is_word("for") {
                                    p.pos += 1;
                                    let mut kinds = vec![p.kind()?];
                                    while p.eat_punct(",") {
                                        p.skip_newlines();
                                        kinds.push(p.kind()?);
                                    }
                                    f.kind_sizes.push((size, kinds));
                                } else {
                                    // `max-size ... for` may repeat; the flow's own limit may not.
                                    once.note(&kw, &within)?;
                                    f.max_size = Some(size);
                                }
                            }
                            "submitters" => f.submitters.extend(p.word_list("a role")?),
                            "deliver" => f.deliver = Some(p.word("a service name")?),
                            "rate" => {
                                let n = p.word("a number")?;
                                p.keyword("per")?;
                                let unit = p.word("`second`, `minute`, `hour` or `day`")?;
                                f.rate = Some((n, unit));
                            }
                            "sanitize" => f.sanitize.extend(p.word_list("a sanitize step")?),
                            "release" => {
                                let mut rel = ReleaseDecl {
                                    keyword: kw.span,
                                    redact: false,
                                    refuse: Vec::new(),
                                    approvers: None,
                                };
                                let within = format!("the release of {within}");
                                let mut once = Once::default();
                                p.block(|p, kw| {
                                    if RELEASE_ONCE.contains(&kw.text.as_str()) {
                                        once.note(&kw, &within)?;
                                    }
                                    match kw.text.as_str() {
                                        "redact" => rel.redact = true,
                                        "refuse" => rel.refuse.extend(p.word_list("a label")?),
                                        "approvers" => {
                                            let n = p.word("a number")?;
                                            let roles = if p.is_word("of") {
                                                p.pos += 1;
                                                p.word_list("a role")?
                                            } else {
                                                Vec::new()
                                            };
                                            rel.approvers = Some((n, roles));
                                        }
                                        _ => return bad_statement(&kw, "release", RELEASE_STMTS),
                                    }
                                    Ok(())
                                })?;
                                f.release = Some(rel);
                            }
                            "reply" => f.reply = Some(p.word("a flow name")?),
                            "accounts" => f.accounts = Some(p.role_set()?),
                            "attributes" => f.attributes.extend(p.word_list("an attribute")?),
                            "credentials" => {
                                let creds = p.word_list("a credential")?;
                                let for_roles = if p.is_word("for") {
                                    p.pos += 1;
                                    Some(p.role_set()?)
                                } else {
                                    None
                                };
                                f.credentials.push(CredentialDecl { creds, for_roles });
                            }
                            _ => return bad_statement(&kw, "flow", FLOW_STMTS),
                        }
                        Ok(())
                    })?;
                    ast.flows.push(f);
                }
                "expect" => {
                    self.pos += 1;
                    let kw = self.word("`no`, `only` or `route`")?;
                    let kind = match kw.text.as_str() {
                        "no" => {
                            self.keyword("path")?;
                            self.keyword("from")?;
                            let from = self.word("a zone")?;
                            self.keyword("to")?;
                            ExpectKind::NoPath {
                                from,
                                to: self.word("a zone")?,
                            }
                        }
                        "only" => {
                            self.keyword("flows")?;
                            let flows = self.word_list("a flow name")?;
                            self.keyword("from")?;
                            let from = self.word("a zone")?;
                            self.keyword("to")?;
                            ExpectKind::OnlyFlows {
                                flows,
                                from,
                                to: self.word("a zone")?,
                            }
                        }
                        "route" => {
                            let route = self.word("a route name")?;
                            self.keyword("needs")?;
                            self.keyword("acr")?;
                            self.punct(">=")?;
                            ExpectKind::RouteAcr {
                                route,
                                acr: self.word("`pwd`, `otp` or `cert`")?,
                            }
                        }
                        _ => return bad_word(&kw, "`no path`, `only flows` or `route`"),
                    };
                    let end = self.peek().1;
                    self.end_of_statement()?;
                    ast.expects.push(ExpectDecl {
                        span: Span::new(span.offset, end.offset.saturating_sub(span.offset)),
                        kind,
                    });
                }
                "test" => {
                    self.pos += 1;
                    let t = self.test(span)?;
                    ast.tests.push(t);
                }
                "marking" => {
                    self.pos += 1;
                    let label = self.word("a label")?;
                    self.keyword("words")?;
                    let words = self.strings("a quoted word such as `\"秘密\"`")?;
                    self.end_of_statement()?;
                    ast.markings.push(MarkingDecl { label, words });
                }
                _ => {
                    return Err(Problem::error(
                        format!("unknown declaration `{w}`"),
                        span,
                        "expected `levels`, `zone`, `service`, `route`, `flow`, `marking`, `expect` or `test`",
                    ));
                }
            }
        }
    }

    fn test(&mut self, start: Span) -> PResult<TestDecl> {
        let kw = self.word("`request` or `transfer`")?;
        let input = match kw.text.as_str() {
            "request" => {
                let zone = self.word("a zone")?;
                let method = self.word("a method")?;
                let path = match self.bump() {
                    (Tok::Path(p), span) => Name {
                        text: p.to_owned(),
                        span,
                    },
                    _ => {
                        self.pos -= 1;
                        return self.unexpected("a path starting with `/`");
                    }
                };
                let (mut roles, mut court, mut clearance, mut acr, mut at) =
                    (Vec::new(), None, None, None, None);
                let mut once = Once::default();
                while !self.is_word("expect") {
                    let opt =
                        self.word("`roles`, `court`, `clearance`, `acr`, `at` or `expect`")?;
                    once.note(&opt, "one test")?;
                    match opt.text.as_str() {
                        "roles" => roles = self.word_list("a role")?,
                        "court" => court = Some(self.word("a court code")?),
                        "clearance" => clearance = Some(self.word("a clearance")?),
                        "acr" => acr = Some(self.word("`pwd`, `otp` or `cert`")?),
                        "at" => at = Some(self.word("a time such as `09:30`")?),
                        _ => {
                            return bad_word(
                                &opt,
                                "`roles`, `court`, `clearance`, `acr`, `at` or `expect`",
                            );
                        }
                    }
                }
                TestInput::Request {
                    zone,
                    method,
                    path,
                    roles,
                    court,
                    clearance,
                    acr,
                    at,
                }
            }
            "transfer" => {
                let flow = self.word("a flow name")?;
                let (mut kind, mut size, mut by, mut labels, mut redacted, mut approvals) =
                    (None, None, Vec::new(), Vec::new(), false, Vec::new());
                let mut once = Once::default();
                while !self.is_word("expect") {
                    let opt = self.word(
                        "`kind`, `size`, `by`, `labels`, `redacted`, `approvals` or `expect`",
                    )?;
                    once.note(&opt, "one test")?;
                    match opt.text.as_str() {
                        "kind" => kind = Some(self.kind()?),
                        "size" => size = Some(self.word("a size")?),
                        "by" => by = self.word_list("a role or `machine`")?,
                        "labels" => labels = self.word_list("a label")?,
                        "redacted" => redacted = true,
                        "approvals" => approvals = self.word_list("a role")?,
                        _ => {
                            return bad_word(
                                &opt,
                                "`kind`, `size`, `by`, `labels`, `redacted`, `approvals` or `expect`",
                            );
                        }
                    }
                }
                TestInput::Transfer {
                    flow,
                    kind,
                    size,
                    by,
                    labels,
                    redacted,
                    approvals,
                }
            }
            _ => return bad_word(&kw, "`request` or `transfer`"),
        };
        self.keyword("expect")?;
        let verdict = self.word("`allow` or `deny`")?;
        let allow = match verdict.text.as_str() {
            "allow" => true,
            "deny" => false,
            _ => return bad_word(&verdict, "`allow` or `deny`"),
        };
        let rule = match self.peek().0 {
            Tok::Word(_) => Some(self.word("a rule name")?),
            _ => None,
        };
        let end = self.peek().1;
        self.end_of_statement()?;
        Ok(TestDecl {
            span: Span::new(start.offset, end.offset.saturating_sub(start.offset)),
            input,
            allow,
            rule,
        })
    }
}

const ZONE_STMTS: &str = "`confidentiality`, `integrity`, `sealed` or `acr`";
const ROUTE_STMTS: &str = "`path`, `methods`, `to`, `roles`, `court`, `clearance`, `acr` or `time`";
const FLOW_STMTS: &str = "`kinds`, `max-size`, `submitters`, `deliver`, `rate`, `sanitize`, `release`, `reply`, `accounts`, `attributes` or `credentials`";
const RELEASE_STMTS: &str = "`redact`, `refuse` or `approvers`";

// The statements that may stand once in their block; the others (`acr` of a zone, `path`,
// `methods`, `kinds`, `max-size ... for`, `submitters`, `sanitize`, `refuse`, `attributes`,
// `credentials`) add to what the block already says.
const ZONE_ONCE: [&str; 3] = ["confidentiality", "integrity", "sealed"];
const ROUTE_ONCE: [&str; 6] = ["to", "roles", "court", "clearance", "acr", "time"];
const FLOW_ONCE: [&str; 5] = ["deliver", "rate", "release", "reply", "accounts"];
const RELEASE_ONCE: [&str; 2] = ["redact", "approvers"];

fn bad_statement<T>(kw: &Name, block: &str, allowed: &str) -> PResult<T> {
    Err(Problem::error(
        format!("unknown {block} statement `{}`", kw.text),
        kw.span,
        format!("a {block} holds {allowed}"),
    ))
}

fn bad_word<T>(w: &Name, wanted: &str) -> PResult<T> {
    Err(Problem::error(
        format!("expected {wanted}, found `{}`", w.text),
        w.span,
        format!("expected {wanted} here"),
    ))
}

/// Parses a whole policy text.
pub(crate) fn parse(src: &str) -> PResult<Ast> {
    let toks = lex(src)?;
    Parser { toks, pos: 0 }.parse()
}
