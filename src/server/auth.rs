//! Authentication of chat users and REST clients, in the manner of TalkJS.
//!
//! Every app has an id and a secret. Clients prove who they are with HS256 JSON Web Tokens
//! signed with the app secret:
//!
//! - a **user token** (`tokenType: "user"`) lets a chat client act as the user named in `sub`;
//! - an **app token** (`tokenType: "app"`) lets a backend call the REST API.
//!
//! Both carry `iss` = the app id and an `exp` claim (seconds since the Unix epoch). `exp` is
//! required unless the app was configured with [`AppCredentials::require_exp`] set to `false`;
//! if it is present it is always checked. `nbf` is checked when present. The REST API also
//! accepts the raw app secret as a bearer token (legacy); [`secret_matches`] compares it in
//! constant time.
//!
//! Verification pins the algorithm to HS256: `alg: none`, other HMAC sizes and asymmetric
//! algorithms are refused before any key is used.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::Policy;

/// How far past `exp` (or before `nbf`) a token is still accepted, in seconds.
///
/// This absorbs small clock differences between the app's backend, which mints the tokens, and
/// this server. It is kept small on purpose: a stolen token stays usable for at most this long
/// after it expires.
pub(crate) const LEEWAY_SECONDS: u64 = 10;

/// The only signing algorithm accepted (and used) for tokens.
const ALGORITHM: Algorithm = Algorithm::HS256;

/// The `tokenType` claim of a user token.
const USER_TOKEN_TYPE: &str = "user";

/// The `tokenType` claim of an app (REST API) token.
const APP_TOKEN_TYPE: &str = "app";

/// The shortest app secret [`AppCredentials::parse`] accepts, in bytes.
const MIN_SECRET_LEN: usize = 16;

/// The id and signing secret of one app, plus its token policy.
///
/// The `Debug` output never shows the secret.
#[derive(Clone)]
#[non_exhaustive]
pub struct AppCredentials {
    /// The app id; tokens must carry it as their `iss` claim.
    pub id: String,
    /// The shared secret tokens are signed with (HS256).
    pub secret: String,
    /// Whether tokens must carry an `exp` claim. `true` unless the app opted out; an `exp`
    /// that is present is checked either way.
    pub require_exp: bool,
    /// What the app's users may change through their sessions. [`Policy::Restricted`]
    /// unless the app opted out.
    pub policy: Policy,
}

