use std::path::Path;

use super::*;

fn zone(s: &str) -> ZoneName {
    s.parse().unwrap()
}

/// A few services of the default policy: one bound to a folder, the rest to components.
fn services() -> Vec<(String, ZoneName)> {
    [
        ("filing-intake", "private"),
        ("judgment-site", "internet"),
        ("directory-authority", "private"),
        ("audit-store", "private"),
        ("internet-trust-store", "internet"),
        ("receipt-store", "internet"),
    ]
    .into_iter()
    .map(|(s, z)| (s.to_owned(), zone(z)))
    .collect()
}

fn default_text() -> String {
    Fabric::default_text(&services(), &[zone("classified")])
}

#[test]
fn default_fabric_loads() {
    let f = Fabric::parse(&default_text()).unwrap();
    assert_eq!(f.zones().count(), 5);
    // every ordered pair but the four out of the sealed zone
    assert_eq!(f.links().len(), 16);
    assert_eq!(f.links_from(&zone("classified")).count(), 0);
    let (internet, private) = (zone("internet"), zone("private"));
    let z = f.zone(&internet).unwrap();
    assert_eq!(z.gateway_host, "gw.internet.tianping.localhost");
    assert_eq!(z.components().count(), 4);
    let p = f.zone(&private).unwrap();
    assert!(p.runs(Component::AuditStore));
    assert_eq!(p.components().next(), Some(Component::AuditStore));
    assert_eq!(p.admin_ports[&Component::AuditStore], 7436);
    assert_eq!(
        f.resolve("idp.private.tianping.localhost").unwrap().port(),
        7431
    );
    let link = f.link(&internet, &private).unwrap();
    assert_eq!((link.repair_percent, link.mtu), (5, 1500));
    assert_eq!(link.block_size, default_block_size(1500));
    assert!(f.text()[link.span().offset()..].starts_with("[[links]]"));
    let s = f.services();
    assert!(matches!(
        s["judgment-site"].target,
        ServiceTarget::Folder(ref p) if p == Path::new("zones/internet/delivery/judgment-site")
    ));
    let bound = [
        ("directory-authority", Component::Idp),
        ("audit-store", Component::AuditStore),
        ("internet-trust-store", Component::ExchangeReceiver),
        ("receipt-store", Component::ExchangeReceiver),
    ];
    for (name, c) in bound {
        assert_eq!(s[name].target, ServiceTarget::Component(c), "{name}");
    }
    let name_at = &f.text()[s["audit-store"].span().offset()..];
    assert!(name_at.starts_with("audit-store]"), "{name_at:.20}");
}

fn problem(text: &str) -> FabricProblem {
    match Fabric::parse(text).unwrap_err() {
        FabricError::Invalid(p) => *p,
        other => panic!("{other}"),
    }
}

#[test]
fn unknown_key_points_at_its_line() {
    let text = default_text().replacen("idp = 7401", "idp = 7401\ncolour = \"red\"", 1);
    let expected = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    let p = problem(&text);
    assert_eq!((p.line, p.column), (expected, 1));
    assert!(p.message.contains("colour"), "{}", p.message);
}

/// Each case: replace `from` by `to` once, expect `want` in the message, the span on a line of
/// `to` (or the named header), and `label` under it.
fn assert_refused(cases: &[(&str, &str, &str)]) {
    let base = default_text();
    for (from, to, want) in cases {
        let text = base.replacen(from, to, 1);
        assert_ne!(text, base, "{from}");
        let p = problem(&text);
        assert!(
            p.message.contains(want),
            "{} should contain {want}",
            p.message
        );
        let bad_line = text.lines().nth(p.line - 1).unwrap();
        assert!(
            to.lines().any(|l| bad_line.contains(l))
                || bad_line.starts_with("[services")
                || bad_line.starts_with("from"),
            "line {} `{bad_line}` for {to}",
            p.line
        );
        let spanned = &text[p.span.offset()..p.span.offset() + p.span.len()];
        assert!(
            !spanned.is_empty() || p.span.offset() == text.len(),
            "{want}"
        );
        let shown = Fabric::parse(&text).unwrap_err().render();
        assert!(
            shown.contains(&format!("fabric.toml:{}:{}", p.line, p.column)),
            "{shown}"
        );
        assert!(shown.contains(&p.label), "{shown}");
    }
}

#[test]
fn bad_values_point_at_their_line() {
    assert_refused(&[
        (
            "address = \"127.0.0.1:7600\"",
            "address = \"127.0.0.1:7601\"",
            "used twice",
        ),
        ("to = \"private\"", "to = \"Private\"", "not a zone name"),
        ("to = \"private\"", "to = \"moon\"", "unknown zone `moon`"),
        ("rate-mbps = 200", "rate-mbps = 0", "outside"),
        ("idp = 7401", "idp = 7400", "already used"),
        (
            "folder = \"zones/private/delivery/filing-intake\"",
            "folder = \"../etc\"",
            "inside the data folder",
        ),
        (
            "folder = \"zones/private/delivery/filing-intake\"",
            "url = \"http://x\"\nca = \"a.pem\"",
            "not an https URL",
        ),
    ]);
}

