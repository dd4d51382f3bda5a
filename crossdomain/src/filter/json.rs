//! `json(NAME)`: one JSON document that follows the named JSON Schema, re-serialised
//! canonically.
//!
//! The document is read by a parser of this module's own, made for hostile input, before any
//! tree is built: it refuses invalid UTF-8, nesting deeper than [`JsonFilter::MAX_DEPTH`]
//! (checked on the way in, so a document nested 100,000 deep is refused without using the
//! stack), a key repeated in one object (readers disagree on which copy wins), a number that
//! is not exactly a 64-bit integer or the float it denotes (readers would disagree on its
//! value), text after the document (a second document), and in strings the characters the
//! `text` filter refuses (control and escape characters, bidirectional overrides). The tree is
//! then checked against the schema with the `jsonschema` crate, built without any resolver
//! (a `$ref` to a network or file location fails when the schema is loaded, never at run
//! time), formats asserted. The rebuilt copy has its keys sorted and no spaces, so it is
//! deterministic and passes the filter again unchanged. Every key and string goes to
//! [`Filtered::text`] for the marking check.
//!
//! Schemas are given by the binary ([`JsonFilter::new`]): the default policy's ship as
//! `policies/schemas/NAME.json` ([`tianping_policies::DEFAULT_SCHEMAS`]).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Number, Value};

use super::text::{check_size, position, refused_char, steps};
use super::{Filter, FilterInput, Filtered, MemoryBound, Refusal, StepState};

