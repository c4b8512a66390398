//! Bearer tokens (SPEC §2): verification into a [`Principal`], and minting
//! for local use (`portal-access token`).
//!
//! Each key is tied to one algorithm and the token's `alg` header only picks
//! among keys of that algorithm, so an RS256 public key can never be used as
//! an HS256 secret (algorithm confusion), and `alg: none` never verifies.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Channel, DisplayName, Principal, Scope, principal::SupportAgent};
use crate::error::{Error, Reason, Result};

/// Clock skew we tolerate on `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: u64 = 5;

/// The claims of SPEC §2, exactly as named there.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not valid before (SPEC §5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub sub: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

impl Claims {
    /// Claims for `kind` and `sub`, valid for `ttl` from now, with the
    /// configured issuer and audience.
    pub fn new(keys: &TokenKeys, kind: &str, sub: Uuid, ttl: Duration) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Self {
            iss: keys.issuer.clone(),
            aud: keys.audience.clone(),
            exp: now + ttl.as_secs(),
            iat: Some(now),
            sub: sub.to_string(),
            kind: kind.to_owned(),
            ..Self::default()
        }
    }
}

struct VerifyingKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The keys tokens are checked against: an HS256 secret and/or public keys.
/// Several may be active at once, for rotation.
pub struct TokenKeys {
    verifying: Vec<VerifyingKey>,
    signing: Option<EncodingKey>,
    pub issuer: String,
    pub audience: String,
    /// Tokens already verified, with their `exp`: a service presents the
    /// same token on every call, and its signature and claims do not change
    /// (the keys are fixed for the process's life). Expiry is still checked
    /// on every use.
    verified: RwLock<HashMap<String, (Principal, u64)>>,
}

