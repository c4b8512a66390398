//! Authentication (SPEC §2, §5): every token failure is UNAUTHENTICATED with
//! a reason; a valid token of the wrong kind is PERMISSION_DENIED.

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::*;
use portal_access::proto::v1 as pb;
use portal_access::token::Claims;

fn list_request(token: Option<&str>) -> tonic::Request<pb::ListPortalsRequest> {
    let message = pb::ListPortalsRequest {
        realm_id: Uuid::new_v4().to_string(),
        ..Default::default()
    };
    match token {
        Some(token) => with_token(message, token),
        None => tonic::Request::new(message),
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn sign_with(alg: Algorithm, key: &EncodingKey, claims: &Claims) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

async fn sqlite_app() -> TestApp {
    spawn_app(Backend::Sqlite).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_malformed_authorization_is_unauthenticated() {
    let app = sqlite_app().await;
    assert_error(
        app.portals().list_portals(list_request(None)).await,
        Code::Unauthenticated,
        "MISSING_TOKEN",
    );
    let mut request = list_request(None);
    request
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    assert_error(
        app.portals().list_portals(request).await,
        Code::Unauthenticated,
        "MISSING_TOKEN",
    );
    assert_error(
        app.portals()
            .list_portals(list_request(Some("not.a.jwt")))
            .await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_refused() {
    let app = sqlite_app().await;
    let mut claims = app.claims("operator", Uuid::new_v4());
    claims.exp = claims.iat.unwrap() - 60;
    assert_error(
        app.portals()
            .list_portals(list_request(Some(&app.sign(&claims))))
            .await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_signed_with_an_unknown_key_is_refused() {
    let app = sqlite_app().await;
    let claims = app.claims("operator", Uuid::new_v4());
    let forged = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-0123456789abcdef0123"),
        &claims,
    );
    assert_error(
        app.portals()
            .list_portals(list_request(Some(&forged)))
            .await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_alg_none_token_is_refused() {
    use base64::Engine;
    let app = sqlite_app().await;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = app.claims("operator", Uuid::new_v4());
    let unsigned = format!(
        "{}.{}.",
        engine.encode(r#"{"alg":"none","typ":"JWT"}"#),
        engine.encode(serde_json::to_vec(&claims).unwrap())
    );
    assert_error(
        app.portals()
            .list_portals(list_request(Some(&unsigned)))
            .await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_issuer_or_audience_is_refused() {
    let app = sqlite_app().await;
    let mut wrong_iss = app.claims("operator", Uuid::new_v4());
    wrong_iss.iss = "someone-else".into();
    let mut wrong_aud = app.claims("operator", Uuid::new_v4());
    wrong_aud.aud = "another-service".into();
    for claims in [wrong_iss, wrong_aud] {
        assert_error(
            app.portals()
                .list_portals(list_request(Some(&app.sign(&claims))))
                .await,
            Code::Unauthenticated,
            "INVALID_TOKEN",
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_claims_are_refused() {
    let app = sqlite_app().await;
    let mut unknown_kind = app.claims("superuser", Uuid::new_v4());
    unknown_kind.kind = "superuser".into();
    let mut bad_sub = app.claims("operator", Uuid::new_v4());
    bad_sub.sub = "root".into();
    let mut no_realm = app.claims("account", Uuid::new_v4());
    no_realm.channel = Some("interactive".into());
    let mut bad_channel = app.claims("account", Uuid::new_v4());
    bad_channel.realm = Some(Uuid::new_v4().to_string());
    bad_channel.channel = Some("api".into());
    let mut bad_scope = app.claims("service", Uuid::new_v4());
    bad_scope.scopes = Some(vec!["everything".into()]);
    for claims in [unknown_kind, bad_sub, no_realm, bad_channel, bad_scope] {
        assert_error(
            app.portals()
                .list_portals(list_request(Some(&app.sign(&claims))))
                .await,
            Code::Unauthenticated,
            "INVALID_TOKEN",
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_of_the_wrong_kind_is_permission_denied() {
    let app = sqlite_app().await;
    let agent = app.support_agent(Uuid::new_v4(), "Sam");
    assert_error(
        app.portals().list_portals(list_request(Some(&agent))).await,
        Code::PermissionDenied,
        "WRONG_PRINCIPAL_KIND",
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_and_rs256_public_keys_verify_and_cannot_be_confused_with_hs256() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.jwt_public_keys = vec![fixture("ed25519-public.pem"), fixture("rsa-public.pem")];
    })
    .await
    .unwrap();
    let claims = app.claims("operator", Uuid::new_v4());
    let ed =
        EncodingKey::from_ed_pem(&std::fs::read(fixture("ed25519-private.pem")).unwrap()).unwrap();
    let rsa =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-private.pem")).unwrap()).unwrap();
    for token in [
        sign_with(Algorithm::EdDSA, &ed, &claims),
        sign_with(Algorithm::RS256, &rsa, &claims),
    ] {
        let listed = app.portals().list_portals(list_request(Some(&token))).await;
        // Authenticated: the operator is told the realm does not exist.
        assert_error(listed, Code::NotFound, "REALM_NOT_FOUND");
    }
    // Algorithm confusion: the RSA public key used as an HMAC secret.
    let public_pem = std::fs::read(fixture("rsa-public.pem")).unwrap();
    let confused = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        &claims,
    );
    assert_error(
        app.portals()
            .list_portals(list_request(Some(&confused)))
            .await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    app.stop().await;
}
