//! `tianping policy`: check, test, explain, diff, graph and replay through the real binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn default_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.tp")
}

fn tianping(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_tianping"))
        .arg("--data")
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_default_policy_exits_zero() {
    let p = default_policy();
    let out = tianping(&["policy", "check", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok, 0 error(s), 0 warning(s); sha256 "));
}

/// A reader that closed its end (`| head`) ends the command quietly with 141, as a closed
/// pipe ends `cat`; it panicked with 101 ("failed printing to stdout: Broken pipe").
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let p = default_policy();
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_tianping"))
        .arg("--data")
        .arg(dir.path())
        .args(["policy", "test", p.to_str().unwrap()])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

/// With less memory for the filters than the default policy's limits assume, `policy check`
/// warns at each `max-size` whose payload a filter could not hold, names the kind and the
/// memory it needs, and still exits zero (a warning, not an error).
#[test]
fn check_warns_where_a_filter_would_need_more_memory_than_the_node_gives() {
    let p = default_policy();
    let policy = std::fs::read_to_string(&p).unwrap();
    let out = tianping(&[
        "policy",
        "check",
        "--filter-memory",
        "1GiB",
        p.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    // online-filing: a 50 MiB PDF needs 3.5 GiB, a 500 MiB video 1.5 GiB.
    let filing = line_of(&policy, "  max-size 50MiB for pdf");
    assert!(
        err.contains("flow `online-filing`: a `pdf` of up to 50 MiB needs up to 3.5 GiB of memory"),
        "{err}"
    );
    assert!(err.contains(&format!("default.tp:{filing}:")), "{err}");
    assert!(
        err.contains("flow `online-filing`: a `mp4` of up to 500 MiB needs up to 1.5 GiB"),
        "{err}"
    );
    // A receipt's filter streams: never warned about.
    assert!(!err.contains("`receipt`"), "{err}");
    let warnings = err.matches("needs up to").count();
    assert!(
        text(&out.stdout).contains(&format!("ok, 0 error(s), {warnings} warning(s)")),
        "{}",
        text(&out.stdout)
    );
    let bad = tianping(&[
        "policy",
        "check",
        "--filter-memory",
        "lots",
        p.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("`lots` is not a size"),
        "{}",
        text(&bad.stderr)
    );
}

/// A data folder made by `tianping init`, its `fabric.toml` rewritten by `edit`, and that path.
fn init_fabric(edit: impl FnOnce(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_tianping"))
        .arg("--data")
        .arg(&data)
        .arg("init")
        .env_remove("TIANPING_DATA")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fabric = data.join("fabric.toml");
    let t = std::fs::read_to_string(&fabric).unwrap();
    std::fs::write(&fabric, edit(t)).unwrap();
    (dir, fabric)
}

/// 1-based line of the first line of `text` starting with `start`.
fn line_of(text: &str, start: &str) -> usize {
    text.lines().position(|l| l.starts_with(start)).unwrap() + 1
}

/// `policy check --fabric FABRIC POLICY` refused, with `want` in the message at `file:line:col`.
fn refused_at(fabric: &Path, policy: &Path, want: &str, place: &str) {
    let out = tianping(&[
        "policy",
        "check",
        "--fabric",
        fabric.to_str().unwrap(),
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(want), "{want} in {err}");
    assert!(err.contains(place), "{place} in {err}");
    assert!(
        text(&out.stdout).contains("1 binding mismatch(es)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_with_inits_fabric_passes() {
    let (_dir, fabric) = init_fabric(|t| t);
    let p = default_policy();
    let out = tianping(&[
        "policy",
        "check",
        "--fabric",
        fabric.to_str().unwrap(),
        p.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok, 0 error(s), 0 warning(s)"));
}

#[test]
fn check_with_fabric_refuses_a_service_without_binding() {
    let (dir, fabric) = init_fabric(|t| t);
    let policy = dir.path().join("policy.tp");
    let src = std::fs::read_to_string(default_policy()).unwrap().replacen(
        "service filing-intake in private\n",
        "service filing-intake in private\nservice filing-archive in private\n",
        1,
    );
    std::fs::write(&policy, &src).unwrap();
    let line = line_of(&src, "service filing-archive ");
    refused_at(
        &fabric,
        &policy,
        "service `filing-archive` of zone `private` has no binding in the fabric",
        &format!("policy.tp:{line}:9]"),
    );
}

#[test]
fn check_with_fabric_refuses_a_binding_of_an_unknown_service() {
    let (_dir, fabric) = init_fabric(|t| {
        t + "[services.ghost-archive]\nzone = \"private\"\nfolder = \"zones/private/delivery/ghost\"\n"
    });
    let line = line_of(
        &std::fs::read_to_string(&fabric).unwrap(),
        "[services.ghost-archive]",
    );
    refused_at(
        &fabric,
        &default_policy(),
        "the fabric binds service `ghost-archive`, which the policy does not declare",
        &format!("fabric.toml:{line}:"),
    );
}

#[test]
fn check_with_fabric_refuses_a_binding_in_the_wrong_zone() {
    let (_dir, fabric) = init_fabric(|t| {
        t.replacen(
            "[services.filing-intake]\nzone = \"private\"",
            "[services.filing-intake]\nzone = \"internet\"",
            1,
        )
    });
    let src = std::fs::read_to_string(default_policy()).unwrap();
    let line = line_of(&src, "service filing-intake ");
    refused_at(
        &fabric,
        &default_policy(),
        "service `filing-intake` is in zone `private` but the fabric binds it in zone `internet`",
        &format!("default.tp:{line}:9]"),
    );
}

#[test]
fn broken_policy_exits_nonzero_with_the_line_underlined() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.tp");
    let src = std::fs::read_to_string(default_policy()).unwrap().replacen(
        "  deliver filing-intake\n",
        "  deliver filing-intak\n",
        1,
    );
    std::fs::write(&bad, &src).unwrap();
    let out = tianping(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let line = src
        .lines()
        .position(|l| l == "  deliver filing-intak")
        .unwrap()
        + 1;
    assert!(err.contains("unknown service `filing-intak`"), "{err}");
    assert!(err.contains(&format!("bad.tp:{line}:11]")), "{err}");
    assert!(
        err.contains(&format!("{line} │   deliver filing-intak")),
        "{err}"
    );
    assert!(err.contains("·           ──────┬─────"), "{err}");
    assert!(text(&out.stdout).contains("1 error(s)"));
}

#[test]
fn test_runs_the_policys_tests() {
    let p = default_policy();
    let out = tianping(&["policy", "test", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let o = text(&out.stdout);
    assert!(o.contains(" passed, 0 failed, "), "{o}");
    assert!(o.contains("ok    line "));
}

#[test]
fn explain_prints_one_json_object() {
    let p = default_policy();
    let p = p.to_str().unwrap();
    let out = tianping(&[
        "policy",
        "explain",
        p,
        "--zone",
        "private",
        "--method",
        "GET",
        "--path",
        "/courts/bj.01.03/cases/7",
        "--roles",
        "judge",
        "--court",
        "bj.01",
        "--acr",
        "otp",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["rule"], "case-read");
    assert_eq!(v["service"], "case-management");
    assert_eq!(v["policy"].as_str().unwrap().len(), 64);

    let out = tianping(&[
        "policy",
        "explain",
        p,
        "--flow",
        "judgment-publication",
        "--roles",
        "clerk",
        "--kind",
        "pdf",
        "--size",
        "1000",
        "--approvals",
        "judge,judge",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], "judgment-publication");
    assert_eq!(v["reason"], "the release needs redacted content");
}

#[test]
fn diff_shows_changes_and_reachability() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.tp");
    let new = dir.path().join("new.tp");
    let base = "levels confidentiality c\nlevels integrity i\nzone a {\n  confidentiality c\n  integrity i\n  acr judge >= pwd\n}\nzone b {\n  confidentiality c\n  integrity i\n}\nservice s in b\n";
    std::fs::write(&old, base).unwrap();
    std::fs::write(
        &new,
        format!("{base}flow f a -> b {{\n  kinds pdf\n  max-size 1MiB\n  submitters judge\n  deliver s\n}}\n"),
    )
    .unwrap();
    let out = tianping(&[
        "policy",
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.contains("+ flow f a -> b: kinds pdf"), "{o}");
    assert!(o.contains("+ reach a -> b"), "{o}");
    let out = tianping(&[
        "policy",
        "diff",
        new.to_str().unwrap(),
        old.to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reach_removed"][0], "a -> b");
}

#[test]
fn graph_dot() {
    let p = default_policy();
    let out = tianping(&["policy", "graph", p.to_str().unwrap(), "--format", "dot"]);
    assert!(out.status.success());
    let o = text(&out.stdout);
    assert!(o.starts_with("digraph policy {"));
    assert!(o.contains("\"private\" -> \"classified\""));
    assert!(o.contains("sealed"));
    // svg needs Graphviz: either it renders, or the command says it is missing.
    let out = tianping(&["policy", "graph", p.to_str().unwrap(), "--format", "svg"]);
    if out.status.success() {
        assert!(text(&out.stdout).contains("<svg"));
    } else {
        assert!(text(&out.stderr).contains("Graphviz `dot` is not installed"));
    }
}

#[test]
fn replay_lists_flips() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in.jsonl");
    let lines = [
        r#"{"type":"request","zone":"internet","method":"POST","path":"/filings","subject":{"roles":["lawyer"]},"recorded":{"decision":"allow","rule":"file-case"}}"#,
        r#"{"type":"request","zone":"internet","method":"POST","path":"/filings","subject":{"roles":["public"]},"recorded":{"decision":"allow"}}"#,
        r#"{"type":"transfer","flow":"online-filing","transfer":{"kind":"pdf","size":1000,"submitter":{"roles":["lawyer"]}},"recorded":{"decision":"deny"}}"#,
    ];
    std::fs::write(&inputs, lines.join("\n")).unwrap();
    let p = default_policy();
    let out = tianping(&[
        "policy",
        "replay",
        p.to_str().unwrap(),
        "--inputs",
        inputs.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(
        o.contains("flip #1: request internet POST /filings: was allow, now deny"),
        "{o}"
    );
    assert!(
        o.contains("flip #2: transfer online-filing pdf 1000 bytes: was deny, now allow"),
        "{o}"
    );
    assert!(
        o.contains("3 input(s): 1 same, 2 flipped (1 allow->deny, 1 deny->allow, 0 retargeted)"),
        "{o}"
    );
    // A bad line is refused with its number.
    std::fs::write(&inputs, format!("{}\nnot json\n", lines[0])).unwrap();
    let out = tianping(&[
        "policy",
        "replay",
        p.to_str().unwrap(),
        "--inputs",
        inputs.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("line 2: not a decision input"));
}

#[test]
fn check_reports_a_json_kind_without_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.tp");
    std::fs::copy(default_policy(), &policy).unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    let shipped = default_policy().parent().unwrap().join("schemas");
    for name in [
        "assistance-notice",
        "case-file",
        "casework-form",
        "inquiry-result",
    ] {
        let f = format!("{name}.json");
        std::fs::copy(shipped.join(&f), schemas.join(&f)).unwrap();
    }
    let out = tianping(&["policy", "check", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("flow `online-filing` carries `json(filing-form)`"),
        "{err}"
    );
    assert!(err.contains("filing-form.json"), "{err}");
    assert!(text(&out.stdout).contains("1 schema problem(s)"));

    // A schema that would need a network fetch is refused too.
    std::fs::write(
        schemas.join("filing-form.json"),
        r#"{"$ref": "https://schemas.example/filing-form.json"}"#,
    )
    .unwrap();
    let out = tianping(&["policy", "check", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("schema `filing-form` cannot be used"),
        "{}",
        text(&out.stderr)
    );

    std::fs::copy(
        shipped.join("filing-form.json"),
        schemas.join("filing-form.json"),
    )
    .unwrap();
    let out = tianping(&["policy", "check", policy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
