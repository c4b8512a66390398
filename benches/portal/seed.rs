//! Data for the benchmarks: a small "hot" realm made through the API, and a
//! realm at scale written straight into the database (10,000 portals and a
//! million accounts would take the API an hour; the server never caches
//! rows, so it reads them as if it had made them).

use portal_access::proto::v1 as pb;
use portal_access::proto::v1::admin_service_client::AdminServiceClient;
use portal_access::proto::v1::portal_service_client::PortalServiceClient;
use portal_access::proto::v1::support_access_service_client::SupportAccessServiceClient;
use sea_orm::{ConnectionTrait, Database};
use tonic::Request;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::server::{Backend, Server};

pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub struct Realm {
    pub realm_id: String,
    pub top_portal_id: String,
    pub admin_token: String,
}

pub async fn create_realm(server: &Server, channel: &Channel, subdomain: &str) -> Realm {
    let operator = server.token("operator", Uuid::new_v4(), |_| {});
    let created = PortalServiceClient::new(channel.clone())
        .create_realm(with_token(
            pb::CreateRealmRequest {
                request_id: String::new(),
                name: format!("Realm {subdomain}"),
                plan: pb::Plan::Professional as i32,
                top_level_portal_name: format!("{subdomain} academy"),
                subdomain: subdomain.into(),
                first_admin: Some(pb::FirstAdmin {
                    email: format!("admin@{subdomain}.example"),
                    display_name: "Admin".into(),
                }),
            },
            &operator,
        ))
        .await
        .expect("create realm")
        .into_inner();
    let realm_id = created.realm.unwrap().realm_id;
    let admin_id = created.first_admin.unwrap().user_id;
    let admin_token = server.token("account", admin_id.parse().unwrap(), |c| {
        c.realm = Some(realm_id.clone());
        c.channel = Some("interactive".into());
    });
    Realm {
        realm_id,
        top_portal_id: created.top_level_portal.unwrap().portal_id,
        admin_token,
    }
}

pub async fn sub_portals(channel: &Channel, realm: &Realm, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    let mut client = PortalServiceClient::new(channel.clone());
    for i in 0..n {
        let portal = client
            .create_sub_portal(with_token(
                pb::CreateSubPortalRequest {
                    request_id: String::new(),
                    realm_id: realm.realm_id.clone(),
                    name: format!("{prefix} {i}"),
                    subdomain: format!("{prefix}-{i}"),
                },
                &realm.admin_token,
            ))
            .await
            .expect("create sub-portal")
            .into_inner()
            .portal
            .unwrap();
        ids.push(portal.portal_id);
    }
    ids
}

pub async fn learner(channel: &Channel, realm: &Realm, portal_id: &str, email: &str) -> String {
    AdminServiceClient::new(channel.clone())
        .create_user(with_token(
            pb::CreateUserRequest {
                request_id: String::new(),
                portal_id: portal_id.into(),
                email: email.into(),
                display_name: "Learner".into(),
                user_type: pb::UserType::Learner as i32,
                invite: false,
                can_access_portal_settings: None,
            },
            &realm.admin_token,
        ))
        .await
        .expect("create user")
        .into_inner()
        .user
        .unwrap()
        .user_id
}

pub struct Agent {
    pub id: Uuid,
    pub name: String,
    pub token: String,
}

pub fn agent(server: &Server, name: &str) -> Agent {
    let id = Uuid::new_v4();
    Agent {
        id,
        name: name.into(),
        token: server.token("support_agent", id, |c| c.name = Some(name.into())),
    }
}

pub async fn request_access(channel: &Channel, agent: &Agent, realm: &Realm) -> String {
    SupportAccessServiceClient::new(channel.clone())
        .request_access(with_token(
            pb::RequestAccessRequest {
                request_id: String::new(),
                realm_id: realm.realm_id.clone(),
                reason: "Benchmark".into(),
                ticket_reference: "BENCH-1".into(),
                ..Default::default()
            },
            &agent.token,
        ))
        .await
        .expect("request access")
        .into_inner()
        .access_request
        .unwrap()
        .access_request_id
}