/// Why a schema given to [`JsonFilter::new`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema `{name}` cannot be used: {reason}")]
pub struct SchemaError {
    /// The schema's name.
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The `json` filter, with the schemas it checks against by name.
pub struct JsonFilter {
    validators: BTreeMap<String, jsonschema::Validator>,
}

impl fmt::Debug for JsonFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonFilter")
            .field("schemas", &self.validators.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl JsonFilter {
    /// The deepest nesting of arrays and objects that crosses.
    pub const MAX_DEPTH: usize = 64;
    /// The longest number literal, in characters.
    pub const MAX_NUMBER: usize = 64;

    /// A filter checking against `schemas` (name to JSON Schema); refused when a schema is not
    /// a valid JSON Schema or refers to anything outside itself.
    pub fn new(schemas: BTreeMap<String, Value>) -> Result<Self, SchemaError> {
        let mut validators = BTreeMap::new();
        for (name, schema) in schemas {
            let v = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| SchemaError {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            validators.insert(name, v);
        }
        Ok(Self { validators })
    }

    /// A filter with the default policy's schemas ([`tianping_policies::DEFAULT_SCHEMAS`]).
    pub fn with_default_schemas() -> Result<Self, SchemaError> {
        let mut schemas = BTreeMap::new();
        for (name, text) in tianping_policies::DEFAULT_SCHEMAS {
            let v = serde_json::from_str(text).map_err(|e| SchemaError {
                name: name.to_owned(),
                reason: e.to_string(),
            })?;
            schemas.insert(name.to_owned(), v);
        }
        Self::new(schemas)
    }

    /// The names of the schemas it knows, in order.
    pub fn schemas(&self) -> impl Iterator<Item = &str> {
        self.validators.keys().map(String::as_str)
    }
}

fn refuse(reason: impl Into<String>) -> Refusal {
    Refusal::new("json", reason)
}

/// A JSON reader over UTF-8 text that checks depth before it descends.
struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn at(&self) -> String {
        position(self.text, self.pos)
    }

    fn err<T>(&self, what: &str) -> Result<T, Refusal> {
        Err(refuse(format!("{what} at {}", self.at())))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, Refusal> {
        if self
            .bytes
            .get(self.pos..)
            .is_some_and(|r| r.starts_with(word.as_bytes()))
        {
            self.pos += word.len();
            Ok(v)
        } else {
            self.err("it is not JSON: an unexpected word")
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Refusal> {
        self.skip_ws();
        match self.peek() {
            None => self.err("it is not JSON: the document ends early"),
            Some(b'{' | b'[') if depth >= JsonFilter::MAX_DEPTH => self.err(&format!(
                "it nests deeper than {} arrays and objects",
                JsonFilter::MAX_DEPTH
            )),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            Some(_) => self.err("it is not JSON: an unexpected character"),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Refusal> {
        self.pos += 1;
        let mut out = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(out));
        }
        loop {
            out.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(out));
                }
                _ => return self.err("it is not JSON: expected `,` or `]`"),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, Refusal> {
        self.pos += 1;
        let mut out = Map::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(out));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return self.err("it is not JSON: expected a key in quotes");
            }
            let key_at = self.pos;
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return self.err("it is not JSON: expected `:`");
            }
            self.pos += 1;
            let v = self.value(depth)?;
            if out.contains_key(&key) {
                return Err(refuse(format!(
                    "key `{key}` appears twice in one object (the second at {}): readers \
                     disagree on which one counts; keep one",
                    position(self.text, key_at)
                )));
            }
            out.insert(key, v);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(out));
                }
                _ => return self.err("it is not JSON: expected `,` or `}`"),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, Refusal> {
        let h = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(h) = h else {
            return self.err("it is not JSON: a bad `\\u` escape");
        };
        self.pos += 4;
        u32::from_str_radix(h, 16).map_err(|_| refuse("it is not JSON: a bad `\\u` escape"))
    }

    fn string(&mut self) -> Result<String, Refusal> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            // Copy the run up to the next quote, backslash or control byte at once.
            let run = self
                .bytes
                .get(self.pos..)
                .unwrap_or_default()
                .iter()
                .position(|b| matches!(b, b'"' | b'\\') || *b < 0x20)
                .unwrap_or(self.bytes.len().saturating_sub(self.pos));
            out.push_str(self.text.get(self.pos..self.pos + run).unwrap_or_default());
            self.pos += run;
            match self.peek() {
                None => {
                    self.pos = start;
                    return self.err("it is not JSON: a string is not closed");
                }
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi) {
                                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                    return self.err("it holds a lone UTF-16 surrogate");
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return self.err("it holds a lone UTF-16 surrogate");
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            let Some(c) = char::from_u32(code) else {
                                return self.err("it holds a lone UTF-16 surrogate");
                            };
                            out.push(c);
                            continue;
                        }
                        _ => return self.err("it is not JSON: a bad escape"),
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(_) => return self.err("it is not JSON: a raw control character in a string"),
            }
        }
        if let Some(c) = out
            .chars()
            .find(|c| !matches!(c, '\t' | '\n' | '\r') && refused_char(*c).is_some())
        {
            let why = refused_char(c).unwrap_or("a refused character");
            self.pos = start;
            return self.err(&format!(
                "a string holds {why} (U+{:04X}); remove it, in the string starting",
                u32::from(c)
            ));
        }
        Ok(out)
    }

    fn number(&mut self) -> Result<Number, Refusal> {
        let start = self.pos;
        let digits = |r: &mut Self| {
            let from = r.pos;
            while r.peek().is_some_and(|b| b.is_ascii_digit()) {
                r.pos += 1;
            }
            r.pos - from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        let n = digits(self);
        if n == 0 || (n > 1 && self.bytes.get(int_start) == Some(&b'0')) {
            self.pos = start;
            return self.err("it is not JSON: a malformed number");
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            float = true;
            if digits(self) == 0 {
                return self.err("it is not JSON: a malformed number");
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            float = true;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return self.err("it is not JSON: a malformed number");
            }
        }
        let lit = self.text.get(start..self.pos).unwrap_or_default();
        // Where it stands, worked out only for a refusal (it scans the text from its start).
        let at = || position(self.text, start);
        if lit.len() > JsonFilter::MAX_NUMBER {
            return Err(refuse(format!(
                "the number at {} is longer than {} characters",
                at(),
                JsonFilter::MAX_NUMBER
            )));
        }
        if !float {
            let n = if lit.starts_with('-') {
                lit.parse::<i64>().ok().map(Number::from)
            } else {
                lit.parse::<u64>().ok().map(Number::from)
            };
            return n.ok_or_else(|| {
                refuse(format!(
                    "the integer `{lit}` at {} is outside the 64-bit range; send it as a string",
                    at()
                ))
            });
        }
        let x: f64 = lit
            .parse()
            .map_err(|_| refuse(format!("the number `{lit}` at {} is malformed", at())))?;
        let n = Number::from_f64(x).ok_or_else(|| {
            refuse(format!(
                "the number `{lit}` at {} is outside the range of a 64-bit float",
                at()
            ))
        })?;
        if decimal(lit) != decimal(&n.to_string()) {
            return Err(refuse(format!(
                "the number `{lit}` at {} is not exactly the 64-bit float it reads as ({n}); \
                 send it as a string",
                at()
            )));
        }
        Ok(n)
    }
}

