//! `tianping up --netns` (root): every zone in a network namespace of its own, as the court's
//! five networks are five networks.
//!
//! - Zone *i* (in `fabric.toml`'s order) runs in namespace `tp-<zone>`, at `10.77.<i>.2`, joined
//!   to the host by a veth pair (`tph-<zone>` on the host at `10.77.<i>.1`), so its gateway and
//!   IdP (and every admin listener) are reachable from the host, and from no other zone.
//! - Link *j* (from A to B) is a veth pair of its own between A's and B's namespaces: A's end at
//!   `10.78.<j>.1`, B's at `10.78.<j>.2`, where B's receiver listens. B's end has ARP and IPv6
//!   off and an nftables rule dropping everything B would send out of it; A knows B's MAC from a
//!   static neighbour entry. So nothing can travel back up a link.
//! - The folder's `fabric.toml` is rewritten to those addresses on the first `--netns` run (the
//!   ports stay); a folder run with `--netns` once keeps those addresses.
//! - Every child is started as `ip netns exec tp-<zone> tianping …` (which execs, so the pid is
//!   the component's). The control sockets are files in `run/`, reached across namespaces.
//! - The namespaces (and their veths) are deleted when `up` stops, and any left by an earlier
//!   run are deleted before they are made again.

use std::process::Command;

use miette::{IntoDiagnostic, miette};
use tianping_core::{Fabric, ZoneName};

/// The namespace of a zone.
pub(crate) fn zone_ns(zone: &ZoneName) -> String {
    format!("tp-{zone}")
}

/// The `ip netns exec` prefix that runs a command in `zone`'s namespace.
pub(crate) fn exec_prefix(zone: &ZoneName) -> Vec<String> {
    vec!["ip".into(), "netns".into(), "exec".into(), zone_ns(zone)]
}

/// The zone's address in its namespace, by its index in `fabric.toml`.
fn zone_addr(i: usize) -> String {
    format!("10.77.{i}.2")
}

/// The receiving end of link `j`.
fn link_addr(j: usize) -> String {
    format!("10.78.{j}.2")
}

