//! Who is calling and what they may do.

use uuid::Uuid;

use crate::error::{Error, Violations};

crate::vocabulary! {
    pub enum Role {
        Customer = "customer",
        Organizer = "organizer",
        Admin = "admin",
    }
}

crate::vocabulary! {
    /// What an API key may be used for (README "API keys"). A key
    /// acts as its creator, so it can never do more than they can; and no
    /// scope lets it buy, pay, queue, sign in or manage keys.
    pub enum ApiKeyScope {
        /// Events, their categories and their audit trail, read.
        EventsRead = "events:read",
        /// Events and categories created, changed, published, cancelled.
        EventsWrite = "events:write",
        /// Orders, payments and refunds of the creator's events, read.
        OrdersRead = "orders:read",
        /// Sales reports started, read and downloaded.
        Reports = "reports",
        /// Scanner devices registered and revoked, check-in counts read.
        CheckinAdmin = "checkin:admin",
    }
}

/// An API key's credential as presented: which key, and the hash of the
/// whole token (what the database keeps). Resolved to its creator's
/// [`Principal`] before the call runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyCredential {
    pub key_id: Uuid,
    pub token_hash: [u8; 32],
}

impl ApiKeyCredential {
    /// Whether the stored hash is this token's, compared in constant time.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.token_hash.as_slice().ct_eq(stored_hash).into()
    }
}

const API_KEY_PREFIX: &str = "tk_";

/// A new API key `tk_…` (shown once) and its hash (stored).
pub fn issue_api_key(key_id: Uuid, secret: [u8; crate::secret_token::SECRET_BYTES]) -> (String, [u8; 32]) {
    crate::secret_token::issue(API_KEY_PREFIX, key_id, secret)
}

/// Whether a bearer token is meant as an API key.
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(API_KEY_PREFIX)
}

/// The credential an API key carries, if it is well formed.
pub fn parse_api_key(token: &str) -> Option<ApiKeyCredential> {
    let (key_id, token_hash) = crate::secret_token::parse(API_KEY_PREFIX, token)?;
    Some(ApiKeyCredential { key_id, token_hash })
}

/// An authenticated user, taken from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub role: Role,
    /// The API key the call was made with, if any: the audit trail and
    /// the logs name it.
    pub api_key: Option<Uuid>,
}

impl Principal {
    /// Organizers and admins may create events.
    pub fn require_event_creator(&self) -> Result<(), Error> {
        match self.role {
            Role::Organizer | Role::Admin => Ok(()),
            Role::Customer => Err(Error::permission_denied("only organizers can create events")),
        }
    }

    /// The owning organizer or an admin may change an event.
    pub fn can_manage_event(&self, organizer_id: Uuid) -> bool {
        self.role == Role::Admin || (self.role == Role::Organizer && self.user_id == organizer_id)
    }
}

pub const MIN_PASSWORD_CHARS: usize = 10;
const MAX_PASSWORD_CHARS: usize = 256;
const MAX_EMAIL_CHARS: usize = 254;

/// Lower-cases and trims an e-mail so one mailbox is one account.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A phone number for WhatsApp, in E.164 (`+` and 8 to 15 digits).
pub fn validate_phone(phone: &str, violations: &mut Violations) {
    let digits = phone.strip_prefix('+').unwrap_or_default();
    let valid =
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    violations.check(valid, "phone", "must be an E.164 number such as +6281234567890");
}

/// A deliberately plain check: one `@`, a non-empty local part and a dotted
/// domain. Deliverability is the mail server's business.
pub fn validate_email(email: &str, violations: &mut Violations) {
    let valid = email.len() <= MAX_EMAIL_CHARS
        && !email.chars().any(char::is_whitespace)
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    violations.check(valid, "email", "must be a valid e-mail address");
    violations.check_plain_text("email", email);
}

/// An e-mail as typed at login: bounded and plain, before it goes anywhere
/// (a rate-limit key, a query); its shape is the account's business.
pub fn validate_login_email(email: &str, violations: &mut Violations) {
    violations.check(email.len() <= MAX_EMAIL_CHARS, "email", "must be at most 254 bytes");
    violations.check_plain_text("email", email);
}

pub fn validate_new_password(password: &str, violations: &mut Violations) {
    let chars = password.chars().count();
    violations.check(
        (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars),
        "password",
        "must be between 10 and 256 characters",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_must_be_e164() {
        let ok = |phone: &str| {
            let mut v = Violations::default();
            validate_phone(phone, &mut v);
            v.into_result().is_ok()
        };
        assert!(ok("+6281234567890"));
        for bad in ["6281234567890", "+0812345678", "+62 812 3456", "+1234567", "+1234567890123456", "+62abc45678"] {
            assert!(!ok(bad), "{bad} accepted");
        }
    }

    fn email_ok(email: &str) -> bool {
        let mut v = Violations::default();
        validate_email(email, &mut v);
        v.into_result().is_ok()
    }

    #[test]
    fn email_rules() {
        assert!(email_ok("ana@example.com"));
        assert!(!email_ok("ana@"));
        assert!(!email_ok("@example.com"));
        assert!(!email_ok("ana@localhost"));
        assert!(!email_ok("a na@example.com"));
        assert!(!email_ok("a\u{0}b@example.com"), "NUL, which Postgres refuses");
        assert!(!email_ok("a\u{1b}[2Jb@example.com"), "an escape sequence");
        assert!(!email_ok("a@b@example.com"));
    }

    #[test]
    fn emails_are_normalized() {
        assert_eq!(normalize_email("  Ana@Example.COM "), "ana@example.com");
    }

    #[test]
    fn only_owner_or_admin_manage_an_event() {
        let owner = Uuid::now_v7();
        let organizer = Principal { user_id: owner, role: Role::Organizer, api_key: None };
        let other = Principal { user_id: Uuid::now_v7(), role: Role::Organizer, api_key: None };
        let admin = Principal { user_id: Uuid::now_v7(), role: Role::Admin, api_key: None };
        let customer_with_same_id = Principal { user_id: owner, role: Role::Customer, api_key: None };
        assert!(organizer.can_manage_event(owner));
        assert!(!other.can_manage_event(owner));
        assert!(admin.can_manage_event(owner));
        assert!(!customer_with_same_id.can_manage_event(owner));
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Customer, Role::Organizer, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
