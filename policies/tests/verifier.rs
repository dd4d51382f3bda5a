//! Every error and warning of the verifier: its message and the text it underlines.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use tianping_policies::{Problem, Severity, check};

const BASE: &str = "\
levels confidentiality low < high
levels integrity dirty < clean
zone outside {
  confidentiality low
  integrity dirty
  acr lawyer >= pwd
}
zone inside {
  confidentiality high
  integrity clean
  acr judge, clerk >= otp
}
zone vault {
  confidentiality high
  integrity clean
  sealed
  acr judge >= cert
}
service intake in inside
service portal in outside
route read in inside {
  path /cases/**
  methods GET
  to service intake
  roles judge
}
route see in outside {
  path /portal/**
  methods GET
  to service portal
  roles lawyer
}
flow upload outside -> inside {
  kinds pdf
  max-size 1MiB
  submitters lawyer
  deliver intake
  sanitize validate
}
flow publish inside -> outside {
  kinds pdf
  max-size 1MiB
  submitters judge
  deliver portal
  release {
    approvers 1 of judge
  }
}
";

/// 1-based line and column of the `nth` occurrence of `needle`, counted independently.
fn position(src: &str, needle: &str, nth: usize) -> (usize, usize) {
    let at = src
        .match_indices(needle)
        .nth(nth)
        .expect("needle in source")
        .0;
    let line = src[..at].lines().count() + usize::from(src[..at].ends_with('\n') || at == 0);
    let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
    (line, src[line_start..at].chars().count() + 1)
}

fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

/// Checks `src`, finds the one problem whose message contains `msg`, and asserts it underlines
/// the `nth` occurrence of `text`.
fn expect(src: &str, severity: Severity, msg: &str, text: &str, nth: usize) -> Problem {
    let c = check("t.tp", src);
    let found: Vec<&Problem> = c
        .problems()
        .iter()
        .filter(|p| p.message.contains(msg))
        .collect();
    assert_eq!(found.len(), 1, "want `{msg}` once in:\n{}", c.render());
    let p = found[0].clone();
    assert_eq!(p.severity, severity, "{}", p.message);
    assert_eq!(&src[p.span.offset..p.span.offset + p.span.len], text);
    assert_eq!(
        (p.line, p.column),
        position(src, text, nth),
        "{}",
        p.message
    );
    if severity == Severity::Error {
        assert!(!c.is_ok());
        assert!(c.policy().is_none());
    }
    // The rendered diagnostic names the file and underlines the text.
    let r = c.render();
    assert!(r.contains("t.tp"), "{r}");
    assert!(r.contains(&"─".repeat(text.chars().count().min(3))), "{r}");
    p
}

#[test]
fn base_is_clean() {
    let c = check("t.tp", BASE);
    assert!(c.problems().is_empty(), "{}", c.render());
}

#[test]
fn syntax_errors() {
    let src = edit("zone outside {", "zone outside [");
    expect(&src, Severity::Error, "unexpected character `[`", "[", 0);
    let src = edit("service intake in inside", "service intake inside");
    expect(
        &src,
        Severity::Error,
        "expected `in`, found `inside`",
        "inside",
        1,
    );
    let src = edit("  sealed\n", "  sealed\n  locked\n");
    expect(
        &src,
        Severity::Error,
        "unknown zone statement `locked`",
        "locked",
        0,
    );
    let src = edit("kinds pdf", "kinds pdf png");
    expect(
        &src,
        Severity::Error,
        "expected the end of the statement, found `png`",
        "png",
        0,
    );
}

#[test]
fn unknown_names() {
    expect(
        &edit("service intake in inside", "service intake in insde"),
        Severity::Error,
        "unknown zone `insde`",
        "insde",
        0,
    );
    expect(
        &edit("to service intake", "to service intak"),
        Severity::Error,
        "unknown service `intak`",
        "intak",
        1,
    );
    expect(
        &edit(
            "  sanitize validate\n",
            "  sanitize validate\n  reply uplod\n",
        ),
        Severity::Error,
        "unknown flow `uplod`",
        "uplod",
        0,
    );
    expect(
        &edit("  roles judge\n", "  roles juge\n"),
        Severity::Error,
        "unknown role `juge`",
        "juge",
        0,
    );
    expect(
        &edit("kinds pdf", "kinds pfd"),
        Severity::Error,
        "unknown kind `pfd`",
        "pfd",
        0,
    );
    expect(
        &edit(
            "confidentiality high\n  integrity clean\n  acr judge, clerk",
            "confidentiality hgh\n  integrity clean\n  acr judge, clerk",
        ),
        Severity::Error,
        "unknown confidentiality level `hgh`",
        "hgh",
        0,
    );
}

#[test]
fn route_to_another_zones_service() {
    let p = expect(
        &edit("to service intake", "to service portal"),
        Severity::Error,
        "route `read` in zone `inside` leads to service `portal` of zone `outside`",
        "portal",
        1,
    );
    assert!(p.help.unwrap().contains("to flow"));
}

#[test]
fn route_under_the_reserved_prefix() {
    for path in ["/.tianping/login", "/.tianping/**", "/.tianping"] {
        let p = expect(
            &edit("path /cases/**", &format!("path /cases/**, {path}")),
            Severity::Error,
            "is under the gateway's reserved `/.tianping/`",
            path,
            0,
        );
        assert!(p.message.contains(&format!("`{path}`")), "{}", p.message);
        assert!(p.help.unwrap().contains("choose another first segment"));
    }
    // A segment merely starting with the name, or the name further down, is an ordinary path.
    let src = edit(
        "path /cases/**",
        "path /cases/**, /.tianping-docs/**, /cases/.tianping",
    );
    let c = check("t.tp", &src);
    assert!(c.is_ok(), "{}", c.render());
}

#[test]
fn flow_out_of_sealed_zone_and_its_chain() {
    let src = format!(
        "{BASE}flow leak vault -> inside {{\n  kinds pdf\n  max-size 1MiB\n  submitters judge\n  deliver intake\n}}\n"
    );
    let p = expect(
        &src,
        Severity::Error,
        "flow `leak` carries data out of sealed zone `vault`",
        "vault",
        1,
    );
    // The chain goes on through `publish` to `outside`.
    assert_eq!(
        p.help.unwrap(),
        "data could travel vault -> inside (flow `leak`) -> outside (flow `publish`)"
    );
}

#[test]
fn downgrade_needs_release() {
    let src = edit("  release {\n    approvers 1 of judge\n  }\n", "");
    expect(
        &src,
        Severity::Error,
        "flow `publish` goes to lower confidentiality (`high` to `low`) without `release`",
        "publish",
        0,
    );
}

#[test]
fn upgrade_needs_sanitize() {
    let src = edit("  sanitize validate\n", "");
    expect(
        &src,
        Severity::Error,
        "flow `upload` goes to higher integrity (`dirty` to `clean`) without `sanitize`",
        "upload",
        0,
    );
}

#[test]
fn approvers_must_sign_in_to_the_source_zone() {
    let src = edit("approvers 1 of judge", "approvers 1 of judge, president");
    expect(
        &src,
        Severity::Error,
        "approver role `president` cannot sign in to source zone `inside`",
        "president",
        0,
    );
}

#[test]
fn zero_approvers_only_for_machine_made_kinds() {
    let src = edit("approvers 1 of judge", "approvers 0");
    expect(
        &src,
        Severity::Error,
        "flow `publish` releases `pdf` with no approver",
        "0",
        0,
    );
    // A receipt may go with none.
    let src = edit("approvers 1 of judge", "approvers 0").replacen(
        "  kinds pdf\n  max-size 1MiB\n  submitters judge",
        "  kinds receipt\n  max-size 1MiB\n  submitters judge",
        1,
    );
    assert!(
        check("t.tp", &src).is_ok(),
        "{}",
        check("t.tp", &src).render()
    );
}

#[test]
fn failed_expectations_print_a_counterexample() {
    let src = format!("{BASE}expect no path from outside to inside\n");
    let p = expect(
        &src,
        Severity::Error,
        "expectation failed: a path leads from `outside` to `inside`",
        "expect no path from outside to inside",
        0,
    );
    assert_eq!(
        p.help.unwrap(),
        "counterexample: outside -> inside (flow `upload`)"
    );
    let src = format!("{BASE}expect only flows publish from outside to inside\n");
    let p = expect(
        &src,
        Severity::Error,
        "flow `upload` also goes from `outside` to `inside`",
        "expect only flows publish from outside to inside",
        0,
    );
    assert!(p.help.unwrap().contains("via `upload`"));
    let src = format!("{BASE}expect route read needs acr >= cert\n");
    let p = expect(
        &src,
        Severity::Error,
        "route `read` admits acr `otp`, below `cert`",
        "expect route read needs acr >= cert",
        0,
    );
    assert_eq!(
        p.help.unwrap(),
        "counterexample: a `judge` signed in with `otp` in zone `inside`"
    );
    // The ones that hold pass.
    let src = format!(
        "{BASE}expect no path from vault to outside\nexpect route read needs acr >= otp\nexpect only flows upload from outside to inside\n"
    );
    assert!(
        check("t.tp", &src).is_ok(),
        "{}",
        check("t.tp", &src).render()
    );
}

#[test]
fn failing_test_is_an_error() {
    let line = "test request inside GET /cases/1 roles judge acr otp expect deny";
    let src = format!("{BASE}{line}\n");
    expect(
        &src,
        Severity::Error,
        "test failed: expected deny, got allow by `read` (to service `intake`)",
        line,
        0,
    );
    let ok =
        format!("{BASE}test request inside GET /cases/1 roles judge acr otp expect allow read\n");
    let c = check("t.tp", &ok);
    assert!(c.is_ok(), "{}", c.render());
    assert_eq!(c.tests().len(), 1);
    assert!(c.tests()[0].passed);
}

#[test]
fn warning_shadowed_route() {
    let src = format!(
        "{BASE}route read-one in inside {{\n  path /cases/7\n  methods GET\n  to service intake\n  roles judge\n  acr >= cert\n}}\n"
    );
    let p = expect(
        &src,
        Severity::Warning,
        "route `read-one` is shadowed by route `read`",
        "read-one",
        0,
    );
    assert_eq!(p.help.unwrap(), "move it above `read` or remove it");
    assert!(check("t.tp", &src).is_ok());
}

#[test]
fn warning_route_without_roles() {
    let open = format!(
        "{BASE}route anyone in inside {{\n  path /open\n  methods GET\n  to service intake\n}}\n"
    );
    let p = expect(
        &open,
        Severity::Warning,
        "route `anyone` names no roles: every role that may sign in to zone `inside` may use it",
        "anyone",
        0,
    );
    assert!(p.help.unwrap().contains("roles any"));
    assert!(check("t.tp", &open).is_ok());
    // said on purpose: no warning
    let said = open.replace(
        "  to service intake\n}",
        "  to service intake\n  roles any\n}",
    );
    let c = check("t.tp", &said);
    assert!(
        !c.problems()
            .iter()
            .any(|p| p.message.contains("names no roles")),
        "{}",
        c.render()
    );
}

#[test]
fn warning_unsatisfiable_route() {
    let src = format!(
        "{BASE}route nobody in inside {{\n  path /x\n  methods GET\n  to service intake\n  roles lawyer\n}}\n"
    );
    expect(
        &src,
        Severity::Warning,
        "no subject can satisfy route `nobody`: none of its roles may sign in to zone `inside`",
        "nobody",
        0,
    );
}

#[test]
fn warning_unreached_service() {
    let src = edit(
        "service portal in outside",
        "service portal in outside\nservice orphan in inside",
    );
    expect(
        &src,
        Severity::Warning,
        "no route or flow reaches service `orphan`",
        "orphan",
        0,
    );
}

#[test]
fn more_errors() {
    expect(
        &edit("deliver intake", "deliver portal"),
        Severity::Error,
        "flow `upload` delivers to service `portal` of zone `outside`",
        "portal",
        3,
    );
    expect(
        &edit("path /cases/**", "path /cases/**/x"),
        Severity::Error,
        "bad path pattern `/cases/**/x`",
        "/cases/**/x",
        0,
    );
    expect(
        &edit("kinds pdf", "kinds json"),
        Severity::Error,
        "`json` needs a schema name",
        "json",
        0,
    );
    expect(
        &edit("  roles judge\n", "  roles judge\n  court same\n"),
        Severity::Error,
        "need a `{court}` segment",
        "same",
        0,
    );
    expect(
        &edit(
            "  sanitize validate\n",
            "  sanitize validate\n  reply upload\n",
        ),
        Severity::Error,
        "reply flow `upload` goes from `outside` to `inside`, not back",
        "upload",
        1,
    );
}

