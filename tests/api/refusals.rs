//! L1 on every refusing route: a change RPC that refuses, for whichever
//! rule, records no audit event and changes no row. Each refusal is first
//! checked for its exact code and reason: a call that failed for another
//! cause (a typo in the fixture, a token the server does not take) would
//! prove nothing, so it fails the test instead.
//!
//! One line per route, grouped by RPC, on one shared realm whose state no
//! line may change: each line is checked against the same snapshot.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use crate::support_steps::*;
use pb::UserType as T;
use portal_access::proto::v1 as pb;

/// Tables and columns that move with the audit log itself; the log is
/// compared event by event instead.
const AUDIT_TABLES: [&str; 3] = ["audit_events", "audit_head", "audit_tree_nodes"];
/// The realms' chain and tree heads, and a session's last leaf (E5).
const AUDIT_COLUMNS: [&str; 5] = [
    "audit_head_hash",
    "tree_size",
    "tree_border",
    "tree_chain_hash",
    "last_leaf",
];

/// Every row of every table but the audit log, as text, by table.
type Rows = BTreeMap<String, Vec<String>>;

async fn texts(db: &sea_orm::DatabaseConnection, sql: String) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect()
}

/// The whole database but the audit log. Tables and columns are read from
/// the schema, so a table added later is covered too.
async fn rows(app: &TestApp) -> Rows {
    let db = app.database().await;
    let backend = db.get_database_backend();
    let tables = match backend {
        DbBackend::Postgres => {
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    };
    let mut all = Rows::new();
    for table in texts(&db, tables.to_owned()).await {
        if AUDIT_TABLES.contains(&table.as_str()) || table.starts_with("seaql_") {
            continue;
        }
        let columns = match backend {
            DbBackend::Postgres => format!(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = '{table}' \
                 ORDER BY ordinal_position"
            ),
            _ => format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
        };
        let quoted: Vec<String> = texts(&db, columns)
            .await
            .into_iter()
            .filter(|c| !AUDIT_COLUMNS.contains(&c.as_str()))
            .map(|c| match backend {
                DbBackend::Postgres => format!("quote_nullable(\"{c}\")"),
                _ => format!("quote(\"{c}\")"),
            })
            .collect();
        let row = quoted.join(" || '|' || ");
        let values = texts(&db, format!("SELECT {row} FROM \"{table}\" ORDER BY 1")).await;
        all.insert(table, values);
    }
    db.close().await.ok();
    all
}

/// One committed audit event: its action and details.
#[derive(Debug)]
struct Event {
    action: String,
    details: BTreeMap<String, String>,
}

async fn last_sequence(app: &TestApp) -> i64 {
    let db = app.database().await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COALESCE(MAX(sequence), 0) FROM audit_events",
        ))
        .await
        .unwrap()
        .unwrap();
    db.close().await.ok();
    row.try_get_by_index(0).unwrap()
}

/// Every event committed after `sequence`, in every realm.
async fn events_after(app: &TestApp, sequence: i64) -> Vec<Event> {
    let db = app.database().await;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT action, details FROM audit_events WHERE sequence > {sequence} ORDER BY sequence"
            ),
        ))
        .await
        .unwrap();
    db.close().await.ok();
    rows.iter()
        .map(|row| Event {
            action: row.try_get_by_index(0).unwrap(),
            details: serde_json::from_str(&row.try_get_by_index::<String>(1).unwrap())
                .unwrap_or_default(),
        })
        .collect()
}

/// What must stay as it is while routes are refused.
struct Unchanged<'a> {
    app: &'a TestApp,
    rows: Rows,
    sequence: i64,
}

impl<'a> Unchanged<'a> {
    async fn from_now(app: &'a TestApp) -> Self {
        Unchanged {
            app,
            rows: rows(app).await,
            sequence: last_sequence(app).await,
        }
    }

    /// `result` is the refusal `code`/`reason`, and nothing was recorded
    /// or changed.
    async fn refused<T: std::fmt::Debug>(
        &mut self,
        route: &str,
        result: Result<T, Status>,
        code: Code,
        reason: &str,
    ) {
        self.assert_refusal(route, result, code, reason);
        let events = events_after(self.app, self.sequence).await;
        assert!(
            events.is_empty(),
            "{route}: a refused change recorded {events:?}"
        );
        self.assert_rows(route).await;
    }

    /// The same for a call by a temporary support admin: S9 logs the call
    /// itself (its RPC and its outcome), and nothing else.
    async fn refused_and_logged<T: std::fmt::Debug>(
        &mut self,
        route: &str,
        result: Result<T, Status>,
        code: Code,
        reason: &str,
    ) {
        self.assert_refusal(route, result, code, reason);
        let events = events_after(self.app, self.sequence).await;
        let outcome = portal_access::grpc::status::code_name(code);
        assert!(
            matches!(
                events.as_slice(),
                [call] if call.action == "support_access.call"
                    && call.details.get("outcome").map(String::as_str) == Some(outcome)
            ),
            "{route}: a refused change by a temporary admin recorded more than its call: {events:?}"
        );
        self.sequence = last_sequence(self.app).await;
        self.assert_rows(route).await;
    }

