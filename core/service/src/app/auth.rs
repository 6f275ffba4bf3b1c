use std::time::Duration;
use ticketing_domain::Reason;

use scoped_futures::ScopedFutureExt;
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
    auth::{RequestContext, password, token::IssuedToken},
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

    let password_hash = password::hash(password).await?;
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
    let config = &state.config;
    let per_ip = Limit { name: "login_ip", quota: config.login_limit_per_ip, window: LOGIN_WINDOW };
    let per_email = Limit { name: "login_email", quota: config.login_limit_per_email, window: LOGIN_WINDOW };
    limits::check(state, per_ip, &ctx.client_ip.to_string()).await?;
    limits::check(state, per_email, &email).await?;

    let user = {
        let email = email.clone();
        state.db.read(|conn| async move { users::find_user_by_email(conn, &email).await }.scope_boxed()).await?
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    if !password::verify(password, stored).await? {
        return Err(
            Error::new(Code::Unauthenticated, "wrong e-mail or password").with_reason(Reason::InvalidCredentials)
        );
    }
    let user = user.ok_or_else(|| Error::internal("verified a password without an account"))?;
    state.tokens.issue(&Principal { user_id: user.id, role: user.role })
}
