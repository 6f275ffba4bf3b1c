use std::time::Duration;
use ticketing_domain::Reason;

use scoped_futures::ScopedFutureExt;
use sha2::{Digest, Sha256};
use ticketing_domain::{
    Code, Error,
    error::Violations,
    identity::{self, Principal, Role},
};
use ticketing_store::users::{self, NewUser, UserRow};
use uuid::Uuid;

use crate::{
    AppState,
    app::limits::{self, Limit},
    auth::{RequestContext, token::IssuedToken},
};

const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Public sign-up: always a customer. Organizers and admins are made by an
/// operator (`ticketing user create`).
#[tracing::instrument(name = "auth.register", skip_all)]
pub async fn register(
    state: &AppState,
    ctx: &RequestContext,
    email: &str,
    password: String,
    phone: Option<&str>,
) -> Result<UserRow, Error> {
    limits::check(
        state,
        Limit { name: "register_ip", quota: state.config.login_limit_per_ip, window: LOGIN_WINDOW },
        &ctx.client_ip.to_string(),
    )
    .await?;
    create_account(state, email, password, Role::Customer, phone).await
}

/// An account without a phone number (operators, tests).
pub async fn create_user(state: &AppState, email: &str, password: String, role: Role) -> Result<UserRow, Error> {
    create_account(state, email, password, role, None).await
}

#[tracing::instrument(name = "auth.create_user", skip_all)]
async fn create_account(
    state: &AppState,
    email: &str,
    password: String,
    role: Role,
    phone: Option<&str>,
) -> Result<UserRow, Error> {
    let email = identity::normalize_email(email);
    let phone = phone.map(str::to_owned);
    let mut violations = Violations::default();
    identity::validate_email(&email, &mut violations);
    identity::validate_new_password(&password, &mut violations);
    if let Some(phone) = &phone {
        identity::validate_phone(phone, &mut violations);
    }
    violations.into_result()?;

    let password_hash = state.passwords.hash(password).await?;
    state
        .db
        .write(|conn| {
            async move {
                let user = NewUser {
                    id: Uuid::now_v7(),
                    email: &email,
                    password_hash: &password_hash,
                    role: role.as_str(),
                    phone: phone.as_deref(),
                };
                users::insert_user(conn, user).await
            }
            .scope_boxed()
        })
        .await
}

/// An account's rate-limit key: the normalised e-mail, hashed, so a key is
/// bounded whatever was sent.
fn account_key(normalized_email: &str) -> String {
    format!("{:x}", Sha256::digest(normalized_email.as_bytes()))
}

/// E-mail + password → access token. Limited per client address and per
/// e-mail, so neither one attacker nor a botnet on one account gets far.
#[tracing::instrument(name = "auth.issue_token", skip_all)]
pub async fn issue_token(
    state: &AppState,
    ctx: &RequestContext,
    email: &str,
    password: String,
) -> Result<IssuedToken, Error> {
    let email = identity::normalize_email(email);
    let mut violations = Violations::default();
    identity::validate_login_email(&email, &mut violations);
    violations.into_result()?;
    let config = &state.config;
    // Every attempt from one address counts (one attacker, many accounts);
    // against an account only failures count: per address, so nobody else
    // can lock its owner out, and in all under a far higher ceiling that
    // slows a botnet down (GCRA: one more try per interval) without locking.
    let per_ip = Limit { name: "login_ip", quota: config.login_limit_per_ip, window: LOGIN_WINDOW };
    let failures_here =
        Limit { name: "login_failures", quota: config.login_failures_per_account_and_ip, window: LOGIN_WINDOW };
    let failures_anywhere =
        Limit { name: "login_failures_account", quota: config.login_failures_per_account, window: LOGIN_WINDOW };
    let account = account_key(&email);
    let account_here = format!("{account}:{}", ctx.client_ip);
    limits::check(state, per_ip, &ctx.client_ip.to_string()).await?;
    limits::check(state, failures_here, &account_here).await?;
    if let Err(refused) = limits::check(state, failures_anywhere, &account).await {
        limits::refund(state, failures_here, &account_here).await;
        return Err(refused);
    }

    let user = {
        let email = email.clone();
        state.db.read(|conn| async move { users::find_user_by_email(conn, &email).await }.scope_boxed()).await?
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let verified = state.passwords.verify(password, stored).await;
    if !matches!(verified, Ok(false)) {
        // A success, or no verdict (hashing was busy): no failure to count.
        tokio::join!(
            limits::refund(state, failures_here, &account_here),
            limits::refund(state, failures_anywhere, &account)
        );
    }
    if !verified? {
        return Err(
            Error::new(Code::Unauthenticated, "wrong e-mail or password").with_reason(Reason::InvalidCredentials)
        );
    }
    let user = user.ok_or_else(|| Error::internal("verified a password without an account"))?;
    state.tokens.issue(&Principal { user_id: user.id, role: user.role, api_key: None })
}
