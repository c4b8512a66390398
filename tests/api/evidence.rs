//! Verifiable evidence through the API (E1–E7): signed checkpoints,
//! inclusion and consistency proofs, checkpoints in the stream, evidence
//! bundles checked offline by the binary, and tampering under a running
//! server, caught by the verifier or by a checkpoint kept earlier.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, Statement};
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use crate::support_steps::*;
use pb::stream_audit_events_request::Start;
use portal_access::domain::checkpoint::{Checkpoint, open_checkpoint};
use portal_access::domain::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use portal_access::domain::signed_note::VerifierKey;
use portal_access::proto::v1 as pb;

async fn verifier_keys(app: &TestApp, token: &str) -> Vec<VerifierKey> {
    app.support()
        .get_log_verifier_keys(with_token(pb::GetLogVerifierKeysRequest {}, token))
        .await
        .expect("verifier keys")
        .into_inner()
        .verifier_keys
        .iter()
        .map(|k| VerifierKey::parse(k).expect("a signed-note verifier key"))
        .collect()
}

/// The realm's checkpoint, opened with the published keys.
async fn checkpoint(app: &TestApp, world: &World) -> (Checkpoint, String) {
    let answer = app
        .support()
        .get_log_checkpoint(with_token(
            pb::GetLogCheckpointRequest {
                realm_id: world.realm.realm_id.clone(),
            },
            &world.realm.admin_token,
        ))
        .await
        .expect("checkpoint")
        .into_inner();
    let keys = verifier_keys(app, &world.realm.admin_token).await;
    let opened = open_checkpoint(&answer.checkpoint, &keys).expect("signed by a published key");
    assert_eq!(opened.size(), answer.tree_size as u64);
    assert_eq!(opened.root().as_slice(), answer.root_hash.as_slice());
    assert_eq!(
        opened.origin(),
        format!("portal-access/{}", world.realm.realm_id)
    );
    (opened, answer.checkpoint)
}

async fn consistency(
    app: &TestApp,
    world: &World,
    old: i64,
    new: i64,
) -> Result<Vec<Hash>, tonic::Status> {
    app.support()
        .get_consistency_proof(with_token(
            pb::GetConsistencyProofRequest {
                realm_id: world.realm.realm_id.clone(),
                old_size: old,
                new_size: new,
            },
            &world.realm.admin_token,
        ))
        .await
        .map(|r| hashes(r.into_inner().hashes))
}

async fn inclusion(
    app: &TestApp,
    world: &World,
    index: i64,
    size: i64,
) -> Result<(Vec<u8>, Vec<Hash>), tonic::Status> {
    app.support()
        .get_inclusion_proof(with_token(
            pb::GetInclusionProofRequest {
                realm_id: world.realm.realm_id.clone(),
                leaf_index: index,
                tree_size: size,
            },
            &world.realm.admin_token,
        ))
        .await
        .map(|r| {
            let r = r.into_inner();
            (r.leaf_bytes, hashes(r.hashes))
        })
}

fn hashes(raw: Vec<Vec<u8>>) -> Vec<Hash> {
    raw.into_iter()
        .map(|h| h.try_into().expect("32-byte hashes"))
        .collect()
}

both_databases! {
    async fn e2_e3_checkpoints_sign_the_tree_and_every_proof_verifies(app) {
        let world = world(app).await;
        // Keep a checkpoint after each change, as a watcher would.
        let mut kept = vec![checkpoint(app, &world).await.0];
        for n in 0..12 {
            person(app, &world, &world.sub_a, &format!("p{n}@acme.io"), pb::UserType::Learner, None).await;
            kept.push(checkpoint(app, &world).await.0);
        }
        let last = kept.last().unwrap().clone();
        // Inclusion: every leaf of every kept size.
        for (n, cp) in kept.iter().enumerate() {
            for index in 0..cp.size() {
                let (leaf, proof) = inclusion(app, &world, index as i64, cp.size() as i64).await.unwrap();
                assert!(verify_inclusion(&leaf_hash(&leaf), index, cp.size(), &proof, cp.root()));
                // Against another tree's root, the same proof fails (sizes
                // alone may share a path: the signed root ties them).
                let other = &kept[(n + 1) % kept.len()];
                assert!(!verify_inclusion(&leaf_hash(&leaf), index, cp.size(), &proof, other.root()));
            }
        }
        // Consistency: every pair of kept sizes.
        for old in &kept {
            for new in kept.iter().filter(|n| n.size() >= old.size()) {
                let proof = consistency(app, &world, old.size() as i64, new.size() as i64).await.unwrap();
                assert!(verify_consistency(old.size(), new.size(), old.root(), new.root(), &proof));
                if new.size() > old.size() + 1 {
                    assert!(!verify_consistency(old.size() + 1, new.size(), old.root(), new.root(), &proof));
                }
            }
        }
        // Bad sizes and indexes, each naming its field.
        let size = last.size() as i64;
        for (old, new, field) in [(-1, size, "old_size"), (2, -3, "new_size"), (0, size, "old_size"), (size, size - 1, "old_size"), (1, size + 1, "new_size")] {
            let status = assert_error(consistency(app, &world, old, new).await, Code::InvalidArgument, "INVALID_ARGUMENT");
            assert_eq!(bad_fields(&status), [field], "{old} {new}");
        }
        for (index, size, field) in [(-1, size, "leaf_index"), (size, size, "leaf_index"), (0, size + 1, "tree_size")] {
            let status = assert_error(inclusion(app, &world, index, size).await, Code::InvalidArgument, "INVALID_ARGUMENT");
            assert_eq!(bad_fields(&status), [field], "{index} {size}");
        }
    }
}