/// Verified tokens remembered before the memory is emptied and refilled.
const MAX_VERIFIED: usize = 4096;

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("keys", &self.verifying.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// `secret`: the HS256 secret, which also signs minted tokens.
    /// `public_pems`: Ed25519 or RSA public keys in PEM.
    pub fn new(
        secret: Option<&[u8]>,
        public_pems: &[Vec<u8>],
        issuer: &str,
        audience: &str,
    ) -> std::result::Result<Self, String> {
        let mut verifying = Vec::new();
        if let Some(secret) = secret {
            if secret.len() < 32 {
                return Err("the HS256 secret must be at least 32 bytes".to_owned());
            }
            verifying.push(VerifyingKey {
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
            });
        }
        for pem in public_pems {
            let parsed = DecodingKey::from_ed_pem(pem)
                .map(|key| VerifyingKey {
                    algorithm: Algorithm::EdDSA,
                    key,
                })
                .or_else(|_| {
                    DecodingKey::from_rsa_pem(pem).map(|key| VerifyingKey {
                        algorithm: Algorithm::RS256,
                        key,
                    })
                })
                .map_err(|e| format!("a public key is neither Ed25519 nor RSA PEM: {e}"))?;
            verifying.push(parsed);
        }
        if verifying.is_empty() {
            return Err("no token key configured".to_owned());
        }
        Ok(Self {
            verifying,
            signing: secret.map(EncodingKey::from_secret),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            verified: RwLock::default(),
        })
    }

    /// Signs claims with the HS256 secret.
    pub fn mint(&self, claims: &Claims) -> std::result::Result<String, String> {
        let key = self
            .signing
            .as_ref()
            .ok_or("minting needs an HS256 secret (PORTAL_ACCESS_JWT_SECRET)")?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, key).map_err(|e| e.to_string())
    }

    /// Checks signature, `exp`, `iss` and `aud`, then the claims of the kind.
    pub fn verify(&self, token: &str) -> Result<Principal> {
        self.verify_with_expiry(token)
            .map(|(principal, _)| principal)
    }

    /// [`Self::verify`], with the token's `exp` (seconds since the epoch):
    /// a stream ends when its token does (L8).
    pub fn verify_with_expiry(&self, token: &str) -> Result<(Principal, u64)> {
        let now = now_seconds();
        if let Some((principal, exp)) = self.verified.read().expect("token lock").get(token)
            && now <= exp + LEEWAY_SECONDS
        {
            return Ok((principal.clone(), *exp));
        }
        let (principal, exp) = self.verify_signature(token)?;
        let mut verified = self.verified.write().expect("token lock");
        if verified.len() >= MAX_VERIFIED {
            verified.clear();
        }
        verified.insert(token.to_owned(), (principal.clone(), exp));
        Ok((principal, exp))
    }

    fn verify_signature(&self, token: &str) -> Result<(Principal, u64)> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the token is not a signed JWT"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        // SPEC §5: a token that is not valid yet is refused like an expired one.
        validation.validate_nbf = true;

        let mut last_error = invalid("the token is signed with an unknown key");
        for candidate in self.verifying.iter().filter(|k| k.algorithm == header.alg) {
            match jsonwebtoken::decode::<Claims>(token, &candidate.key, &validation) {
                Ok(data) => {
                    let exp = data.claims.exp;
                    if data
                        .claims
                        .iat
                        .is_some_and(|iat| iat > now_seconds() + LEEWAY_SECONDS)
                    {
                        return Err(invalid("the token's iat is in the future"));
                    }
                    return principal_from(data.claims).map(|p| (p, exp));
                }
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature => continue,
                    ErrorKind::ExpiredSignature => {
                        return Err(Error::new(Reason::TokenExpired, "the token has expired"));
                    }
                    ErrorKind::ImmatureSignature => {
                        return Err(invalid("the token is not valid yet (nbf)"));
                    }
                    ErrorKind::InvalidIssuer => {
                        return Err(invalid("the token's iss is not accepted"));
                    }
                    ErrorKind::InvalidAudience => {
                        return Err(invalid("the token's aud is not accepted"));
                    }
                    ErrorKind::MissingRequiredClaim(claim) => {
                        return Err(invalid(format!("the token lacks the {claim} claim")));
                    }
                    _ => last_error = invalid("the token's claims are malformed"),
                },
            }
        }
        Err(last_error)
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A `name` claim ends up in stored records (access requests, audit
/// events), so it obeys the rules for names (SPEC §5).
fn name_claim(name: Option<String>) -> Result<String> {
    let name = name.ok_or_else(|| invalid("the token lacks the name claim"))?;
    DisplayName::parse(&name)
        .map(|n| n.as_str().to_owned())
        .map_err(|e| invalid(format!("the token's name claim {}", e.description)))
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(Reason::InvalidToken, message)
}

fn uuid_claim(value: Option<&str>, claim: &str) -> Result<Uuid> {
    let value = value.ok_or_else(|| invalid(format!("the token lacks the {claim} claim")))?;
    Uuid::parse_str(value).map_err(|_| invalid(format!("the token's {claim} claim is not a UUID")))
}

fn principal_from(claims: Claims) -> Result<Principal> {
    let sub = uuid_claim(Some(&claims.sub), "sub")?;
    match claims.kind.as_str() {
        "account" => {
            let realm_id = uuid_claim(claims.realm.as_deref(), "realm")?;
            let channel = match claims.channel.as_deref() {
                Some("interactive") => Channel::Interactive,
                Some("bulk_import") => Channel::BulkImport,
                Some(_) => {
                    return Err(invalid(
                        "the token's channel is not interactive or bulk_import",
                    ));
                }
                None => return Err(invalid("the token lacks the channel claim")),
            };
            let agent = match (claims.agent.as_deref(), claims.name) {
                (None, None) => None,
                (Some(agent), Some(name)) if !name.trim().is_empty() => Some(SupportAgent {
                    id: uuid_claim(Some(agent), "agent")?,
                    name: name_claim(Some(name))?,
                }),
                _ => {
                    return Err(Error::new(
                        Reason::SupportAgentClaimsMissing,
                        "a support token must carry both the agent and name claims",
                    ));
                }
            };
            Ok(Principal::Account {
                account_id: sub,
                realm_id,
                channel,
                agent,
            })
        }
        "api_client" => Ok(Principal::ApiClient {
            portal_id: uuid_claim(claims.portal.as_deref(), "portal")?,
            key_id: claims
                .key_id
                .filter(|k| !k.is_empty())
                .ok_or_else(|| invalid("the token lacks the key_id claim"))?,
        }),
        "support_agent" => Ok(Principal::SupportAgent(SupportAgent {
            id: sub,
            name: name_claim(claims.name)?,
        })),
        "operator" => Ok(Principal::Operator { operator_id: sub }),
        "service" => {
            let scopes = claims
                .scopes
                .unwrap_or_default()
                .iter()
                .map(|s| Scope::parse(s).ok_or_else(|| invalid(format!("unknown scope {s}"))))
                .collect::<Result<Vec<_>>>()?;
            Ok(Principal::Service {
                service_id: sub,
                scopes,
            })
        }
        other => Err(invalid(format!("unknown token kind {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn keys() -> TokenKeys {
        TokenKeys::new(Some(SECRET), &[], "portal-access", "portal-access").unwrap()
    }

    #[test]
    fn minted_operator_token_verifies() {
        let keys = keys();
        let sub = Uuid::new_v4();
        let token = keys
            .mint(&Claims::new(
                &keys,
                "operator",
                sub,
                Duration::from_secs(60),
            ))
            .unwrap();
        assert_eq!(
            keys.verify(&token).unwrap(),
            Principal::Operator { operator_id: sub }
        );
    }

    #[test]
    fn unsigned_token_is_refused() {
        // {"alg":"none"} . {"sub":...} . (no signature)
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
        assert_eq!(
            keys().verify(token).unwrap_err().reason,
            Reason::InvalidToken
        );
    }

    #[test]
    fn account_token_needs_both_agent_claims_or_neither() {
        let keys = keys();
        let mut claims = Claims::new(&keys, "account", Uuid::new_v4(), Duration::from_secs(60));
        claims.realm = Some(Uuid::new_v4().to_string());
        claims.channel = Some("interactive".into());
        claims.agent = Some(Uuid::new_v4().to_string());
        let token = keys.mint(&claims).unwrap();
        assert_eq!(
            keys.verify(&token).unwrap_err().reason,
            Reason::SupportAgentClaimsMissing
        );
    }

    fn claims(keys: &TokenKeys) -> Claims {
        Claims::new(keys, "operator", Uuid::new_v4(), Duration::from_secs(3600))
    }

    #[test]
    fn token_not_valid_yet_is_refused() {
        let keys = keys();
        let mut claims = claims(&keys);
        claims.nbf = Some(now_seconds() + 3600);
        let error = keys.verify(&keys.mint(&claims).unwrap()).unwrap_err();
        assert_eq!(error.reason, Reason::InvalidToken);
        assert!(error.message.contains("nbf"), "{}", error.message);
        // Within the leeway it is accepted.
        claims.nbf = Some(now_seconds() + 2);
        keys.verify(&keys.mint(&claims).unwrap()).unwrap();
    }

    #[test]
    fn token_issued_in_the_future_is_refused() {
        let keys = keys();
        let mut claims = claims(&keys);
        claims.iat = Some(now_seconds() + 3600);
        let error = keys.verify(&keys.mint(&claims).unwrap()).unwrap_err();
        assert_eq!(error.reason, Reason::InvalidToken);
        assert!(error.message.contains("iat"), "{}", error.message);
    }

    #[test]
    fn stored_name_claims_obey_the_name_rules() {
        let keys = keys();
        for bad in ["Sam\u{1b}[31m", "a\nb", &"x".repeat(201)] {
            let mut claims = Claims::new(
                &keys,
                "support_agent",
                Uuid::new_v4(),
                Duration::from_secs(60),
            );
            claims.name = Some(bad.to_string());
            let error = keys.verify(&keys.mint(&claims).unwrap()).unwrap_err();
            assert_eq!(error.reason, Reason::InvalidToken, "{bad:?}");
        }
        let mut claims = Claims::new(
            &keys,
            "support_agent",
            Uuid::new_v4(),
            Duration::from_secs(60),
        );
        claims.name = Some("  Sam Support ".into());
        assert_eq!(
            keys.verify(&keys.mint(&claims).unwrap()).unwrap(),
            Principal::SupportAgent(SupportAgent {
                id: Uuid::parse_str(&claims.sub).unwrap(),
                name: "Sam Support".into()
            })
        );
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(TokenKeys::new(Some(b"short"), &[], "i", "a").is_err());
    }
}
