//! Receipts end to end (real daemons of two zones, real sockets and links): a lawyer's online
//! filing submitted in `internet` is delivered into `private`'s `filing-intake` folder; the
//! private receiver signs a delivery receipt by itself and sends it back on `filing-receipt`
//! through its zone's sender; the internet receiver checks its signer against its trust and keeps
//! it, and `tianping exchange receipts` shows it, with the filing's transfer id, content hash and
//! service. A read receipt signed by another node of `private` is kept beside it; a receipt
//! signed by a node of another zone is refused and audited, and nothing of it kept. The audit
//! logs hold `transfer.delivered` and `receipt.sent` (private), `receipt.received` and the
//! refusal (internet).

#[path = "common/exchange.rs"]
mod exchange;

#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod receipts {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tianping_certs::{TokenClaims, TokenSigner, UserClaims};
    use tianping_core::{Acr, Clearance, Component, Role, SubjectId, ZoneName};
    use tianping_crossdomain::{Receipt, ReceiptKind, Receipting, chunk_hash, hex, table_hash};

    use super::exchange::{Daemon, Setup, deadline, setup, tianping};

    fn zone(z: &str) -> ZoneName {
        z.parse().unwrap()
    }

    /// `tianping exchange send|receive --zone ZONE` as a child, ready.
    fn daemon(s: &Setup, what: &str, z: &str, by: Instant) -> Daemon {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tianping"));
        c.arg("--data")
            .arg(&s.data)
            .args(["exchange", what, "--zone", z]);
        let mut d = Daemon::spawn(&format!("{z} {what}"), c);
        let ready = if what == "send" {
            "sending from"
        } else {
            "receiving into"
        };
        d.ready(ready, by);
        d
    }

    /// Reads the daemon's lines until one contains `what`; no line may say `refused` or
    /// `failed` unless `what` does.
    fn wait_for(d: &mut Daemon, what: &str, by: Instant) -> String {
        loop {
            let line = d.expect_line(by);
            if line.contains(what) {
                return line;
            }
            assert!(
                !line.contains("refused") && !line.contains("failed"),
                "{}: {line}",
                d.name
            );
        }
    }

    /// A user token for `sub` with `roles`, signed by `internet`'s gateway for its sender.
    fn lawyer_token(s: &Setup, sub: &str) -> PathBuf {
        let (cert, key) = s.dir.node(&zone("internet"), Component::Gateway);
        let signer =
            tianping_audit::signer_from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
        let chain = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap();
        let token = TokenSigner::new(Arc::new(signer), &chain)
            .unwrap()
            .sign(
                &TokenClaims::User(UserClaims {
                    sub: sub.parse().unwrap(),
                    roles: vec![Role::Lawyer],
                    court: Some("bj.01".parse().unwrap()),
                    acr: Acr::Otp,
                    clearance: Clearance::None,
                }),
                "exchange-sender",
                tianping_core::Clock::now(&tianping_core::SystemClock),
                Duration::from_secs(60),
            )
            .unwrap();
        let path = s.tmp.path().join(format!("{sub}.token"));
        std::fs::write(&path, token).unwrap();
        path
    }

    /// `tianping exchange ARGS…`: its standard output, which must succeed.
    fn ex(data: &Path, args: &[&str]) -> String {
        let out = tianping(data).arg("exchange").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "exchange {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A receipt of `transfer` signed by `component` of zone `signer` claiming zone `claims`.
    fn signed_receipt(
        s: &Setup,
        signer: &str,
        component: Component,
        claims: &str,
        what: &Receipting<'_>,
    ) -> Vec<u8> {
        let (cert, key) = s.dir.node(&zone(signer), component);
        let key = tianping_audit::signer_from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
        let chain = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap())
            .unwrap()
            .iter()
            .map(|c| c.to_vec())
            .collect();
        let claimed = zone(claims);
        let what = Receipting {
            zone: &claimed,
            ..what.clone()
        };
        Receipt::sign(&what, chain, &key).unwrap().encode().unwrap()
    }

    /// The receipts `tianping exchange receipts --zone internet --KEY ID` prints.
    fn receipts(s: &Setup, key: &str, id: &str) -> Vec<serde_json::Value> {
        ex(
            &s.data,
            &["receipts", "--zone", "internet", &format!("--{key}"), id],
        )
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
    }

    /// The audit events of `zone`'s receiver (stopped), by action.
    fn audited(s: &Setup, z: &str, action: &str) -> Vec<tianping_audit::Event> {
        let log =
            tianping_audit::AuditLog::open(&s.dir.audit_log(&zone(z), Component::ExchangeReceiver))
                .unwrap();
        log.entries(0)
            .map(|r| r.unwrap().event)
            .filter(|e| e.action == action)
            .collect()
    }

    const FILING: &str = r#"{
  "amount_claimed_fen": 10000000,
  "attachments": [],
  "case_type": "civil",
  "claims": "判令被告支付货款人民币十万元",
  "court": "bj.01.03",
  "defendants": [
    {
      "id_number": "91110000600037341L",
      "id_type": "unified-social-credit-code",
      "kind": "organisation",
      "name": "某某有限公司"
    }
  ],
  "filed_by": {
    "bar_license": "11101200910123456",
    "law_firm": "北京某律师事务所",
    "name": "李四",
    "role": "lawyer"
  },
  "plaintiffs": [
    {
      "id_number": "110101199001011234",
      "id_type": "resident-id",
      "kind": "person",
      "name": "张三",
      "phone": "+86 138 0000 0000"
    }
  ],
  "submitted_at": "2026-12-02T09:30:00+08:00"
}
"#;

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one filing and its receipts, step by step"
    )]
    fn an_online_filing_is_receipted_back_by_the_receiving_zone() {
        let s = setup("127.0.0.1:0");
        let by = deadline(180);
        let mut private_rx = daemon(&s, "receive", "private", by);
        let mut internet_rx = daemon(&s, "receive", "internet", by);
        let _private_tx = daemon(&s, "send", "private", by);
        let _internet_tx = daemon(&s, "send", "internet", by);

        // a lawyer files online, with a correlation id of their own
        let file = s.tmp.path().join("filing.json");
        std::fs::write(&file, FILING).unwrap();
        let token = lawyer_token(&s, "i-lawyer-7");
        let submitted = ex(
            &s.data,
            &[
                "submit",
                "--zone",
                "internet",
                "--flow",
                "online-filing",
                "--kind",
                "json",
                "--schema",
                "filing-form",
                "--file",
                file.to_str().unwrap(),
                "--as-user",
                token.to_str().unwrap(),
                "--correlation",
                "lawyer-case-0042",
            ],
        );
        let filing = submitted.trim().to_owned();
        assert!(filing.starts_with("internet:"), "{filing}");

        // delivered into the filing-intake folder, then receipted by the private receiver
        wait_for(
            &mut private_rx,
            &format!("transfer {filing} delivered to filing-intake"),
            by,
        );
        let sent = wait_for(
            &mut private_rx,
            &format!("transfer {filing} receipted by"),
            by,
        );
        let receipt_id = sent.split(' ').nth(4).unwrap().to_owned();
        assert!(receipt_id.starts_with("private:"), "{sent}");
        assert!(sent.ends_with(" on filing-receipt"), "{sent}");
        let folder = s.data.join("zones/private/delivery/filing-intake");
        let name = tianping_crossdomain::folder_name(&filing, "json");
        let delivered = std::fs::read(folder.join(&name)).unwrap();
        let sidecar: serde_json::Value = serde_json::from_slice(
            &std::fs::read(folder.join(format!("{name}.manifest.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(sidecar["correlation"], "lawyer-case-0042");
        // one chunk: the content hash is the hash of that chunk's hash
        let content_hash = hex(&table_hash(&[chunk_hash(&delivered)]));
        assert_eq!(sidecar["chunks_hash"], content_hash.as_str());

        // the internet receiver keeps it, and shows it by the filing's id
        wait_for(
            &mut internet_rx,
            &format!("transfer {receipt_id} delivered to receipt-store"),
            by,
        );
        let kept = receipts(&s, "correlation", &filing);
        assert_eq!(kept.len(), 1, "{kept:?}");
        let r = &kept[0];
        assert_eq!(r["receipt"], receipt_id.as_str());
        assert_eq!(r["correlation"], filing.as_str());
        assert_eq!(r["from"], "private");
        let signed = &r["signed"];
        assert_eq!(signed["kind"], "delivery");
        assert_eq!(signed["transfer"], filing.as_str());
        assert_eq!(signed["content_hash"], content_hash.as_str());
        assert_eq!(signed["service"], "filing-intake");
        assert_eq!(signed["zone"], "private");
        // the signer is the private receiver's node key
        let (cert, _) = s.dir.node(&zone("private"), Component::ExchangeReceiver);
        let leaf = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap();
        let key = tianping_certs::public_key_of(&leaf[0]).unwrap();
        assert_eq!(signed["signer"], key.to_string().as_str());
        assert_eq!(receipts(&s, "transfer", &filing), kept);
        assert_eq!(receipts(&s, "transfer", &receipt_id), kept);

        // a read receipt, signed by another node of `private`, submitted through its sender
        let reader: SubjectId = "i-lawyer-7".parse().unwrap();
        let what = Receipting {
            kind: ReceiptKind::Read,
            transfer_id: &filing,
            content_hash: table_hash(&[chunk_hash(&delivered)]),
            service: "filing-intake",
            zone: &zone("private"),
            reader: Some(&reader),
            time: tianping_core::Clock::now(&tianping_core::SystemClock),
        };
        let read = signed_receipt(&s, "private", Component::Gateway, "private", &what);
        let read_file = s.tmp.path().join("read.receipt");
        std::fs::write(&read_file, &read).unwrap();
        let submit_receipt = |f: &Path| {
            ex(
                &s.data,
                &[
                    "submit",
                    "--zone",
                    "private",
                    "--flow",
                    "filing-receipt",
                    "--kind",
                    "receipt",
                    "--file",
                    f.to_str().unwrap(),
                    "--correlation",
                    &filing,
                ],
            )
            .trim()
            .to_owned()
        };
        let read_id = submit_receipt(&read_file);
        wait_for(
            &mut internet_rx,
            &format!("transfer {read_id} delivered to receipt-store"),
            by,
        );

        // one signed by a node of `internet` that claims to be of `private`: refused
        let what = Receipting {
            kind: ReceiptKind::Delivery,
            reader: None,
            ..what
        };
        let forged = signed_receipt(
            &s,
            "internet",
            Component::ExchangeReceiver,
            "private",
            &what,
        );
        let forged_file = s.tmp.path().join("forged.receipt");
        std::fs::write(&forged_file, &forged).unwrap();
        let forged_id = submit_receipt(&forged_file);
        let refused = wait_for(
            &mut internet_rx,
            &format!("transfer {forged_id} refused"),
            by,
        );
        assert!(refused.contains("receipt refused"), "{refused}");
        assert!(refused.contains("not a node of `private`"), "{refused}");

        let kept = receipts(&s, "correlation", &filing);
        let kinds: Vec<&str> = kept
            .iter()
            .map(|r| r["signed"]["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["delivery", "read"], "{kept:?}");
        assert_eq!(kept[1]["receipt"], read_id.as_str());
        assert_eq!(kept[1]["signed"]["reader"], "i-lawyer-7");

        drop((private_rx, internet_rx));
        let delivered = audited(&s, "private", "transfer.delivered");
        let filed: Vec<_> = delivered
            .iter()
            .filter(|e| e.transfer_id == filing)
            .collect();
        assert_eq!(filed.len(), 1, "{delivered:?}");
        assert_eq!(filed[0].content_hash, content_hash);
        assert_eq!(filed[0].attributes["service"], "filing-intake");
        let sent = audited(&s, "private", "receipt.sent");
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].transfer_id, filing);
        assert_eq!(sent[0].attributes["receipt"], receipt_id);
        assert_eq!(sent[0].flow, "filing-receipt");
        let received = audited(&s, "internet", "receipt.received");
        let ids: Vec<&str> = received
            .iter()
            .map(|e| e.attributes["receipt"].as_str())
            .collect();
        assert_eq!(ids, [receipt_id.as_str(), read_id.as_str()], "{received:?}");
        assert!(received.iter().all(|e| e.transfer_id == filing));
        assert_eq!(received[0].content_hash, content_hash);
        assert_eq!(received[0].attributes["kind"], "delivery");
        assert_eq!(received[1].attributes["kind"], "read");
        let refusals = audited(&s, "internet", "transfer.refused");
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert_eq!(refusals[0].transfer_id, forged_id);
        assert!(
            refusals[0].reason.contains("not a node of `private`"),
            "{}",
            refusals[0].reason
        );
    }
}
