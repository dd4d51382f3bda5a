//! `tianping policy publish` on a fabric `up` runs (port-0 addresses): a clerk's token is
//! refused (`secadmin` required) and nothing changes; a policy that does not check, or that
//! unseals `classified`, is refused before anything changes; a `secadmin` signed in with a
//! client certificate and TOTP publishes: the authority's and `private`'s copies are replaced
//! and the policy crosses the one-way links to every other zone, `classified` included, where
//! each receiver installs it. `certs revoke` sends the new CRL the same way.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

#[path = "common/exchange.rs"]
mod exchange;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use exchange::{Daemon, tianping};
use tianping_core::{Component, DataDir, UnixTime};
use tianping_idp::{Directory, SledStore, TotpConfig, TotpCredential, TotpSecret};

const STRONG: &str = "Court-Passw0rd-2026";

fn run(data: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = tianping(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // miette wraps long lines behind a `│`: compare the words alone
    err.split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ")
}

/// A person of the test: subject id, sign-in name, role, TOTP secret.
struct Person {
    sub: &'static str,
    login: &'static str,
    role: &'static str,
    secret: [u8; 20],
}

const SEC: Person = Person {
    sub: "c-0001",
    login: "sec.admin",
    role: "secadmin",
    secret: [2; 20],
};
const CLERK: Person = Person {
    sub: "k-0001",
    login: "clerk.wang",
    role: "clerk",
    secret: [4; 20],
};

fn totp(p: &Person) -> String {
    let cfg = TotpConfig::default();
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    cfg.code_at(&TotpSecret::from_bytes(p.secret.to_vec()), cfg.step_at(now))
}

/// `private`'s IdP initialised with a court, the two people (password, TOTP enrolled) and a
/// client certificate of the zone CA for each, before `up` runs.
fn people(data: &Path) {
    ok(&run(data, &["idp", "init", "--zone", "private"], ""));
    ok(&run(
        data,
        &[
            "idp",
            "court",
            "add",
            "bj",
            "--name",
            "北京市高级人民法院",
            "--zone",
            "private",
        ],
        "",
    ));
    for p in [&SEC, &CLERK] {
        ok(&run(
            data,
            &[
                "idp",
                "user",
                "add",
                "--zone",
                "private",
                "--sub",
                p.sub,
                "--login",
                p.login,
                "--name",
                p.login,
                "--court",
                "bj",
                "--role",
                p.role,
                "--password-stdin",
            ],
            &format!("{STRONG}\n"),
        ));
    }
    {
        let store = SledStore::open(
            &DataDir::new(data)
                .component(&"private".parse().unwrap(), Component::Idp)
                .join("store"),
        )
        .unwrap();
        let dir = Directory::new(&store);
        for p in [&SEC, &CLERK] {
            dir.update_user(&p.sub.parse().unwrap(), &mut |u| {
                u.totp = Some(TotpCredential {
                    secret: TotpSecret::from_bytes(p.secret.to_vec()),
                    last_step: None,
                });
            })
            .unwrap();
        }
        drop(store);
    }
    for p in [&SEC, &CLERK] {
        let out = data.join(p.login);
        ok(&run(
            data,
            &[
                "certs",
                "issue",
                "--zone",
                "private",
                "--kind",
                "client",
                "--name",
                p.login,
                "--subject-id",
                p.sub,
                "--court",
                "bj",
                "--role",
                p.role,
                "--out",
                out.to_str().unwrap(),
            ],
            "",
        ));
    }
}

fn login(data: &Path, p: &Person) {
    let pem = data.join(format!("{}.pem", p.login));
    let key = data.join(format!("{}.key", p.login));
    ok(&run(
        data,
        &[
            "login",
            "--zone",
            "private",
            "--cert",
            pem.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--totp",
            &totp(p),
        ],
        "",
    ));
}

/// Waits among `up`'s lines for `zone`'s receiver to say `transfer` was delivered.
fn delivered(up: &mut Daemon, zone: &str, transfer: &str, by: Instant) -> String {
    let want = format!("{zone}/exchange-receiver: transfer {transfer} delivered to ");
    loop {
        let line = up.expect_line(by);
        if line.starts_with(&want) {
            return line;
        }
    }
}

/// `(zone, transfer)` of each `sent to` line `publish` printed.
fn sent(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("sent to `")?;
            let (zone, rest) = rest.split_once('`')?;
            let id = rest.rsplit_once("transfer ")?.1;
            Some((zone.to_owned(), id.trim().to_owned()))
        })
        .collect()
}

