//! `tianping up --demo`, on the first run of a data folder: sample courts, and one person of
//! every role, each with a password and an enrolled TOTP authenticator, so a newcomer can sign
//! in at once.
//!
//! Court staff, partners, and a lawyer and a litigant the court has verified (`p-` subject ids)
//! are made in `private`, the directory authority (the three administrators are `idp init`'s);
//! a member of the public registers in `internet` (a `p-` id), and reaches `private` with the
//! role `public`, as every registration does until the court verifies it. Both reach the other zones by the directory's own machine flow once
//! the IdPs run (the policy's `directory-to-<zone>` and `public-registration` flows, each zone
//! receiving whom its flow names). What each person signs in with is printed and written to
//! `DIR/demo-users.txt` (0600): sign-in name, role, zone, password, TOTP secret (base32) and its
//! `otpauth://` URI. The folder's IdP stores are written before any IdP starts.
//!
//! It also issues `--hardware` client certificates (the zone CA of the zone where each signs in)
//! for `officer.zhao`, `clerk.liu`, `assistant.zhang` (private) and `bank.feng` (external) into
//! `DIR/demo-certs/<login>.{pem,key}` (keys 0600), listed in `demo-users.txt` as `# cert` lines.
//!
//! The demo's first run also binds the policy's sample case services ([`SERVICES`]) by URL in
//! `fabric.toml` (`url = "https://NAME.<zone>.<domain>:PORT/"`, `ca` the zone's trust bundle),
//! ports 7450 and on when the fabric's ports are fixed, `0` when they are 0 (the running
//! service's published address is then used); `up` runs one `tianping service` child for each.

use std::fmt::Write as _;

use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_core::{Clock as _, Component, CourtCode, DataDir, Role, SystemClock, ZoneName};
use tianping_idp::{
    Court, Directory, OsRandom, Random as _, SledStore, TotpConfig, TotpCredential, TotpSecret,
    User,
};

/// The file that holds the demo's people (and says the folder was seeded).
const PEOPLE_FILE: &str = "demo-users.txt";

/// The sample courts: the four levels, as the court domain names them.
const COURTS: [(&str, &str); 4] = [
    ("spc", "最高人民法院"),
    ("bj", "北京市高级人民法院"),
    ("bj.01", "北京市第一中级人民法院"),
    ("bj.01.03", "北京市朝阳区人民法院"),
];

/// One sample person: subject id, sign-in name, display name, role, court, zone.
struct Person {
    sub: &'static str,
    login: &'static str,
    name: &'static str,
    role: Role,
    court: Option<&'static str>,
    zone: &'static str,
}

const PEOPLE: [Person; 16] = [
    Person {
        sub: "u-0101",
        login: "judge.li",
        name: "李明",
        role: Role::Judge,
        court: Some("bj.01.03"),
        zone: "private",
    },
    Person {
        sub: "u-0102",
        login: "judge.wang",
        name: "王芳",
        role: Role::Judge,
        court: Some("bj.01.03"),
        zone: "private",
    },
    Person {
        sub: "u-0103",
        login: "assistant.zhang",
        name: "张伟",
        role: Role::Assistant,
        court: Some("bj.01.03"),
        zone: "private",
    },
    Person {
        sub: "u-0104",
        login: "clerk.liu",
        name: "刘洋",
        role: Role::Clerk,
        court: Some("bj.01.03"),
        zone: "private",
    },
    Person {
        sub: "u-0105",
        login: "officer.zhao",
        name: "赵强",
        role: Role::Enforcement,
        court: Some("bj.01.03"),
        zone: "private",
    },
    Person {
        sub: "u-0106",
        login: "police.sun",
        name: "孙磊",
        role: Role::Police,
        court: Some("bj.01.03"),
        zone: "private",
    },
    Person {
        sub: "u-0107",
        login: "assessor.zhou",
        name: "周静",
        role: Role::Assessor,
        court: Some("bj.01.03"),
        zone: "private",
    },
    Person {
        sub: "u-0108",
        login: "president.wu",
        name: "吴刚",
        role: Role::President,
        court: Some("bj.01"),
        zone: "private",
    },
    Person {
        sub: "u-0109",
        login: "chief.zheng",
        name: "郑华",
        role: Role::DivisionChief,
        court: Some("bj.01"),
        zone: "private",
    },
    Person {
        sub: "u-0110",
        login: "committee.chen",
        name: "陈敏",
        role: Role::Committee,
        court: Some("bj"),
        zone: "private",
    },
    Person {
        sub: "u-0112",
        login: "auditor.lin",
        name: "林涛",
        role: Role::Auditor,
        court: Some("bj.01"),
        zone: "private",
    },
    Person {
        sub: "u-0113",
        login: "sysadmin.qian",
        name: "钱进",
        role: Role::Sysadmin,
        court: Some("bj.01"),
        zone: "private",
    },
    Person {
        sub: "u-0111",
        login: "bank.feng",
        name: "冯丽",
        role: Role::Partner,
        court: Some("bj.01.03"),
        zone: "private",
    },
    Person {
        sub: "p-0201",
        login: "lawyer.he",
        name: "何律师",
        role: Role::Lawyer,
        court: None,
        zone: "private",
    },
    Person {
        sub: "p-0202",
        login: "litigant.ma",
        name: "马先生",
        role: Role::Litigant,
        court: None,
        zone: "private",
    },
    Person {
        sub: "p-0203",
        login: "public.lin",
        name: "林女士",
        role: Role::Public,
        court: None,
        zone: "internet",
    },
];