#[test]
fn windows_and_pattern_limits() {
    // A window may end at 24:00; an empty window is a warning.
    let src = edit("  roles judge\n", "  roles judge\n  time 00:00-24:00\n");
    let c = check("t.tp", &src);
    assert!(c.problems().is_empty(), "{}", c.render());
    let p = c.policy().unwrap();
    let judge = tianping_policies::Subject {
        acr: tianping_core::Acr::Otp,
        ..tianping_policies::Subject::new(&[tianping_core::Role::Judge])
    };
    for h in [0u64, 12, 23] {
        let at = tianping_core::UnixTime::from_secs(h * 3600 + 59 * 60);
        assert!(
            p.decide_request("inside", &judge, "GET", "/cases/1", at)
                .is_allow()
        );
    }
    let src = edit("  roles judge\n", "  roles judge\n  time 09:00-09:00\n");
    expect(
        &src,
        Severity::Warning,
        "its time window is empty",
        "read",
        0,
    );
    let src = edit("  roles judge\n", "  roles judge\n  time 25:00-09:00\n");
    expect(
        &src,
        Severity::Error,
        "`25:00-09:00` is not a time window",
        "25:00-09:00",
        0,
    );
    // Patterns stay shallow.
    let deep = format!("/{}", vec!["a"; 65].join("/"));
    let src = edit("path /cases/**", &format!("path {deep}"));
    expect(&src, Severity::Error, "bad path pattern", &deep, 0);
}

