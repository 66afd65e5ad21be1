//! Who is calling: password logins, API tokens, and the limiter in front of them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::Utc;
use model::{Email, TokenId, UserId};
use rand::Rng;
use sha2::{Digest, Sha256};
use store::{TokenRecord, UserRecord};

use crate::{Result, ServiceError, Services};

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    pub email: String,
    pub platform_admin: bool,
    /// How they proved it.
    pub via: AuthMethod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Session,
    Token(TokenId),
}

impl Caller {
    fn from_user(u: &UserRecord, via: AuthMethod) -> Caller {
        Caller { user_id: u.user_id(), email: u.email.clone(), platform_admin: u.platform_admin, via }
    }
}

/// The session key under which a signed-in user's id is kept (console and API share sessions).
pub const SESSION_USER_KEY: &str = "user_id";

// ------------------------------------------------------------------ passwords

/// Shortest password accepted (NIST SP 800-63B's floor for user-chosen secrets).
pub const MIN_PASSWORD_LEN: usize = 8;

pub fn check_password_rules(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ServiceError::invalid(format!(
            "the password is too short: use at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > 1024 {
        return Err(ServiceError::invalid("the password is too long: use at most 1024 bytes"));
    }
    Ok(())
}

/// argon2id with the crate's defaults (19 MiB, 2 passes), off the async threads.
pub async fn hash_password(password: &str) -> Result<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ServiceError::Internal(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| ServiceError::Internal(e.to_string()))?
}

async fn verify_password(password: &str, hash: Option<&str>) -> bool {
    // Unknown users and SSO-only users are checked against a fixed hash, so a wrong email
    // costs as much time as a wrong password and does not reveal who has an account.
    static DUMMY: OnceLock<String> = OnceLock::new();
    let hash = match hash {
        Some(h) => h.to_owned(),
        None => DUMMY
            .get_or_init(|| {
                Argon2::default()
                    .hash_password(b"not a password anyone has", &SaltString::generate(&mut OsRng))
                    .map(|h| h.to_string())
                    .unwrap_or_default()
            })
            .clone(),
    };
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// A random password for a newly invited user or a first admin: 20 characters from an
/// unambiguous alphabet (about 110 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..20).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

// ------------------------------------------------------------------ rate limiting

/// How many failed sign-ins are tolerated, per email and per client address, in a window.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    pub per_email: u32,
    pub per_address: u32,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self { per_email: 5, per_address: 50, window: Duration::from_secs(15 * 60) }
    }
}

