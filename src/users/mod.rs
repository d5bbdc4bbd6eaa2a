//! Tenant users: who they are, their passwords ([`password`]) and login sessions
//! ([`sessions`]), and the operations on them — list, read, create, change role or status,
//! deactivate.
//!
//! Role changes follow one rule (with API keys' scopes following the same one): you may
//! only grant what you hold ([`Principal::ensure_may_grant`]). A caller may assign a role,
//! or touch a user, only when that role's scopes are a subset of the caller's — so a member
//! cannot make themselves admin, an admin cannot mint or demote an owner — and nobody
//! changes their own role or status. A tenant always keeps at least one active owner.
//! Deactivating a user ends their sessions at once.

pub mod password;
pub mod sessions;
pub mod store;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use validator::ValidateEmail;

use crate::id::TenantId;
pub use crate::id::UserId;
use crate::{
    access::{Grant, Principal, Role, Scope},
    audit::{self, AuditEvent},
    db::{
        TenantTx,
        table::{self, Table},
    },
    error::Error,
    page::{Page, PageRequest},
    plans::{LimitName, quota},
    rule::{TextRule, text_schema},
    versioning::{self, Change, ExpectedVersion, Versioned},
};
use password::Passwords;

/// A normalised (trimmed, lower-case) email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// The HTML standard's "valid email address" (what `validate_email` checks), in ASCII
    /// (an internationalised domain is sent in its `xn--` form), with any surrounding
    /// spaces, tabs or line breaks, which `parse` trims. `parse` also accepts what the
    /// schema does not publish (Unicode domains, address literals): whatever the schema
    /// admits, `parse` accepts.
    pub const RULE: TextRule = TextRule {
        chars: 3..=254,
        pattern: Some(
            r"^[ \t\r\n]*[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*[ \t\r\n]*$",
        ),
        message: "must be a valid email address",
        example: "ada@acme.test",
        secret: false,
    };

    pub fn parse(value: &str) -> Result<Self, Error> {
        let email = value.trim().to_lowercase();
        if email.len() > 254 || !email.validate_email() {
            return Err(Error::invalid("email", Self::RULE.message));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An address no user has (parsing refuses the empty one), for a lookup that must cost
    /// what a real one does although the address given was not an email at all.
    pub fn unmatchable() -> Self {
        Self(String::new())
    }
}

text_schema!(Email, "Email", Email::RULE);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = "active")]
pub enum UserStatus {
    Active,
    Deactivated,
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    #[schema(example = "ada@acme.test")]
    pub email: String,
    pub role: Role,
    pub status: UserStatus,
    #[schema(example = 1)]
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Table for User {
    type Id = UserId;
    const NAME: &'static str = "user";
    const TABLE: &'static str = "users";
    const COLUMNS: &'static str = store::COLUMNS;

    fn id(&self) -> uuid::Uuid {
        self.id.as_uuid()
    }
}

impl Versioned for User {
    fn version(&self) -> i64 {
        self.version
    }
}

/// Users of the tenant, newest first.
pub async fn list(
    tx: &mut TenantTx,
    principal: &Principal,
    page: PageRequest,
) -> Result<Page<User>, Error> {
    principal.require(Scope::UsersRead)?;
    table::page(tx, page).await
}

/// One user.
pub async fn get(tx: &mut TenantTx, principal: &Principal, id: UserId) -> Result<User, Error> {
    principal.require(Scope::UsersRead)?;
    table::get(tx, id).await
}

/// A user to create, parsed and with its password already hashed — argon2 takes tens of
/// milliseconds, so [`NewUser::parse`] runs before any transaction holds a connection.
pub struct NewUser {
    email: Email,
    role: Role,
    password_hash: String,
    /// The password generated when none was given, to show its creator once.
    generated_password: Option<SecretString>,
}

impl NewUser {
    /// Checks the email and the chosen password (`password_field` names it in errors), or
    /// generates a password when none is given, and hashes it.
    pub async fn parse(
        passwords: &Passwords,
        email: &str,
        email_field: &str,
        role: Role,
        password: Option<SecretString>,
        password_field: &str,
    ) -> Result<Self, Error> {
        let email = Email::parse(email)
            .map_err(|_| Error::invalid(email_field, "must be a valid email address"))?;
        let (password, generated) = match password {
            Some(given) => {
                password::validate(password_field, given.expose_secret())?;
                (given, false)
            }
            None => (password::generate(), true),
        };
        let generated_password = generated.then(|| password.clone());
        let password_hash = passwords.hash(password).await?;
        Ok(Self {
            email,
            role,
            password_hash,
            generated_password,
        })
    }

    /// The password generated when none was given.
    pub fn generated_password(&self) -> Option<&SecretString> {
        self.generated_password.as_ref()
    }