    fn assert_refusal<T: std::fmt::Debug>(
        &self,
        route: &str,
        result: Result<T, Status>,
        code: Code,
        expected: &str,
    ) {
        let status = match result {
            Ok(answer) => panic!("{route}: accepted, answered {answer:?}"),
            Err(status) => status,
        };
        assert_eq!(status.code(), code, "{route}: {status:?}");
        assert_eq!(reason(&status), expected, "{route}: {status:?}");
    }

    async fn assert_rows(&self, route: &str) {
        let now = rows(self.app).await;
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            self.rows.keys().collect::<Vec<_>>(),
            "{route}: the tables changed"
        );
        for (table, before) in &self.rows {
            let after = &now[table];
            let gone: Vec<_> = before.iter().filter(|r| !after.contains(r)).collect();
            let new: Vec<_> = after.iter().filter(|r| !before.contains(r)).collect();
            assert!(
                gone.is_empty() && new.is_empty(),
                "{route}: a refused change changed {table}: rows gone {gone:#?}, rows new {new:#?}"
            );
        }
    }
}

/// A realm with every kind of caller and every state a support request
/// and a grant can be in.
struct Fixture {
    w: World,
    /// The only full top-level admin (A16 guards them).
    admin: String,
    admin_id: String,
    limited_top: Person,
    /// A full admin of sub-portal A only.
    sub_full: Person,
    /// A limited admin of sub-portal B, learner in A (A20).
    sub_limited: Person,
    /// A full admin of sub-portal B, learner in A (A20).
    sub_b_full: Person,
    /// A learner in sub-portals A and B.
    learner: Person,
    /// The first admin over `bulk_import`.
    bulk: String,
    /// The top-level portal's API key.
    api: String,
    other: RealmFixture,
    essentials: RealmFixture,
    ana: Agent,
    bob: Agent,
    pending: pb::AccessRequest,
    declined: pb::AccessRequest,
    withdrawn: pb::AccessRequest,
    /// Approved, with an active grant on sub-portal A.
    approved: pb::AccessRequest,
    /// Approved, its one grant (on sub-portal B) revoked.
    revoked: pb::AccessRequest,
    /// The active grant on sub-portal A, and its temporary admin's token.
    active: pb::PortalAccessResult,
    temporary: String,
    revoked_grant: pb::PortalAccessResult,
    /// A grant on the top-level portal past its expiry, not swept.
    lapsed: pb::PortalAccessResult,
    recorder: String,
}

fn minutes(n: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: n * 60,
        nanos: 0,
    })
}

