//! Invariants that span rows, raced with real concurrent gRPC calls. They
//! hold because the database decides them (realm row locks, unique partial
//! indexes), so they would hold across replicas too.

use std::sync::Arc;

use sea_orm::ConnectionTrait;
use tokio::task::JoinSet;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use pb::UserType as T;
use portal_access::proto::v1 as pb;

/// Realms (and calls per admin) raced: more on PostgreSQL, the production
/// database; SQLite serializes writers anyway.
fn scale(app: &TestApp) -> (usize, usize) {
    match app.backend {
        Backend::Postgres => (120, 6),
        Backend::Sqlite => (30, 4),
    }
}

async fn realms_without_full_admin(app: &TestApp) -> i64 {
    let db = app.database().await;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM realms r WHERE NOT EXISTS ( \
               SELECT 1 FROM memberships m JOIN accounts a ON a.id = m.account_id \
               WHERE m.portal_id = r.top_level_portal_id AND m.user_type = 'admin' \
               AND a.can_access_portal_settings AND a.support_grant_id IS NULL)"
                .to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    db.close().await.ok();
    row.try_get_by_index(0).unwrap()
}

both_databases! {
    async fn a16_admins_demoting_each_other_and_themselves_at_once_never_leave_a_realm_without_one(app) {
        let (realms, calls_per_admin) = scale(app);
        let mut pairs = Vec::new();
        for i in 0..realms {
            let realm = app.create_realm(&format!("race-{i}")).await;
            let top = realm.top_portal_id.clone();
            let second = create_user(app, &realm.admin_token, &top, &format!("b{i}@race.example"), T::Admin, Some(true))
                .await
                .unwrap();
            let second_token = app.account(&realm.realm_id, &second.user_id);
            pairs.push((realm, second.user_id, second_token));
        }
        let portals = Arc::new(app.portals());
        let mut calls = JoinSet::new();
        for (realm, second_id, second_token) in &pairs {
            let sides = [
                (realm.admin_token.clone(), realm.admin_id.clone(), second_id.clone()),
                (second_token.clone(), second_id.clone(), realm.admin_id.clone()),
            ];
            for (n, (token, me, them)) in sides.into_iter().enumerate() {
                for k in 0..calls_per_admin {
                    let admins = app.admins();
                    // At the other admin, and at oneself: two admins each
                    // stepping down at once is the write skew A16 must stop.
                    let other = if k % 2 == 0 { them.clone() } else { me.clone() };
                    let (token, top) = (token.clone(), realm.top_portal_id.clone());
                    let _ = &portals;
                    calls.spawn(async move {
                        // Every route that lowers the count.
                        let result = match (n + k) % 4 {
                            0 => admins
                                .clone()
                                .update_admin_permissions(with_token(
                                    pb::UpdateAdminPermissionsRequest { user_id: other, can_access_portal_settings: false },
                                    &token,
                                ))
                                .await
                                .map(|_| ()),
                            1 => admins
                                .clone()
                                .set_user_type(with_token(
                                    pb::SetUserTypeRequest { user_id: other, portal_id: top, user_type: T::Learner as i32, can_access_portal_settings: None },
                                    &token,
                                ))
                                .await
                                .map(|_| ()),
                            2 => admins
                                .clone()
                                .remove_user_from_portal(with_token(
                                    pb::RemoveUserFromPortalRequest { user_id: other, portal_id: top },
                                    &token,
                                ))
                                .await
                                .map(|_| ()),
                            _ => admins
                                .clone()
                                .delete_user(with_token(pb::DeleteUserRequest { user_id: other }, &token))
                                .await
                                .map(|_| ()),
                        };
                        result.map_err(|s| (reason(&s), portal_access::grpc::status::code_name(s.code())))
                    });
                }
            }
        }
        let mut succeeded = 0;
        let mut refused = std::collections::BTreeMap::new();
        while let Some(outcome) = calls.join_next().await {
            match outcome.unwrap() {
                Ok(()) => succeeded += 1,
                Err(refusal) => *refused.entry(refusal).or_insert(0) += 1,
            }
        }
        let orphaned = realms_without_full_admin(app).await;
        println!(
            "A16 race on {:?}: {realms} realms, {succeeded} calls succeeded, refused {refused:?}; realms left without a full admin: {orphaned}",
            app.backend
        );
        assert_eq!(orphaned, 0);
        assert!(succeeded >= realms, "each realm let one demotion through");
        // Every refusal is a rule's, never a failure that happens to refuse:
        // A16 itself, or the standing the other admin's call left behind.
        for (reason, code) in refused.keys() {
            let expected = match reason.as_str() {
                "LAST_ADMIN" | "NOT_A_MEMBER" | "NOT_AN_ADMIN" => "FAILED_PRECONDITION",
                "PRIVILEGE_ESCALATION" | "TOP_LEVEL_ADMIN_PROTECTED" | "ADMIN_REQUIRED" => "PERMISSION_DENIED",
                "UNKNOWN_ACCOUNT" => "UNAUTHENTICATED",
                "USER_NOT_FOUND" => "NOT_FOUND",
                other => panic!("refused for {other} ({code}): {refused:?}"),
            };
            assert_eq!(*code, expected, "{reason}");
        }
        assert!(refused.keys().any(|(r, _)| r == "LAST_ADMIN"), "A16 refused some call: {refused:?}");
    }
}

both_databases! {
    async fn k2_concurrent_key_generation_leaves_exactly_one_active_set(app) {
        let realm = app.create_realm("acme").await;
        let generators = 24;
        let mut calls = JoinSet::new();
        for _ in 0..generators {
            let portals = app.portals();
            let request = with_token(
                pb::GenerateApiKeysRequest { request_id: String::new(), portal_id: realm.top_portal_id.clone() },
                &realm.admin_token,
            );
            calls.spawn(async move { portals.clone().generate_api_keys(request).await.map(|r| r.into_inner()) });
        }
        let mut generated = Vec::new();
        while let Some(outcome) = calls.join_next().await {
            generated.push(outcome.unwrap().expect("generation succeeds, serialized by the realm lock"));
        }
        let db = app.database().await;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL".to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        let active: i64 = row.try_get_by_index(0).unwrap();
        db.close().await.ok();
        println!("K2 race on {:?}: {generators} concurrent generations, active sets: {active}", app.backend);
        assert_eq!(active, 1);
        assert_eq!(app.count("api_keys").await, generators as i64);
        // Exactly one of the returned secrets still verifies.
        let service = app.service(&["api_keys.verify"]);
        let mut valid = 0;
        for g in &generated {
            let verified = app
                .portals()
                .verify_api_key(with_token(pb::VerifyApiKeyRequest { secret: g.secret.clone() }, &service))
                .await
                .unwrap()
                .into_inner();
            valid += usize::from(verified.valid);
        }
        assert_eq!(valid, 1);
    }
}