#[test]
fn a_secadmin_publishes_a_policy_to_every_zone_and_a_revocation_follows() {
    let s = exchange::setup("127.0.0.1:0");
    let data = &s.data;
    people(data);
    let by = Instant::now() + Duration::from_secs(240);
    let mut up = {
        let mut cmd = tianping(data);
        cmd.arg("up").env("TIANPING_AUDIT_SHIP_EVERY", "0");
        Daemon::spawn("up", cmd)
    };
    loop {
        if up.expect_line(by) == "ready" {
            break;
        }
    }
    let installed = std::fs::read_to_string(data.join("policy.tp")).unwrap();
    let zone_copy =
        |z: &str| std::fs::read_to_string(data.join("zones").join(z).join("policy.tp")).unwrap();
    let before_classified = zone_copy("classified");
    let new = installed.replacen("max-size 256MiB", "max-size 128MiB", 1);
    assert_ne!(new, installed);
    let new_file = data.join("new-policy.tp");
    std::fs::write(&new_file, &new).unwrap();
    let publish = |file: &Path| run(data, &["policy", "publish", file.to_str().unwrap()], "");

    // without a token, and with a clerk's: refused, nothing changed
    let err = refused(&publish(&new_file));
    assert!(err.contains("tianping login --zone private"), "{err}");
    login(data, &CLERK);
    let err = refused(&publish(&new_file));
    assert!(err.contains("role `secadmin` required"), "{err}");
    assert!(err.contains("nothing was published"), "{err}");
    assert_eq!(
        std::fs::read_to_string(data.join("policy.tp")).unwrap(),
        installed
    );

    login(data, &SEC);
    // a policy that does not check, and one that unseals `classified`: refused first
    let broken = data.join("broken.tp");
    std::fs::write(&broken, "zone internet {\n  confidentiality nowhere\n}\n").unwrap();
    let err = refused(&publish(&broken));
    assert!(
        err.contains("does not pass `tianping policy check`"),
        "{err}"
    );
    let unsealing = data.join("unsealing.tp");
    std::fs::write(&unsealing, installed.replacen("  sealed\n", "", 1)).unwrap();
    let err = refused(&publish(&unsealing));
    assert!(err.contains("unseals zone `classified`"), "{err}");
    assert_eq!(
        std::fs::read_to_string(data.join("policy.tp")).unwrap(),
        installed
    );
    assert_eq!(zone_copy("classified"), before_classified);

    // the secadmin publishes: in force in private at once, then delivered everywhere
    let out = ok(&publish(&new_file));
    assert!(out.contains("published by `c-0001` (secadmin)"), "{out}");
    assert_eq!(
        std::fs::read_to_string(data.join("policy.tp")).unwrap(),
        new
    );
    assert_eq!(zone_copy("private"), new);
    let transfers = sent(&out);
    let zones: Vec<&str> = transfers.iter().map(|(z, _)| z.as_str()).collect();
    for z in ["internet", "external", "mobile", "classified"] {
        assert!(zones.contains(&z), "{out}");
    }
    for (zone, id) in &transfers {
        let line = delivered(&mut up, zone, id, by);
        assert!(line.contains(&format!("{zone}-trust-store")), "{line}");
        assert_eq!(zone_copy(zone), new, "{zone}");
    }

    // a revocation: the CRL follows on the same flows, labelled with the CA's zone
    let out = ok(&run(
        data,
        &[
            "certs",
            "revoke",
            "--cert",
            data.join("clerk.wang.pem").to_str().unwrap(),
            "--reason",
            "key-compromise",
        ],
        "",
    ));
    let crl = std::fs::read(data.join("pki/zones/private/crl.pem")).unwrap();
    let transfers = sent(&out);
    assert!(transfers.iter().any(|(z, _)| z == "classified"), "{out}");
    for (zone, id) in &transfers {
        delivered(&mut up, zone, id, by);
        let installed =
            std::fs::read(data.join("zones").join(zone).join("crl/private.pem")).unwrap();
        assert_eq!(installed, crl, "{zone}");
    }

    let ok_int = std::process::Command::new("kill")
        .args(["-INT", &up.pid().to_string()])
        .status()
        .unwrap();
    assert!(ok_int.success());
    loop {
        if up.expect_line(by) == "stopped" {
            break;
        }
    }
    // the publication is audited by the private IdP under the secadmin's subject id, with the
    // policy before and after; the clerk's attempt is not an event of it
    let out = ok(&run(
        data,
        &[
            "audit",
            "search",
            "--action",
            "policy.publish",
            "--log",
            data.join("zones/private/idp/audit").to_str().unwrap(),
        ],
        "",
    ));
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .collect();
    assert_eq!(events.len(), 1, "{out}");
    assert_eq!(events[0]["actor"], "c-0001");
    let reason: serde_json::Value =
        serde_json::from_str(events[0]["reason"].as_str().unwrap()).unwrap();
    assert_ne!(
        reason["before"]["policy"], reason["after"]["policy"],
        "{reason}"
    );
}