impl AppCredentials {
    /// Credentials for app `id` with signing secret `secret`; tokens must carry `exp`, and the
    /// policy is [`Policy::Restricted`].
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
            require_exp: true,
            policy: Policy::Restricted,
        }
    }

    /// Parses the command-line form `ID:SECRET`.
    ///
    /// The spec is split at the first `:`, so the secret may itself contain colons. Both parts
    /// must be non-empty and the secret must be at least 16 bytes long. Tokens from the result
    /// must carry `exp`. Error messages never include the secret.
    pub fn parse(spec: &str) -> Result<Self, AuthError> {
        let Some((id, secret)) = spec.split_once(':') else {
            return Err(AuthError::InvalidCredentials(
                "expected app credentials in the form ID:SECRET, but found no ':'".to_owned(),
            ));
        };
        if id.is_empty() {
            return Err(AuthError::InvalidCredentials(
                "the app id (before the ':') is empty".to_owned(),
            ));
        }
        if secret.is_empty() {
            return Err(AuthError::InvalidCredentials(
                "the app secret (after the ':') is empty".to_owned(),
            ));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthError::InvalidCredentials(format!(
                "the app secret must be at least {MIN_SECRET_LEN} bytes long, but it has {}",
                secret.len()
            )));
        }
        Ok(Self::new(id, secret))
    }
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("require_exp", &self.require_exp)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Why a token (or a credentials spec) was refused.
///
/// The messages are short and safe to show to a client; [`AuthError::code`] gives a stable
/// machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was given (empty or blank).
    #[error("no token was given")]
    Missing,
    /// The token is not a well-formed JWT (wrong shape, bad base64, bad JSON).
    #[error("the token is not a valid JWT")]
    Malformed,
    /// The token names an algorithm other than HS256 (including `none`).
    #[error("tokens must be signed with HS256")]
    Algorithm,
    /// The signature does not match the app secret (wrong secret or altered token).
    #[error("the token signature does not match the app secret")]
    Signature,
    /// The token's `exp` lies in the past (beyond the leeway).
    #[error("the token expired")]
    Expired,
    /// The token's `nbf` lies in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The token has no `exp` claim, but the app requires one.
    #[error("the token has no exp claim")]
    MissingExp,
    /// A registered claim has the wrong type, for example a string `exp`.
    #[error("the token's {claim} claim has the wrong type")]
    InvalidClaim {
        /// The name of the offending claim.
        claim: String,
    },
    /// The `iss` claim is missing or is not the app id.
    #[error("the token's iss claim must be the app id {expected:?}")]
    WrongIssuer {
        /// The app id the token should name.
        expected: String,
    },
    /// The `sub` claim is missing or is not the user the client claims to be.
    #[error("the token's sub claim must be the user id {expected:?}")]
    WrongSubject {
        /// The user id the token should name.
        expected: String,
    },
    /// The `tokenType` claim is missing or is not the kind of token this call needs.
    #[error("the token's tokenType claim must be {expected:?}")]
    WrongTokenType {
        /// The token type this call needs (`"user"` or `"app"`).
        expected: &'static str,
    },
    /// An `ID:SECRET` credentials spec (or the credentials themselves) are unusable.
    #[error("invalid app credentials: {0}")]
    InvalidCredentials(String),
    /// Something unexpected went wrong while minting or checking a token.
    #[error("internal token error: {0}")]
    Internal(String),
}

impl AuthError {
    /// A stable SCREAMING_SNAKE machine code for this error, e.g. `"TOKEN_EXPIRED"`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "TOKEN_MISSING",
            Self::Malformed => "TOKEN_MALFORMED",
            Self::Algorithm => "TOKEN_ALGORITHM",
            Self::Signature => "TOKEN_SIGNATURE",
            Self::Expired => "TOKEN_EXPIRED",
            Self::NotYetValid => "TOKEN_NOT_YET_VALID",
            Self::MissingExp => "TOKEN_MISSING_EXP",
            Self::InvalidClaim { .. } => "TOKEN_INVALID_CLAIM",
            Self::WrongIssuer { .. } => "TOKEN_WRONG_ISSUER",
            Self::WrongSubject { .. } => "TOKEN_WRONG_SUBJECT",
            Self::WrongTokenType { .. } => "TOKEN_WRONG_TYPE",
            Self::InvalidCredentials(_) => "INVALID_CREDENTIALS",
            Self::Internal(_) => "TOKEN_INTERNAL_ERROR",
        }
    }
}

/// What a verified user token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserClaims {
    /// The user the token authenticates (its `sub`).
    pub(crate) user_id: String,
    /// When the token expires, in seconds since the Unix epoch (`None` if it has no `exp`,
    /// which only passes when the app does not require one).
    pub(crate) expires_at: Option<u64>,
}

/// Verifies a user token: HS256 signed with the app secret, not expired (with
/// [`LEEWAY_SECONDS`]), `exp` present unless the app allows otherwise, `nbf` respected,
/// `iss` = app id, `sub` = `user_id` and `tokenType` = `"user"`.
pub(crate) fn verify_user_token(
    app: &AppCredentials,
    user_id: &str,
    token: &str,
) -> Result<UserClaims, AuthError> {
    let claims = verify(app, token, USER_TOKEN_TYPE, Some(user_id))?;
    Ok(UserClaims {
        user_id: user_id.to_owned(),
        expires_at: expires_at(&claims)?,
    })
}

/// Verifies an app (REST API) token: the same rules as [`verify_user_token`] but with
/// `tokenType` = `"app"` and no `sub` check.
pub(crate) fn verify_app_token(app: &AppCredentials, token: &str) -> Result<(), AuthError> {
    verify(app, token, APP_TOKEN_TYPE, None).map(|_| ())
}