/// A decimal literal as (negative, significant digits, exponent) with value
/// `0.DIGITS × 10^exponent`; zero is `(false, "", 0)`.
fn decimal(lit: &str) -> (bool, String, i64) {
    let (neg, rest) = match lit.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, lit),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i + 1..)
                .and_then(|e| e.trim_start_matches('+').parse::<i64>().ok())
                .unwrap_or(0),
        ),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = format!("{int}{frac}");
    let lead = all.bytes().take_while(|b| *b == b'0').count();
    let digits = all.get(lead..).unwrap_or_default().trim_end_matches('0');
    if digits.is_empty() {
        return (false, String::new(), 0);
    }
    let int_len = i64::try_from(int.len()).unwrap_or(i64::MAX);
    let lead = i64::try_from(lead).unwrap_or(i64::MAX);
    (neg, digits.to_owned(), exp.saturating_add(int_len - lead))
}

/// Parses exactly one JSON document from `bytes`.
fn parse(bytes: &[u8]) -> Result<Value, Refusal> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        refuse(format!(
            "it is not UTF-8: byte {} starts an invalid sequence",
            e.valid_up_to()
        ))
    })?;
    // A leading byte-order mark is tolerated (RFC 8259 §8.1) and not passed on.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut r = Reader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    let v = r.value(0)?;
    r.skip_ws();
    if r.pos < r.bytes.len() {
        return r.err("more follows the document (one JSON document crosses at a time)");
    }
    Ok(v)
}

/// Writes `v` with sorted keys and no spaces.
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            // Sorted here, whatever order the map keeps.
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(x, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Every key and string of `v`, in canonical order.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (k, x) in entries {
                out.push(k.clone());
                strings(x, out);
            }
        }
        _ => {}
    }
}

impl Filter for JsonFilter {
    fn kind(&self) -> &str {
        "json"
    }

