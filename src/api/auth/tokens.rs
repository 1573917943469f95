//! [`Authenticator`]: from an `Authorization` header to a [`Principal`].

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use crate::config::AuthConfig;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name, or the JWT's `sub`.
    pub subject: Arc<str>,
    /// What it may do.
    pub scopes: HashSet<String>,
}

/// Why a request is not authenticated. The messages say what is wrong with
/// the token, never anything about what was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("this call needs a bearer token: send Authorization: Bearer <token>")]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error("the Authorization header must be \"Bearer <token>\"")]
    Malformed,
    /// The token is unknown, forged, expired, not yet valid, or for another
    /// issuer or audience.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// A static token, known by its SHA-256.
struct StaticToken {
    name: Arc<str>,
    digest: [u8; 32],
    scopes: HashSet<String>,
}

/// A JWT verification key.
struct JwtKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Checks bearer tokens against `auth.tokens` and `auth.jwt`.
pub struct Authenticator {
    tokens: Vec<StaticToken>,
    keys: Vec<JwtKey>,
    issuer: String,
    audience: String,
    leeway: u64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .field("jwt_keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// The claims read from a JWT (the registered ones are checked by
/// jsonwebtoken's [`Validation`]).
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    /// RFC 8693: space-separated.
    #[serde(default)]
    scope: Option<String>,
    /// A list, as some issuers write it.
    #[serde(default)]
    scp: Option<Vec<String>>,
}

impl Authenticator {
    /// The tokens and keys of `config`; reads the key files.
    pub fn from_config(config: &AuthConfig) -> Result<Self, String> {
        let tokens = config
            .tokens
            .iter()
            .map(|t| {
                Ok(StaticToken {
                    name: Arc::from(t.name.as_str()),
                    digest: decode_hex(&t.sha256)
                        .ok_or_else(|| format!("auth.tokens: {}: sha256 is not hex", t.name))?,
                    scopes: t.scopes.iter().cloned().collect(),
                })
            })
            .collect::<Result<_, String>>()?;
        let jwt = &config.jwt;
        let mut keys = Vec::new();
        if !jwt.hs256_secret.is_empty() {
            keys.push(JwtKey {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(jwt.hs256_secret.as_bytes()),
            });
        }
        if !jwt.public_key_file.is_empty() {
            let pem = std::fs::read(&jwt.public_key_file)
                .map_err(|e| format!("auth.jwt.public_key_file: {e}"))?;
            let key = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                (Algorithm::RS256, key)
            } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                (Algorithm::ES256, key)
            } else {
                return Err(
                    "auth.jwt.public_key_file: not an RSA or EC public key in PEM".to_owned(),
                );
            };
            keys.push(JwtKey {
                kid: None,
                algorithm: key.0,
                key: key.1,
            });
        }
        if !jwt.jwks_file.is_empty() {
            let text =
                std::fs::read(&jwt.jwks_file).map_err(|e| format!("auth.jwt.jwks_file: {e}"))?;
            let set: JwkSet = serde_json::from_slice(&text)
                .map_err(|e| format!("auth.jwt.jwks_file: not a JWKS: {e}"))?;
            for jwk in &set.keys {
                let algorithm = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                        Algorithm::ES256
                    }
                    _ => continue, // Only RS256 and ES256 keys are used.
                };
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| format!("auth.jwt.jwks_file: a key does not load: {e}"))?;
                keys.push(JwtKey {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key,
                });
            }
        }
        Ok(Self {
            tokens,
            keys,
            issuer: jwt.issuer.clone(),
            audience: jwt.audience.clone(),
            leeway: jwt.leeway.as_secs(),
        })
    }

    /// The caller an `Authorization` header names.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = header.split_once(' ').ok_or(AuthError::Malformed)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(AuthError::Malformed);
        }
        if let Some(principal) = self.static_token(token) {
            return Ok(principal);
        }
        if token.matches('.').count() == 2 && !self.keys.is_empty() {
            return self.jwt(token);
        }
        Err(AuthError::Invalid("unknown token".to_owned()))
    }

    /// The static token `token` is, compared in constant time with each.
    fn static_token(&self, token: &str) -> Option<Principal> {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut found = None;
        for known in &self.tokens {
            if bool::from(known.digest.ct_eq(digest.as_ref())) {
                found = Some(known);
            }
        }
        found.map(|t| Principal {
            subject: t.name.clone(),
            scopes: t.scopes.clone(),
        })
    }

    /// The caller a signed JWT names.
    fn jwt(&self, token: &str) -> Result<Principal, AuthError> {
        let invalid = |why: &str| AuthError::Invalid(why.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed JWT"))?;
        let key = self
            .keys
            .iter()
            .filter(|k| k.algorithm == header.alg)
            .find(|k| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
            .ok_or_else(|| invalid("no key for the token's algorithm and kid"))?;
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            invalid(match e.kind() {
                K::ExpiredSignature => "the token has expired",
                K::ImmatureSignature => "the token is not valid yet (nbf)",
                K::InvalidIssuer => "the token is for another issuer",
                K::InvalidAudience => "the token is for another audience",
                K::InvalidSignature => "the signature does not match",
                K::MissingRequiredClaim(_) => "the token lacks exp, iss or aud",
                _ => "malformed JWT",
            })
        })?;
        let claims = data.claims;
        let subject = claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("the token has no sub"))?;
        let mut scopes: HashSet<String> = claims
            .scope
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        scopes.extend(claims.scp.unwrap_or_default());
        Ok(Principal {
            subject: Arc::from(subject.as_str()),
            scopes,
        })
    }
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::config::{JwtConfig, TokenConfig};

    const SECRET: &str = "a test secret that is long enough";

    fn sha256_hex(text: &str) -> String {
        ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn authenticator() -> Authenticator {
        Authenticator::from_config(&AuthConfig {
            enabled: true,
            tokens: vec![TokenConfig {
                name: "warehouse".into(),
                sha256: sha256_hex("s3cret-token"),
                scopes: vec!["inventory.admin".into()],
            }],
            jwt: JwtConfig {
                issuer: "https://issuer.test".into(),
                audience: "inventory".into(),
                hs256_secret: SECRET.into(),
                leeway: Duration::from_secs(5),
                ..JwtConfig::default()
            },
        })
        .expect("config")
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn jwt(claims: serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    }

    fn bearer(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[test]
    fn a_static_token_is_known_by_its_hash() {
        let auth = authenticator();
        let principal = auth
            .authenticate(Some(&bearer("s3cret-token")))
            .expect("known");
        assert_eq!(&*principal.subject, "warehouse");
        assert!(principal.scopes.contains("inventory.admin"));
        assert!(matches!(
            auth.authenticate(Some(&bearer("s3cret-tokem"))),
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            auth.authenticate(Some(b"Basic dXNlcjpwYXNz")),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn a_jwt_is_checked_for_signature_time_issuer_and_audience() {
        let auth = authenticator();
        let good = json!({
            "sub": "shop-7", "iss": "https://issuer.test", "aud": "inventory",
            "exp": now() + 60, "scope": "inventory.read inventory.reserve",
        });
        let principal = auth
            .authenticate(Some(&bearer(&jwt(good.clone(), SECRET))))
            .expect("valid");
        assert_eq!(&*principal.subject, "shop-7");
        assert!(principal.scopes.contains("inventory.reserve"));

        let mut scp = good.clone();
        scp["scope"] = json!(null);
        scp["scp"] = json!(["inventory.read"]);
        let principal = auth
            .authenticate(Some(&bearer(&jwt(scp, SECRET))))
            .expect("scp list");
        assert!(principal.scopes.contains("inventory.read"));

        let cases = [
            ("expired", json!({"exp": now() - 60}), SECRET),
            ("not yet", json!({"nbf": now() + 600}), SECRET),
            ("issuer", json!({"iss": "https://evil.test"}), SECRET),
            ("audience", json!({"aud": "billing"}), SECRET),
            ("forged", json!({}), "another secret entirely, also long"),
            ("no exp", json!({"exp": null}), SECRET),
            ("no sub", json!({"sub": null}), SECRET),
        ];
        for (name, change, secret) in cases {
            let mut claims = good.clone();
            for (k, v) in change.as_object().expect("object") {
                if v.is_null() {
                    claims.as_object_mut().expect("object").remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            let outcome = auth.authenticate(Some(&bearer(&jwt(claims, secret))));
            assert!(
                matches!(outcome, Err(AuthError::Invalid(_))),
                "{name}: {outcome:?}"
            );
        }
        // A token whose payload was altered after signing.
        let token = jwt(good, SECRET);
        let mut parts: Vec<&str> = token.split('.').collect();
        let tampered = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            json!({"sub": "shop-7", "iss": "https://issuer.test", "aud": "inventory",
                   "exp": now() + 60, "scope": "inventory.admin"})
            .to_string(),
        );
        parts[1] = &tampered;
        assert!(matches!(
            auth.authenticate(Some(&bearer(&parts.join(".")))),
            Err(AuthError::Invalid(_))
        ));
    }
}
