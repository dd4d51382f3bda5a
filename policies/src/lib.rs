//! Tianping's policy language: one file says which zones exist, who may reach which service
//! inside a zone, and which transfers may cross from one zone to another (DESIGN §1, §2).
//!
//! - [`check`] parses and verifies a policy text; every error and warning points at a line and
//!   column ([`Problem`], rendered with `miette` by [`Checked::render`]);
//! - a checked [`Policy`] decides, default deny, naming the rule and the policy's SHA-256:
//!   [`Policy::decide_request`] and [`Policy::decide_transfer`];
//! - [`Policy::replay`] re-decides recorded [`DecisionInput`]s and reports flips; [`diff`]
//!   compares two policies; [`Policy::to_dot`] draws the zone graph;
//! - [`Policy::check_fabric`] checks a `fabric.toml`'s service bindings against the policy;
//! - [`SharedPolicy`] swaps a new policy in atomically.
//!
//! ```
//! use tianping_core::{Acr, Role, UnixTime};
//! use tianping_policies::{Outcome, Subject, check, DEFAULT_POLICY};
//!
//! let checked = check("default.tp", DEFAULT_POLICY);
//! assert!(checked.is_ok(), "{}", checked.render());
//! let policy = checked.policy().unwrap();
//! let mut lawyer = Subject::new(&[Role::Lawyer]);
//! lawyer.acr = Acr::Otp;
//! let d = policy.decide_request("internet", &lawyer, "POST", "/filings", UnixTime::from_secs(0));
//! assert_eq!(d.outcome, Outcome::Flow("online-filing"));
//! assert_eq!(d.policy, policy.hash());
//! ```
//!
//! # The language
//!
//! A policy is a list of declarations. A statement ends at the end of its line; a list may go
//! on after a comma on the next line; `#` starts a comment. Names of services, routes and flows
//! are lowercase-kebab (`filing-intake`). A statement that holds one value (a zone's levels,
//! `sealed`; a route's `to`, `roles`, `court`, `clearance`, `acr`, `time`; a flow's `max-size`,
//! `deliver`, `rate`, `release`, `reply`, `accounts`; a release's `redact`, `approvers`; an
//! option of a test) may stand once in its block, and a role has one `acr` line per zone: a
//! second would replace the first, so it is an error. The list statements (`path`, `methods`,
//! `kinds`, `max-size ... for`, `submitters`, `sanitize`, `refuse`, `attributes`,
//! `credentials`, a zone's `acr` for other roles) may repeat and add up.
//!
//! ```text
//! policy      = { levels | zone | service | route | flow | marking | expect | test }
//! levels      = "levels" ("confidentiality" | "integrity") LEVEL { "<" LEVEL }     (low to high)
//! zone        = "zone" ZONE "{" { zone-stmt } "}"
//! zone-stmt   = "confidentiality" LEVEL | "integrity" LEVEL | "sealed"
//!             | "acr" roles ">=" ACR          (the least acr of these roles signing in here;
//!                                              a role with no acr line cannot sign in here)
//! roles       = "any" | ROLE { "," ROLE }
//! service     = "service" NAME "in" ZONE
//! route       = "route" NAME "in" ZONE "{" { route-stmt } "}"
//! route-stmt  = "path" PATTERN { "," PATTERN }       /exact, /prefix/**, /one/*/segment,
//!                                                    /courts/{court}/cases/** (captures a court)
//!             | "methods" METHOD { "," METHOD }      GET HEAD POST PUT PATCH DELETE OPTIONS ANY
//!             | "to" ("service" | "flow") NAME       (a flow route turns the request into a transfer)
//!             | "roles" roles
//!             | "court" ("same" | "within")          ({court} of the path is the subject's court,
//!                                                     or within it)
//!             | "court" "in" COURT                   (the subject's court is within COURT)
//!             | "clearance" ">=" CLEARANCE | "acr" ">=" ACR
//!             | "time" HH:MM "-" HH:MM [ ("+"|"-") HH:MM ]   (daily window, offset from UTC)
//! flow        = "flow" NAME ZONE "->" ZONE "{" { flow-stmt } "}"
//! flow-stmt   = "kinds" KIND { "," KIND }            pdf ofd json(SCHEMA) png jpeg mp4 text receipt
//!                                                    directory-update audit-batch policy-update crl
//!                                                    trust-bundle
//!             | "max-size" SIZE                       (20MiB, 10MB, 4096)
//!             | "max-size" SIZE "for" KIND { "," KIND }   a lower limit for some kinds
//!             | "submitters" (ROLE | "machine") { "," ... }
//!             | "deliver" SERVICE                     (a service of the destination zone)
//!             | "rate" N "per" ("second" | "minute" | "hour" | "day")   (per submitter)
//!             | "sanitize" STEP { "," STEP }          validate rebuild strip-metadata scan
//!                                                     transcode flatten
//!             | "release" "{" { "redact" | "refuse" LABEL {"," LABEL}
//!                              | "approvers" N ["of" ROLE {"," ROLE}] } "}"
//!             | "reply" FLOW
//!             | "accounts" roles                      (directory flows: whose accounts go)
//!             | "attributes" ATTR { "," ATTR }        sub name court roles clearance phone email status
//!             | "credentials" CRED { "," CRED } ["for" roles]   password-hash otp-seed cert
//! marking     = "marking" LABEL "words" STRING { "," STRING }   ("秘密", "机密★": content whose
//!                                                    text carries a word carries LABEL)
//! expect      = "expect" "no" "path" "from" ZONE "to" ZONE
//!             | "expect" "only" "flows" FLOW { "," FLOW } "from" ZONE "to" ZONE
//!             | "expect" "route" NAME "needs" "acr" ">=" ACR
//! test        = "test" "request" ZONE METHOD PATH { "roles" ROLE {"," ROLE} | "court" COURT
//!                      | "clearance" CLEARANCE | "acr" ACR | "at" HH:MM } "expect" verdict
//!             | "test" "transfer" FLOW { "kind" KIND | "size" SIZE | "by" (ROLE|"machine") {"," ...}
//!                      | "labels" LABEL {"," LABEL} | "redacted" | "approvals" ROLE {"," ROLE} }
//!                      "expect" verdict
//! verdict     = ("allow" | "deny") [ RULE ]
//! ```
//!
//! # Meaning
//!
//! - **Requests**: the first route of the zone (in file order) whose method and path match and
//!   whose conditions hold decides; nothing matching is a deny. The subject's roles count only
//!   where the zone lets them sign in, and the zone's `acr` floor of those roles applies too.
//! - **Transfers**: the flow's kinds, size, submitters, and release terms (refused labels,
//!   redaction, distinct approvers of the named roles, never the submitter) must all hold.
//! - **Markings**: a release that refuses a label also refuses content whose text (document
//!   text, JSON strings, plain text) carries any word of that label's `marking`, compared with
//!   full-width forms folded to half-width, case folded and whitespace ignored (the exchange's
//!   marking check; the engine decides on the declared labels alone).
//! - **Verifier** (errors): syntax; unknown zone, service, flow, role, kind or level; a route to
//!   a service of another zone; a route path under the gateway's reserved `/.tianping/`; a flow
//!   out of a sealed zone (and the chain it opens); a flow to lower confidentiality without
//!   `release`; a flow to higher integrity without `sanitize`; zero approvers for a kind not
//!   made by machines; approvers of a role that cannot sign in to the source zone; a failed
//!   `expect` (with a counterexample); a failing test, or one that names an unknown zone,
//!   method, flow or route (or a rule other than a transfer's flow); a label marked twice, an
//!   empty or repeated marking word.
//!   Warnings: a route shadowed by an earlier one; a route no subject can satisfy; a service no
//!   route or flow reaches; a marking no release refuses.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod check;
mod compile;
mod cx;
mod diag;
mod diff;
mod engine;
mod expect;
mod fabric;
mod graph;
mod info;
#[doc(hidden)]
pub mod internal;
mod lint;
mod model;
mod paths;
mod reach;
mod replay;
mod selftest;
mod shared;
mod snippet;
mod syntax;