/// Whether `candidate` is the app secret (the legacy raw-secret bearer form of the REST API).
///
/// The comparison takes the same time whatever the position of the first differing byte; only
/// the length is leaked. An empty secret never matches.
pub(crate) fn secret_matches(app: &AppCredentials, candidate: &str) -> bool {
    let secret = app.secret.as_bytes();
    let candidate = candidate.as_bytes();
    if secret.is_empty() || secret.len() != candidate.len() {
        return false;
    }
    let diff = secret
        .iter()
        .zip(candidate)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// Mints an HS256 user token for `user_id`, valid for `ttl_seconds` from now.
///
/// The claims are `tokenType: "user"`, `iss` = app id, `sub` = `user_id`, `iat` = now and
/// `exp` = now + `ttl_seconds`. Meant for tests, examples and development; production tokens
/// are minted by the app's own backend.
pub fn mint_user_token(
    app: &AppCredentials,
    user_id: &str,
    ttl_seconds: u64,
) -> Result<String, AuthError> {
    /// The claims of a minted user token.
    #[derive(Serialize)]
    struct MintedClaims<'a> {
        /// Always `"user"`.
        #[serde(rename = "tokenType")]
        token_type: &'static str,
        /// The app id.
        iss: &'a str,
        /// The user id.
        sub: &'a str,
        /// Issued at (seconds since the epoch).
        iat: u64,
        /// Expiry (seconds since the epoch).
        exp: u64,
    }

    check_secret(app)?;
    let now = now()?;
    let exp = now.checked_add(ttl_seconds).ok_or_else(|| {
        AuthError::Internal(format!("a lifetime of {ttl_seconds} seconds is too long"))
    })?;
    let claims = MintedClaims {
        token_type: USER_TOKEN_TYPE,
        iss: &app.id,
        sub: user_id,
        iat: now,
        exp,
    };
    jsonwebtoken::encode(
        &Header::new(ALGORITHM),
        &claims,
        &EncodingKey::from_secret(app.secret.as_bytes()),
    )
    .map_err(|err| AuthError::Internal(format!("could not sign the token: {err}")))
}

/// The shared verification path: algorithm, signature, time claims, issuer, subject (if
/// `subject` is given) and token type. Returns the token's claims.
fn verify(
    app: &AppCredentials,
    token: &str,
    token_type: &'static str,
    subject: Option<&str>,
) -> Result<Map<String, Value>, AuthError> {
    check_secret(app)?;
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }

    // Look at the header first so that a foreign algorithm is reported as such, and so that
    // no key is ever used with anything but HS256.
    match jsonwebtoken::decode_header(token) {
        Ok(header) if header.alg == ALGORITHM => {}
        Ok(_) => return Err(AuthError::Algorithm),
        // `alg: none` (or any name jsonwebtoken does not know) fails to parse as a `Header`.
        Err(_) => return Err(classify_bad_header(token)),
    }

    let mut validation = Validation::new(ALGORITHM);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    // TalkJS tokens carry no audience; one that is present is ignored.
    validation.validate_aud = false;
    if app.require_exp {
        validation.set_required_spec_claims(&["exp"]);
    } else {
        validation.set_required_spec_claims::<&str>(&[]);
    }
    // `iss` and `sub` are checked here when present, and again below (exactly, and required).
    validation.set_issuer(&[app.id.as_str()]);
    validation.sub = subject.map(str::to_owned);

    let decoded = jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(app.secret.as_bytes()),
        &validation,
    )
    .map_err(|err| map_jwt_error(err.kind(), app, token, subject))?;

    // jsonwebtoken accepts any JSON value as the claims; a JWT payload must be an object.
    let Value::Object(claims) = decoded.claims else {
        return Err(AuthError::Malformed);
    };

    if claims.get("tokenType").and_then(Value::as_str) != Some(token_type) {
        return Err(AuthError::WrongTokenType {
            expected: token_type,
        });
    }
    // jsonwebtoken skips a missing `iss` and accepts an array that merely contains the app id.
    if claims.get("iss").and_then(Value::as_str) != Some(app.id.as_str()) {
        return Err(AuthError::WrongIssuer {
            expected: app.id.clone(),
        });
    }
    if let Some(subject) = subject
        && claims.get("sub").and_then(Value::as_str) != Some(subject)
    {
        return Err(AuthError::WrongSubject {
            expected: subject.to_owned(),
        });
    }
    // jsonwebtoken already enforced these; re-checking keeps this function honest on its own.
    let exp = expires_at(&claims)?;
    if app.require_exp && exp.is_none() {
        return Err(AuthError::MissingExp);
    }
    if let Some(iat) = claims.get("iat")
        && numeric_date(iat).is_none()
    {
        return Err(AuthError::InvalidClaim {
            claim: "iat".to_owned(),
        });
    }
    Ok(claims)
}

