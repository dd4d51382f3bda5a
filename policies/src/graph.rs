//! The zone graph in Graphviz `dot`: zones as nodes, flows as edges.

use std::fmt::Write as _;

use crate::model::Policy;

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Policy {
    /// The policy as a `dot` graph: zones as nodes (sealed zones drawn double and filled), flows
    /// as edges coloured by kind: upgrades (to higher integrity, with `sanitize`) blue, downgrades
    /// (to lower confidentiality, with `release`) red, both purple, others grey.
    pub fn to_dot(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "digraph policy {{");
        let _ = writeln!(s, "  rankdir=LR;");
        let _ = writeln!(
            s,
            "  node [shape=box, style=rounded, fontname=\"sans-serif\"];"
        );
        for z in &self.zones {
            let conf = self.conf_levels.get(z.conf).map_or("?", String::as_str);
            let integ = self.integ_levels.get(z.integ).map_or("?", String::as_str);
            let sealed = if z.sealed {
                ", peripheries=2, style=\"rounded,filled\", fillcolor=\"#eeeeee\""
            } else {
                ""
            };
            let mark = if z.sealed { "\\nsealed" } else { "" };
            let _ = writeln!(
                s,
                "  \"{}\" [label=\"{}\\n{} / {}{}\"{}];",
                esc(z.name.as_str()),
                esc(z.name.as_str()),
                esc(conf),
                esc(integ),
                mark,
                sealed
            );
        }
        for f in &self.flows {
            let (Some(a), Some(b)) = (self.zones.get(f.from), self.zones.get(f.to)) else {
                continue;
            };
            let up = b.integ > a.integ;
            let down = b.conf < a.conf;
            let (colour, what) = match (up, down) {
                (true, true) => ("purple", "upgrade+downgrade"),
                (true, false) => ("blue", "upgrade"),
                (false, true) => ("red", "downgrade"),
                (false, false) => ("gray40", "lateral"),
            };
            let mut label = esc(&f.name);
            if !f.sanitize.is_empty() {
                label.push_str(&format!("\\nsanitize {}", f.sanitize.join(",")));
            }
            if let Some(r) = &f.release {
                label.push_str(&format!("\\nrelease {} approver(s)", r.approvers));
            }
            let _ = writeln!(
                s,
                "  \"{}\" -> \"{}\" [label=\"{}\", color={colour}, fontcolor={colour}, tooltip=\"{what}\"];",
                esc(a.name.as_str()),
                esc(b.name.as_str()),
                label
            );
        }
        let _ = writeln!(s, "}}");
        s
    }
}