/// E7: the leaf bytes of docs/evidence/leaf-encoding.md, written here from
/// the document and the event message alone (not the server's encoder).
fn leaf_from_message(e: &pb::AuditEvent) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn uuid(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(uuid::Uuid::parse_str(s).unwrap().as_bytes());
    }
    fn optional_uuid(out: &mut Vec<u8>, s: &str) {
        if s.is_empty() {
            out.push(0);
        } else {
            out.push(1);
            uuid(out, s);
        }
    }
    let actor = e.actor.as_ref().unwrap();
    let category = match pb::AuditCategory::try_from(e.category).unwrap() {
        pb::AuditCategory::Security => "security",
        pb::AuditCategory::SupportSession => "support_session",
        other => panic!("{other:?}"),
    };
    let actor_kind = match pb::ActorKind::try_from(actor.kind).unwrap() {
        pb::ActorKind::Account => "account",
        pb::ActorKind::ApiClient => "api_client",
        pb::ActorKind::SupportAgent => "support_agent",
        pb::ActorKind::Operator => "operator",
        pb::ActorKind::Service => "service",
        pb::ActorKind::System => "system",
        other => panic!("{other:?}"),
    };
    let at = e.occur_time.as_ref().unwrap();
    let micros = at.seconds * 1_000_000 + i64::from(at.nanos) / 1000;
    let mut out = vec![1u8];
    uuid(&mut out, &e.realm_id);
    out.extend_from_slice(&(e.leaf_index.unwrap() as u64).to_be_bytes());
    uuid(&mut out, &e.event_id);
    out.extend_from_slice(&micros.to_be_bytes());
    optional_uuid(&mut out, &e.portal_id);
    string(&mut out, category);
    string(&mut out, &e.action);
    string(&mut out, actor_kind);
    string(&mut out, &actor.actor_id);
    optional_uuid(&mut out, &actor.agent_id);
    if actor.agent_name.is_empty() {
        out.push(0);
    } else {
        out.push(1);
        string(&mut out, &actor.agent_name);
    }
    string(&mut out, &e.target_type);
    string(&mut out, &e.target_id);
    let details: BTreeMap<&String, &String> = e.details.iter().collect();
    out.extend_from_slice(&(details.len() as u32).to_be_bytes());
    for (k, v) in details {
        string(&mut out, k);
        string(&mut out, v);
    }
    optional_uuid(&mut out, &e.access_request_id);
    match e.previous_request_leaf {
        Some(leaf) => {
            out.push(1);
            out.extend_from_slice(&(leaf as u64).to_be_bytes());
        }
        None => out.push(0),
    }
    out
}

/// RFC 9162 §2.1.1 MTH, written out for the test.
fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            let (l, r) = (root(&leaves[..k]), root(&leaves[k..]));
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(l);
            h.update(r);
            h.finalize().into()
        }
    }
}

