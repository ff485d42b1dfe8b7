//! Users, workspaces, memberships and credentials: what `cobro user|workspace|key` manage
//! and what authentication reads.
//!
//! Tokens and keys are long random secrets, so a plain SHA-256 digest is enough to store
//! them: it cannot be reversed, and there is nothing to brute-force as with a password.
//! The plain value is shown once, when it is made.

pub mod auth;
pub mod cache;
pub mod handlers;
pub mod keys;
pub mod members;
pub mod passwords;
pub mod payer;
pub mod roles;
pub mod sessions;

use diesel::prelude::*;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use crate::audit::Actor;
use crate::db::schema::{memberships, users, workspaces};
use crate::db::{is_unique_violation, now, write_tx, DbConnection, Scope};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no user with email {0}")]
    UnknownUser(String),
    #[error("a user with email {0} already exists")]
    UserExists(String),
    #[error("\"{0}\" is not a valid email address")]
    InvalidEmail(String),
    #[error("no workspace with id {0}")]
    UnknownWorkspace(String),
    #[error("a workspace name may not be blank")]
    BlankName,
    /// A rule said no (the message names what).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// Who a credential belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A user's API token: the workspace and mode come from the request's headers.
    User { id: i64, email: String },
    /// A workspace key, bound to one workspace and mode: a full secret key (`sk_…`,
    /// `permissions` None) or a restricted one (`rk_…`).
    Key(keys::KeyPrincipal),
}

impl Principal {
    /// Who sent a request, as idempotency keys are scoped: the user (whatever their token
    /// is now) or the key.
    pub fn credential(&self) -> String {
        match self {
            Principal::User { id, .. } => format!("user:{id}"),
            Principal::Key(key) => format!("key:{}", key.id),
        }
    }

    /// The actor its events record (a key by its masked prefix).
    pub fn actor(&self) -> Actor {
        match self {
            Principal::User { email, .. } => Actor::User {
                email: email.clone(),
            },
            Principal::Key(key) => Actor::Key {
                prefix: key.masked.clone(),
            },
        }
    }
}

pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn random(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

/// A new random id with a prefix (`acc_…`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", random(20))
}

/// A user token as DRF makes them: 40 hex characters.
fn new_token() -> String {
    let bytes: [u8; 20] = rand::random();
    hex::encode(bytes)
}

pub(crate) fn normalise_email(email: &str) -> Result<String, AccountError> {
    use validator::ValidateEmail;
    let email = email.trim().to_lowercase();
    if email.validate_email() {
        Ok(email)
    } else {
        Err(AccountError::InvalidEmail(email))
    }
}

pub(crate) fn user_id(conn: &mut DbConnection, email: &str) -> Result<i64, AccountError> {
    let email = normalise_email(email)?;
    users::table
        .filter(users::email.eq(&email))
        .select(users::id)
        .first(conn)
        .optional()?
        .ok_or(AccountError::UnknownUser(email))
}

/// Creates a user and returns their first token.
pub fn create_user(conn: &mut DbConnection, email: &str) -> Result<String, AccountError> {
    let email = normalise_email(email)?;
    let token = new_token();
    let inserted = diesel::insert_into(users::table)
        .values((
            users::email.eq(&email),
            users::token_digest.eq(digest(&token)),
            users::created.eq(now()),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(token),
        Err(e) if is_unique_violation(&e) => Err(AccountError::UserExists(email)),
        Err(e) => Err(e.into()),
    }
}

/// Gives a user a new token; the old one stops working at once.
pub fn rotate_token(conn: &mut DbConnection, email: &str) -> Result<String, AccountError> {
    let id = user_id(conn, email)?;
    let token = new_token();
    write_tx(conn, |conn| {
        diesel::update(users::table.find(id))
            .set(users::token_digest.eq(digest(&token)))
            .execute(conn)?;
        Ok::<_, AccountError>(cache::bump(conn)?)
    })?;
    Ok(token)
}

pub fn create_workspace(
    conn: &mut DbConnection,
    name: &str,
    owner_email: &str,
) -> Result<String, AccountError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AccountError::BlankName);
    }
    let owner = user_id(conn, owner_email)?;
    write_tx(conn, |conn| insert_workspace(conn, name, owner))
}

