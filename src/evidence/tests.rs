//! E5/E6: bundles built from synthetic events with the real tree and
//! signatures, then tampered with part by part.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use uuid::Uuid;

use super::summary::*;
use super::verify::REQUESTED;
use super::*;
use crate::domain::checkpoint::{Checkpoint, DEFAULT_ORIGIN_PREFIX, realm_origin};
use crate::domain::leaf::{LeafEvent, documented_examples};
use crate::domain::merkle::{MemoryTree, inclusion_proof};
use crate::domain::signed_note::{NoteSigner, VerifierKey};

const REALM: Uuid = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0001);
const REQUEST: Uuid = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0a01);
const OTHER_REQUEST: Uuid = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0a02);
const AGENT: Uuid = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0a9e);
const ADMIN: Uuid = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0ad1);
const PORTAL_1: Uuid = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0b01);
const PORTAL_2: Uuid = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0b02);
const T0: i64 = 1_796_115_600_000_000; // 2026-12-01T09:00:00Z

fn signer() -> NoteSigner {
    NoteSigner::from_seed(DEFAULT_ORIGIN_PREFIX, [0x5e; 32]).unwrap()
}

fn keys() -> Vec<VerifierKey> {
    vec![signer().verifier_key()]
}

/// An event of the realm; `request` = (request, back-link).
fn event(
    index: u64,
    action: &str,
    portal: Option<Uuid>,
    request: Option<(Uuid, Option<u64>)>,
    details: &[(&str, &str)],
) -> LeafEvent {
    let by_agent = action == REQUESTED || action == SUPPORT_CALL || action == SUPPORT_ACTION;
    LeafEvent {
        realm_id: REALM,
        leaf_index: index,
        event_id: Uuid::from_u128(0xe000 + index as u128),
        occurred_at_micros: T0 + index as i64 * 60_000_000,
        portal_id: portal,
        category: if request.is_some() {
            "support_session"
        } else {
            "security"
        }
        .into(),
        action: action.into(),
        actor_kind: if action == REQUESTED {
            "support_agent"
        } else {
            "account"
        }
        .into(),
        actor_id: if action == REQUESTED { AGENT } else { ADMIN }.to_string(),
        actor_agent_id: by_agent.then_some(AGENT),
        actor_agent_name: by_agent.then(|| "Ana Souza".to_owned()),
        target_type: "thing".into(),
        target_id: format!("t{index}"),
        details: details
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        access_request_id: request.map(|(r, _)| r),
        previous_request_leaf: request.and_then(|(_, p)| p),
    }
}

/// A realm's log with one whole support session on two portals,
/// interleaved with events of other requests and security changes.
fn realm_log() -> Vec<LeafEvent> {
    let r = |previous: Option<u64>| Some((REQUEST, previous));
    vec![
        event(0, "realm.created", None, None, &[]),
        event(
            1,
            REQUESTED,
            None,
            r(None),
            &[
                ("reason", "SCORM import fails for course 42"),
                ("ticket_reference", "SUP-1234"),
            ],
        ),
        event(2, REQUESTED, None, Some((OTHER_REQUEST, None)), &[]),
        event(
            3,
            ALLOWED,
            Some(PORTAL_1),
            r(Some(1)),
            &[("expire_time", "2026-12-02T09:03:00+00:00")],
        ),
        event(4, TEMPORARY_ADMIN_CREATED, Some(PORTAL_1), r(Some(3)), &[]),
        event(
            5,
            ALLOWED,
            Some(PORTAL_2),
            r(Some(4)),
            &[("expire_time", "2026-12-01T10:05:00+00:00")],
        ),
        event(6, "user.created", Some(PORTAL_2), None, &[]),
        event(
            7,
            SUPPORT_CALL,
            Some(PORTAL_1),
            r(Some(5)),
            &[
                ("rpc", "/portal_access.v1.AdminService/ListUsers"),
                ("outcome", "OK"),
            ],
        ),
        event(
            8,
            SUPPORT_ACTION,
            Some(PORTAL_2),
            r(Some(7)),
            &[
                ("support_action", "re-ran the SCORM import"),
                ("recorded_by", "lms"),
            ],
        ),
        event(9, REVOKED, Some(PORTAL_1), r(Some(8)), &[]),
        event(10, TEMPORARY_ADMIN_DELETED, Some(PORTAL_1), r(Some(9)), &[]),
        event(11, EXPIRED, Some(PORTAL_2), r(Some(10)), &[]),
        event(12, "admin.created", None, None, &[]),
    ]
}

