//! A generator of policies of any size, shared by the decision and verifier benchmarks.
#![expect(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::should_implement_trait,
    reason = "a benchmark generator over fixed tables, reading no outside input"
)]

use tianping_core::Role;

/// A small deterministic generator (xorshift64*), so every run makes the same policy and inputs.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Staff roles that sign in to every generated zone.
pub const STAFF: [Role; 8] = [
    Role::Judge,
    Role::Assistant,
    Role::Clerk,
    Role::Enforcement,
    Role::Police,
    Role::President,
    Role::DivisionChief,
    Role::Auditor,
];

/// A policy of `zones` zones (ten services each), `routes` routes spread over them round-robin
/// and `flows` flows between them. `generated_policy(10, 1000, 200)` is the decision benchmark's
/// policy.
pub fn generated_policy(zones: usize, routes: usize, flows: usize) -> String {
    let mut rng = Rng(0x5eed);
    let mut s = String::from("levels confidentiality internal\nlevels integrity court\n");
    for z in 0..zones {
        s += &format!(
            "zone z{z} {{\n  confidentiality internal\n  integrity court\n  acr judge, assistant, clerk, enforcement, police >= pwd\n  acr president, division-chief, auditor >= otp\n}}\n"
        );
        for k in 0..10 {
            s += &format!("service s{z}-{k} in z{z}\n");
        }
    }
    for f in 0..flows {
        let a = f % zones;
        let b = (a + 1 + rng.below(zones - 1)) % zones;
        let r1 = rng.pick(&STAFF).as_str();
        let r2 = rng.pick(&STAFF).as_str();
        s += &format!(
            "flow f{f} z{a} -> z{b} {{\n  kinds pdf, json(form-{f}), png\n  max-size {}MiB\n  submitters {r1}, {r2}, machine\n  deliver s{b}-{}\n  release {{\n    refuse secret\n    approvers 1 of judge, president\n  }}\n}}\n",
            1 + rng.below(100),
            f % 10
        );
    }
    for r in 0..routes {
        let z = r % zones;
        let roles: Vec<&str> = (0..1 + rng.below(3))
            .map(|_| rng.pick(&STAFF).as_str())
            .collect();
        let (path, court) = match r % 4 {
            0 => (format!("/app{r}/items/**"), ""),
            1 => (format!("/app{r}/{{court}}/cases/*"), "  court within\n"),
            2 => (format!("/app{r}/reports"), ""),
            _ => (format!("/app{r}/{{court}}/files/**"), "  court same\n"),
        };
        let methods = ["GET, HEAD", "POST", "PUT, PATCH", "GET"][rng.below(4)];
        let acr = ["pwd", "otp", "cert"][rng.below(3)];
        s += &format!(
            "route r{r} in z{z} {{\n  path {path}\n  methods {methods}\n  to service s{z}-{}\n  roles {}\n  acr >= {acr}\n{court}}}\n",
            r % 10,
            roles.join(", ")
        );
    }
    s
}