pub fn allow_request(request_id: &str, portals: &[String]) -> pb::AllowAccessRequest {
    pb::AllowAccessRequest {
        access_request_id: request_id.into(),
        portal_ids: portals.to_vec(),
        duration: Some(prost_types::Duration {
            seconds: 30 * 86_400,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// An active grant on the realm's top-level portal: the temporary admin's id.
pub async fn active_grant(channel: &Channel, realm: &Realm, agent: &Agent) -> String {
    let request_id = request_access(channel, agent, realm).await;
    let results = SupportAccessServiceClient::new(channel.clone())
        .allow_access(with_token(
            allow_request(&request_id, std::slice::from_ref(&realm.top_portal_id)),
            &realm.admin_token,
        ))
        .await
        .expect("allow access")
        .into_inner()
        .results;
    results[0].temporary_admin_id.clone()
}

/// Adds `portals - 1` sub-portals and `accounts` learners to `realm`
/// directly in the database: a tenth of them in the top-level portal, the
/// rest spread over the sub-portals.
pub async fn scale(backend: Backend, url: &str, realm: &Realm, portals: u64, accounts: u64) {
    let db = Database::connect(url).await.expect("connect for seeding");
    let (realm_id, top) = (
        realm.realm_id.parse::<Uuid>().unwrap(),
        realm.top_portal_id.parse::<Uuid>().unwrap(),
    );
    let statements = match backend {
        Backend::Postgres => {
            let (r, t) = (format!("'{realm_id}'::uuid"), format!("'{top}'::uuid"));
            vec![
                format!(
                    "INSERT INTO portals (id, realm_id, parent_id, depth, name, subdomain, created_at) \
                     SELECT gen_random_uuid(), {r}, {t}, 1, 'Scale ' || g, 'scale-' || g, 0 \
                     FROM generate_series(1, {}) g",
                    portals - 1
                ),
                format!(
                    "INSERT INTO accounts (id, realm_id, email, email_normalized, display_name, \
                     can_access_portal_settings, invited, support_grant_id, created_at) \
                     SELECT gen_random_uuid(), {r}, 'u' || g || '@scale.example', 'u' || g || '@scale.example', \
                     'User ' || g, false, false, NULL, g FROM generate_series(1, {accounts}) g"
                ),
                // A real, analysed table numbering the sub-portals: joining
                // on a computed index is otherwise planned as a nested loop,
                // and an array of 10,000 ids is detoasted once per row.
                format!(
                    "CREATE TABLE bench_portal_index AS SELECT id, \
                     (row_number() OVER (ORDER BY id) - 1)::bigint AS n \
                     FROM portals WHERE realm_id = {r} AND depth = 1"
                ),
                "CREATE UNIQUE INDEX ON bench_portal_index (n)".into(),
                "ANALYZE bench_portal_index".into(),
                "ANALYZE accounts".into(),
                format!(
                    "INSERT INTO memberships (account_id, portal_id, realm_id, user_type, created_at) \
                     SELECT a.id, CASE WHEN a.created_at % 10 = 0 THEN {t} ELSE p.id END, {r}, 'learner', 0 \
                     FROM accounts a JOIN bench_portal_index p ON p.n = a.created_at % {sub} \
                     WHERE a.realm_id = {r} AND a.email LIKE 'u%@scale.example'",
                    sub = portals - 1
                ),
                "DROP TABLE bench_portal_index".into(),
                "ANALYZE".into(),
            ]
        }
        Backend::Sqlite => {
            let (r, t) = (
                format!("X'{}'", realm_id.simple()),
                format!("X'{}'", top.simple()),
            );
            vec![
                format!(
                    "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {}) \
                     INSERT INTO portals (id, realm_id, parent_id, depth, name, subdomain, created_at) \
                     SELECT randomblob(16), {r}, {t}, 1, 'Scale ' || n, 'scale-' || n, 0 FROM g",
                    portals - 1
                ),
                format!(
                    "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {accounts}) \
                     INSERT INTO accounts (id, realm_id, email, email_normalized, display_name, \
                     can_access_portal_settings, invited, support_grant_id, created_at) \
                     SELECT randomblob(16), {r}, 'u' || n || '@scale.example', 'u' || n || '@scale.example', \
                     'User ' || n, 0, 0, NULL, n FROM g"
                ),
                format!(
                    "INSERT INTO memberships (account_id, portal_id, realm_id, user_type, created_at) \
                     SELECT a.id, CASE WHEN a.created_at % 10 = 0 THEN {t} ELSE p.id END, {r}, 'learner', 0 \
                     FROM accounts a JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n \
                       FROM portals WHERE realm_id = {r} AND depth = 1) p \
                       ON p.n = a.created_at % {sub} \
                     WHERE a.realm_id = {r} AND a.email LIKE 'u%@scale.example'",
                    sub = portals - 1
                ),
                "ANALYZE".into(),
            ]
        }
    };
    for statement in statements {
        db.execute_unprepared(&statement)
            .await
            .expect("seed at scale");
    }
    db.close().await.ok();
}