    pub fn email(&self) -> &Email {
        &self.email
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The argon2 hash to store (never logged, never shown).
    pub(crate) fn password_hash(&self) -> &str {
        &self.password_hash
    }
}

/// A created user, with the generated password when there was one (shown once).
pub struct CreatedUser {
    pub user: User,
    pub generated_password: Option<SecretString>,
}

/// Creates a user with a role no more powerful than the caller's.
pub async fn create(
    tx: &mut TenantTx,
    principal: &Principal,
    new: NewUser,
) -> Result<CreatedUser, Error> {
    principal.require(Scope::UsersWrite)?;
    principal.ensure_may_grant(Grant::Role(new.role))?;
    admit_one_more(tx, principal).await?;
    let user = insert(tx, principal.tenant_id(), &new).await?;
    audit::record(
        tx,
        principal,
        AuditEvent::new("user.created", "user", user.id)
            .data(serde_json::json!({"role": user.role}))
            .personal(serde_json::json!({"email": user.email})),
    )
    .await?;
    Ok(CreatedUser {
        user,
        generated_password: new.generated_password,
    })
}

/// Refuses (403 `quota_exceeded`) one more active user than the plan allows.
async fn admit_one_more(tx: &mut TenantTx, principal: &Principal) -> Result<(), Error> {
    quota::admit(
        tx,
        principal,
        principal.tenant_id(),
        LimitName::Users,
        async |conn| store::count_active(conn).await,
    )
    .await
}

/// Inserts a user into the tenant whose context `conn`'s transaction is in.
async fn insert(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    new: &NewUser,
) -> Result<User, Error> {
    Ok(store::insert(conn, tenant_id, &new.email, new.role, &new.password_hash).await?)
}

/// A change of role or status; `None` keeps a field as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct UserChanges {
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
}

/// Changes another user's role or status. Deactivation ends all their sessions at once.
pub async fn update(
    tx: &mut TenantTx,
    principal: &Principal,
    id: UserId,
    expected: &ExpectedVersion,
    changes: UserChanges,
) -> Result<User, Error> {
    principal.require(Scope::UsersWrite)?;
    if principal.user_id() == Some(id) {
        return Err(Error::forbidden(
            "cannot_modify_self",
            "you cannot change your own role or status",
        ));
    }
    // Reactivating a user counts against the plan's users like creating one: checked
    // first (the quota's lock comes before the owners' and the user's, as in `create`).
    if changes.status == Some(UserStatus::Active) {
        let current = table::get::<User>(tx, id).await?;
        if current.status != UserStatus::Active {
            admit_one_more(tx, principal).await?;
        }
    }
    // Lock owners first, then the user, in every writer: one lock order, no deadlock.
    let owners = store::lock_active_owners(tx).await?;
    let change = UserChange {
        changes,
        by: principal,
        owners,
    };
    // A role bounds the scopes of the user's tokens and keys; a status, whether they work.
    tx.credentials_changed();
    versioning::update(tx, principal.into(), id, expected, change).await
}

/// Deactivates a user: their sessions end; the record stays for the audit trail.
pub async fn deactivate(
    tx: &mut TenantTx,
    principal: &Principal,
    id: UserId,
    expected: &ExpectedVersion,
) -> Result<User, Error> {
    let changes = UserChanges {
        role: None,
        status: Some(UserStatus::Deactivated),
    };
    update(tx, principal, id, expected, changes).await
}

/// A role or status change with what its rules need: who asks, and the tenant's active
/// owners (locked).
struct UserChange<'a> {
    changes: UserChanges,
    by: &'a Principal,
    owners: Vec<UserId>,
}

/// A change that passed the rules, with every field resolved.
struct Resolved {
    role: Role,
    status: UserStatus,
    /// An active user is being deactivated: their sessions end too.
    ends_sessions: bool,
}

impl Change for UserChange<'_> {
    type Resource = User;
    type Id = UserId;
    type Checked = Resolved;
    const PERSONAL_FIELDS: &'static [&'static str] = &["email"];

    fn against(self, current: &User) -> Result<Option<Resolved>, Error> {
        self.by.ensure_may_grant(Grant::Role(current.role))?;
        let role = self.changes.role.unwrap_or(current.role);
        let status = self.changes.status.unwrap_or(current.status);
        self.by.ensure_may_grant(Grant::Role(role))?;
        if role == current.role && status == current.status {
            return Ok(None);
        }
        let stays_owner = role == Role::Owner && status == UserStatus::Active;
        if self.owners.contains(&current.id) && !stays_owner && self.owners.len() == 1 {
            return Err(Error::conflict(
                "last_owner",
                "the tenant must keep at least one active owner",
            ));
        }
        Ok(Some(Resolved {
            role,
            status,
            ends_sessions: status == UserStatus::Deactivated
                && current.status == UserStatus::Active,
        }))
    }

    async fn apply(
        resolved: &Resolved,
        conn: &mut PgConnection,
        id: UserId,
    ) -> Result<User, Error> {
        let user = store::update(conn, id, resolved.role, resolved.status).await?;
        if resolved.ends_sessions {
            sessions::revoke_all_of(conn, id, "user_deactivated").await?;
        }
        Ok(user)
    }

    fn audit_event(_: &Resolved, id: UserId, updated: &User) -> AuditEvent {
        AuditEvent::new("user.updated", "user", id)
            .data(serde_json::json!({"role": updated.role, "status": updated.status}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Acme.TEST ").unwrap().as_str(),
            "ada@acme.test"
        );
        for bad in ["", "ada", "ada@", "@acme.test", "a b@acme.test"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_email_schema_admits_only_addresses_parse_accepts() {
        let long_local = format!("{}@acme.test", "a".repeat(65));
        let long_label = format!("ada@{}.test", "a".repeat(64));
        let long = format!("ada@{}.test", vec!["a".repeat(60); 5].join("."));
        crate::rule::conformance::schema_admits_only_what_parse_accepts(
            &Email::RULE,
            &[
                "ada@acme.test",
                "Ada@Acme.TEST",
                "a.b+c@x-y.z",
                "x@y",
                "o'neil@acme.test",
                "ada@-acme.test",
                "ada@acme-.test",
                "ada@acme..test",
                "ada@[127.0.0.1]",
                "ada@bücher.de",
                " ada@acme.test\t",
                "\u{a0}ada@acme.test",
                &long_local,
                &long_label,
                &long,
            ],
            |value| Email::parse(value).is_ok(),
        );
    }
}