    fn memory(&self) -> MemoryBound {
        // The input, its tree (a few times its length) and the canonical copy.
        MemoryBound::Proportional(16)
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        let Some(name) = input.schema else {
            return Err(refuse(
                "the transfer names no schema; JSON crosses as json(NAME) with a schema",
            ));
        };
        let Some(validator) = self.validators.get(name) else {
            return Err(refuse(format!(
                "no schema `{name}` is installed here, so json({name}) cannot be checked"
            )));
        };
        check_size("json", input, bytes)?;
        let v = parse(bytes)?;
        let problems: Vec<String> = validator
            .iter_errors(&v)
            .take(3)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                format!("at `{at}`: {}", e.masked())
            })
            .collect();
        if !problems.is_empty() {
            return Err(refuse(format!(
                "it does not follow schema `{name}`: {}",
                problems.join("; ")
            )));
        }
        let mut out = String::with_capacity(bytes.len());
        write_canonical(&v, &mut out);
        let mut text = Vec::new();
        strings(&v, &mut text);
        Ok(Filtered {
            bytes: out.into_bytes(),
            steps: steps(input, StepState::NotApplicable),
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn filter() -> JsonFilter {
        let mut schemas = BTreeMap::new();
        schemas.insert("any".to_owned(), json!({}));
        schemas.insert(
            "point".to_owned(),
            json!({"type": "object", "required": ["x"], "additionalProperties": false,
                   "properties": {"x": {"type": "integer"}, "label": {"type": "string", "maxLength": 4}}}),
        );
        JsonFilter::new(schemas).unwrap()
    }

    fn run(schema: &str, bytes: &[u8]) -> Result<Filtered, Refusal> {
        let steps: &[&str] = &["validate", "rebuild", "strip-metadata"];
        filter().run(
            &FilterInput {
                kind: "json",
                schema: Some(schema),
                steps,
                max_size: 1 << 24,
                release: false,
            },
            bytes,
        )
    }

    fn reason(schema: &str, bytes: &[u8]) -> String {
        run(schema, bytes).unwrap_err().reason
    }

    #[test]
    fn canonical_and_idempotent() {
        let out = run("any", "\u{feff} { \"b\" : [1, -2, 1.5e3, 0.1, \"é\\n\\u00e9\\ud83d\\ude00\"],\n \"a\":{\"z\":null,\"y\":true} } ".as_bytes()).unwrap();
        let s = String::from_utf8(out.bytes.clone()).unwrap();
        assert_eq!(
            s,
            "{\"a\":{\"y\":true,\"z\":null},\"b\":[1,-2,1500.0,0.1,\"é\\né😀\"]}"
        );
        assert_eq!(run("any", &out.bytes).unwrap().bytes, out.bytes);
        assert_eq!(out.text, vec!["a", "y", "z", "b", "é\né😀"]);
    }

    #[test]
    fn refusals_say_why() {
        assert!(reason("point", br#"{"x":1,"x":2}"#).contains("key `x` appears twice"));
        assert!(reason("any", b"{} {}").contains("more follows"));
        assert!(reason("any", b"[1]\n[2]").contains("more follows"));
        assert!(reason("any", b"\"\xff\"").contains("not UTF-8"));
        assert!(reason("any", b"18446744073709551616").contains("64-bit range"));
        assert!(reason("any", b"-9223372036854775809").contains("64-bit range"));
        assert!(run("any", b"18446744073709551615").is_ok());
        assert!(run("any", b"-9223372036854775808").is_ok());
        assert!(reason("any", b"1e400").contains("range of a 64-bit float"));
        assert!(reason("any", b"0.30000000000000001").contains("not exactly"));
        assert!(reason("any", b"[01]").contains("malformed"));
        assert!(reason("any", b"{\"a\":\"\\u001b[31m\"}").contains("escape character"));
        assert!(reason("any", b"\"\\u202e\"").contains("override"));
        assert!(reason("any", b"\"\\ud800\"").contains("surrogate"));
        assert!(reason("any", b"").contains("ends early"));
        assert!(reason("point", br#"{"x":"one"}"#).contains("at `/x`"));
        assert!(reason("point", br#"{"x":1,"label":"toolong"}"#).contains("schema `point`"));
        assert!(reason("nope", b"{}").contains("no schema `nope`"));
        let deep = "[".repeat(100_000);
        assert!(reason("any", deep.as_bytes()).contains("deeper than 64"));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(run("any", ok.as_bytes()).is_ok());
        let over = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(run("any", over.as_bytes()).is_err());
    }

    #[test]
    fn the_default_schemas_load_and_refuse_remote_refs() {
        let f = JsonFilter::with_default_schemas().unwrap();
        assert_eq!(f.schemas().count(), 5);
        let mut remote = BTreeMap::new();
        remote.insert(
            "r".to_owned(),
            json!({"$ref": "https://example.org/s.json"}),
        );
        assert!(JsonFilter::new(remote).is_err());
        let mut file = BTreeMap::new();
        file.insert("f".to_owned(), json!({"$ref": "file:///etc/passwd"}));
        assert!(JsonFilter::new(file).is_err());
    }

    #[test]
    fn decimals_compare_by_value() {
        assert_eq!(decimal("100.0"), decimal("1e2"));
        assert_eq!(decimal("0.00150"), decimal("1.5e-3"));
        assert_eq!(decimal("-0.0"), decimal("0"));
        assert_ne!(decimal("0.1"), decimal("0.10000000000000001"));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            (-1e300f64..1e300).prop_map(|x| json!(x)),
            "[ -~é姓\n\t]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{0,4}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(17),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Any document serde_json writes (pretty or not) is accepted, means the same, and its
        /// canonical copy passes the filter again unchanged.
        #[test]
        fn rebuild_is_idempotent(v in json_value(), pretty in any::<bool>()) {
            let bytes = if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }.unwrap();
            let once = run("any", &bytes).unwrap();
            let back: Value = serde_json::from_slice(&once.bytes).unwrap();
            prop_assert_eq!(&back, &v);
            let twice = run("any", &once.bytes).unwrap();
            prop_assert_eq!(once.bytes, twice.bytes);
        }
    }
}