/// `BASE` with its release refusing `secret`, and `extra` appended.
fn with_marking(extra: &str) -> String {
    let mut src = edit(
        "    approvers 1 of judge\n",
        "    refuse secret\n    approvers 1 of judge\n",
    );
    src.push_str(extra);
    src
}

#[test]
fn markings_are_read() {
    let src = with_marking("marking secret words \"秘密\", \"机密★\",\n  \"TOP SECRET\"\n");
    let c = check("t.tp", &src);
    assert!(c.problems().is_empty(), "{}", c.render());
    let p = c.policy().unwrap();
    let all: Vec<(&str, Vec<&str>)> = p
        .markings()
        .map(|(l, w)| (l, w.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(all, vec![("secret", vec!["秘密", "机密★", "TOP SECRET"])]);
    let publish = p.flow("publish").unwrap();
    let marked: Vec<&str> = publish.refused_markings().map(|(l, _)| l).collect();
    assert_eq!(marked, vec!["secret"]);
    assert_eq!(p.flow("upload").unwrap().refused_markings().count(), 0);
    assert!(p.marking_words("minor").is_empty());
}

#[test]
fn marking_errors() {
    expect(
        &with_marking("marking secret words \"秘密\"\nmarking secret words \"机密\"\n"),
        Severity::Error,
        "label `secret` is marked twice",
        "secret",
        2,
    );
    expect(
        &with_marking("marking secret words \"秘密\", \" \"\n"),
        Severity::Error,
        "a marking word is empty",
        "\" \"",
        0,
    );
    expect(
        &with_marking("marking secret words \"秘密\", \"秘密\"\n"),
        Severity::Error,
        "marking word `秘密` is listed twice",
        "\"秘密\"",
        1,
    );
    expect(
        &with_marking("marking secret \"秘密\"\n"),
        Severity::Error,
        "expected `words`, found `\"秘密\"`",
        "\"秘密\"",
        0,
    );
    expect(
        &with_marking("marking secret words 秘密\n"),
        Severity::Error,
        "unexpected character `秘`",
        "秘",
        0,
    );
    expect(
        &with_marking("marking secret words secret\n"),
        Severity::Error,
        "expected a quoted word",
        "secret",
        2,
    );
}

#[test]
fn marking_no_release_refuses_is_a_warning() {
    let src = format!("{BASE}marking minor words \"未成年\"\n");
    let p = expect(
        &src,
        Severity::Warning,
        "marking `minor` is never checked",
        "minor",
        0,
    );
    assert!(p.help.unwrap().contains("refuse minor"));
    assert!(check("t.tp", &src).is_ok());
}

/// Asserts that `src` has one error `msg`, at keyword `kw` of the last `again` in `src`, and
/// that it points at the `kw` of the last `first` before it too.
fn given_twice(src: &str, msg: &str, kw: &str, first: &str, again: &str) {
    let again_at = src.rfind(again).unwrap();
    let first_at = src[..again_at].rfind(first).unwrap();
    let c = check("t.tp", src);
    let found: Vec<&Problem> = c.problems().iter().filter(|p| p.message == msg).collect();
    assert_eq!(found.len(), 1, "want `{msg}` once in:\n{}", c.render());
    let p = found[0];
    assert_eq!(p.severity, Severity::Error);
    let at = |s: usize, line: &str| (s + line.find(kw).unwrap(), kw.len());
    assert_eq!((p.span.offset, p.span.len), at(again_at, again), "{msg}");
    let (span, label) = *p.related.clone().expect("the first is pointed at");
    assert_eq!((span.offset, span.len), at(first_at, first), "{msg}");
    assert_eq!(label, "first given here");
    let r = c.render();
    assert!(
        r.contains("first given here") && r.contains("given again here"),
        "{r}"
    );
}

#[test]
fn a_statement_given_twice_is_an_error() {
    // Zones.
    given_twice(
        &edit("  sealed\n", "  sealed\n  confidentiality low\n"),
        "`confidentiality` is given twice in zone `vault`",
        "confidentiality",
        "  confidentiality high",
        "  confidentiality low",
    );
    given_twice(
        &edit("  sealed\n", "  sealed\n  sealed\n"),
        "`sealed` is given twice in zone `vault`",
        "sealed",
        "  sealed",
        "  sealed",
    );
    given_twice(
        &edit(
            "  acr judge, clerk >= otp\n",
            "  acr judge, clerk >= otp\n  acr clerk >= pwd\n",
        ),
        "`clerk` is given an `acr` twice in zone `inside`",
        "clerk",
        "judge, clerk",
        "acr clerk",
    );
    // Routes: every statement that holds one value.
    for (stmt, again, msg) in [
        (
            "to service portal",
            "to service intake",
            "`to` is given twice in route `see`",
        ),
        (
            "roles lawyer",
            "roles clerk",
            "`roles` is given twice in route `see`",
        ),
        (
            "acr >= otp",
            "acr >= pwd",
            "`acr` is given twice in route `see`",
        ),
        (
            "clearance >= none",
            "clearance >= secret",
            "`clearance` is given twice in route `see`",
        ),
        (
            "court in bj",
            "court in sh",
            "`court` is given twice in route `see`",
        ),
        (
            "time 08:00-18:00",
            "time 00:00-24:00",
            "`time` is given twice in route `see`",
        ),
    ] {
        let added = if matches!(stmt, "to service portal" | "roles lawyer") {
            format!("  {again}\n")
        } else {
            format!("  {stmt}\n  {again}\n")
        };
        let src = edit(
            "  roles lawyer\n}\n",
            &format!("  roles lawyer\n{added}}}\n"),
        );
        let kw = stmt.split(' ').next().unwrap();
        given_twice(&src, msg, kw, stmt, again);
    }
    // Flows.
    for (stmt, again, msg) in [
        (
            "max-size 1MiB",
            "max-size 2GiB",
            "`max-size` is given twice in flow `publish`",
        ),
        (
            "deliver portal",
            "deliver portal",
            "`deliver` is given twice in flow `publish`",
        ),
        (
            "rate 1 per hour",
            "rate 100 per day",
            "`rate` is given twice in flow `publish`",
        ),
        (
            "reply upload",
            "reply upload",
            "`reply` is given twice in flow `publish`",
        ),
        (
            "accounts judge",
            "accounts any",
            "`accounts` is given twice in flow `publish`",
        ),
        (
            "release {",
            "release {\n    approvers 1 of clerk\n  }",
            "`release` is given twice in flow `publish`",
        ),
    ] {
        let added = if matches!(stmt, "max-size 1MiB" | "deliver portal" | "release {") {
            format!("  {again}\n")
        } else {
            format!("  {stmt}\n  {again}\n")
        };
        let src = edit(
            "    approvers 1 of judge\n  }\n}\n",
            &format!("    approvers 1 of judge\n  }}\n{added}}}\n"),
        );
        let kw = stmt.split(' ').next().unwrap();
        given_twice(&src, msg, kw, stmt, again);
    }
    // A `max-size ... for` is no second `max-size`.
    let src = edit(
        "  max-size 1MiB\n  submitters judge",
        "  max-size 1MiB\n  max-size 1KiB for pdf\n  submitters judge",
    );
    assert!(
        check("t.tp", &src).is_ok(),
        "{}",
        check("t.tp", &src).render()
    );
    // A release's approvers and redaction, and the options of a test.
    given_twice(
        &edit(
            "    approvers 1 of judge\n",
            "    approvers 2 of judge\n    approvers 1 of judge, clerk\n",
        ),
        "`approvers` is given twice in the release of flow `publish`",
        "approvers",
        "approvers 2",
        "approvers 1",
    );
    given_twice(
        &edit(
            "    approvers 1 of judge\n",
            "    redact\n    approvers 1 of judge\n    redact\n",
        ),
        "`redact` is given twice in the release of flow `publish`",
        "redact",
        "redact",
        "redact",
    );
    given_twice(
        &format!(
            "{BASE}test request inside GET /cases/1 roles judge acr otp roles clerk expect allow read\n"
        ),
        "`roles` is given twice in one test",
        "roles",
        "roles judge",
        "roles clerk",
    );
    given_twice(
        &format!("{BASE}test transfer upload kind pdf by lawyer kind ofd expect deny\n"),
        "`kind` is given twice in one test",
        "kind",
        "kind pdf",
        "kind ofd",
    );
    // What adds to its block may repeat.
    let src = edit(
        "  roles judge\n}\nroute see",
        "  path /more/**\n  methods HEAD\n  roles judge\n}\nroute see",
    );
    assert!(
        check("t.tp", &src).is_ok(),
        "{}",
        check("t.tp", &src).render()
    );
    let src = edit(
        "  acr judge, clerk >= otp\n",
        "  acr judge >= otp\n  acr clerk >= cert\n",
    );
    assert!(
        check("t.tp", &src).is_ok(),
        "{}",
        check("t.tp", &src).render()
    );
}

#[test]
fn diagnostics_on_very_long_lines() {
    // Past column 65535 miette's layout panicked; the line is now clipped around the span.
    let src = format!("{}bogus\n", " ".repeat(70_000));
    let c = check("t.tp", &src);
    let p = &c.problems()[0];
    assert_eq!((p.line, p.column), (1, 70_001));
    let r = c.render();
    assert!(r.contains("[t.tp:1:70001]"), "{r}");
    assert!(
        r.contains("…") && r.contains(" bogus") && r.contains("─┬─"),
        "{r}"
    );
    assert!(r.len() < 2_000, "{r}");
    // A long context line of wide characters beside the error, and an error after them.
    let src = format!("{BASE}# {}\nbogus\n", "秘".repeat(70_000));
    let r = check("t.tp", &src).render();
    assert!(
        r.contains("unknown declaration `bogus`") && r.len() < 4_000,
        "{r}"
    );
    let src = format!(
        "{BASE}marking secret words {}, bogus\n",
        vec!["\"秘密\""; 20_000].join(", ")
    );
    let r = check("t.tp", &src).render();
    assert!(
        r.contains("expected a quoted word") && r.contains("bogus"),
        "{r}"
    );
    assert!(r.len() < 4_000, "{r}");
    // A span that is itself a long line: its start and the end of the line are shown.
    let flows: Vec<String> = (0..20_000).map(|i| format!("f{i}")).collect();
    let src = format!(
        "{BASE}expect only flows {} from outside to nowhere\n",
        flows.join(", ")
    );
    let r = check("t.tp", &src).render();
    assert!(
        r.contains("unknown zone `nowhere`") && r.len() < 4_000,
        "{r}"
    );
}

#[test]
fn tests_name_known_zones_flows_methods_and_rules() {
    let with = |t: &str| format!("{BASE}{t}\n");
    expect(
        &with("test request insde GET /cases/1 roles judge acr otp expect deny"),
        Severity::Error,
        "unknown zone `insde`",
        "insde",
        0,
    );
    expect(
        &with("test request inside FETCH /cases/1 roles judge acr otp expect deny"),
        Severity::Error,
        "unknown method `FETCH`",
        "FETCH",
        0,
    );
    expect(
        &with("test request inside GET /cases/1 roles judge acr otp expect allow raed"),
        Severity::Error,
        "unknown route `raed`",
        "raed",
        0,
    );
    expect(
        &with("test transfer uplaod kind pdf by lawyer expect deny"),
        Severity::Error,
        "unknown flow `uplaod`",
        "uplaod",
        0,
    );
    expect(
        &with("test transfer upload kind pdf by lawyer expect allow publish"),
        Severity::Error,
        "a transfer on flow `upload` is never decided by `publish`",
        "publish",
        1,
    );
    // Known names still run.
    let src = with(
        "test request inside GET /cases/1 roles judge acr otp expect allow read\n\
         test transfer upload kind pdf by lawyer expect allow upload",
    );
    let c = check("t.tp", &src);
    assert!(c.is_ok(), "{}", c.render());
    assert_eq!(c.tests().len(), 2);
}

#[test]
fn header_counts_characters_and_a_lone_cr_breaks_no_line() {
    // The header's column counts characters, as `Problem::column` does (miette counted bytes).
    let src = format!("{BASE}marking secret words \"秘密\", \"机密\", bogus\n");
    let p = expect(&src, Severity::Error, "expected a quoted word", "bogus", 0);
    assert_eq!(p.column, 34);
    let r = check("t.tp", &src).render();
    assert!(r.contains(&format!("[t.tp:{}:34]", p.line)), "{r}");
    // A lone CR is a space to the lexer; the header and the gutter count lines as it does.
    let src = edit("  roles judge\n", "  # was\rclerk\n  roles lawyr\n");
    let p = expect(&src, Severity::Error, "unknown role `lawyr`", "lawyr", 0);
    let r = check("t.tp", &src).render();
    assert!(r.contains(&format!("[t.tp:{}:9]", p.line)), "{r}");
    assert!(r.contains(&format!("{} │   roles lawyr", p.line)), "{r}");
    assert!(
        r.contains(&format!("{} │   # was clerk", p.line - 1)),
        "{r}"
    );
    let src = format!("\r# a\r{BASE}").replace("acr lawyer >= pwd", "acr lawyer >= pwd\rbogus");
    let r = check("t.tp", &src).render();
    assert!(r.contains("carriage returns (CR) with no line feed"), "{r}");
}