both_databases! {
    async fn e4_e7_a_client_recomputes_the_signed_root_from_the_stream(app) {
        let world = world(app).await;
        let agent = agent(app, "Sam Support");
        let request = request_access(app, &agent, &world.realm.realm_id).await;
        allow(app, &world.realm.admin_token, &request.access_request_id, &[&world.sub_a], hours(2)).await.unwrap();
        person(app, &world, &world.sub_b, "late@acme.io", pb::UserType::Learner, None).await;
        let mut stream = app
            .support()
            .stream_audit_events(with_token(
                pb::StreamAuditEventsRequest {
                    realm_id: world.realm.realm_id.clone(),
                    start: Some(Start::FromBeginning(true)),
                    ..Default::default()
                },
                &world.realm.admin_token,
            ))
            .await
            .unwrap()
            .into_inner();
        let mut leaves = Vec::new();
        let note = loop {
            let message = stream.message().await.unwrap().expect("open");
            if let Some(event) = message.event {
                let mut h = Sha256::new();
                h.update([0u8]);
                h.update(leaf_from_message(&event));
                leaves.push(h.finalize().into());
                continue;
            }
            let progress = message.progress.expect("event or progress");
            assert_eq!(progress.checkpoints.len(), 1, "the realm's checkpoint");
            break progress.checkpoints[0].clone();
        };
        let keys = verifier_keys(app, &world.realm.admin_token).await;
        let signed = open_checkpoint(&note, &keys).expect("signed");
        assert_eq!(signed.size(), leaves.len() as u64);
        assert_eq!(*signed.root(), root(&leaves), "the client's root is the signed root");
    }
}

/// A whole support session: request, two portals allowed, a call of the
/// temporary admin, a recorded action, a revoke.
async fn session(app: &TestApp, world: &World) -> (Agent, pb::AccessRequest) {
    let agent = agent(app, "Sam Support");
    let request = request_access(app, &agent, &world.realm.realm_id).await;
    let granted = allow(
        app,
        &world.realm.admin_token,
        &request.access_request_id,
        &[&world.sub_a, &world.sub_b],
        hours(4),
    )
    .await
    .unwrap();
    let tmp = &granted[0].temporary_admin_id;
    let tmp_token = temporary_admin_token(app, &world.realm.realm_id, tmp, &agent);
    app.admins()
        .list_users(with_token(
            pb::ListUsersRequest {
                portal_id: world.sub_a.clone(),
                ..Default::default()
            },
            &tmp_token,
        ))
        .await
        .expect("support looks around");
    record_action(
        app,
        &app.service(&["support_actions.record"]),
        &world.sub_a,
        tmp,
        &agent,
    )
    .await
    .unwrap();
    revoke(
        app,
        &world.realm.admin_token,
        &world.realm.realm_id,
        &[&world.sub_a, &world.sub_b],
    )
    .await
    .unwrap();
    (agent, request)
}

async fn export(app: &TestApp, token: &str, request_id: &str) -> String {
    app.support()
        .export_access_evidence(with_token(
            pb::ExportAccessEvidenceRequest {
                access_request_id: request_id.into(),
            },
            token,
        ))
        .await
        .expect("export")
        .into_inner()
        .bundle_json
}

