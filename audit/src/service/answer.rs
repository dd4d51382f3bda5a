//! The answers: each request served from the log, to the callers allowed it.

use serde::{Deserialize, Serialize};
use tianping_core::Clock;

use super::{Failure, Request, ServiceResponse, json};
use crate::merkle::Hash;
use crate::query::Record;
use crate::store::{AuditLog, StoreError, VerifyReport};

const NDJSON: &str = "application/x-ndjson";
const TEXT: &str = "text/plain";
const OCTETS: &str = "application/octet-stream";

/// The answer to `GET /audit/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusAnswer {
    /// The log's origin.
    pub origin: String,
    /// Durable entries.
    pub size: u64,
    /// The root over them.
    #[serde(with = "crate::hexhash")]
    pub root: Hash,
    /// Leading entries archived.
    pub archived: u64,
    /// The size of the latest signed checkpoint, if there is one.
    pub checkpoint_size: Option<u64>,
    /// Whether the log is a mirror.
    pub mirror: bool,
}

/// The answer to `GET /audit/v1/verify`: a [`VerifyReport`] (no archive files are given over
/// the socket, so `archived_checked` is 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyAnswer {
    /// Entries in the tree, archived ones included.
    pub entries: u64,
    /// Of those, entries archived.
    pub archived: u64,
    /// Of the archived entries, those recomputed from archive files.
    pub archived_checked: u64,
    /// The root over all of them.
    #[serde(with = "crate::hexhash")]
    pub root: Hash,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The size of the latest checkpoint.
    pub signed_size: u64,
    /// The key the checkpoints were checked with (`alg:base64url`).
    pub key: Option<String>,
}

impl From<&VerifyReport> for VerifyAnswer {
    fn from(r: &VerifyReport) -> Self {
        Self {
            entries: r.entries,
            archived: r.archived,
            archived_checked: r.archived_checked,
            root: r.root,
            checkpoints: r.checkpoints,
            signed_size: r.signed_size,
            key: r.key.as_ref().map(ToString::to_string),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let (status, index) = match &e {
            StoreError::Tampered { index, .. } | StoreError::Damaged { index, .. } => {
                (409, Some(*index))
            }
            StoreError::Archived { index, .. } => (409, Some(*index)),
            StoreError::KeyMismatch { .. }
            | StoreError::UntrustedKey { .. }
            | StoreError::IsMirror
            | StoreError::NotMirror => (409, None),
            StoreError::NoKey | StoreError::Proof(_) => (400, None),
            StoreError::Busy(_) => (503, None),
            StoreError::NoCheckpoint(_) | StoreError::BeyondLog { .. } => (404, None),
            _ => (500, None),
        };
        let mut f = Self::new(status, e.to_string());
        f.body.index = index;
        f
    }
}

/// Who is asking, as the owner's control socket established it (from a person's token or a
/// node token of a component); audit takes no position on how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    /// The court subject id of a person, or the component name of a node.
    pub subject: String,
    /// A person's roles (empty for a node).
    pub roles: Vec<String>,
    /// Whether the caller is a component of a zone (a node token), not a person.
    pub node: bool,
    /// The caller's zone.
    pub zone: String,
}

impl Reader {
    /// A person with `roles`, signed in to `zone`.
    pub fn person(subject: impl Into<String>, roles: &[&str], zone: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            node: false,
            zone: zone.into(),
        }
    }

    /// A component of `zone` calling with its node token.
    pub fn node(component: impl Into<String>, zone: impl Into<String>) -> Self {
        Self {
            subject: component.into(),
            roles: Vec::new(),
            node: true,
            zone: zone.into(),
        }
    }

    fn is_auditor(&self) -> bool {
        !self.node && self.roles.iter().any(|r| r == AUDITOR)
    }
}

/// The role audit data is served to (DESIGN §9).
const AUDITOR: &str = "auditor";
/// The action of the event recording a person's read.
const READ_ACTION: &str = "audit.read";

/// Who asks, and how the owner answers: its zone, its clock, and the log that records reads.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// The owner's zone: only its log shipper is served `ship`.
    pub zone: &'a str,
    /// Who is asking (`None`: no credential was presented).
    pub reader: Option<&'a Reader>,
    /// Dates the `audit.read` events.
    pub clock: &'a dyn Clock,
    /// Where each read by a person is recorded, as an `audit.read` event: the owner's own log
    /// (usually the log read; a mirror accepts no appends, so its owner names its own).
    pub record_to: Option<&'a AuditLog>,
}