/// Counts failures in a fixed window per key. In memory, per replica: an attacker spreading
/// attempts over N replicas gets N times the budget, which the argon2 cost still makes slow.
pub(crate) struct LoginLimiter {
    limits: LoginLimits,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginLimiter {
    pub(crate) fn new(limits: LoginLimits) -> Self {
        Self { limits, failures: Mutex::default() }
    }

    fn keys(email: &str, addr: Option<IpAddr>) -> Vec<(String, u32, bool)> {
        let mut keys = vec![(format!("email:{email}"), 0, true)];
        if let Some(a) = addr {
            keys.push((format!("addr:{a}"), 0, false));
        }
        keys
    }

    /// Err(RateLimited) when any key is over its budget.
    fn check(&self, email: &str, addr: Option<IpAddr>, now: Instant) -> Result<()> {
        let map = self.failures.lock().expect("limiter poisoned");
        for (key, _, is_email) in Self::keys(email, addr) {
            let limit = if is_email { self.limits.per_email } else { self.limits.per_address };
            if let Some((start, count)) = map.get(&key) {
                let elapsed = now.duration_since(*start);
                if elapsed < self.limits.window && *count >= limit {
                    return Err(ServiceError::RateLimited { retry_after: self.limits.window - elapsed });
                }
            }
        }
        Ok(())
    }

    fn record_failure(&self, email: &str, addr: Option<IpAddr>, now: Instant) {
        let mut map = self.failures.lock().expect("limiter poisoned");
        if map.len() > 100_000 {
            let window = self.limits.window;
            map.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        for (key, ..) in Self::keys(email, addr) {
            let entry = map.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= self.limits.window {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
    }

    fn record_success(&self, email: &str) {
        self.failures.lock().expect("limiter poisoned").remove(&format!("email:{email}"));
    }
}

// ------------------------------------------------------------------ tokens

const TOKEN_PREFIX: &str = "orr_";

/// A new token's secret, its id and the hash to store.
fn new_token_secret(id: TokenId) -> (String, Vec<u8>) {
    let secret: [u8; 32] = rand::random();
    let secret_hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let full = format!("{TOKEN_PREFIX}{}{secret_hex}", id.as_uuid().simple());
    (full, Sha256::digest(secret_hex.as_bytes()).to_vec())
}

/// `orr_` + 32 hex (the id) + 64 hex (the secret).
fn parse_token(token: &str) -> Option<(TokenId, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    if rest.len() != 96 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (id, secret) = rest.split_at(32);
    Some((TokenId(uuid::Uuid::parse_str(id).ok()?), secret))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn token_view(t: &TokenRecord) -> api_types::ApiToken {
    api_types::ApiToken {
        id: TokenId(t.id),
        name: t.name.clone(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        last_used_at: t.last_used_at,
    }
}

impl Services {
    /// Password sign-in. Failures are counted per email and per client address.
    pub async fn login(&self, email: &str, password: &str, addr: Option<IpAddr>) -> Result<Caller> {
        let now = Instant::now();
        let email_key = email.trim().to_lowercase();
        self.limiter.check(&email_key, addr, now)?;
        let user = match Email::parse(email) {
            Ok(e) => self.store.user_by_email(&e).await?,
            Err(_) => None,
        };
        let ok = verify_password(password, user.as_ref().and_then(|u| u.password_hash.as_deref())).await;
        match user {
            Some(u) if ok && u.disabled_at.is_none() => {
                self.limiter.record_success(&email_key);
                tracing::info!(user.id = %u.id, "signed in");
                Ok(Caller::from_user(&u, AuthMethod::Session))
            }
            _ => {
                self.limiter.record_failure(&email_key, addr, now);
                tracing::info!(client.address = ?addr, "failed sign-in");
                Err(ServiceError::BadCredentials)
            }
        }
    }

    /// The caller behind a session's user id; a deleted or disabled user is signed out.
    pub async fn session_caller(&self, user: UserId) -> Result<Caller> {
        match self.store.user(user).await {
            Ok(u) if u.disabled_at.is_none() => Ok(Caller::from_user(&u, AuthMethod::Session)),
            Ok(_) | Err(store::StoreError::NotFound) => Err(ServiceError::Unauthenticated),
            Err(e) => Err(e.into()),
        }
    }

    /// The caller behind `Authorization: Bearer orr_...`.
    pub async fn token_caller(&self, token: &str) -> Result<Caller> {
        let rec = self.valid_token(token).await?;
        if rec.kind != "user" {
            // A worker token cannot act as a person.
            return Err(ServiceError::Unauthenticated);
        }
        let id = TokenId(rec.id);
        let user = self.session_caller(UserId(rec.user_id)).await?;
        if let Err(e) = self.store.touch_token(id).await {
            tracing::warn!(token.id = %id, "could not record token use: {e}");
        }
        Ok(Caller { via: AuthMethod::Token(id), ..user })
    }

    /// Creates a personal API token; the secret is in the answer and nowhere else.
    pub async fn create_token(&self, caller: &Caller, req: &api_types::CreateToken) -> Result<api_types::CreatedToken> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ServiceError::invalid("a token needs a name of 1 to 100 characters, e.g. \"ci-deploy\""));
        }
        if req.expires_in_days == Some(0) {
            return Err(ServiceError::invalid(
                "expires_in_days must be at least 1, or absent for a token that does not expire",
            ));
        }
        let id = TokenId(uuid::Uuid::now_v7());
        let (secret, hash) = new_token_secret(id);
        let expires_at = req.expires_in_days.map(|d| Utc::now() + chrono::Duration::days(i64::from(d)));
        let rec = self.store.create_token(caller.user_id, id, name, &hash, expires_at, "user").await?;
        Ok(api_types::CreatedToken { token: token_view(&rec), secret })
    }

    pub async fn list_tokens(&self, caller: &Caller) -> Result<Vec<api_types::ApiToken>> {
        Ok(self.store.tokens_of_user(caller.user_id).await?.iter().map(token_view).collect())
    }

    pub async fn revoke_token(&self, caller: &Caller, id: TokenId) -> Result<()> {
        self.store.revoke_token(caller.user_id, id).await.map_err(ServiceError::from_store("token"))
    }

    /// A token for `user` without a caller (the first admin's token written by `orrery up`).
    pub async fn issue_token_for(&self, user: UserId, name: &str) -> Result<String> {
        let id = TokenId(uuid::Uuid::now_v7());
        let (secret, hash) = new_token_secret(id);
        self.store.create_token(user, id, name, &hash, None, "user").await?;
        Ok(secret)
    }

    /// A worker token: it lets a worker process connect and take work from every tenant, so only
    /// platform admins make them. Shown once.
    pub async fn create_worker_token(&self, caller: &Caller, name: &str) -> Result<api_types::CreatedToken> {
        if !caller.platform_admin {
            return Err(ServiceError::Forbidden {
                role: "member".into(),
                object: "the platform".into(),
                action: "create worker tokens".into(),
            });
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ServiceError::invalid("a worker token needs a name of 1 to 100 characters, e.g. \"gpu-pool\""));
        }
        let id = TokenId(uuid::Uuid::now_v7());
        let (secret, hash) = new_token_secret(id);
        let rec = self.store.create_token(caller.user_id, id, name, &hash, None, "worker").await?;
        Ok(api_types::CreatedToken { token: token_view(&rec), secret })
    }

    /// A worker token without a caller (`orrery up`'s own worker).
    pub async fn issue_worker_token(&self, user: UserId, name: &str) -> Result<String> {
        let id = TokenId(uuid::Uuid::now_v7());
        let (secret, hash) = new_token_secret(id);
        self.store.create_token(user, id, name, &hash, None, "worker").await?;
        Ok(secret)
    }

    /// Checks a worker's token. A user's token is not a worker token (and vice versa).
    pub async fn authenticate_worker(&self, token: &str) -> Result<TokenId> {
        let rec = self.valid_token(token).await?;
        if rec.kind != "worker" {
            return Err(ServiceError::Unauthenticated);
        }
        Ok(TokenId(rec.id))
    }

    async fn valid_token(&self, token: &str) -> Result<TokenRecord> {
        let (id, secret) = parse_token(token.trim()).ok_or(ServiceError::Unauthenticated)?;
        let rec = match self.store.token(id).await {
            Ok(r) => r,
            Err(store::StoreError::NotFound) => return Err(ServiceError::Unauthenticated),
            Err(e) => return Err(e.into()),
        };
        let valid = constant_time_eq(&Sha256::digest(secret.as_bytes()), &rec.secret_sha256)
            && rec.revoked_at.is_none()
            && rec.expires_at.is_none_or(|t| t > Utc::now());
        if !valid {
            return Err(ServiceError::Unauthenticated);
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_back_to_their_id_and_only_their_own_secret_matches() {
        let id = TokenId(uuid::Uuid::now_v7());
        let (full, hash) = new_token_secret(id);
        let (parsed, secret) = parse_token(&full).expect("parses");
        assert_eq!(parsed, id);
        assert!(constant_time_eq(&Sha256::digest(secret.as_bytes()), &hash));
        let mut tampered = full.clone();
        tampered.replace_range(full.len() - 1.., if full.ends_with('0') { "1" } else { "0" });
        let (_, bad) = parse_token(&tampered).unwrap();
        assert!(!constant_time_eq(&Sha256::digest(bad.as_bytes()), &hash));
        for junk in ["", "orr_", "Bearer x", &full[..full.len() - 1], &format!("{full}0")] {
            assert!(parse_token(junk).is_none(), "{junk:?}");
        }
    }

    #[test]
    fn the_limiter_blocks_after_the_budget_and_forgets_after_the_window() {
        let limits = LoginLimits { per_email: 3, per_address: 10, window: Duration::from_secs(60) };
        let l = LoginLimiter::new(limits);
        let t0 = Instant::now();
        let addr = Some("10.0.0.1".parse().unwrap());
        for _ in 0..3 {
            assert!(l.check("a@x.io", addr, t0).is_ok());
            l.record_failure("a@x.io", addr, t0);
        }
        let Err(ServiceError::RateLimited { retry_after }) = l.check("a@x.io", addr, t0 + Duration::from_secs(10))
        else {
            panic!("the fourth attempt must be limited")
        };
        assert_eq!(retry_after, Duration::from_secs(50));
        assert!(l.check("b@x.io", addr, t0).is_ok(), "another email from the same address is still allowed");
        assert!(l.check("a@x.io", addr, t0 + Duration::from_secs(61)).is_ok(), "the window passed");
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(check_password_rules(&a).is_ok());
        assert!(check_password_rules("short").is_err());
    }
}