/// Runs `portal-access verify-evidence` on a bundle: (success, output).
async fn verify_offline(bundle: &str, keys: &[String]) -> (bool, String) {
    let file = std::env::temp_dir().join(format!("evidence-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, bundle).unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-access"));
    command.arg("verify-evidence").arg(&file);
    for key in keys {
        command.arg("--verifier-key").arg(key);
    }
    let out = command.output().await.unwrap();
    std::fs::remove_file(&file).ok();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

both_databases! {
    async fn e5_e6_a_session_s_evidence_verifies_offline_and_tampering_is_named(app) {
        let world = world(app).await;
        let (agent, request) = session(app, &world).await;
        let bundle = export(app, &world.realm.admin_token, &request.access_request_id).await;
        let keys: Vec<String> = verifier_keys(app, &world.realm.admin_token).await.iter().map(ToString::to_string).collect();
        let (ok, summary) = verify_offline(&bundle, &keys).await;
        assert!(ok, "{summary}");
        for expected in [agent.name.as_str(), "broken course import", "SUP-1234", "course.viewed"] {
            assert!(summary.contains(expected), "summary lacks {expected:?}:\n{summary}");
        }
        // A service with audit.read exports the same session.
        export(app, &app.service(&["audit.read"]), &request.access_request_id).await;

        // Tampering with the bundle: one changed byte in a leaf.
        let mut json: serde_json::Value = serde_json::from_str(&bundle).unwrap();
        let leaf = json["events"][1]["leaf_bytes"].as_str().unwrap().to_owned();
        use base64::Engine;
        let mut bytes = base64::engine::general_purpose::STANDARD.decode(&leaf).unwrap();
        let last = bytes.len() - 12;
        bytes[last] ^= 1;
        json["events"][1]["leaf_bytes"] = base64::engine::general_purpose::STANDARD.encode(&bytes).into();
        let (ok, failure) = verify_offline(&json.to_string(), &keys).await;
        assert!(!ok);
        assert!(failure.contains("NOT VERIFIED"), "{failure}");
        // A wrong key.
        let other = portal_access::domain::signed_note::NoteSigner::from_seed("portal-access", [9; 32]).unwrap();
        let (ok, _) = verify_offline(&bundle, &[other.verifier_key().to_string()]).await;
        assert!(!ok, "a bundle verifies only with the log's key");

        // Tampering with the database under the running server, each on a
        // fresh session: an event edited, one deleted, two reordered. The
        // next export no longer verifies.
        let db = app.database().await;
        let backend = db.get_database_backend();
        for tamper in ["edit", "delete", "reorder"] {
            let (_, request) = session(app, &world).await;
            let session_literal = match app.backend {
                Backend::Postgres => format!("'{}'", request.access_request_id),
                Backend::Sqlite => format!(
                    "X'{}'",
                    uuid::Uuid::parse_str(&request.access_request_id).unwrap().simple()
                ),
            };
            let leaves: Vec<i64> = db
                .query_all_raw(Statement::from_string(
                    backend,
                    format!("SELECT leaf_index FROM audit_events WHERE access_request_id = {session_literal} ORDER BY leaf_index"),
                ))
                .await
                .unwrap()
                .iter()
                .map(|row| row.try_get_by_index(0).unwrap())
                .collect();
            assert!(leaves.len() >= 6, "{leaves:?}");
            let (a, b) = (leaves[2], leaves[3]);
            let statements = match tamper {
                "edit" => vec![format!(
                    "UPDATE audit_events SET target_id = 'course-1' WHERE access_request_id = {session_literal} AND action = 'support_access.action'"
                )],
                "delete" => vec![format!(
                    "DELETE FROM audit_events WHERE access_request_id = {session_literal} AND leaf_index = {a}"
                )],
                _ => vec![
                    format!("UPDATE audit_events SET leaf_index = -1 WHERE access_request_id = {session_literal} AND leaf_index = {a}"),
                    format!("UPDATE audit_events SET leaf_index = {a} WHERE access_request_id = {session_literal} AND leaf_index = {b}"),
                    format!("UPDATE audit_events SET leaf_index = {b} WHERE access_request_id = {session_literal} AND leaf_index = -1"),
                ],
            };
            for sql in statements {
                let changed = db.execute_raw(Statement::from_string(backend, sql)).await.unwrap();
                assert_eq!(changed.rows_affected(), 1, "{tamper}");
            }
            let tampered = export(app, &world.realm.admin_token, &request.access_request_id).await;
            let (ok, failure) = verify_offline(&tampered, &keys).await;
            assert!(!ok, "{tamper}: the bundle must not verify:\n{failure}");
            assert!(failure.contains("NOT VERIFIED"), "{tamper}: {failure}");
            eprintln!("{tamper}: {}", failure.lines().next().unwrap_or_default());
        }
    }
}

both_databases! {
    /// Whoever holds the database rewrites an event and recomputes the
    /// whole tree (here with the server's own catch-up): a checkpoint kept
    /// before shows it, since no consistency proof leads from it.
    async fn e4_a_rewritten_and_recomputed_log_is_caught_by_a_kept_checkpoint(app) {
        let world = world(app).await;
        let (kept, _) = checkpoint(app, &world).await;
        let db = app.database().await;
        let backend = db.get_database_backend();
        for sql in [
            format!("UPDATE audit_events SET target_id = 'rewritten' WHERE realm_id = {} AND action = 'portal.created'", realm_literal(app, &world)),
            format!("UPDATE audit_events SET leaf_index = NULL, access_request_id = NULL, previous_request_leaf = NULL WHERE realm_id = {}", realm_literal(app, &world)),
            format!("DELETE FROM audit_tree_nodes WHERE realm_id = {}", realm_literal(app, &world)),
            format!("UPDATE realms SET tree_size = 0, tree_border = '', tree_chain_hash = 'recompute' WHERE id = {}", realm_literal(app, &world)),
        ] {
            db.execute_raw(Statement::from_string(backend, sql)).await.unwrap();
        }
        // The next audited change rebuilds the tree over the rewritten log.
        person(app, &world, &world.sub_a, "after@acme.io", pb::UserType::Learner, None).await;
        let (now, _) = checkpoint(app, &world).await;
        assert!(now.size() > kept.size());
        let proof = consistency(app, &world, kept.size() as i64, now.size() as i64).await.unwrap();
        assert!(
            !verify_consistency(kept.size(), now.size(), kept.root(), now.root(), &proof),
            "the rewritten log must not extend the kept checkpoint"
        );
    }
}

fn realm_literal(app: &TestApp, world: &World) -> String {
    match app.backend {
        Backend::Postgres => format!("'{}'", world.realm.realm_id),
        Backend::Sqlite => format!(
            "X'{}'",
            uuid::Uuid::parse_str(&world.realm.realm_id)
                .unwrap()
                .simple()
        ),
    }
}

both_databases! {
    /// E2 rotation: a bundle signed with the old key verifies with the old
    /// verifier key; after the rotation checkpoints carry the new key.
    async fn e2_a_rotated_key_signs_new_checkpoints_and_old_bundles_still_verify(app) {
        let world = world(app).await;
        let (_, request) = session(app, &world).await;
        let old_keys: Vec<String> = verifier_keys(app, &world.realm.admin_token).await.iter().map(ToString::to_string).collect();
        let old_bundle = export(app, &world.realm.admin_token, &request.access_request_id).await;

        let new_signer = portal_access::domain::signed_note::NoteSigner::from_seed("portal-access", [42; 32]).unwrap();
        let key_file = std::env::temp_dir().join(format!("rotated-{}", uuid::Uuid::new_v4()));
        std::fs::write(&key_file, new_signer.private_key_text()).unwrap();
        let mut config = test_config(&app.database_url);
        config.log_signing_key = Some(key_file.clone());
        config.log_verifier_keys = old_keys.clone();
        let rotated = start_server(config, app.backend).await;
        let published: Vec<String> = verifier_keys(&rotated, &world.realm.admin_token).await.iter().map(ToString::to_string).collect();
        assert_eq!(published[0], new_signer.verifier_key().to_string(), "the current key first");
        assert!(published.contains(&old_keys[0]), "the old key is still published");

        let (ok, text) = verify_offline(&old_bundle, &old_keys).await;
        assert!(ok, "{text}");
        // Something new, so the rotated server signs a new size.
        person(&rotated, &world, &world.sub_a, "new@acme.io", pb::UserType::Learner, None).await;
        let new_bundle = export(&rotated, &world.realm.admin_token, &request.access_request_id).await;
        let (ok, _) = verify_offline(&new_bundle, &[new_signer.verifier_key().to_string()]).await;
        assert!(ok);
        let (ok, _) = verify_offline(&new_bundle, &old_keys).await;
        assert!(!ok, "a new checkpoint is signed with the new key only");
        rotated.stop().await;
        std::fs::remove_file(key_file).ok();
    }
}

both_databases! {
    /// E3, E5 rights (SPEC §4): full top-level admins of the realm and
    /// services with audit.read; a learner is refused whether or not the
    /// request exists, another realm's admin finds nothing.
    async fn e3_e5_proofs_and_evidence_are_for_the_realm_s_full_admins_and_audit_readers(app) {
        let world = world(app).await;
        let other = world_named(app, "other").await;
        let (_, request) = session(app, &world).await;
        let learner = person(app, &world, &world.sub_a, "l@acme.io", pb::UserType::Learner, None).await;
        let limited = person(app, &world, &world.realm.top_portal_id, "lim@acme.io", pb::UserType::Admin, Some(false)).await;
        let checkpoint_as = |token: String| {
            let mut support = app.support();
            let realm_id = world.realm.realm_id.clone();
            async move {
                support
                    .get_log_checkpoint(with_token(pb::GetLogCheckpointRequest { realm_id }, &token))
                    .await
            }
        };
        let export_as = |token: String, id: String| {
            let mut support = app.support();
            async move {
                support
                    .export_access_evidence(with_token(pb::ExportAccessEvidenceRequest { access_request_id: id }, &token))
                    .await
            }
        };
        assert_error(checkpoint_as(learner.token.clone()).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_REQUIRED");
        assert_error(checkpoint_as(limited.token.clone()).await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED");
        assert_error(checkpoint_as(other.realm.admin_token.clone()).await, Code::NotFound, "REALM_NOT_FOUND");
        assert_error(checkpoint_as(app.service(&["permissions.check"])).await, Code::PermissionDenied, "MISSING_SCOPE");
        assert_error(checkpoint_as(agent(app, "Sam").token).await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND");
        checkpoint_as(app.service(&["audit.read"])).await.expect("an audit reader");
        let random = uuid::Uuid::new_v4().to_string();
        for id in [request.access_request_id.clone(), random.clone()] {
            assert_error(export_as(learner.token.clone(), id.clone()).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_REQUIRED");
            assert_error(export_as(other.realm.admin_token.clone(), id).await, Code::NotFound, "ACCESS_REQUEST_NOT_FOUND");
        }
        assert_error(export_as(world.realm.admin_token.clone(), random).await, Code::NotFound, "ACCESS_REQUEST_NOT_FOUND");
    }
}
