//! W3: ImportUsers, with the rules of the channels it serves (A10, A11,
//! A13), atomic (AIP-233) and idempotent.

use sea_orm::{ConnectionTrait, Statement};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use portal_access::proto::v1 as pb;

fn row(email: &str, user_type: pb::UserType, settings: Option<bool>) -> pb::UserToImport {
    pb::UserToImport {
        email: email.into(),
        display_name: email.split('@').next().unwrap().into(),
        user_type: user_type as i32,
        invite: false,
        can_access_portal_settings: settings,
    }
}

/// `n` learners `prefix-0@…` … in one batch.
fn learners(prefix: &str, n: usize) -> Vec<pb::UserToImport> {
    (0..n)
        .map(|i| {
            row(
                &format!("{prefix}-{i}@import.example"),
                pb::UserType::Learner,
                None,
            )
        })
        .collect()
}

async fn import(
    app: &TestApp,
    token: &str,
    portal_id: &str,
    request_id: &str,
    users: Vec<pb::UserToImport>,
) -> Result<Vec<pb::User>, Status> {
    app.admins()
        .import_users(with_token(
            pb::ImportUsersRequest {
                request_id: request_id.into(),
                portal_id: portal_id.into(),
                users,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().users)
}

/// `ErrorInfo.metadata[key]` of a failed call.
fn metadata(status: &Status, key: &str) -> String {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get(key).cloned())
        .unwrap_or_else(|| panic!("no {key} in {status:?}"))
}

/// Accounts and audit events, to show that a refused import left nothing.
async fn footprint(app: &TestApp) -> (i64, i64, i64) {
    (
        app.count("accounts").await,
        app.count("memberships").await,
        app.count("audit_events").await,
    )
}

/// (action, details) of every event after `sequence`, in order.
async fn events_after(app: &TestApp, sequence: i64) -> Vec<(String, serde_json::Value)> {
    let db = app.database().await;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT action, details FROM audit_events WHERE sequence > {sequence} ORDER BY sequence"),
        ))
        .await
        .unwrap();
    db.close().await.ok();
    rows.iter()
        .map(|r| {
            let details: String = r.try_get_by_index(1).unwrap();
            (
                r.try_get_by_index(0).unwrap(),
                serde_json::from_str(&details).unwrap(),
            )
        })
        .collect()
}

both_databases! {
    async fn w3_import_of_a_thousand_users_creates_each_with_one_event(app) {
        let w = world(app).await;
        let head = app.services().store().last_audit_sequence().await.unwrap();
        let before = footprint(app).await;
        let mut users = learners("bulk", 990);
        for i in 0..10 {
            users.push(row(&format!("admin-{i}@import.example"), pb::UserType::Admin, None));
        }
        let bulk = app.account_on(&w.realm.realm_id, &w.realm.admin_id, "bulk_import");
        let created = import(app, &bulk, &w.sub_a, "", users.clone()).await.expect("import");
        assert_eq!(created.len(), 1000);
        for (user, asked) in created.iter().zip(&users) {
            assert_eq!(user.email, asked.email);
            assert_eq!(user.memberships.len(), 1);
            assert_eq!(user.memberships[0].portal_id, w.sub_a);
            assert_eq!(user.memberships[0].user_type, asked.user_type);
            // A10: bulk import never defaults settings access on.
            assert!(!user.can_access_portal_settings);
        }
        let after = footprint(app).await;
        assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (1000, 1000, 1000));
        let events = events_after(app, head).await;
        assert_eq!(events.iter().filter(|(a, _)| a == "user.created").count(), 990);
        assert_eq!(events.iter().filter(|(a, _)| a == "admin.created").count(), 10);
        assert!(events.iter().all(|(_, d)| d["channel"] == "bulk_import" && d["can_access_portal_settings"] == "false"), "{:?}", events[0]);
        // The new accounts are there for the permission checks at once.
        let admin = &created[999];
        let token = app.account(&w.realm.realm_id, &admin.user_id);
        assert!(has(&effective(app, &token, &w.sub_a, "").await, pb::Permission::ManageUsers));
    }
}