/// Maps a jsonwebtoken error to the reason reported to the client.
fn map_jwt_error(
    kind: &ErrorKind,
    app: &AppCredentials,
    token: &str,
    subject: Option<&str>,
) -> AuthError {
    match kind {
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::Malformed,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => AuthError::Algorithm,
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer {
            expected: app.id.clone(),
        },
        ErrorKind::InvalidSubject => match subject {
            Some(subject) => AuthError::WrongSubject {
                expected: subject.to_owned(),
            },
            None => AuthError::Malformed,
        },
        ErrorKind::InvalidClaimFormat(claim) => AuthError::InvalidClaim {
            claim: claim.clone(),
        },
        // jsonwebtoken reports an `exp` that is present but not a number as missing.
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => {
            if payload_has_claim(token, "exp") {
                AuthError::InvalidClaim {
                    claim: "exp".to_owned(),
                }
            } else {
                AuthError::MissingExp
            }
        }
        ErrorKind::MissingRequiredClaim(claim) => AuthError::InvalidClaim {
            claim: claim.clone(),
        },
        other => AuthError::Internal(format!("unexpected token error: {other:?}")),
    }
}

/// Tells why a token's header could not be parsed: a named algorithm other than HS256 (such as
/// `none`) gives [`AuthError::Algorithm`], anything else [`AuthError::Malformed`].
fn classify_bad_header(token: &str) -> AuthError {
    let alg = token
        .split('.')
        .next()
        .and_then(base64url_decode)
        .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
        .and_then(|header| header.get("alg").and_then(Value::as_str).map(str::to_owned));
    match alg {
        Some(alg) if alg != "HS256" => AuthError::Algorithm,
        _ => AuthError::Malformed,
    }
}

/// Whether the (already signature-checked) payload of `token` has a claim named `name`.
fn payload_has_claim(token: &str, name: &str) -> bool {
    token
        .split('.')
        .nth(1)
        .and_then(base64url_decode)
        .and_then(|json| serde_json::from_slice::<Map<String, Value>>(&json).ok())
        .is_some_and(|claims| claims.contains_key(name))
}

/// The `exp` claim as seconds since the epoch; an `exp` that is not a number is an error.
fn expires_at(claims: &Map<String, Value>) -> Result<Option<u64>, AuthError> {
    match claims.get("exp") {
        None => Ok(None),
        Some(exp) => numeric_date(exp)
            .map(Some)
            .ok_or_else(|| AuthError::InvalidClaim {
                claim: "exp".to_owned(),
            }),
    }
}

/// A JWT NumericDate (non-negative seconds since the epoch, integer or fractional), rounded
/// like jsonwebtoken does. `None` for anything else, including numeric strings.
fn numeric_date(value: &Value) -> Option<u64> {
    let number = value.as_number()?;
    if let Some(seconds) = number.as_u64() {
        return Some(seconds);
    }
    let seconds = number.as_f64()?;
    // `u64::MAX as f64` rounds up to 2^64, so `<` keeps the cast in range.
    (seconds.is_finite() && seconds >= 0.0 && seconds < u64::MAX as f64)
        .then(|| seconds.round() as u64)
}