fn run(args: &[&str]) -> miette::Result<String> {
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| miette!("an empty command"))?;
    let out = Command::new(program)
        .args(rest)
        .output()
        .into_diagnostic()
        .map_err(|e| miette!("`{}`: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(miette!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn in_ns(ns: &str, args: &[&str]) -> miette::Result<String> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

/// `fabric.toml`'s text with each zone's `address` and each link's host moved to the
/// namespaces' addresses (ports kept); unchanged when they are already there.
pub(crate) fn rewrite_fabric(text: &str, fabric: &Fabric) -> String {
    let zones: Vec<String> = fabric.zones().map(|z| z.zone.to_string()).collect();
    let mut out = String::with_capacity(text.len());
    let mut section = String::new();
    let mut link = 0usize;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.to_owned();
            if section == "[[links]]" {
                link += 1;
            }
        }
        let key = trimmed.split('=').next().map(str::trim).unwrap_or_default();
        let replaced = if key == "address" {
            if let Some(zone) = section
                .strip_prefix("[zones.")
                .and_then(|s| s.strip_suffix(']'))
                && let Some(i) = zones.iter().position(|z| z == zone)
            {
                Some(format!("address = \"{}\"", zone_addr(i)))
            } else if section == "[[links]]" {
                let port = trimmed
                    .rsplit(':')
                    .next()
                    .map(|p| p.trim_end_matches('"').trim())
                    .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
                    .unwrap_or("0");
                Some(format!(
                    "address = \"{}:{port}\"",
                    link_addr(link.saturating_sub(1))
                ))
            } else {
                None
            }
        } else {
            None
        };
        out.push_str(replaced.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The namespaces and veths of a running `up --netns`, deleted when dropped.
pub(crate) struct Namespaces {
    names: Vec<String>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Makes every zone's namespace, its host veth, and each link's one-way veth, for `fabric`
/// (already rewritten to the namespaces' addresses). Root only.
pub(crate) fn setup(fabric: &Fabric) -> miette::Result<Namespaces> {
    if rustix::process::geteuid().as_raw() != 0 {
        return Err(miette!(
            "`up --netns` needs root (it makes network namespaces and nftables rules)"
        ));
    }
    for tool in ["ip", "nft"] {
        if run(&["sh", "-c", &format!("command -v {tool}")]).is_err() {
            return Err(miette!(
                "`up --netns` needs `{tool}` (Debian: iproute2, nftables)"
            ));
        }
    }
    let zones: Vec<ZoneName> = fabric.zones().map(|z| z.zone.clone()).collect();
    let mut made = Namespaces { names: Vec::new() };
    for (i, z) in zones.iter().enumerate() {
        let ns = zone_ns(z);
        let _ = run(&["ip", "netns", "del", &ns]);
        run(&["ip", "netns", "add", &ns])?;
        made.names.push(ns.clone());
        let host = format!("tph-{z}");
        let inner = format!("tpz-{z}");
        let _ = run(&["ip", "link", "del", &host]);
        run(&[
            "ip", "link", "add", &host, "type", "veth", "peer", "name", &inner, "netns", &ns,
        ])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.77.{i}.1/24"),
            "dev",
            &host,
        ])?;
        run(&["ip", "link", "set", "dev", &host, "up"])?;
        in_ns(
            &ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", zone_addr(i)),
                "dev",
                &inner,
            ],
        )?;
        in_ns(&ns, &["ip", "link", "set", "dev", &inner, "up"])?;
        in_ns(&ns, &["ip", "link", "set", "dev", "lo", "up"])?;
    }
    for (j, l) in fabric.links().iter().enumerate() {
        let (from, to) = (zone_ns(&l.from), zone_ns(&l.to));
        let (a, b) = (format!("tpl{j}a"), format!("tpl{j}b"));
        run(&[
            "ip", "link", "add", &a, "netns", &from, "type", "veth", "peer", "name", &b, "netns",
            &to,
        ])?;
        // the receiving end: silent, and nothing it sends leaves by this link
        in_ns(&to, &["ip", "link", "set", "dev", &b, "arp", "off"])?;
        in_ns(
            &to,
            &[
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv6.conf.{b}.disable_ipv6=1"),
            ],
        )?;
        in_ns(
            &to,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", link_addr(j)),
                "dev",
                &b,
            ],
        )?;
        in_ns(
            &to,
            &[
                "nft",
                &format!(
                    "add table inet tianping_oneway; \
                     add chain inet tianping_oneway out {{ type filter hook output priority 0; policy accept; }}; \
                     add rule inet tianping_oneway out oifname \"{b}\" counter drop"
                ),
            ],
        )?;
        in_ns(&to, &["ip", "link", "set", "dev", &b, "up"])?;
        // the sending end: its address, and the receiver's MAC written down
        in_ns(
            &from,
            &["ip", "addr", "add", &format!("10.78.{j}.1/24"), "dev", &a],
        )?;
        in_ns(&from, &["ip", "link", "set", "dev", &a, "up"])?;
        let mac = in_ns(&to, &["cat", &format!("/sys/class/net/{b}/address")])?;
        in_ns(
            &from,
            &[
                "ip",
                "neigh",
                "add",
                &link_addr(j),
                "lladdr",
                mac.trim(),
                "dev",
                &a,
                "nud",
                "permanent",
            ],
        )?;
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    #[test]
    fn zones_and_links_move_to_the_namespaces_addresses() {
        let text = tianping_core::Fabric::default_text(&[], &[]);
        let fabric = tianping_core::Fabric::parse(&text)
            .unwrap_or_else(|e| unreachable!("the default fabric parses: {e}"));
        let moved = super::rewrite_fabric(&text, &fabric);
        let again = tianping_core::Fabric::parse(&moved)
            .unwrap_or_else(|e| unreachable!("the rewritten fabric parses: {e}"));
        let zones: Vec<String> = again.zones().map(|z| z.address.to_string()).collect();
        assert_eq!(
            zones,
            [
                "10.77.0.2",
                "10.77.1.2",
                "10.77.2.2",
                "10.77.3.2",
                "10.77.4.2"
            ]
        );
        let first = again.links().first().map(|l| l.address.to_string());
        assert_eq!(first.as_deref(), Some("10.78.0.2:7600"));
        // a second rewrite changes nothing
        assert_eq!(super::rewrite_fabric(&moved, &again), moved);
    }
}