#[test]
fn link_settings_are_checked_with_their_reasons() {
    assert_refused(&[
        (
            "repair = 5",
            "repair = 101",
            "repair 101 is outside 0..=100",
        ),
        ("repair = 5", "repair = -1", "outside"),
        ("mtu = 1500", "mtu = 575", "mtu 575 is outside 576..=65535"),
        ("mtu = 1500", "mtu = 65536", "outside"),
        (
            "mtu = 1500",
            "mtu = 1500\nblock-size = 1000",
            "block-size 1000 is outside",
        ),
        (
            "mtu = 1500",
            "mtu = 65535\nblock-size = 67108865",
            "outside",
        ),
        (
            "mtu = 1500",
            "mtu = 1500\nwindow = 3",
            "unknown field `window`",
        ),
    ]);
    let text = default_text().replacen("mtu = 1500", "mtu = 576\nblock-size = 7424", 1);
    let f = Fabric::parse(&text).unwrap();
    let l = &f.links()[0];
    assert_eq!(
        (l.mtu, l.block_size, l.symbol_size(), l.block_symbols()),
        (576, 7424, 464, 16)
    );
    let p = problem(&default_text().replacen("repair = 5", "repair = 101", 1));
    assert!(p.help.unwrap().contains("only adds load"));
}

#[test]
fn component_bindings_are_checked() {
    let audit = "zone = \"private\"\ncomponent = \"audit-store\"";
    assert_refused(&[
        (
            audit,
            "zone = \"private\"\ncomponent = \"gateway\"",
            "serves no service",
        ),
        (
            audit,
            "zone = \"private\"\ncomponent = \"moon\"",
            "`moon` is not a component",
        ),
        (
            audit,
            "zone = \"internet\"\ncomponent = \"audit-store\"",
            "runs no audit-store",
        ),
        (
            audit,
            "zone = \"private\"\ncomponent = \"idp\"\nfolder = \"x\"",
            "give `url`",
        ),
    ]);
    // the audit store's admin port takes it out of private: its binding then fails
    let text = default_text().replacen(", audit-store = 7436", "", 1);
    assert!(
        problem(&text)
            .message
            .contains("zone `private` runs no audit-store")
    );
}

#[test]
fn ports_may_be_zero_and_then_never_collide() {
    let text = default_text()
        .replace("\ngateway = 74", "\ngateway = 0 # ")
        .replace("address = \"127.0.0.1:76", "address = \"127.0.0.1:0\" # ");
    let f = Fabric::parse(&text).unwrap();
    assert!(f.zones().all(|z| z.gateway_port == 0));
    assert!(f.links().iter().all(|l| l.address.port() == 0));
}

#[test]
fn problems_made_later_point_into_the_file() {
    let f = Fabric::parse(&default_text()).unwrap();
    let binding = &f.services()["audit-store"];
    let err = f.problem_at(binding.span(), "not in the policy", "unknown service", None);
    let p = err.problem().unwrap();
    assert!(
        f.text()
            .lines()
            .nth(p.line - 1)
            .unwrap()
            .starts_with("[services.audit-store]")
    );
    assert!(err.render().contains("unknown service"));
}

#[test]
fn link_ids_follow_the_zones_not_the_order() {
    let text = default_text();
    let f = Fabric::parse(&text).unwrap();
    // The same links, the [[links]] tables in the opposite order.
    let (head, rest) = text.split_once("[[links]]").unwrap();
    let (links, tail) = rest.split_once("[services.").unwrap();
    let mut tables: Vec<&str> = links.split("[[links]]").collect();
    tables.reverse();
    let reordered = format!(
        "{head}[[links]]{}[services.{tail}",
        tables.join("[[links]]")
    );
    let g = Fabric::parse(&reordered).unwrap();
    assert_ne!(f.links()[0].from, g.links()[0].from);
    for l in f.links() {
        let m = g.link(&l.from, &l.to).unwrap();
        assert_eq!(l.id, m.id);
        assert_eq!(l.id, derived_link_id(&l.from, &l.to));
        assert_eq!(l.retain, DEFAULT_RETAIN);
    }
    let mut ids: Vec<u32> = f.links().iter().map(|l| l.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), f.links().len());
    // An explicit id and a retention.
    let text = default_text().replacen("mtu = 1500", "mtu = 1500\nid = 7\nretain = \"36h\"", 1);
    let f = Fabric::parse(&text).unwrap();
    let l = &f.links()[0];
    assert_eq!((l.id, l.retain.as_secs()), (7, 36 * 3600));
}

#[test]
fn link_ids_and_retention_are_checked() {
    let twice = default_text().replacen("mtu = 1500", "mtu = 1500\nid = 9", 2);
    let p = problem(&twice);
    assert!(
        p.message.contains("link id 9 is used twice"),
        "{}",
        p.message
    );
    assert_refused(&[
        (
            "mtu = 1500",
            "mtu = 1500\nid = 0",
            "id 0 is outside 1..=2147483647",
        ),
        (
            "mtu = 1500",
            "mtu = 1500\nid = 2147483648",
            "id 2147483648 is outside",
        ),
        (
            "mtu = 1500",
            "mtu = 1500\nretain = \"2w\"",
            "retain `2w` is not a retention",
        ),
        (
            "mtu = 1500",
            "mtu = 1500\nretain = \"31d\"",
            "not a retention",
        ),
    ]);
}

#[test]
fn a_zone_may_set_its_gateway_s_per_subject_limits() {
    let f = Fabric::parse(&default_text()).unwrap();
    let z = f.zone(&zone("internet")).unwrap();
    assert_eq!(
        (z.subject_rate, z.subject_burst),
        (None, None),
        "absent: the defaults"
    );
    let text = default_text().replacen(
        "idp = 7401",
        "idp = 7401\nsubject-rate = 2\nsubject-burst = 3",
        1,
    );
    let f = Fabric::parse(&text).unwrap();
    let z = f.zone(&zone("internet")).unwrap();
    assert_eq!((z.subject_rate, z.subject_burst), (Some(2), Some(3)));
    assert_refused(&[
        (
            "idp = 7401",
            "idp = 7401\nsubject-rate = 0",
            "subject-rate 0 is outside 1..=100000",
        ),
        (
            "idp = 7401",
            "idp = 7401\nsubject-burst = 100001",
            "outside",
        ),
    ]);
}