/// Refuses credentials whose secret is empty: anyone could sign with it.
fn check_secret(app: &AppCredentials) -> Result<(), AuthError> {
    if app.secret.is_empty() {
        return Err(AuthError::InvalidCredentials(
            "the app secret is empty".to_owned(),
        ));
    }
    Ok(())
}

/// The current time in seconds since the Unix epoch.
pub(crate) fn now() -> Result<u64, AuthError> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .map_err(|_| AuthError::Internal("the system clock is before 1970".to_owned()))
}

/// Decodes unpadded base64url (RFC 4648 §5), as used by JWT segments. `None` if invalid.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The test app's id.
    const APP_ID: &str = "tApp42";
    /// The test app's secret.
    const SECRET: &str = "sk_test_0123456789abcdefXYZ";

    /// The test app (exp required).
    fn app() -> AppCredentials {
        AppCredentials::new(APP_ID, SECRET)
    }

    /// Seconds since the epoch.
    fn now_secs() -> u64 {
        now().unwrap()
    }

    /// Encodes unpadded base64url.
    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Signs arbitrary JSON claims with `alg` and `secret`.
    fn sign(alg: Algorithm, claims: &Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    /// Valid user-token claims for `sub`, with `exp` = now + 600.
    fn user_claims(sub: &str) -> Value {
        json!({"tokenType": "user", "iss": APP_ID, "sub": sub, "exp": now_secs() + 600})
    }

    /// Valid app-token claims, with `exp` = now + 600.
    fn app_claims() -> Value {
        json!({"tokenType": "app", "iss": APP_ID, "exp": now_secs() + 600})
    }

    /// Signs `claims` as HS256 with the test secret.
    fn hs256(claims: &Value) -> String {
        sign(Algorithm::HS256, claims, SECRET)
    }

    /// A token minted by `mint_user_token` verifies and yields its user and expiry.
    #[test]
    fn accepts_minted_token() {
        let token = mint_user_token(&app(), "alice", 600).unwrap();
        let claims = verify_user_token(&app(), "alice", &token).unwrap();
        assert_eq!(claims.user_id, "alice");
        let exp = claims.expires_at.unwrap();
        assert!(exp >= now_secs() + 590 && exp <= now_secs() + 600);
    }

    /// A hand-signed token with `nbf` and `iat` in the past verifies.
    #[test]
    fn accepts_nbf_and_iat_in_the_past() {
        let mut claims = user_claims("alice");
        claims["nbf"] = json!(now_secs() - 100);
        claims["iat"] = json!(now_secs() - 100);
        assert!(verify_user_token(&app(), "alice", &hs256(&claims)).is_ok());
    }

    /// An unsigned `alg: none` token is refused as a wrong algorithm.
    #[test]
    fn rejects_alg_none() {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64(user_claims("alice").to_string().as_bytes());
        let token = format!("{header}.{payload}.");
        assert_eq!(
            verify_user_token(&app(), "alice", &token),
            Err(AuthError::Algorithm)
        );
    }

    /// An HS384 token signed with the right secret is refused as a wrong algorithm.
    #[test]
    fn rejects_hs384() {
        let token = sign(Algorithm::HS384, &user_claims("alice"), SECRET);
        assert_eq!(
            verify_user_token(&app(), "alice", &token),
            Err(AuthError::Algorithm)
        );
    }

    /// An `RS256` header over an HMAC signature (algorithm confusion) is refused.
    #[test]
    fn rejects_rs256_header() {
        let token = hs256(&user_claims("alice"));
        let rest = token.split_once('.').unwrap().1;
        let forged = format!("{}.{rest}", b64(br#"{"alg":"RS256","typ":"JWT"}"#));
        assert_eq!(
            verify_user_token(&app(), "alice", &forged),
            Err(AuthError::Algorithm)
        );
    }

    /// A token signed with another secret is refused as a bad signature.
    #[test]
    fn rejects_wrong_secret() {
        let token = sign(
            Algorithm::HS256,
            &user_claims("alice"),
            "another-secret-0123456789",
        );
        assert_eq!(
            verify_user_token(&app(), "alice", &token),
            Err(AuthError::Signature)
        );
    }

    /// Changing `sub` in the payload while keeping the signature is refused as a bad signature.
    #[test]
    fn rejects_tampered_payload() {
        let token = mint_user_token(&app(), "alice", 600).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: Value =
            serde_json::from_slice(&base64url_decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = json!("mallory");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(claims.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(
            verify_user_token(&app(), "mallory", &forged),
            Err(AuthError::Signature)
        );
    }

    /// A token that expired a minute ago (beyond the leeway) is refused.
    #[test]
    fn rejects_expired_beyond_leeway() {
        let mut claims = user_claims("alice");
        claims["exp"] = json!(now_secs() - 60);
        assert_eq!(
            verify_user_token(&app(), "alice", &hs256(&claims)),
            Err(AuthError::Expired)
        );
    }

    /// A token that expired 5 seconds ago (within the leeway) is still accepted.
    #[test]
    fn accepts_expired_within_leeway() {
        let mut claims = user_claims("alice");
        claims["exp"] = json!(now_secs() - 5);
        assert!(verify_user_token(&app(), "alice", &hs256(&claims)).is_ok());
    }

    /// A token whose `nbf` is a minute in the future is refused.
    #[test]
    fn rejects_nbf_in_future() {
        let mut claims = user_claims("alice");
        claims["nbf"] = json!(now_secs() + 60);
        let result = verify_user_token(&app(), "alice", &hs256(&claims));
        assert_eq!(result, Err(AuthError::NotYetValid));
    }

    /// A token issued for another app id is refused.
    #[test]
    fn rejects_wrong_issuer() {
        let mut claims = user_claims("alice");
        claims["iss"] = json!("otherApp");
        let expected = Err(AuthError::WrongIssuer {
            expected: APP_ID.to_owned(),
        });
        assert_eq!(
            verify_user_token(&app(), "alice", &hs256(&claims)),
            expected
        );
    }

    /// A token without `iss`, or with an `iss` array merely containing the app id, is refused.
    #[test]
    fn rejects_missing_or_array_issuer() {
        let expected = Err(AuthError::WrongIssuer {
            expected: APP_ID.to_owned(),
        });
        let mut claims = user_claims("alice");
        claims.as_object_mut().unwrap().remove("iss");
        assert_eq!(
            verify_user_token(&app(), "alice", &hs256(&claims)),
            expected
        );
        claims["iss"] = json!([APP_ID, "otherApp"]);
        assert_eq!(
            verify_user_token(&app(), "alice", &hs256(&claims)),
            expected
        );
    }

    /// A valid token for another user is refused.
    #[test]
    fn rejects_wrong_subject() {
        let token = mint_user_token(&app(), "bob", 600).unwrap();
        let expected = Err(AuthError::WrongSubject {
            expected: "alice".to_owned(),
        });
        assert_eq!(verify_user_token(&app(), "alice", &token), expected);
    }

    /// A token without `sub` is refused.
    #[test]
    fn rejects_missing_subject() {
        let mut claims = user_claims("alice");
        claims.as_object_mut().unwrap().remove("sub");
        let expected = Err(AuthError::WrongSubject {
            expected: "alice".to_owned(),
        });
        assert_eq!(
            verify_user_token(&app(), "alice", &hs256(&claims)),
            expected
        );
    }

    /// App tokens are refused as user tokens, and tokens with no `tokenType` too.
    #[test]
    fn rejects_wrong_token_type() {
        let expected = Err(AuthError::WrongTokenType { expected: "user" });
        let mut claims = user_claims("alice");
        claims["tokenType"] = json!("app");
        assert_eq!(
            verify_user_token(&app(), "alice", &hs256(&claims)),
            expected
        );
        assert_eq!(
            verify_user_token(&app(), "alice", &hs256(&app_claims())),
            expected
        );
        claims.as_object_mut().unwrap().remove("tokenType");
        assert_eq!(
            verify_user_token(&app(), "alice", &hs256(&claims)),
            expected
        );
    }

    /// A token without `exp` is refused, unless the app does not require `exp`.
    #[test]
    fn missing_exp_depends_on_app_policy() {
        let mut claims = user_claims("alice");
        claims.as_object_mut().unwrap().remove("exp");
        let token = hs256(&claims);
        assert_eq!(
            verify_user_token(&app(), "alice", &token),
            Err(AuthError::MissingExp)
        );

        let lenient = AppCredentials {
            require_exp: false,
            ..app()
        };
        let verified = verify_user_token(&lenient, "alice", &token).unwrap();
        assert_eq!(
            verified,
            UserClaims {
                user_id: "alice".to_owned(),
                expires_at: None
            }
        );
    }

    /// An expired token is refused even when the app does not require `exp`.
    #[test]
    fn lenient_app_still_checks_present_exp() {
        let lenient = AppCredentials {
            require_exp: false,
            ..app()
        };
        let mut claims = user_claims("alice");
        claims["exp"] = json!(now_secs() - 60);
        let result = verify_user_token(&lenient, "alice", &hs256(&claims));
        assert_eq!(result, Err(AuthError::Expired));
    }

    /// A string `exp` (far in the future) is refused, whatever the app's exp policy.
    #[test]
    fn rejects_string_exp() {
        let mut claims = user_claims("alice");
        claims["exp"] = json!("9999999999");
        let token = hs256(&claims);
        let expected = Err(AuthError::InvalidClaim {
            claim: "exp".to_owned(),
        });
        assert_eq!(verify_user_token(&app(), "alice", &token), expected);
        let lenient = AppCredentials {
            require_exp: false,
            ..app()
        };
        assert_eq!(verify_user_token(&lenient, "alice", &token), expected);
    }

    /// A string `nbf` and a string `iat` are refused.
    #[test]
    fn rejects_string_nbf_and_iat() {
        for claim in ["nbf", "iat"] {
            let mut claims = user_claims("alice");
            claims[claim] = json!("0");
            let expected = Err(AuthError::InvalidClaim {
                claim: claim.to_owned(),
            });
            assert_eq!(
                verify_user_token(&app(), "alice", &hs256(&claims)),
                expected
            );
        }
    }

    /// Random text, a JWT-shaped string with bad parts, and a non-object payload are malformed.
    #[test]
    fn rejects_garbage() {
        for token in ["not a token", "a.b.c", "abc.def", "....", "eyJ.eyJ.sig"] {
            let result = verify_user_token(&app(), "alice", token);
            assert_eq!(result, Err(AuthError::Malformed), "{token}");
        }
        let array = hs256(&json!([1, 2, 3]));
        assert_eq!(
            verify_user_token(&app(), "alice", &array),
            Err(AuthError::Malformed)
        );
    }

    /// An empty or blank token is reported as missing.
    #[test]
    fn rejects_empty() {
        assert_eq!(
            verify_user_token(&app(), "alice", ""),
            Err(AuthError::Missing)
        );
        assert_eq!(verify_app_token(&app(), "  "), Err(AuthError::Missing));
    }

    /// Nothing verifies against credentials with an empty secret.
    #[test]
    fn rejects_empty_secret() {
        let empty = AppCredentials::new(APP_ID, "");
        let token = sign(Algorithm::HS256, &user_claims("alice"), "x");
        let result = verify_user_token(&empty, "alice", &token);
        assert!(matches!(result, Err(AuthError::InvalidCredentials(_))));
        assert!(mint_user_token(&empty, "alice", 60).is_err());
        assert!(!secret_matches(&empty, ""));
    }

    /// A valid app token verifies.
    #[test]
    fn accepts_app_token() {
        assert_eq!(verify_app_token(&app(), &hs256(&app_claims())), Ok(()));
    }

    /// App tokens are refused when they are user tokens, expired, from another app or
    /// signed with another secret.
    #[test]
    fn rejects_bad_app_tokens() {
        let user = mint_user_token(&app(), "alice", 600).unwrap();
        let expected = Err(AuthError::WrongTokenType { expected: "app" });
        assert_eq!(verify_app_token(&app(), &user), expected);

        let mut claims = app_claims();
        claims["exp"] = json!(now_secs() - 60);
        assert_eq!(
            verify_app_token(&app(), &hs256(&claims)),
            Err(AuthError::Expired)
        );

        let mut claims = app_claims();
        claims["iss"] = json!("otherApp");
        let expected = Err(AuthError::WrongIssuer {
            expected: APP_ID.to_owned(),
        });
        assert_eq!(verify_app_token(&app(), &hs256(&claims)), expected);

        let token = sign(Algorithm::HS256, &app_claims(), "another-secret-0123456789");
        assert_eq!(verify_app_token(&app(), &token), Err(AuthError::Signature));

        let mut claims = app_claims();
        claims.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            verify_app_token(&app(), &hs256(&claims)),
            Err(AuthError::MissingExp)
        );
    }

    /// The raw secret matches only itself.
    #[test]
    fn secret_comparison() {
        assert!(secret_matches(&app(), SECRET));
        assert!(!secret_matches(&app(), "sk_test_0123456789abcdefXYz"));
        assert!(!secret_matches(&app(), "sk_test"));
        assert!(!secret_matches(&app(), ""));
        assert!(!secret_matches(&app(), &format!("{SECRET}x")));
    }

    /// `ID:SECRET` parses, splitting at the first colon.
    #[test]
    fn parses_good_credentials() {
        let parsed = AppCredentials::parse("tApp42:sk_test_0123:456789abcdef").unwrap();
        assert_eq!(parsed.id, "tApp42");
        assert_eq!(parsed.secret, "sk_test_0123:456789abcdef");
        assert!(parsed.require_exp);
    }

    /// Specs without a colon, with an empty part or a short secret are refused.
    #[test]
    fn refuses_bad_credentials() {
        for spec in [
            "",
            "tApp42",
            ":sk_test_0123456789abcdef",
            "tApp42:",
            "tApp42:short",
        ] {
            let err = AppCredentials::parse(spec).unwrap_err();
            assert!(matches!(err, AuthError::InvalidCredentials(_)), "{spec}");
            assert_eq!(err.code(), "INVALID_CREDENTIALS");
        }
        let err = AppCredentials::parse("tApp42:0123456789abcde").unwrap_err();
        assert!(err.to_string().contains("at least 16 bytes"), "{err}");
        assert!(!err.to_string().contains("0123456789abcde"), "{err}");
        assert!(AppCredentials::parse("tApp42:0123456789abcdef").is_ok());
    }

    /// The Debug output shows the id but never the secret.
    #[test]
    fn debug_redacts_secret() {
        let debug = format!("{:?}", app());
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(
            debug.contains("<redacted>") && debug.contains(APP_ID),
            "{debug}"
        );
    }

    /// Every error has a distinct machine code.
    #[test]
    fn error_codes_are_distinct() {
        let errors = [
            AuthError::Missing,
            AuthError::Malformed,
            AuthError::Algorithm,
            AuthError::Signature,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::MissingExp,
            AuthError::InvalidClaim {
                claim: "exp".to_owned(),
            },
            AuthError::WrongIssuer {
                expected: APP_ID.to_owned(),
            },
            AuthError::WrongSubject {
                expected: "alice".to_owned(),
            },
            AuthError::WrongTokenType { expected: "user" },
            AuthError::InvalidCredentials(String::new()),
            AuthError::Internal(String::new()),
        ];
        let codes: std::collections::HashSet<_> = errors.iter().map(AuthError::code).collect();
        assert_eq!(codes.len(), errors.len());
        assert_eq!(AuthError::Expired.code(), "TOKEN_EXPIRED");
    }
}