/// The sample case services `--demo` binds and runs, with their zones.
pub(crate) const SERVICES: [(&str, &str); 11] = [
    ("filing-intake", "private"),
    ("case-management", "private"),
    ("service-records", "private"),
    ("enforcement-desk", "private"),
    ("mobile-intake", "private"),
    ("service-inbox", "internet"),
    ("judgment-portal", "internet"),
    ("mobile-casefiles", "mobile"),
    ("bank-gateway", "external"),
    ("classified-import-desk", "classified"),
    ("classified-cases", "classified"),
];

/// The people who sign in with a `--hardware` client certificate in the scenario, and the zone
/// whose CA issues it (where they sign in): enforcement and classified imports ask `acr cert`,
/// and so does the partner's answer at the external gateway; the system administrator and the
/// security team's auditor sign in with `tianping login --cert` to administer the directory and
/// read the live logs.
const CERT_HOLDERS: [(&str, &str); 6] = [
    ("officer.zhao", "private"),
    ("clerk.liu", "private"),
    ("assistant.zhang", "private"),
    ("bank.feng", "external"),
    ("auditor.lin", "private"),
    ("sysadmin.qian", "private"),
];

/// Issues the [`CERT_HOLDERS`]' client certificates into `DIR/demo-certs/<login>.{pem,key}`
/// (the key 0600); returns the lines `demo-users.txt` lists them with.
fn issue_certificates(dir: &DataDir) -> miette::Result<String> {
    let pki = tianping_certs::Pki::open(&dir.pki()).into_diagnostic()?;
    let out_dir = dir.root().join("demo-certs");
    std::fs::create_dir_all(&out_dir).into_diagnostic()?;
    let mut text =
        String::from("# client certificates (hardware): login\tzone\tcertificate\tkey\n");
    for (login, zone) in CERT_HOLDERS {
        let Some(p) = PEOPLE.iter().find(|p| p.login == login) else {
            continue;
        };
        let zone: ZoneName = zone.parse().into_diagnostic()?;
        let mut req = tianping_certs::LeafRequest::new(tianping_certs::CertKind::Client, login);
        req.subject = Some(p.sub.parse().into_diagnostic()?);
        req.court = p.court.map(str::parse).transpose().into_diagnostic()?;
        req.roles = vec![p.role];
        req.hardware = true;
        let issued = pki
            .issue(&zone, &req, SystemClock.now())
            .into_diagnostic()
            .wrap_err_with(|| format!("the client certificate of `{login}`"))?;
        let prefix = out_dir.join(login);
        for ext in ["pem", "key"] {
            let _ = std::fs::remove_file(prefix.with_extension(ext));
        }
        let (pem, key) = tianping_certs::Pki::write_issued(&issued, &prefix).into_diagnostic()?;
        let _ = writeln!(
            text,
            "# cert\t{login}\t{zone}\t{}\t{}",
            pem.display(),
            key.display()
        );
    }
    Ok(text)
}

/// Whether the demo has not seeded the folder yet (its first run is to come).
pub(crate) fn first_run(dir: &DataDir) -> bool {
    !dir.root().join(PEOPLE_FILE).exists()
}