both_databases! {
    async fn w3_one_bad_row_fails_the_whole_import_naming_its_index(app) {
        let w = world(app).await;
        let before = footprint(app).await;
        let mut users = learners("atomic", 1000);
        users[500].email = "not-an-email".into();
        let status = assert_error(import(app, &w.realm.admin_token, &w.sub_a, "", users).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(bad_fields(&status), vec!["users[500].email"]);
        assert_eq!(footprint(app).await, before);

        // Every bad field of every row is named at once.
        let mut users = learners("many", 10);
        users[3].display_name = String::new();
        users[7].user_type = pb::UserType::Unspecified as i32;
        let status = assert_error(import(app, &w.realm.admin_token, &w.sub_a, "", users).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(bad_fields(&status), vec!["users[3].display_name", "users[7].user_type"]);

        // 1 to 1,000 users per call.
        for n in [0, 1001] {
            let status = assert_error(import(app, &w.realm.admin_token, &w.sub_a, "", learners("size", n)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
            assert_eq!(bad_fields(&status), vec!["users"]);
        }
        assert_eq!(footprint(app).await, before);
    }
}

both_databases! {
    async fn w3_repeated_email_in_the_batch_or_the_realm_is_email_taken_naming_the_index(app) {
        let w = world(app).await;
        let before = footprint(app).await;
        let mut users = learners("dup", 8);
        users[5].email = "DUP-2@Import.example".into();
        let status = assert_error(import(app, &w.realm.admin_token, &w.sub_a, "", users).await, Code::AlreadyExists, "EMAIL_TAKEN");
        assert_eq!((metadata(&status, "index"), metadata(&status, "field")), ("5".into(), "users[5].email".into()));
        assert!(status.message().contains("users[5].email"), "{status:?}");

        // The realm's first admin already has this one (any case).
        let mut users = learners("realm", 8);
        users[3].email = format!("ADMIN@{}.example", "acme");
        let status = assert_error(import(app, &w.realm.admin_token, &w.sub_a, "", users).await, Code::AlreadyExists, "EMAIL_TAKEN");
        assert_eq!((metadata(&status, "index"), metadata(&status, "field")), ("3".into(), "users[3].email".into()));
        assert_eq!(footprint(app).await, before);
    }
}

both_databases! {
    async fn a11_import_never_turns_settings_access_on_from_bulk_import_or_api(app) {
        let w = world(app).await;
        let (_, api) = api_key(app, &w.realm.admin_token, &w.sub_a).await;
        let before = footprint(app).await;
        let callers = [
            ("bulk_import", app.account_on(&w.realm.realm_id, &w.realm.admin_id, "bulk_import")),
            // An import is bulk import whatever channel the token names.
            ("interactive", w.realm.admin_token.clone()),
            ("api", api),
        ];
        for (channel, token) in &callers {
            let mut users = learners(&format!("on-{channel}"), 6);
            users[4] = row(&format!("full-{channel}@import.example"), pb::UserType::Admin, Some(true));
            let status = assert_error(import(app, token, &w.sub_a, "", users).await, Code::PermissionDenied, "MANUAL_CHANNEL_REQUIRED");
            assert_eq!(metadata(&status, "field"), "users[4].can_access_portal_settings", "{channel}");
            assert_eq!(metadata(&status, "index"), "4");
        }
        assert_eq!(footprint(app).await, before);

        // Off, asked or by default (A10), works on every channel.
        for (channel, token) in &callers {
            let users = vec![
                row(&format!("off-{channel}@import.example"), pb::UserType::Admin, Some(false)),
                row(&format!("default-{channel}@import.example"), pb::UserType::Admin, None),
            ];
            let created = import(app, token, &w.sub_a, "", users).await.expect(channel);
            assert!(created.iter().all(|u| !u.can_access_portal_settings), "{channel}");
        }
    }
}

both_databases! {
    async fn a13_import_keeps_the_callers_limits(app) {
        let w = world(app).await;
        let sub_admin = person(app, &w, &w.sub_a, "sub@acme.example", pb::UserType::Admin, Some(false)).await;
        let learner = person(app, &w, &w.sub_a, "learner@acme.example", pb::UserType::Learner, None).await;
        let before = footprint(app).await;
        // A sub-portal admin imports only into the portals it administers.
        let status = assert_error(import(app, &sub_admin.token, &w.sub_b, "", learners("b", 3)).await, Code::PermissionDenied, "ADMIN_REQUIRED");
        assert_eq!(metadata(&status, "field"), "portal_id");
        assert_error(import(app, &learner.token, &w.sub_a, "", learners("l", 3)).await, Code::PermissionDenied, "ADMIN_REQUIRED");
        assert_eq!(footprint(app).await, before);
        // Into its own portal, limited admins and learners.
        let mut users = learners("a", 3);
        users.push(row("limited@import.example", pb::UserType::Admin, None));
        let created = import(app, &sub_admin.token, &w.sub_a, "", users).await.expect("own portal");
        assert_eq!(created.len(), 4);
        assert!(!created[3].can_access_portal_settings && !created[3].top_level_admin);
    }
}

both_databases! {
    async fn w3_retry_with_the_same_request_id_creates_nothing_twice(app) {
        let w = world(app).await;
        let request_id = uuid::Uuid::now_v7().to_string();
        let users = learners("retry", 20);
        let first = import(app, &w.realm.admin_token, &w.sub_a, &request_id, users.clone()).await.expect("first");
        let after_first = footprint(app).await;
        let again = import(app, &w.realm.admin_token, &w.sub_a, &request_id, users.clone()).await.expect("retry");
        assert_eq!(
            again.iter().map(|u| &u.user_id).collect::<Vec<_>>(),
            first.iter().map(|u| &u.user_id).collect::<Vec<_>>()
        );
        assert_eq!(again[7].email, users[7].email);
        assert_eq!(footprint(app).await, after_first);
        // The same id with another body is refused.
        assert_error(import(app, &w.realm.admin_token, &w.sub_a, &request_id, learners("other", 20)).await, Code::InvalidArgument, "REQUEST_ID_REUSED");
        assert_eq!(footprint(app).await, after_first);
    }
}

both_databases! {
    async fn w3_two_imports_and_a_create_user_racing_for_one_email_have_one_winner(app) {
        let w = world(app).await;
        for round in 0..5 {
            let shared = format!("shared-{round}@import.example");
            let mut first = learners(&format!("r{round}-first"), 50);
            first[25].email = shared.clone();
            let mut second = learners(&format!("r{round}-second"), 30);
            second[10].email = shared.to_uppercase();
            let before = footprint(app).await;
            let (a, b, c) = tokio::join!(
                import(app, &w.realm.admin_token, &w.sub_a, "", first),
                import(app, &w.realm.admin_token, &w.sub_b, "", second),
                create_user(app, &w.realm.admin_token, &w.sub_a, &shared, pb::UserType::Learner, None),
            );
            let created = [a.as_ref().map(Vec::len).ok(), b.as_ref().map(Vec::len).ok(), c.as_ref().map(|_| 1).ok()];
            let winners: Vec<usize> = created.iter().flatten().copied().collect();
            assert_eq!(winners.len(), 1, "round {round}: exactly one wins: {created:?}");
            for loser in [a.err(), b.err(), c.err()].into_iter().flatten() {
                assert_eq!(loser.code(), Code::AlreadyExists, "{loser:?}");
                assert_eq!(reason(&loser), "EMAIL_TAKEN");
            }
            // Nothing half-created: exactly the winner's accounts, each with
            // its membership and its event.
            let after = footprint(app).await;
            let n = winners[0] as i64;
            assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (n, n, n), "round {round}");
        }
    }
}

both_databases! {
    async fn w3_imported_names_and_emails_keep_every_character(app) {
        // On PostgreSQL the rows travel as one JSON text: quotes,
        // backslashes and letters beyond ASCII must come back as written.
        let w = world(app).await;
        let names = [
            r#"Zoë "Z" O'Brien"#,
            r"Back\slash \\ twice",
            "李小龙 🎓",
            r#"{"not": "json"}"#,
        ];
        let users: Vec<pb::UserToImport> = names
            .iter()
            .enumerate()
            .map(|(i, name)| pb::UserToImport {
                email: format!("o'brien+{i}@import.example"),
                display_name: (*name).into(),
                user_type: pb::UserType::Learner as i32,
                invite: false,
                can_access_portal_settings: None,
            })
            .collect();
        let created = import(app, &w.realm.admin_token, &w.sub_a, "", users.clone()).await.expect("import");
        for (user, asked) in created.iter().zip(&users) {
            let stored = get_user(app, &w.realm.admin_token, &user.user_id).await;
            assert_eq!((stored.email.as_str(), stored.display_name.as_str()), (asked.email.as_str(), asked.display_name.as_str()));
        }
        // The same emails in another case are taken (found by the lookup
        // that takes the whole list as one parameter on PostgreSQL).
        let again: Vec<pb::UserToImport> = users
            .iter()
            .map(|u| pb::UserToImport { email: u.email.to_uppercase(), ..u.clone() })
            .collect();
        let status = assert_error(import(app, &w.realm.admin_token, &w.sub_a, "", again).await, Code::AlreadyExists, "EMAIL_TAKEN");
        assert_eq!(metadata(&status, "field"), "users[0].email");
        assert!(crate::faults::verify_realm(app, &w.realm).await.intact);
    }
}