/// The default five-zone policy of the court networks (`policies/default.tp`).
pub const DEFAULT_POLICY: &str = include_str!("../default.tp");

/// The JSON Schemas of the default policy's `json(NAME)` kinds (`policies/schemas/NAME.json`),
/// as (name, schema text); `tianping init` installs them beside each zone's policy copy.
pub const DEFAULT_SCHEMAS: [(&str, &str); 5] = [
    (
        "assistance-notice",
        include_str!("../schemas/assistance-notice.json"),
    ),
    ("case-file", include_str!("../schemas/case-file.json")),
    (
        "casework-form",
        include_str!("../schemas/casework-form.json"),
    ),
    ("filing-form", include_str!("../schemas/filing-form.json")),
    (
        "inquiry-result",
        include_str!("../schemas/inquiry-result.json"),
    ),
];

pub use check::{Checked, check};
pub use compile::{ATTRIBUTES, CREDENTIALS, SANITIZE_STEPS, parse_size};
pub use diag::{Problem, Severity, SourceProblem, Span};
pub use diff::{Changed, PolicyDiff, diff};
pub use engine::{Approval, Decision, Outcome, Reason, Subject, Submitter, TransferRequest};
pub use fabric::FabricMismatch;
pub use info::{CourtCondition, FlowInfo, RouteInfo};
pub use model::{Kind, Policy, Rate, Window};
pub use replay::{DecisionInput, Flip, Input, Recorded, ReplayReport};
pub use selftest::TestResult;
pub use shared::{LoadError, SharedPolicy};