/// `fabric.toml`'s text with each of [`SERVICES`] the fabric binds to a delivery folder of its
/// zone bound by URL instead: port `7450 + i` when the zone's gateway has a fixed port, else 0.
pub(crate) fn bind_services(text: &str, fabric: &tianping_core::Fabric) -> String {
    let mut out = text.to_owned();
    for (i, (name, zone)) in SERVICES.iter().enumerate() {
        let Some(z) = fabric.zones().find(|z| z.zone.as_str() == *zone) else {
            continue;
        };
        let old = format!(
            "[services.{name}]\nzone = \"{zone}\"\nfolder = \"zones/{zone}/delivery/{name}\"\n"
        );
        let port = if z.gateway_port == 0 {
            0
        } else {
            7450 + u16::try_from(i).unwrap_or(0)
        };
        let new = format!(
            "[services.{name}]\nzone = \"{zone}\"\nurl = \"https://{name}.{zone}.{}:{port}/\"\n\
             ca = \"zones/{zone}/trust.pem\"\n",
            fabric.domain
        );
        out = out.replace(&old, &new);
    }
    out
}

/// A password the policy's rules take: 20 random letters and digits in four groups.
fn password(rng: &OsRandom) -> miette::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes).map_err(|e| miette!("{e}"))?;
    let mut out = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let at = usize::from(*b) % ALPHABET.len();
        out.push(char::from(*ALPHABET.get(at).unwrap_or(&b'x')));
    }
    // one of each class, whatever the draw
    out.push_str("-Aa9");
    Ok(out)
}

/// Seeds the folder's IdP stores, unless a demo already did (its people file exists); returns
/// whether it did.
pub(crate) fn seed(dir: &DataDir) -> miette::Result<bool> {
    let file = dir.root().join(PEOPLE_FILE);
    if file.exists() {
        return Ok(false);
    }
    let now = SystemClock.now();
    let rng = OsRandom::new();
    let passwords = super::super::idp::directory::passwords().map_err(|e| miette!("{e}"))?;
    let totp = TotpConfig::default();
    let mut text = String::from(
        "# tianping up --demo: who can sign in (keep this file private)\n\
         # login\trole\tzone\tpassword\ttotp-secret\totpauth-uri\n",
    );
    for zone in ["private", "internet"] {
        let zone: ZoneName = zone.parse().into_diagnostic()?;
        let path = dir.component(&zone, Component::Idp).join("store");
        let store = SledStore::open(&path)
            .into_diagnostic()
            .wrap_err_with(|| format!("opening `{}`", path.display()))?;
        let directory = Directory::new(&store);
        if zone.as_str() == "private" {
            for (code, name) in COURTS {
                let code: CourtCode = code.parse().into_diagnostic()?;
                if directory.court(&code).into_diagnostic()?.is_none() {
                    directory
                        .add_court(Court {
                            code,
                            name: name.to_owned(),
                        })
                        .into_diagnostic()?;
                }
            }
        }
        for p in PEOPLE.iter().filter(|p| p.zone == zone.as_str()) {
            let sub = p.sub.parse().into_diagnostic()?;
            let mut user = User::new(sub, p.login, p.name, now);
            user.court = p.court.map(str::parse).transpose().into_diagnostic()?;
            user.roles = vec![p.role];
            let pw = password(&rng)?;
            user.password = Some(
                passwords
                    .initial(&user.sub, &pw, now, &rng)
                    .map_err(|e| miette!("{}: {e}", p.login))?,
            );
            let secret = TotpSecret::generate(&rng).into_diagnostic()?;
            let uri = totp.otpauth_uri(&secret, "Tianping", p.login);
            let b32 = secret.to_base32();
            user.totp = Some(TotpCredential {
                secret,
                last_step: None,
            });
            directory
                .add_user(user)
                .map_err(|e| miette!("{}: {e}", p.login))?;
            let _ = writeln!(
                text,
                "{}\t{}\t{}\t{pw}\t{}\t{}",
                p.login,
                p.role.as_str(),
                zone,
                b32.expose(),
                uri.expose()
            );
        }
        // closed (and flushed) before the IdP that serves it starts
        drop(store);
    }
    let certs = issue_certificates(dir)?;
    text.push_str(&certs);
    tianping_core::write_private_file(&file, text.as_bytes())
        .into_diagnostic()
        .wrap_err_with(|| format!("writing `{}`", file.display()))?;
    println!(
        "demo: {} courts and {} people (one of every role), their passwords and TOTP secrets in `{}` (0600):",
        COURTS.len(),
        PEOPLE.len(),
        file.display()
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        if let [login, role, zone, pw, secret, ..] = cols.as_slice() {
            println!("  {login:<16} {role:<15} {zone:<9} password {pw}  TOTP {secret}");
        }
    }
    for line in certs.lines().filter_map(|l| l.strip_prefix("# cert\t")) {
        let cols: Vec<&str> = line.split('\t').collect();
        if let [login, zone, pem, key] = cols.as_slice() {
            println!("  {login:<16} client certificate of {zone} (hardware): {pem} {key}");
        }
    }
    Ok(true)
}