async fn fixture(app: &TestApp) -> Fixture {
    let w = world(app).await;
    let top = w.realm.top_portal_id.clone();
    let admin = w.realm.admin_token.clone();
    let limited_top = person(app, &w, &top, "limited@acme.example", T::Admin, Some(false)).await;
    let sub_full = person(
        app,
        &w,
        &w.sub_a,
        "subfull@acme.example",
        T::Admin,
        Some(true),
    )
    .await;
    let sub_limited = person(
        app,
        &w,
        &w.sub_b,
        "sublimited@acme.example",
        T::Admin,
        Some(false),
    )
    .await;
    let sub_b_full = person(
        app,
        &w,
        &w.sub_b,
        "subbfull@acme.example",
        T::Admin,
        Some(true),
    )
    .await;
    let learner = person(app, &w, &w.sub_a, "learner@acme.example", T::Learner, None).await;
    for in_b in [&sub_limited, &sub_b_full] {
        set_type(app, &admin, &in_b.id(), &w.sub_a, T::Learner, None)
            .await
            .unwrap();
    }
    set_type(app, &admin, &learner.id(), &w.sub_b, T::Learner, None)
        .await
        .unwrap();
    let bulk = app.account_on(&w.realm.realm_id, &w.realm.admin_id, "bulk_import");
    let (_, api) = api_key(app, &admin, &top).await;
    let other = app.create_realm("other").await;
    let essentials = app.create_realm_on("basic", pb::Plan::Essentials).await;

    let ana = agent(app, "Ana Support");
    let bob = agent(app, "Bob Support");
    let realm = &w.realm.realm_id;
    let pending = request_access(app, &ana, realm).await;
    let declined = request_access(app, &ana, realm).await;
    app.support()
        .decline_access_request(with_token(
            pb::DeclineAccessRequestRequest {
                access_request_id: declined.access_request_id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let withdrawn = request_access(app, &ana, realm).await;
    app.support()
        .withdraw_access_request(with_token(
            pb::WithdrawAccessRequestRequest {
                access_request_id: withdrawn.access_request_id.clone(),
            },
            &ana.token,
        ))
        .await
        .unwrap();
    let approved = request_access(app, &ana, realm).await;
    let active = allow(
        app,
        &admin,
        &approved.access_request_id,
        &[&w.sub_a],
        hours(8),
    )
    .await
    .unwrap()
    .remove(0);
    let temporary = temporary_admin_token(app, realm, &active.temporary_admin_id, &ana);
    let revoked = request_access(app, &ana, realm).await;
    let revoked_grant = allow(
        app,
        &admin,
        &revoked.access_request_id,
        &[&w.sub_b],
        hours(8),
    )
    .await
    .unwrap()
    .remove(0);
    revoke(app, &admin, realm, &[&w.sub_b]).await.unwrap();
    let lapsing = request_access(app, &ana, realm).await;
    let lapsed = allow(
        app,
        &admin,
        &lapsing.access_request_id,
        &[&top],
        minutes(15),
    )
    .await
    .unwrap()
    .remove(0);
    // The sweeper is off in tests: the grant stays open past its expiry.
    app.clock.set(expiry_of(&lapsed));

    Fixture {
        admin_id: w.realm.admin_id.clone(),
        w,
        admin,
        limited_top,
        sub_full,
        sub_limited,
        sub_b_full,
        learner,
        bulk,
        api,
        other,
        essentials,
        ana,
        bob,
        pending,
        declined,
        withdrawn,
        approved,
        revoked,
        active,
        temporary,
        revoked_grant,
        lapsed,
        recorder: app.service(&["support_actions.record"]),
    }
}

fn unknown() -> String {
    Uuid::now_v7().to_string()
}

fn realm_request(subdomain: &str, email: &str) -> pb::CreateRealmRequest {
    pb::CreateRealmRequest {
        request_id: String::new(),
        name: "Refused".into(),
        plan: pb::Plan::Professional as i32,
        top_level_portal_name: "Refused academy".into(),
        subdomain: subdomain.into(),
        first_admin: Some(pb::FirstAdmin {
            email: email.into(),
            display_name: "First Admin".into(),
        }),
    }
}

async fn create_realm(
    app: &TestApp,
    token: &str,
    request: pb::CreateRealmRequest,
) -> Result<pb::CreateRealmResponse, Status> {
    app.portals()
        .create_realm(with_token(request, token))
        .await
        .map(|r| r.into_inner())
}

async fn create_sub_portal(
    app: &TestApp,
    token: &str,
    realm_id: &str,
    subdomain: &str,
) -> Result<pb::CreateSubPortalResponse, Status> {
    app.portals()
        .create_sub_portal(with_token(
            pb::CreateSubPortalRequest {
                request_id: String::new(),
                realm_id: realm_id.into(),
                name: "Refused portal".into(),
                subdomain: subdomain.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn update_realm(
    app: &TestApp,
    token: &str,
    realm_id: &str,
    plan: i32,
) -> Result<pb::UpdateRealmSettingsResponse, Status> {
    app.portals()
        .update_realm_settings(with_token(
            pb::UpdateRealmSettingsRequest {
                realm_id: realm_id.into(),
                plan: Some(plan),
                top_level_admins_enrollable: Some(true),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn generate_keys(
    app: &TestApp,
    token: &str,
    portal_id: &str,
) -> Result<pb::GenerateApiKeysResponse, Status> {
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

async fn request_in(
    app: &TestApp,
    token: &str,
    realm_id: &str,
    reason: &str,
) -> Result<pb::RequestAccessResponse, Status> {
    app.support()
        .request_access(with_token(
            pb::RequestAccessRequest {
                request_id: String::new(),
                realm_id: realm_id.into(),
                reason: reason.into(),
                ticket_reference: String::new(),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn withdraw(
    app: &TestApp,
    token: &str,
    request_id: &str,
) -> Result<pb::WithdrawAccessRequestResponse, Status> {
    app.support()
        .withdraw_access_request(with_token(
            pb::WithdrawAccessRequestRequest {
                access_request_id: request_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn decline(
    app: &TestApp,
    token: &str,
    request_id: &str,
) -> Result<pb::DeclineAccessRequestResponse, Status> {
    app.support()
        .decline_access_request(with_token(
            pb::DeclineAccessRequestRequest {
                access_request_id: request_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

both_databases! {
    async fn l1_refused_portal_changes_record_nothing(app) {
        let f = fixture(app).await;
        let (w, admin) = (&f.w, f.admin.as_str());
        let top = &w.realm.top_portal_id;
        let operator = app.operator();
        // A request_id already used for another request (AIP-155).
        let reused = realm_request("reused", "first@reused.example");
        let first = pb::CreateRealmRequest { request_id: Uuid::new_v4().to_string(), ..reused };
        create_realm(app, &operator, first.clone()).await.unwrap();
        let mut l = Unchanged::from_now(app).await;

        // CreateRealm
        l.refused("CreateRealm by an admin", create_realm(app, admin, realm_request("fresh", "a@fresh.example")).await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND").await;
        l.refused("CreateRealm on a taken subdomain", create_realm(app, &operator, realm_request("acme", "a@fresh.example")).await, Code::AlreadyExists, "SUBDOMAIN_TAKEN").await;
        l.refused("CreateRealm on a sub-portal's subdomain", create_realm(app, &operator, realm_request("acme-a", "a@fresh.example")).await, Code::AlreadyExists, "SUBDOMAIN_TAKEN").await;
        l.refused("CreateRealm with a bad subdomain", create_realm(app, &operator, realm_request("-fresh", "a@fresh.example")).await, Code::InvalidArgument, "INVALID_ARGUMENT").await;
        l.refused("CreateRealm with a bad email", create_realm(app, &operator, realm_request("fresh", "not an email")).await, Code::InvalidArgument, "INVALID_ARGUMENT").await;
        let other_body = pb::CreateRealmRequest { name: "Another".into(), ..first };
        l.refused("CreateRealm reusing a request_id", create_realm(app, &operator, other_body).await, Code::InvalidArgument, "REQUEST_ID_REUSED").await;

        // CreateSubPortal
        let realm = &w.realm.realm_id;
        l.refused("CreateSubPortal on a taken subdomain", create_sub_portal(app, admin, realm, "acme-b").await, Code::AlreadyExists, "SUBDOMAIN_TAKEN").await;
        l.refused("CreateSubPortal on another realm's subdomain", create_sub_portal(app, admin, realm, "other").await, Code::AlreadyExists, "SUBDOMAIN_TAKEN").await;
        l.refused("CreateSubPortal by a limited top-level admin", create_sub_portal(app, &f.limited_top.token, realm, "fresh").await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED").await;
        l.refused("CreateSubPortal by a sub-portal admin", create_sub_portal(app, &f.sub_full.token, realm, "fresh").await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_REQUIRED").await;
        l.refused("CreateSubPortal by a learner", create_sub_portal(app, &f.learner.token, realm, "fresh").await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_REQUIRED").await;
        l.refused("CreateSubPortal in another realm", create_sub_portal(app, &f.other.admin_token, realm, "fresh").await, Code::NotFound, "REALM_NOT_FOUND").await;
        l.refused("CreateSubPortal by an operator", create_sub_portal(app, &operator, realm, "fresh").await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND").await;
        l.refused_and_logged("CreateSubPortal by a temporary admin", create_sub_portal(app, &f.temporary, realm, "fresh").await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_REQUIRED").await;

        // UpdateRealmSettings
        let enterprise = pb::Plan::Enterprise as i32;
        l.refused("UpdateRealmSettings by an admin", update_realm(app, admin, realm, enterprise).await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND").await;
        l.refused("UpdateRealmSettings by a service", update_realm(app, &app.service(&["permissions.check"]), realm, enterprise).await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND").await;
        l.refused("UpdateRealmSettings of an unknown realm", update_realm(app, &operator, &unknown(), enterprise).await, Code::NotFound, "REALM_NOT_FOUND").await;
        l.refused("UpdateRealmSettings to an unknown plan", update_realm(app, &operator, realm, 99).await, Code::InvalidArgument, "INVALID_ARGUMENT").await;

        // GenerateApiKeys (the top-level portal has an active key set)
        l.refused("GenerateApiKeys without the API in the plan", generate_keys(app, &f.essentials.admin_token, &f.essentials.top_portal_id).await, Code::FailedPrecondition, "API_NOT_IN_PLAN").await;
        l.refused("GenerateApiKeys by a limited admin", generate_keys(app, &f.limited_top.token, top).await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED").await;
        l.refused("GenerateApiKeys by a limited sub-portal admin", generate_keys(app, &f.sub_limited.token, &w.sub_b).await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED").await;
        l.refused("GenerateApiKeys through the API", generate_keys(app, &f.api, top).await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED").await;
        l.refused("GenerateApiKeys by a learner", generate_keys(app, &f.learner.token, &w.sub_a).await, Code::PermissionDenied, "ADMIN_REQUIRED").await;
        l.refused("GenerateApiKeys outside the admin's portals", generate_keys(app, &f.sub_full.token, top).await, Code::PermissionDenied, "ADMIN_REQUIRED").await;
        l.refused("GenerateApiKeys for another realm's portal", generate_keys(app, admin, &f.other.top_portal_id).await, Code::NotFound, "PORTAL_NOT_FOUND").await;
        l.refused_and_logged("GenerateApiKeys by a temporary admin", generate_keys(app, &f.temporary, &w.sub_a).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;
    }
}

both_databases! {
    async fn l1_refused_admin_changes_record_nothing(app) {
        let f = fixture(app).await;
        let (w, admin, me) = (&f.w, f.admin.as_str(), f.admin_id.as_str());
        let top = &w.realm.top_portal_id;
        let (limited_top, sub_full, sub_limited, learner) = (&f.limited_top, &f.sub_full, &f.sub_limited, &f.learner);
        let temporary_id = f.active.temporary_admin_id.as_str();
        let mut l = Unchanged::from_now(app).await;

        // CreateUser
        let new = "new@acme.example";
        l.refused("CreateUser with a taken email", create_user(app, admin, &w.sub_a, "limited@acme.example", T::Learner, None).await, Code::AlreadyExists, "EMAIL_TAKEN").await;
        l.refused("CreateUser with a taken email in other case", create_user(app, admin, &w.sub_b, "ADMIN@Acme.Example", T::Admin, None).await, Code::AlreadyExists, "EMAIL_TAKEN").await;
        l.refused("CreateUser of a full admin by a limited admin", create_user(app, &limited_top.token, top, new, T::Admin, Some(true)).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION").await;
        l.refused("CreateUser with settings over bulk import", create_user(app, &f.bulk, &w.sub_a, new, T::Admin, Some(true)).await, Code::PermissionDenied, "MANUAL_CHANNEL_REQUIRED").await;
        l.refused("CreateUser with settings over the API", create_user(app, &f.api, &w.sub_a, new, T::Admin, Some(true)).await, Code::PermissionDenied, "MANUAL_CHANNEL_REQUIRED").await;
        l.refused("CreateUser outside the admin's portals", create_user(app, &sub_full.token, &w.sub_b, new, T::Learner, None).await, Code::PermissionDenied, "ADMIN_REQUIRED").await;
        l.refused("CreateUser by a learner", create_user(app, &learner.token, &w.sub_a, new, T::Learner, None).await, Code::PermissionDenied, "ADMIN_REQUIRED").await;
        l.refused("CreateUser of a learner with settings", create_user(app, admin, &w.sub_a, new, T::Learner, Some(true)).await, Code::FailedPrecondition, "NOT_AN_ADMIN").await;
        l.refused("CreateUser in another realm's portal", create_user(app, admin, &f.other.top_portal_id, new, T::Learner, None).await, Code::NotFound, "PORTAL_NOT_FOUND").await;
        l.refused("CreateUser with a bad email", create_user(app, admin, &w.sub_a, "not an email", T::Learner, None).await, Code::InvalidArgument, "INVALID_ARGUMENT").await;
        l.refused_and_logged("CreateUser of an admin by a temporary admin", create_user(app, &f.temporary, &w.sub_a, new, T::Admin, Some(false)).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;

        // SetUserType
        l.refused("SetUserType demoting the last full admin", set_type(app, admin, me, top, T::Learner, None).await, Code::FailedPrecondition, "LAST_ADMIN").await;
        l.refused("SetUserType turning the last full admin's settings off", set_type(app, admin, me, top, T::Admin, Some(false)).await, Code::FailedPrecondition, "LAST_ADMIN").await;
        l.refused("SetUserType adding a top-level admin to a sub-portal (A2)", set_type(app, admin, &limited_top.id(), &w.sub_a, T::Admin, None).await, Code::FailedPrecondition, "TOP_LEVEL_ADMIN_ALREADY_HAS_ACCESS").await;
        l.refused("SetUserType of a top-level admin in a sub-portal (A3)", set_type(app, admin, &limited_top.id(), &w.sub_a, T::Learner, None).await, Code::FailedPrecondition, "TOP_LEVEL_ADMIN_TYPE_FIXED").await;
        l.refused("SetUserType of a top-level admin by a sub-portal admin", set_type(app, &sub_full.token, me, &w.sub_a, T::Learner, None).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_PROTECTED").await;
        l.refused("SetUserType to a full admin by a limited admin", set_type(app, &limited_top.token, &learner.id(), top, T::Admin, Some(true)).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION").await;
        l.refused("SetUserType giving oneself settings", set_type(app, &sub_limited.token, &sub_limited.id(), &w.sub_b, T::Admin, Some(true)).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION").await;
        l.refused("SetUserType of a full admin by a limited admin", set_type(app, &limited_top.token, &sub_full.id(), &w.sub_a, T::Learner, None).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION").await;
        l.refused("SetUserType with settings over bulk import", set_type(app, &f.bulk, &learner.id(), &w.sub_a, T::Admin, Some(true)).await, Code::PermissionDenied, "MANUAL_CHANNEL_REQUIRED").await;
        l.refused("SetUserType with settings over the API", set_type(app, &f.api, &learner.id(), &w.sub_a, T::Admin, Some(true)).await, Code::PermissionDenied, "MANUAL_CHANNEL_REQUIRED").await;
        l.refused("SetUserType with settings on by an admin of one of the target's portals (A20)", set_type(app, &sub_full.token, &sub_limited.id(), &w.sub_a, T::Admin, Some(true)).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION").await;
        l.refused("SetUserType of a temporary admin", set_type(app, admin, temporary_id, &w.sub_a, T::Learner, None).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;
        l.refused("SetUserType of a learner with settings", set_type(app, admin, &learner.id(), &w.sub_b, T::Manager, Some(true)).await, Code::FailedPrecondition, "NOT_AN_ADMIN").await;
        l.refused("SetUserType outside the admin's portals", set_type(app, &sub_full.token, &learner.id(), &w.sub_b, T::Manager, None).await, Code::PermissionDenied, "ADMIN_REQUIRED").await;
        l.refused("SetUserType of an unknown user", set_type(app, admin, &unknown(), &w.sub_a, T::Learner, None).await, Code::NotFound, "USER_NOT_FOUND").await;
        l.refused("SetUserType of another realm's user", set_type(app, admin, &f.other.admin_id, &w.sub_a, T::Learner, None).await, Code::NotFound, "USER_NOT_FOUND").await;
        l.refused_and_logged("SetUserType to admin by a temporary admin", set_type(app, &f.temporary, &learner.id(), &w.sub_a, T::Admin, Some(false)).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;

        // RemoveUserFromPortal
        l.refused("RemoveUserFromPortal of the last full admin", remove_from(app, admin, me, top).await, Code::FailedPrecondition, "LAST_ADMIN").await;
        l.refused("RemoveUserFromPortal of a non-member", remove_from(app, admin, &sub_full.id(), &w.sub_b).await, Code::FailedPrecondition, "NOT_A_MEMBER").await;
        l.refused("RemoveUserFromPortal of a top-level admin by a sub-portal admin", remove_from(app, &sub_full.token, me, top).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_PROTECTED").await;
        l.refused("RemoveUserFromPortal of a full admin by a limited admin", remove_from(app, &limited_top.token, &sub_full.id(), &w.sub_a).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION").await;
        l.refused("RemoveUserFromPortal of a temporary admin", remove_from(app, admin, temporary_id, &w.sub_a).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;
        l.refused("RemoveUserFromPortal outside the admin's portals", remove_from(app, &sub_full.token, &learner.id(), &w.sub_b).await, Code::PermissionDenied, "ADMIN_REQUIRED").await;
        l.refused_and_logged("RemoveUserFromPortal of an admin by a temporary admin", remove_from(app, &f.temporary, &sub_full.id(), &w.sub_a).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;

        // DeleteUser
        l.refused("DeleteUser of the last full admin", delete(app, admin, me).await, Code::FailedPrecondition, "LAST_ADMIN").await;
        l.refused("DeleteUser of a top-level admin by a sub-portal admin", delete(app, &sub_full.token, me).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_PROTECTED").await;
        l.refused("DeleteUser of a full admin by a limited admin", delete(app, &limited_top.token, &sub_full.id()).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION").await;
        l.refused("DeleteUser of a temporary admin", delete(app, admin, temporary_id).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;
        l.refused("DeleteUser of a member of a portal the admin does not administer", delete(app, &sub_full.token, &learner.id()).await, Code::PermissionDenied, "ADMIN_REQUIRED").await;
        l.refused("DeleteUser of an unknown user", delete(app, admin, &unknown()).await, Code::NotFound, "USER_NOT_FOUND").await;
        l.refused_and_logged("DeleteUser of an admin by a temporary admin", delete(app, &f.temporary, &sub_full.id()).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;

        // UpdateAdminPermissions
        l.refused("UpdateAdminPermissions of the last full admin", set_settings(app, admin, me, false).await, Code::FailedPrecondition, "LAST_ADMIN").await;
        l.refused("UpdateAdminPermissions of a learner", set_settings(app, admin, &learner.id(), true).await, Code::FailedPrecondition, "NOT_AN_ADMIN").await;
        l.refused("UpdateAdminPermissions on by a limited admin", set_settings(app, &limited_top.token, &sub_limited.id(), true).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION").await;
        l.refused("UpdateAdminPermissions on for oneself", set_settings(app, &limited_top.token, &limited_top.id(), true).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION").await;
        l.refused("UpdateAdminPermissions on over bulk import", set_settings(app, &f.bulk, &sub_limited.id(), true).await, Code::PermissionDenied, "MANUAL_CHANNEL_REQUIRED").await;
        l.refused("UpdateAdminPermissions on over the API", set_settings(app, &f.api, &sub_limited.id(), true).await, Code::PermissionDenied, "MANUAL_CHANNEL_REQUIRED").await;
        l.refused("UpdateAdminPermissions of a top-level admin by a sub-portal admin", set_settings(app, &sub_full.token, me, false).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_PROTECTED").await;
        l.refused("UpdateAdminPermissions on by an admin of one of the target's portals (A20)", set_settings(app, &sub_full.token, &sub_limited.id(), true).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION").await;
        l.refused("UpdateAdminPermissions off by an admin of one of the target's portals (A20)", set_settings(app, &sub_full.token, &f.sub_b_full.id(), false).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION").await;
        l.refused("UpdateAdminPermissions of a temporary admin", set_settings(app, admin, temporary_id, false).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;
        l.refused("UpdateAdminPermissions of an unknown user", set_settings(app, admin, &unknown(), false).await, Code::NotFound, "USER_NOT_FOUND").await;
        l.refused_and_logged("UpdateAdminPermissions by a temporary admin", set_settings(app, &f.temporary, &sub_full.id(), false).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;
    }
}

both_databases! {
    async fn l1_refused_support_changes_record_nothing(app) {
        let f = fixture(app).await;
        let (w, admin) = (&f.w, f.admin.as_str());
        let (realm, top) = (&w.realm.realm_id, &w.realm.top_portal_id);
        let (pending, declined, withdrawn, approved, revoked) = (
            f.pending.access_request_id.as_str(),
            f.declined.access_request_id.as_str(),
            f.withdrawn.access_request_id.as_str(),
            f.approved.access_request_id.as_str(),
            f.revoked.access_request_id.as_str(),
        );
        let (limited, sub_admin, temporary) = (&f.limited_top.token, &f.sub_full.token, &f.temporary);
        let mut l = Unchanged::from_now(app).await;

        // RequestAccess
        l.refused("RequestAccess by an admin", request_in(app, admin, realm, "because").await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND").await;
        l.refused("RequestAccess by a service", request_in(app, &f.recorder, realm, "because").await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND").await;
        l.refused("RequestAccess to an unknown realm", request_in(app, &f.ana.token, &unknown(), "because").await, Code::NotFound, "REALM_NOT_FOUND").await;
        l.refused("RequestAccess without a reason", request_in(app, &f.ana.token, realm, "").await, Code::InvalidArgument, "INVALID_ARGUMENT").await;

        // WithdrawAccessRequest
        l.refused("WithdrawAccessRequest of another agent's request", withdraw(app, &f.bob.token, pending).await, Code::PermissionDenied, "ACCESS_REQUEST_NOT_YOURS").await;
        l.refused("WithdrawAccessRequest of a declined request", withdraw(app, &f.ana.token, declined).await, Code::FailedPrecondition, "ACCESS_REQUEST_NOT_PENDING").await;
        l.refused("WithdrawAccessRequest of a withdrawn request", withdraw(app, &f.ana.token, withdrawn).await, Code::FailedPrecondition, "ACCESS_REQUEST_NOT_PENDING").await;
        l.refused("WithdrawAccessRequest of an approved request", withdraw(app, &f.ana.token, approved).await, Code::FailedPrecondition, "ACCESS_REQUEST_NOT_PENDING").await;
        l.refused("WithdrawAccessRequest of an unknown request", withdraw(app, &f.ana.token, &unknown()).await, Code::NotFound, "ACCESS_REQUEST_NOT_FOUND").await;
        l.refused("WithdrawAccessRequest by an admin", withdraw(app, admin, pending).await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND").await;

        // DeclineAccessRequest
        l.refused("DeclineAccessRequest of a declined request", decline(app, admin, declined).await, Code::FailedPrecondition, "ACCESS_REQUEST_NOT_PENDING").await;
        l.refused("DeclineAccessRequest of an approved request", decline(app, admin, approved).await, Code::FailedPrecondition, "ACCESS_REQUEST_NOT_PENDING").await;
        l.refused("DeclineAccessRequest by a limited admin", decline(app, limited, pending).await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED").await;
        l.refused("DeclineAccessRequest by a sub-portal admin", decline(app, sub_admin, pending).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_REQUIRED").await;
        l.refused("DeclineAccessRequest from another realm", decline(app, &f.other.admin_token, pending).await, Code::NotFound, "ACCESS_REQUEST_NOT_FOUND").await;
        l.refused("DeclineAccessRequest by an agent", decline(app, &f.ana.token, pending).await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND").await;
        l.refused_and_logged("DeclineAccessRequest by a temporary admin", decline(app, temporary, pending).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;

        // AllowAccess
        let (sub_a, sub_b) = (w.sub_a.as_str(), w.sub_b.as_str());
        let missing = unknown();
        l.refused("AllowAccess of a declined request", allow(app, admin, declined, &[sub_b], hours(1)).await, Code::FailedPrecondition, "ACCESS_REQUEST_NOT_OPEN").await;
        l.refused("AllowAccess of a withdrawn request", allow(app, admin, withdrawn, &[sub_b], hours(1)).await, Code::FailedPrecondition, "ACCESS_REQUEST_NOT_OPEN").await;
        l.refused("AllowAccess of a request whose grants were revoked", allow(app, admin, revoked, &[sub_b], hours(1)).await, Code::FailedPrecondition, "ACCESS_REQUEST_NOT_OPEN").await;
        l.refused("AllowAccess naming an unknown portal among good ones", allow(app, admin, pending, &[sub_b, top, &missing], hours(1)).await, Code::NotFound, "PORTAL_NOT_FOUND").await;
        l.refused("AllowAccess naming another realm's portal", allow(app, admin, approved, &[sub_a, &f.other.top_portal_id], hours(1)).await, Code::NotFound, "PORTAL_NOT_FOUND").await;
        l.refused("AllowAccess for too short", allow(app, admin, pending, &[sub_b], minutes(14)).await, Code::InvalidArgument, "INVALID_ARGUMENT").await;
        l.refused("AllowAccess by a limited admin", allow(app, limited, pending, &[sub_b], hours(1)).await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED").await;
        l.refused("AllowAccess by a sub-portal admin", allow(app, sub_admin, pending, &[sub_a], hours(1)).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_REQUIRED").await;
        l.refused("AllowAccess from another realm", allow(app, &f.other.admin_token, pending, &[sub_b], hours(1)).await, Code::NotFound, "ACCESS_REQUEST_NOT_FOUND").await;
        l.refused_and_logged("AllowAccess by a temporary admin", allow(app, temporary, approved, &[sub_a], hours(1)).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;

        // RevokeAccess (sub-portal A's grant is active, the top-level one lapsed)
        l.refused("RevokeAccess naming an unknown portal beside an active grant", revoke(app, admin, realm, &[sub_a, top, &missing]).await, Code::NotFound, "PORTAL_NOT_FOUND").await;
        l.refused("RevokeAccess by a limited admin", revoke(app, limited, realm, &[sub_a]).await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED").await;
        l.refused("RevokeAccess by a sub-portal admin", revoke(app, sub_admin, realm, &[sub_a]).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_REQUIRED").await;
        l.refused("RevokeAccess from another realm", revoke(app, &f.other.admin_token, realm, &[sub_a]).await, Code::NotFound, "REALM_NOT_FOUND").await;
        l.refused("RevokeAccess by an agent", revoke(app, &f.ana.token, realm, &[sub_a]).await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND").await;
        l.refused_and_logged("RevokeAccess by a temporary admin", revoke(app, temporary, realm, &[sub_a]).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED").await;

        // RecordSupportAction
        let (ana, recorder) = (&f.ana, f.recorder.as_str());
        let active = f.active.temporary_admin_id.as_str();
        l.refused("RecordSupportAction for an unknown temporary admin", record_action(app, recorder, sub_a, &unknown(), ana).await, Code::FailedPrecondition, "GRANT_NOT_ACTIVE").await;
        l.refused("RecordSupportAction on a revoked grant", record_action(app, recorder, sub_b, &f.revoked_grant.temporary_admin_id, ana).await, Code::FailedPrecondition, "GRANT_NOT_ACTIVE").await;
        l.refused("RecordSupportAction on an expired grant not yet swept", record_action(app, recorder, top, &f.lapsed.temporary_admin_id, ana).await, Code::FailedPrecondition, "GRANT_NOT_ACTIVE").await;
        l.refused("RecordSupportAction in another portal than the grant's", record_action(app, recorder, sub_b, active, ana).await, Code::FailedPrecondition, "GRANT_NOT_ACTIVE").await;
        l.refused("RecordSupportAction in an unknown portal", record_action(app, recorder, &unknown(), active, ana).await, Code::NotFound, "PORTAL_NOT_FOUND").await;
        l.refused("RecordSupportAction without the scope", record_action(app, &app.service(&["audit.read"]), sub_a, active, ana).await, Code::PermissionDenied, "MISSING_SCOPE").await;
        l.refused("RecordSupportAction by an admin", record_action(app, admin, sub_a, active, ana).await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND").await;
        // The fixture's grant still works: the refusals were not for its sake.
        record_action(app, recorder, sub_a, active, ana).await.expect("the active grant records");
    }
}