/// Answers one request on `log`; never panics, whatever the input.
///
/// `/audit/v1/ship` is served only to a node of the owner's zone (the log shipper); every other
/// route only to a person holding the `auditor` role; no credential is 401, the wrong caller
/// 403 naming who is served. Each request by a person, served or refused, is first appended
/// durably to [`Access::record_to`] as an `audit.read` event (actor, roles, zone, the target as
/// object, `allow` or `deny` as outcome), and is not answered if that append fails.
pub fn handle(
    log: &AuditLog,
    access: &Access<'_>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> ServiceResponse {
    let answered = Request::parse(method, path_and_query).and_then(|req| {
        allowed(access, &req, path_and_query)?;
        if body.is_empty() {
            answer(log, &req)
        } else {
            Err(Failure::bad("a `GET` carries no body"))
        }
    });
    answered.unwrap_or_else(|f| f.response())
}

/// Whether the reader may make `req`, with a person's read recorded either way.
fn allowed(access: &Access<'_>, req: &Request, target: &str) -> Result<(), Failure> {
    let Some(reader) = access.reader else {
        return Err(Failure::new(401, "a credential is needed"));
    };
    let zone = access.zone;
    let (ok, refusal) = match req {
        Request::Ship { .. } => (
            reader.node && reader.zone == zone,
            format!("the ship endpoint serves the log shipper of zone `{zone}` only"),
        ),
        _ => (
            reader.is_auditor(),
            format!("audit data is served to the `{AUDITOR}` role only"),
        ),
    };
    if let (false, Some(record)) = (reader.node, access.record_to) {
        let mut e = crate::Event::new(access.clock.now(), READ_ACTION);
        e.actor.clone_from(&reader.subject);
        e.roles.clone_from(&reader.roles);
        e.zone.clone_from(&reader.zone);
        e.object = target.chars().take(1024).collect();
        e.outcome = if ok { "allow" } else { "deny" }.into();
        record
            .append(&e)
            .map_err(|e| Failure::new(500, format!("the read could not be recorded: {e}")))?;
    }
    if ok {
        Ok(())
    } else {
        Err(Failure::new(403, refusal))
    }
}