/// Inserts a workspace and its owner's membership (in the caller's transaction).
fn insert_workspace(
    conn: &mut DbConnection,
    name: &str,
    owner: i64,
) -> Result<String, AccountError> {
    let id = new_id("acc_");
    let at = now();
    diesel::insert_into(workspaces::table)
        .values((
            workspaces::id.eq(&id),
            workspaces::name.eq(name),
            workspaces::created.eq(at),
        ))
        .execute(conn)?;
    diesel::insert_into(memberships::table)
        .values((
            memberships::workspace_id.eq(&id),
            memberships::user_id.eq(owner),
            memberships::created.eq(at),
            memberships::role.eq(roles::Role::Owner.as_str()),
        ))
        .execute(conn)?;
    Ok(id)
}

pub(crate) fn require_workspace(
    conn: &mut DbConnection,
    workspace_id: &str,
) -> Result<String, AccountError> {
    workspaces::table
        .find(workspace_id)
        .select(workspaces::name)
        .first(conn)
        .optional()?
        .ok_or_else(|| AccountError::UnknownWorkspace(workspace_id.to_string()))
}

/// A scope for an operator's command (the CLI): the workspace, which must exist, in one
/// mode, acted in by the job `cli`.
pub fn operator_scope(
    conn: &mut DbConnection,
    workspace_id: &str,
    test_mode: bool,
) -> Result<Scope, AccountError> {
    require_workspace(conn, workspace_id)?;
    let origin = std::sync::Arc::new(crate::audit::Origin::job("cli"));
    Ok(Scope::new(workspace_id.to_string(), test_mode, &origin))
}

/// The workspace's name, for pages that show it to payers.
pub fn workspace_name(conn: &mut DbConnection, scope: &Scope) -> Result<String, AccountError> {
    require_workspace(conn, scope.workspace_id())
}

/// Whom a token or key (by its digest) belongs to, or None for an unknown or revoked one.
/// See `cache` for how a server trusts the answer for a while without missing a change.
pub fn authenticate(
    conn: &mut DbConnection,
    digest: &str,
    is_key: bool,
) -> QueryResult<Option<Principal>> {
    if is_key {
        return Ok(keys::authenticate(conn, digest)?.map(Principal::Key));
    }
    let user = users::table
        .filter(users::token_digest.eq(digest))
        .select((users::id, users::email))
        .first::<(i64, String)>(conn)
        .optional()?;
    Ok(user.map(|(id, email)| Principal::User { id, email }))
}

pub fn has_users(conn: &mut DbConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(users::table.select(users::id))).get_result(conn)
}

/// What a first start on an empty database creates and prints once.
pub struct Bootstrap {
    pub email: String,
    pub token: String,
    pub workspace_id: String,
    /// A one-time console sign-in link's secret (`sessions::new_link`).
    pub sign_in: String,
}

impl crate::db::TxError for AccountError {
    fn is_contention(&self) -> bool {
        false
    }
}

/// On an empty database, creates a first user, workspace and token, all or nothing. None
/// when users exist (or another process bootstrapped at the same moment).
pub fn bootstrap(conn: &mut DbConnection) -> Result<Option<Bootstrap>, AccountError> {
    let email = "admin@cobro.local".to_string();
    let created = write_tx(conn, |conn| {
        if has_users(conn)? {
            return Ok(None);
        }
        let token = create_user(conn, &email)?;
        let owner = user_id(conn, &email)?;
        let workspace_id = insert_workspace(conn, "My workspace", owner)?;
        let sign_in = sessions::new_link(conn, &email)?;
        Ok(Some(Bootstrap {
            email: email.clone(),
            token,
            workspace_id,
            sign_in,
        }))
    });
    match created {
        Err(AccountError::UserExists(_)) => Ok(None),
        other => other,
    }
}