fn tree_of(log: &[LeafEvent]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in log {
        tree.push(leaf.leaf_hash());
    }
    tree
}

fn sign(origin: &str, tree: &MemoryTree) -> String {
    Checkpoint::new(origin, tree.size(), tree.root())
        .unwrap()
        .sign(&[&signer()])
        .unwrap()
}

/// The bundle the server would export for `request` from `log`.
fn bundle_from(log: &[LeafEvent], request: Uuid) -> EvidenceBundle {
    let tree = tree_of(log);
    let events = log
        .iter()
        .filter(|e| e.access_request_id == Some(request))
        .map(|e| {
            let proof = inclusion_proof(e.leaf_index, tree.size(), &tree).unwrap();
            BundleEvent::new(e.leaf_index, &e.encode(), &proof)
        })
        .collect();
    EvidenceBundle::new(
        REALM,
        request,
        sign(&realm_origin(DEFAULT_ORIGIN_PREFIX, REALM), &tree),
        events,
    )
}

fn bundle() -> EvidenceBundle {
    bundle_from(&realm_log(), REQUEST)
}

fn failure(bundle: &EvidenceBundle) -> Failure {
    verify_bundle(bundle, &keys()).expect_err("tampering must be detected")
}

#[test]
fn e6_untouched_bundle_verifies_and_tells_the_story() {
    let summary = verify_bundle(&bundle(), &keys()).unwrap();
    assert_eq!(summary.event_count, 9);
    assert_eq!(summary.checkpoint_size, 13);
    assert_eq!(summary.origin, format!("portal-access/{REALM}"));
    assert!(matches!(summary.session_end, SessionEnd::Inside { .. }));
    let text = summary.text();
    for expected in [
        "asked by  Ana Souza (support agent",
        "reason    SCORM import fails for course 42",
        "ticket    SUP-1234",
        "access allowed by account",
        &format!("Portal {PORTAL_1}"),
        &format!("Portal {PORTAL_2}"),
        "called /portal_access.v1.AdminService/ListUsers → OK",
        "did \"re-ran the SCORM import\" (recorded by service lms)",
        "access ended: revoked by account",
        "access ended: expired",
        "Session end: inside this bundle",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    // Portal by portal: the call is told under portal 1, the action under 2.
    let p1 = text.find(&format!("Portal {PORTAL_1}")).unwrap();
    let p2 = text.find(&format!("Portal {PORTAL_2}")).unwrap();
    let call = text.find("called").unwrap();
    let action = text.find("did \"re-ran").unwrap();
    assert!(p1 < call && call < p2 && p2 < action);
}

#[test]
fn e6_an_altered_event_field_is_caught_by_its_proof() {
    let mut bundle = bundle();
    let mut bytes = STANDARD.decode(&bundle.events[2].leaf_bytes).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    bundle.events[2].leaf_bytes = STANDARD.encode(bytes);
    assert_eq!(
        failure(&bundle),
        Failure::Inclusion {
            position: 3,
            leaf_index: 4,
            size: 13
        }
    );
}

#[test]
fn e6_every_byte_of_every_leaf_is_covered() {
    let original = bundle();
    for (i, event) in original.events.iter().enumerate() {
        let bytes = STANDARD.decode(&event.leaf_bytes).unwrap();
        for at in 0..bytes.len() {
            let mut bundle = original.clone();
            let mut altered = bytes.clone();
            altered[at] ^= 0x20;
            bundle.events[i].leaf_bytes = STANDARD.encode(altered);
            assert!(
                matches!(failure(&bundle), Failure::Inclusion { position, .. } if position == i + 1)
            );
        }
    }
}

#[test]
fn e6_an_altered_proof_hash_is_named() {
    let mut bundle = bundle();
    let mut hash = STANDARD
        .decode(&bundle.events[1].inclusion_proof[0])
        .unwrap();
    hash[0] ^= 0xff;
    bundle.events[1].inclusion_proof[0] = STANDARD.encode(hash);
    let failure = failure(&bundle);
    assert!(matches!(
        failure,
        Failure::Inclusion {
            position: 2,
            leaf_index: 3,
            ..
        }
    ));
    assert!(
        failure.to_string().contains("event #2 (leaf 3)"),
        "{failure}"
    );
    // A hash that is not 32 bytes is an encoding failure naming the entry.
    let mut bundle = self::bundle();
    bundle.events[1].inclusion_proof[1] = "AAAA".into();
    assert_eq!(
        self::failure(&bundle).to_string(),
        "event #2 (leaf 3): inclusion_proof[1] is not valid base64 of the right length"
    );
}

#[test]
fn e6_an_altered_checkpoint_signature_or_text_is_refused() {
    let original = bundle();
    let mut bundle = original.clone();
    let at = bundle.checkpoint.len() - 10;
    let replacement = if &bundle.checkpoint[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    bundle.checkpoint.replace_range(at..at + 1, replacement);
    assert!(
        matches!(failure(&bundle), Failure::Checkpoint { reason } if reason.contains("does not verify"))
    );
    // A larger size in the signed text: the signature no longer holds.
    let mut bundle = original;
    bundle.checkpoint = bundle.checkpoint.replacen("\n13\n", "\n14\n", 1);
    assert!(matches!(failure(&bundle), Failure::Checkpoint { .. }));
}

#[test]
fn e6_a_checkpoint_of_another_realm_is_refused_by_origin() {
    // Validly signed, but for another realm's log.
    let log = realm_log();
    let mut bundle = bundle_from(&log, REQUEST);
    let other = realm_origin(DEFAULT_ORIGIN_PREFIX, Uuid::from_u128(99));
    bundle.checkpoint = sign(&other, &tree_of(&log));
    assert_eq!(
        failure(&bundle),
        Failure::Origin {
            realm_id: REALM,
            origin: other
        }
    );
    // And a bundle that claims another realm than its checkpoint's.
    let mut bundle = bundle_from(&log, REQUEST);
    bundle.realm_id = Uuid::from_u128(99);
    assert!(matches!(failure(&bundle), Failure::Origin { .. }));
    // An origin that is only the realm id, with no deployment prefix.
    let mut bundle = bundle_from(&log, REQUEST);
    bundle.checkpoint = sign(&format!("/{REALM}"), &tree_of(&log));
    assert!(matches!(failure(&bundle), Failure::Origin { .. }));
}

#[test]
fn e6_an_altered_back_link_is_caught_by_its_proof() {
    let mut bundle = bundle();
    let mut leaf =
        LeafEvent::decode(&STANDARD.decode(&bundle.events[4].leaf_bytes).unwrap()).unwrap();
    leaf.previous_request_leaf = Some(3);
    bundle.events[4].leaf_bytes = STANDARD.encode(leaf.encode());
    assert!(matches!(
        failure(&bundle),
        Failure::Inclusion { position: 5, .. }
    ));
}

#[test]
fn e5_a_log_written_with_a_broken_back_link_does_not_verify() {
    // The writer itself skipped an event in the chain: proofs hold, the
    // chain does not.
    let mut log = realm_log();
    log[7].previous_request_leaf = Some(4);
    let failure = failure(&bundle_from(&log, REQUEST));
    assert_eq!(
        failure,
        Failure::BackLink {
            position: 5,
            leaf_index: 7,
            expected: 5,
            found: Some(4)
        }
    );
}

#[test]
fn e5_a_removed_event_in_the_middle_breaks_the_chain_where_it_was() {
    let mut bundle = bundle();
    bundle.events.remove(3); // leaf 5, PORTAL_2 allowed
    let failure = failure(&bundle);
    assert_eq!(
        failure,
        Failure::BackLink {
            position: 4,
            leaf_index: 7,
            expected: 4,
            found: Some(5)
        }
    );
    assert!(
        failure.to_string().contains("links back to leaf 5"),
        "{failure}"
    );
}

#[test]
fn e5_a_reordered_pair_is_out_of_order() {
    let mut bundle = bundle();
    bundle.events.swap(4, 5);
    assert_eq!(
        failure(&bundle),
        Failure::Order {
            position: 6,
            leaf_index: 7,
            previous: 8
        }
    );
}

#[test]
fn e5_a_missing_request_event_is_named() {
    let mut bundle = bundle();
    bundle.events.remove(0);
    assert!(matches!(
        failure(&bundle),
        Failure::FirstIsNotTheRequest {
            leaf_index: 3,
            back_link: Some(1),
            ..
        }
    ));
}

#[test]
fn e5_an_event_of_another_request_is_refused() {
    let log = realm_log();
    let mut bundle = bundle_from(&log, REQUEST);
    let stranger = bundle_from(&log, OTHER_REQUEST).events[0].clone();
    bundle.events.insert(1, stranger);
    assert_eq!(
        failure(&bundle),
        Failure::Request {
            position: 2,
            leaf_index: 2,
            found: Some(OTHER_REQUEST)
        }
    );
}

#[test]
fn e5_a_truncated_tail_verifies_but_says_the_end_is_not_inside() {
    let mut bundle = bundle();
    bundle.events.truncate(6); // up to the call on portal 1
    let summary = verify_bundle(&bundle, &keys()).unwrap();
    assert_eq!(
        summary.session_end,
        SessionEnd::NotInBundle {
            open_portals: vec![PORTAL_1, PORTAL_2]
        }
    );
    assert!(summary.text().contains("Session end: NOT in this bundle"));
    // Only portal 2's end missing.
    let mut bundle = self::bundle();
    bundle.events.pop();
    let summary = verify_bundle(&bundle, &keys()).unwrap();
    assert_eq!(
        summary.session_end,
        SessionEnd::NotInBundle {
            open_portals: vec![PORTAL_2]
        }
    );
}

#[test]
fn e5_a_request_closed_without_access_ends_inside() {
    let log = vec![
        event(0, REQUESTED, None, Some((REQUEST, None)), &[]),
        event(1, DECLINED, None, Some((REQUEST, Some(0))), &[]),
    ];
    let summary = verify_bundle(&bundle_from(&log, REQUEST), &keys()).unwrap();
    assert!(
        matches!(summary.session_end, SessionEnd::Inside { ref how, .. } if how.contains("declined"))
    );
    // A pending request: nothing started, nothing ended.
    let summary = verify_bundle(&bundle_from(&log[..1], REQUEST), &keys()).unwrap();
    assert_eq!(
        summary.session_end,
        SessionEnd::NotInBundle {
            open_portals: vec![]
        }
    );
}

#[test]
fn e6_a_wrong_verifier_key_is_refused_and_rotation_keeps_old_bundles() {
    let stranger = NoteSigner::from_seed(DEFAULT_ORIGIN_PREFIX, [1; 32]).unwrap();
    let failure = verify_bundle(&bundle(), &[stranger.verifier_key()]).unwrap_err();
    assert!(
        matches!(&failure, Failure::Checkpoint { reason } if reason.contains("no signature from a given verifier key")),
        "{failure}"
    );
    assert_eq!(
        verify_bundle(&bundle(), &[]).unwrap_err(),
        Failure::NoVerifierKey
    );
    // After rotation the customer holds both keys: the old bundle verifies.
    let both = [stranger.verifier_key(), signer().verifier_key()];
    assert!(verify_bundle(&bundle(), &both).is_ok());
}

#[test]
fn e6_format_and_emptiness_are_checked() {
    let mut bundle = bundle();
    bundle.format = "portal-access-evidence/v2".into();
    assert!(matches!(failure(&bundle), Failure::Format { .. }));
    let mut bundle = self::bundle();
    bundle.events.clear();
    assert_eq!(failure(&bundle), Failure::NoEvents);
    // Unknown fields are refused at parsing: all that is shown is verified.
    let json = self::bundle()
        .to_json()
        .replacen("{", "{\"note\": \"trust me\",", 1);
    assert!(EvidenceBundle::from_json(&json).is_err());
}

#[test]
fn e6_verify_evidence_file_prints_the_summary_or_the_first_failure() {
    let dir = std::env::temp_dir().join(format!("evidence-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    std::fs::write(&good, bundle().to_json()).unwrap();
    let key = signer().verifier_key().to_string();
    let summary = verify_evidence_file(&good, std::slice::from_ref(&key)).unwrap();
    assert!(summary.starts_with(&format!("Evidence for access request {REQUEST}")));

    let mut tampered = bundle();
    tampered.events.remove(3);
    let bad = dir.join("bad.json");
    std::fs::write(&bad, tampered.to_json()).unwrap();
    let message = verify_evidence_file(&bad, &[key]).unwrap_err();
    assert!(
        message.starts_with("NOT VERIFIED: event #4 (leaf 7)"),
        "{message}"
    );

    let message = verify_evidence_file(&good, &["not a key".into()]).unwrap_err();
    assert!(message.starts_with("verifier key #1"), "{message}");
    assert!(verify_evidence_file(&dir.join("missing.json"), &[]).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn summary_action_names_are_the_servers() {
    use crate::domain::audit::action;
    assert_eq!(REQUESTED, action::SUPPORT_REQUESTED);
    assert_eq!(WITHDRAWN, action::SUPPORT_WITHDRAWN);
    assert_eq!(DECLINED, action::SUPPORT_DECLINED);
    assert_eq!(REQUEST_EXPIRED, action::SUPPORT_REQUEST_EXPIRED);
    assert_eq!(ALLOWED, action::SUPPORT_ALLOWED);
    assert_eq!(EXTENDED, action::SUPPORT_EXTENDED);
    assert_eq!(REVOKED, action::SUPPORT_REVOKED);
    assert_eq!(EXPIRED, action::SUPPORT_EXPIRED);
    assert_eq!(TEMPORARY_ADMIN_CREATED, action::TEMPORARY_ADMIN_CREATED);
    assert_eq!(TEMPORARY_ADMIN_DELETED, action::TEMPORARY_ADMIN_DELETED);
    assert_eq!(SUPPORT_ACTION, action::SUPPORT_ACTION);
    assert_eq!(SUPPORT_CALL, action::SUPPORT_CALL);
}

/// The example of docs/evidence/bundle.md: the three documented leaves
/// (leaf-encoding.md) under a checkpoint signed by a fixed test key.
fn documented_bundle() -> (EvidenceBundle, NoteSigner) {
    let examples = documented_examples();
    let signer = NoteSigner::from_seed("example.com/portal-access", [0x11; 32]).unwrap();
    let tree = tree_of(&examples);
    let checkpoint = Checkpoint::new(
        &realm_origin("example.com/portal-access", examples[0].realm_id),
        tree.size(),
        tree.root(),
    )
    .unwrap()
    .sign(&[&signer])
    .unwrap();
    let events = examples
        .iter()
        .map(|e| {
            let proof = inclusion_proof(e.leaf_index, tree.size(), &tree).unwrap();
            BundleEvent::new(e.leaf_index, &e.encode(), &proof)
        })
        .collect();
    let bundle = EvidenceBundle::new(
        examples[0].realm_id,
        examples[0].access_request_id.unwrap(),
        checkpoint,
        events,
    );
    (bundle, signer)
}

#[test]
fn e5_documented_bundle_example_matches_the_code() {
    let (bundle, signer) = documented_bundle();
    let summary = verify_bundle(&bundle, &[signer.verifier_key()]).unwrap();
    let expected = format!(
        "<!-- generated by evidence::tests; do not edit by hand -->\n\n\
         Verifier key:\n\n```text\n{}\n```\n\nBundle:\n\n```json\n{}\n```\n\n\
         `portal-access verify-evidence` prints:\n\n```text\n{}```\n\n\
         <!-- end of generated part -->\n",
        signer.verifier_key(),
        bundle.to_json(),
        summary.text()
    );
    let doc = include_str!("../../docs/evidence/bundle.md");
    if !doc.contains(&expected) {
        let path = std::env::temp_dir().join("bundle-example.md");
        std::fs::write(&path, &expected).unwrap();
        panic!(
            "docs/evidence/bundle.md is out of date; the current example is in {}",
            path.display()
        );
    }
}