fn answer(log: &AuditLog, req: &Request) -> Result<ServiceResponse, Failure> {
    Ok(match req {
        Request::Status => json(
            200,
            &StatusAnswer {
                origin: log.origin(),
                size: log.size(),
                root: log.root(),
                archived: log.archived_size(),
                checkpoint_size: log.latest_checkpoint()?.map(|(size, _)| size),
                mirror: log.is_mirror(),
            },
        ),
        Request::Verify { key } => {
            let stored = log.size();
            match log.verify(key.as_ref(), &mut |_, _| {}) {
                Ok(r) => json(200, &VerifyAnswer::from(&r)),
                Err(e) => {
                    let mut f = Failure::from(e);
                    f.body.stored = Some(stored);
                    return Err(f);
                }
            }
        }
        Request::Search { query, from, limit } => {
            let mut body = Vec::new();
            let matches = log
                .entries(*from)
                .filter(|r| r.as_ref().map_or(true, |r| query.matches(&r.event)));
            for r in matches.take(usize::try_from(*limit).unwrap_or(usize::MAX)) {
                let r: Record = r?;
                serde_json::to_writer(&mut body, &r)
                    .map_err(|e| Failure::new(500, format!("encoding entry `{}`: {e}", r.index)))?;
                body.push(b'\n');
            }
            ServiceResponse {
                status: 200,
                content_type: NDJSON,
                body,
            }
        }
        Request::ProveInclusion { index, size } => {
            let p = log.prove_inclusion(*index, size.unwrap_or_else(|| log.size()))?;
            p.verify().map_err(|e| Failure::new(500, e.to_string()))?;
            json(200, &p)
        }
        Request::ProveConsistency { from, to } => {
            let p = log.prove_consistency(*from, *to)?;
            p.verify().map_err(|e| Failure::new(500, e.to_string()))?;
            json(200, &p)
        }
        Request::Checkpoint => match log.latest_checkpoint()? {
            Some((_, note)) => ServiceResponse {
                status: 200,
                content_type: TEXT,
                body: note.into_bytes(),
            },
            None => return Err(Failure::new(404, "the log has no checkpoint yet")),
        },
        Request::Ship { since } => ServiceResponse {
            status: 200,
            content_type: OCTETS,
            body: {
                let mut body = Vec::new();
                log.ship_to(*since, &mut body)?;
                body
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ErrorBody, JSON};
    use super::*;
    use crate::DEFAULT_SEARCH_LIMIT;
    use crate::{AuditBatch, Checkpoint, ConsistencyProof, Event, InclusionProof, Query};
    use tianping_core::{Algorithm, ManualClock, RingSigner, Signer, UnixTime};

    const ORIGIN: &str = "tianping.localhost/audit/test";
    const ZONE: &str = "private";

    fn event(i: u64) -> Event {
        let mut e = Event::new(UnixTime::from_millis(1_000 + i), "transfer");
        e.actor = format!("u-{}", i % 3);
        e.object = format!("case {i}+x");
        e
    }

    /// A log of 10 entries with checkpoints at 5 and 10.
    fn log() -> (tempfile::TempDir, AuditLog, RingSigner) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::create(dir.path(), ORIGIN).unwrap();
        let (signer, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
        let events: Vec<Event> = (0..10).map(event).collect();
        log.append_many(&events[..5]).unwrap();
        log.checkpoint(&signer).unwrap();
        log.append_many(&events[5..]).unwrap();
        log.checkpoint(&signer).unwrap();
        (dir, log, signer)
    }

    fn get(log: &AuditLog, target: &str) -> ServiceResponse {
        call(log, "GET", target, b"")
    }

    /// A request by an auditor (or, for `ship`, by the zone's shipper).
    fn call(log: &AuditLog, method: &str, target: &str, body: &[u8]) -> ServiceResponse {
        let reader = if target.starts_with("/audit/v1/ship") {
            Reader::node("audit-shipper", ZONE)
        } else {
            Reader::person("a-1", &["auditor"], ZONE)
        };
        let clock = ManualClock::new(UnixTime::from_millis(5_000));
        let access = Access {
            zone: ZONE,
            reader: Some(&reader),
            clock: &clock,
            record_to: None,
        };
        handle(log, &access, method, target, body)
    }

    #[test]
    fn audit_data_goes_to_auditors_and_ship_to_the_zone_shipper_and_reads_are_recorded() {
        let (_dir, log, _) = log();
        let clock = ManualClock::new(UnixTime::from_millis(7_000));
        let ask = |reader: Option<&Reader>, target: &str| {
            let access = Access {
                zone: ZONE,
                reader,
                clock: &clock,
                record_to: Some(&log),
            };
            handle(&log, &access, "GET", target, b"")
        };
        let judge = Reader::person("j-1", &["judge"], ZONE);
        let auditor = Reader::person("a-1", &["auditor"], ZONE);
        let shipper = Reader::node("audit-shipper", ZONE);
        let foreign = Reader::node("audit-shipper", "internet");

        assert_eq!(ask(None, "/audit/v1/status").status, 401);
        let refused = ask(Some(&judge), "/audit/v1/search");
        assert_eq!(refused.status, 403);
        assert!(error(&refused).error.contains("`auditor`"));
        // A node is no person: no audit data for it, and the ship endpoint for its zone only.
        assert_eq!(ask(Some(&shipper), "/audit/v1/status").status, 403);
        assert_eq!(ask(Some(&foreign), "/audit/v1/ship").status, 403);
        assert_eq!(ask(Some(&auditor), "/audit/v1/ship").status, 403);
        assert_eq!(ask(Some(&shipper), "/audit/v1/ship").status, 200);
        assert_eq!(log.size(), 12, "only the persons' reads are recorded");

        let served = ask(Some(&auditor), "/audit/v1/search?actor=a-1");
        assert_eq!(served.status, 200);
        let reads: Vec<_> = log
            .search(&Query {
                action: Some("audit.read".into()),
                ..Query::default()
            })
            .map(|r| r.unwrap().event)
            .collect();
        let seen: Vec<_> = reads
            .iter()
            .map(|e| (e.actor.as_str(), e.outcome.as_str(), e.object.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("j-1", "deny", "/audit/v1/search"),
                ("a-1", "deny", "/audit/v1/ship"),
                ("a-1", "allow", "/audit/v1/search?actor=a-1"),
            ]
        );
        assert_eq!(reads[2].roles, ["auditor"]);
        assert_eq!(reads[2].time, UnixTime::from_millis(7_000));
        // The read was recorded before it was answered: it finds itself, after the refused one.
        assert_eq!(lines(&served).len(), 2);
    }

    fn error(r: &ServiceResponse) -> ErrorBody {
        assert_eq!(r.content_type, JSON);
        serde_json::from_slice(&r.body).unwrap()
    }

    fn lines(r: &ServiceResponse) -> Vec<Record> {
        assert_eq!((r.status, r.content_type), (200, NDJSON), "{r:?}");
        r.body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn status() {
        let (_d, log, _) = log();
        let r = get(&log, "/audit/v1/status");
        assert_eq!((r.status, r.content_type), (200, JSON));
        let s: StatusAnswer = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            s,
            StatusAnswer {
                origin: ORIGIN.into(),
                size: 10,
                root: log.root(),
                archived: 0,
                checkpoint_size: Some(10),
                mirror: false,
            }
        );
        assert!(
            String::from_utf8(r.body)
                .unwrap()
                .contains(&hex::encode(log.root()))
        );
        assert_eq!(get(&log, "/audit/v1/status?x=1").status, 400);
    }

    #[test]
    fn verify_answers_the_report_or_the_tampered_index() {
        let (dir, log, signer) = log();
        let key = signer.public_key();
        for target in [
            "/audit/v1/verify".to_string(),
            Request::Verify {
                key: Some(key.clone()),
            }
            .target(),
        ] {
            let r = get(&log, &target);
            assert_eq!(r.status, 200, "{target}");
            let v: VerifyAnswer = serde_json::from_slice(&r.body).unwrap();
            let want = log.verify(Some(&key), &mut |_, _| {}).unwrap();
            assert_eq!(v, VerifyAnswer::from(&want));
            assert_eq!(v.key, Some(key.to_string()));
            assert_eq!((v.entries, v.checkpoints, v.signed_size), (10, 2, 10));
        }
        // Another key than the pinned one.
        let (other, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
        let r = get(
            &log,
            &Request::Verify {
                key: Some(other.public_key()),
            }
            .target(),
        );
        assert_eq!(r.status, 409);
        assert_eq!(error(&r).stored, Some(10));
        assert_eq!(get(&log, "/audit/v1/verify?key=nope").status, 400);
        // A checkpoint copy that differs from the stored one at size 5.
        let forged = Checkpoint {
            origin: ORIGIN.into(),
            size: 5,
            root: [7; 32],
        }
        .sign(&signer)
        .unwrap();
        std::fs::write(dir.path().join("checkpoint.note"), forged.note()).unwrap();
        let r = get(&log, "/audit/v1/verify");
        assert_eq!(r.status, 409);
        let e = error(&r);
        assert_eq!((e.index, e.stored), (Some(5), Some(10)));
        assert!(e.error.contains("differs"), "{}", e.error);
    }

    #[test]
    fn search_filters_pages_and_limits() {
        let (_d, log, _) = log();
        let all = lines(&get(&log, "/audit/v1/search"));
        let local: Vec<Record> = log.entries(0).map(Result::unwrap).collect();
        assert_eq!(all, local);
        // The same JSON lines the command prints.
        let mut want = Vec::new();
        for r in &local {
            serde_json::to_writer(&mut want, r).unwrap();
            want.push(b'\n');
        }
        assert_eq!(get(&log, "/audit/v1/search").body, want);

        let u1 = lines(&get(&log, "/audit/v1/search?actor=u-1"));
        assert_eq!(u1.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 4, 7]);
        let page = lines(&get(&log, "/audit/v1/search?actor=u-1&from=2&limit=1"));
        assert_eq!(page.iter().map(|r| r.index).collect::<Vec<_>>(), [4]);
        let timed = lines(&get(&log, "/audit/v1/search?since=1003&until=1005"));
        assert_eq!(timed.iter().map(|r| r.index).collect::<Vec<_>>(), [3, 4, 5]);
        // Values are percent-decoded: `case 4+x`.
        let q = Query {
            object: Some("case 4+x".into()),
            ..Query::default()
        };
        let target = Request::Search {
            query: q.clone(),
            from: 0,
            limit: DEFAULT_SEARCH_LIMIT,
        }
        .target();
        assert_eq!(target, "/audit/v1/search?object=case%204%2Bx");
        assert_eq!(lines(&get(&log, &target)).len(), 1);
        assert!(lines(&get(&log, "/audit/v1/search?actor=nobody")).is_empty());

        for bad in [
            "/audit/v1/search?object=case+4%2Bx",
            "/audit/v1/search?actor=%4",
            "/audit/v1/search?actor=%zz",
            "/audit/v1/search?actor=%ff",
            "/audit/v1/search?actor=a b",
            "/audit/v1/search?actor=a=b",
            "/audit/v1/search?actor",
            "/audit/v1/search?actor=a&actor=b",
            "/audit/v1/search?who=a",
            "/audit/v1/search?actor=a&&flow=b",
            "/audit/v1/search?limit=0",
            "/audit/v1/search?limit=100001",
            "/audit/v1/search?limit=+5",
            "/audit/v1/search?from=-1",
            "/audit/v1/search?since=1e3",
            "/audit/v1/search?from=99999999999999999999999",
        ] {
            let r = get(&log, bad);
            assert_eq!(r.status, 400, "{bad}");
            assert!(!error(&r).error.is_empty());
        }
        assert_eq!(lines(&get(&log, "/audit/v1/search?limit=100000")).len(), 10);
        assert_eq!(lines(&get(&log, "/audit/v1/search?from=10")).len(), 0);
    }

    #[test]
    fn prove_inclusion_and_consistency() {
        let (_d, log, _) = log();
        let r = get(&log, "/audit/v1/prove?index=3&size=5");
        assert_eq!(r.status, 200);
        let p: InclusionProof = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(p, log.prove_inclusion(3, 5).unwrap());
        assert!(p.checkpoint.is_some());
        p.verify().unwrap();
        let whole: InclusionProof =
            serde_json::from_slice(&get(&log, "/audit/v1/prove?index=9").body).unwrap();
        assert_eq!(whole.size, 10);
        let r = get(&log, "/audit/v1/prove?from=5&to=10");
        assert_eq!(r.status, 200);
        let c: ConsistencyProof = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(c, log.prove_consistency(5, 10).unwrap());
        assert_eq!(
            r.body,
            serde_json::to_vec(&log.prove_consistency(5, 10).unwrap()).unwrap()
        );

        for bad in [
            "/audit/v1/prove",
            "/audit/v1/prove?size=3",
            "/audit/v1/prove?from=3",
            "/audit/v1/prove?index=1&from=1&to=2",
            "/audit/v1/prove?index=10",
            "/audit/v1/prove?index=3&size=11",
            "/audit/v1/prove?from=6&to=5",
            "/audit/v1/prove?index=x",
        ] {
            assert_eq!(get(&log, bad).status, 400, "{bad}");
        }
    }

    #[test]
    fn checkpoint_is_read_only() {
        let (_d, log, _) = log();
        let r = get(&log, "/audit/v1/checkpoint");
        assert_eq!((r.status, r.content_type), (200, TEXT));
        let (size, note) = log.checkpoint_notes().unwrap().pop().unwrap();
        assert_eq!((size, r.body), (10, note.into_bytes()));
        let r = call(&log, "POST", "/audit/v1/checkpoint", b"");
        assert_eq!(r.status, 405);
        assert!(error(&r).error.contains("own schedule"));
        assert_eq!(get(&log, "/audit/v1/checkpoint?x=").status, 400);

        let empty_dir = tempfile::tempdir().unwrap();
        let empty = AuditLog::create(empty_dir.path(), ORIGIN).unwrap();
        assert_eq!(get(&empty, "/audit/v1/checkpoint").status, 404);
        let s: StatusAnswer =
            serde_json::from_slice(&get(&empty, "/audit/v1/status").body).unwrap();
        assert_eq!((s.size, s.checkpoint_size), (0, None));
        assert_eq!(get(&empty, "/audit/v1/ship").status, 404);
    }

    #[test]
    fn ship_answers_the_batch() {
        let (_d, log, _) = log();
        let r = get(&log, "/audit/v1/ship?since=5");
        assert_eq!((r.status, r.content_type), (200, OCTETS));
        assert_eq!(r.body, log.ship(5).unwrap().encode().unwrap());
        let b = AuditBatch::decode(&r.body).unwrap();
        assert_eq!((b.old_size, b.entries.len()), (5, 5));
        assert_eq!(
            get(&log, "/audit/v1/ship").body,
            log.ship(0).unwrap().encode().unwrap()
        );
        assert_eq!(get(&log, "/audit/v1/ship?since=11").status, 404);
        assert_eq!(get(&log, "/audit/v1/ship?since=").status, 400);
    }

    #[test]
    fn routes_methods_and_bodies() {
        let (_d, log, _) = log();
        for bad in [
            "/",
            "/audit/v1",
            "/audit/v1/",
            "/audit/v1/status/",
            "/audit/v2/status",
            "/audit/v1/append",
        ] {
            assert_eq!(get(&log, bad).status, 404, "{bad}");
        }
        for m in ["POST", "PUT", "DELETE", "HEAD"] {
            assert_eq!(call(&log, m, "/audit/v1/search", b"").status, 405);
        }
        assert_eq!(call(&log, "GET", "/audit/v1/status", b"x").status, 400);
        // Long or odd names never panic, and are echoed shortened.
        let long = format!("/audit/v1/search?{}=1", "é".repeat(100));
        let e = error(&get(&log, &long));
        assert!(e.error.len() < 120, "{}", e.error);
    }
}
