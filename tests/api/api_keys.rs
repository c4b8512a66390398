//! API keys: one test per rule K1-K5, on both databases.

use sea_orm::ConnectionTrait;
use tonic::Code;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use pb::UserType as T;
use portal_access::proto::v1 as pb;

async fn verify(app: &TestApp, secret: &str) -> pb::VerifyApiKeyResponse {
    app.portals()
        .verify_api_key(with_token(
            pb::VerifyApiKeyRequest {
                secret: secret.into(),
            },
            &app.service(&["api_keys.verify"]),
        ))
        .await
        .expect("verify")
        .into_inner()
}

async fn generate(
    app: &TestApp,
    token: &str,
    portal_id: &str,
) -> Result<pb::GenerateApiKeysResponse, tonic::Status> {
    app.portals()
        .generate_api_keys(with_token(
            pb::GenerateApiKeysRequest {
                request_id: String::new(),
                portal_id: portal_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn get_keys(
    app: &TestApp,
    token: &str,
    portal_id: &str,
) -> Result<Vec<pb::ApiKey>, tonic::Status> {
    app.portals()
        .get_api_keys(with_token(
            pb::GetApiKeysRequest {
                portal_id: portal_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().api_keys)
}

both_databases! {
    async fn k1_api_keys_exist_only_where_the_plan_includes_the_api(app) {
        let realm = app.create_realm_on("acme", pb::Plan::Essentials).await;
        assert_error(
            generate(app, &realm.admin_token, &realm.top_portal_id).await,
            Code::FailedPrecondition,
            "API_NOT_IN_PLAN",
        );
        assert_eq!(app.count("api_keys").await, 0);
        let upgrade = |plan: pb::Plan| with_token(
            pb::UpdateRealmSettingsRequest { realm_id: realm.realm_id.clone(), plan: Some(plan as i32), top_level_admins_enrollable: None },
            &app.operator(),
        );
        app.portals().update_realm_settings(upgrade(pb::Plan::Professional)).await.unwrap();
        let (generated, api_token) = api_key(app, &realm.admin_token, &realm.top_portal_id).await;
        assert!(verify(app, &generated.secret).await.valid);

        // A downgraded plan switches the API off for existing keys too (P5).
        app.portals().update_realm_settings(upgrade(pb::Plan::Essentials)).await.unwrap();
        assert!(!verify(app, &generated.secret).await.valid);
        let listed = app
            .portals()
            .list_portals(with_token(pb::ListPortalsRequest { realm_id: realm.realm_id.clone(), ..Default::default() }, &api_token))
            .await;
        assert_error(listed, Code::FailedPrecondition, "API_NOT_IN_PLAN");
    }
}

both_databases! {
    async fn k2_a_new_key_set_invalidates_the_old_one_at_once(app) {
        let realm = app.create_realm("acme").await;
        let top = realm.top_portal_id.clone();
        let (first, first_token) = api_key(app, &realm.admin_token, &top).await;
        let list = |token: &str| with_token(pb::ListPortalsRequest { realm_id: realm.realm_id.clone(), ..Default::default() }, token);
        app.portals().list_portals(list(&first_token)).await.expect("the first key works");

        let (second, second_token) = api_key(app, &realm.admin_token, &top).await;
        assert_eq!(second.revoked_key_ids, vec![first.api_key.as_ref().unwrap().key_id.clone()]);
        assert!(!verify(app, &first.secret).await.valid, "VerifyApiKey rejects the old key");
        assert_error(app.portals().list_portals(list(&first_token)).await, Code::Unauthenticated, "API_KEY_REVOKED");
        // A write over the API with the old key is refused too.
        assert_error(
            create_user(app, &first_token, &top, "x@acme.example", T::Learner, None).await,
            Code::Unauthenticated,
            "API_KEY_REVOKED",
        );
        assert!(verify(app, &second.secret).await.valid);
        app.portals().list_portals(list(&second_token)).await.expect("the new key works");
        let keys = get_keys(app, &realm.admin_token, &top).await.unwrap();
        assert_eq!(keys.len(), 1, "at most one active set");
        assert_eq!(keys[0].key_id, second.api_key.unwrap().key_id);
    }
}

both_databases! {
    async fn k3_the_secret_is_shown_once_and_only_its_hash_is_stored(app) {
        let realm = app.create_realm("acme").await;
        let top = realm.top_portal_id.clone();
        let request_id = uuid::Uuid::new_v4().to_string();
        let request = || with_token(
            pb::GenerateApiKeysRequest { request_id: request_id.clone(), portal_id: top.clone() },
            &realm.admin_token,
        );
        let generated = app.portals().generate_api_keys(request()).await.unwrap().into_inner();
        assert!(generated.secret.starts_with("pak_"), "recognisable by secret scanners");
        assert_eq!(generated.secret.len(), 68, "256 random bits, hex");
        let key = generated.api_key.unwrap();
        assert!(generated.secret.starts_with(&key.secret_prefix));

        let retried = app.portals().generate_api_keys(request()).await.unwrap().into_inner();
        assert_eq!(retried.api_key.unwrap().key_id, key.key_id, "a retry creates nothing twice");
        assert!(retried.secret.is_empty(), "the secret is never shown again");
        assert_eq!(app.count("api_keys").await, 1);

        let shown = get_keys(app, &realm.admin_token, &top).await.unwrap();
        assert_eq!(shown[0].key_id, key.key_id);
        assert_eq!(shown[0].creator_id, realm.admin_id);
        assert!(shown[0].create_time.is_some());
        assert!(shown[0].last_use_time.is_none());
        assert!(verify(app, &generated.secret).await.valid);
        let used = get_keys(app, &realm.admin_token, &top).await.unwrap();
        assert!(used[0].last_use_time.is_some(), "GetApiKeys shows the last use");

        let db = app.database().await;
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(db.get_database_backend(), "SELECT id, secret_hash, secret_prefix FROM api_keys".to_owned()))
            .await
            .unwrap();
        for row in rows {
            for i in 0..3 {
                let value: String = row.try_get_by_index(i).unwrap();
                assert!(!value.contains(&generated.secret[4..]), "the secret is stored nowhere");
            }
        }
        db.close().await.ok();
        assert!(!verify(app, &format!("pak_{}", "0".repeat(64))).await.valid);
        assert!(!verify(app, "not-a-key").await.valid);
    }
}

both_databases! {
    async fn k4_only_admins_with_settings_access_manage_keys_of_their_portals(app) {
        let w = world(app).await;
        let top = w.realm.top_portal_id.clone();
        let limited_top = person(app, &w, &top, "lt@acme.example", T::Admin, Some(false)).await;
        let sub_full = person(app, &w, &w.sub_a.clone(), "sf@acme.example", T::Admin, Some(true)).await;
        let learner = person(app, &w, &w.sub_a.clone(), "l@acme.example", T::Learner, None).await;
        let (_, api) = api_key(app, &w.realm.admin_token, &top).await;

        assert_error(generate(app, &limited_top.token, &top).await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED");
        assert_error(get_keys(app, &limited_top.token, &w.sub_a).await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED");
        assert_error(generate(app, &learner.token, &w.sub_a).await, Code::PermissionDenied, "ADMIN_REQUIRED");
        assert_error(generate(app, &api, &w.sub_a).await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED");
        // A full sub-portal admin manages the keys of their own portal only.
        generate(app, &sub_full.token, &w.sub_a).await.expect("own portal");
        assert_error(generate(app, &sub_full.token, &w.sub_b).await, Code::PermissionDenied, "ADMIN_REQUIRED");
        assert_error(generate(app, &sub_full.token, &top).await, Code::PermissionDenied, "ADMIN_REQUIRED");
        // VerifyApiKey is for services with api_keys.verify.
        for (token, expected) in [
            (app.service(&["permissions.check"]), "MISSING_SCOPE"),
            (w.realm.admin_token.clone(), "WRONG_PRINCIPAL_KIND"),
            (api.clone(), "WRONG_PRINCIPAL_KIND"),
        ] {
            let refused = app
                .portals()
                .verify_api_key(with_token(pb::VerifyApiKeyRequest { secret: "pak_x".into() }, &token))
                .await;
            assert_error(refused, Code::PermissionDenied, expected);
        }
    }
}

both_databases! {
    async fn k5_generating_keys_is_an_audit_event(app) {
        let realm = app.create_realm("acme").await;
        let before = app.count("audit_events").await;
        let (generated, _) = api_key(app, &realm.admin_token, &realm.top_portal_id).await;
        assert_eq!(app.count("audit_events").await, before + 1);
        let db = app.database().await;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT action, target_id, actor_id FROM audit_events ORDER BY sequence DESC LIMIT 1".to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "api_keys.generated");
        assert_eq!(row.try_get_by_index::<String>(1).unwrap(), generated.api_key.unwrap().key_id);
        assert_eq!(row.try_get_by_index::<String>(2).unwrap(), realm.admin_id);
        db.close().await.ok();
        // A refused generation records nothing (L1).
        let essentials = app.create_realm_on("basic", pb::Plan::Essentials).await;
        let before = app.count("audit_events").await;
        assert_error(
            generate(app, &essentials.admin_token, &essentials.top_portal_id).await,
            Code::FailedPrecondition,
            "API_NOT_IN_PLAN",
        );
        assert_eq!(app.count("audit_events").await, before);
    }
}
