use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ticketing_domain::{Code, Error, Reason, identity::Role};
use uuid::Uuid;

use crate::{Conn, StoreError, schema::users, words::Word};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    #[diesel(deserialize_as = Word<Role>)]
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub phone: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub phone: Option<&'a str>,
}

pub async fn insert_user(conn: &mut Conn, user: NewUser<'_>) -> Result<UserRow, StoreError> {
    diesel::insert_into(users::table).values(&user).returning(UserRow::as_returning()).get_result(conn).await.map_err(
        |error| {
            let error = StoreError::from(error);
            if error.is_unique_violation("users_email_key") {
                StoreError::Domain(
                    Error::new(Code::AlreadyExists, "an account with this e-mail already exists")
                        .with_reason(Reason::EmailTaken),
                )
            } else {
                error
            }
        },
    )
}

pub async fn find_user_by_email(conn: &mut Conn, email: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(users::table.filter(users::email.eq(email)).select(UserRow::as_select()).first(conn).await.optional()?)
}

pub async fn find_user(conn: &mut Conn, id: Uuid) -> Result<Option<UserRow>, StoreError> {
    Ok(users::table.find(id).select(UserRow::as_select()).first(conn).await.optional()?)
}
