//! A workspace's members and their roles (`roles::Role`). What `GET /members/` shows and
//! `cobro workspace add-member|set-role|remove-member` change.
//!
//! The rules, checked here for the API and the CLI alike: a workspace always keeps an owner
//! (the last one can be neither removed nor demoted), and only an owner may make, demote or
//! remove an owner (an admin may do everything else). Changes to one workspace's members
//! are serialised (its row is locked first), so two owners demoting each other at once
//! cannot leave it without one.
//!
//! Each change is an event in the workspace's live mode (`member.added`, `member.updated`,
//! `member.removed`), recorded for the audit trail and not delivered to webhooks.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use super::roles::Role;
use crate::db::schema::{memberships, users, workspaces};
use crate::db::{is_unique_violation, now, write_tx, DbConnection, Scope};
use crate::error::{ApiError, FieldErrors};
use crate::events::store as events;
use crate::payments::domain::timestamp;

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// The user's id: members are `/members/{user}/`.
    pub user: i64,
    pub email: String,
    #[schema(value_type = String, example = "developer")]
    pub role: Role,
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
}

/// Who asks for a change, for the owner rule: an owner, or anyone else allowed to manage
/// members (an admin, or an operator at the CLI, who may do everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Manager {
    Owner,
    Admin,
    Operator,
}

impl Manager {
    fn may_touch_owners(self) -> bool {
        matches!(self, Manager::Owner | Manager::Operator)
    }
}

/// Who asks, as their role is now (read in the change's own transaction: a role changed a
/// moment ago counts); only owners and admins manage members.
pub fn manager_of(
    conn: &mut DbConnection,
    scope: &Scope,
    principal: &super::Principal,
) -> Result<Manager, ApiError> {
    let super::Principal::User { id, .. } = principal else {
        return Err(ApiError::Forbidden);
    };
    match role_of(conn, *id, scope.workspace_id())? {
        Some(Role::Owner) => Ok(Manager::Owner),
        Some(Role::Admin) => Ok(Manager::Admin),
        _ => Err(ApiError::Forbidden),
    }
}

/// A member's role in a workspace, or None for a user who is not a member.
pub fn role_of(
    conn: &mut DbConnection,
    user: i64,
    workspace_id: &str,
) -> QueryResult<Option<Role>> {
    let role: Option<String> = memberships::table
        .filter(memberships::user_id.eq(user))
        .filter(memberships::workspace_id.eq(workspace_id))
        .select(memberships::role)
        .first(conn)
        .optional()?;
    // The column's CHECK allows only the four roles.
    Ok(role.and_then(|r| r.parse().ok()))
}

fn view_of(
    conn: &mut DbConnection,
    workspace_id: &str,
    user: i64,
) -> QueryResult<Option<MemberView>> {
    let row: Option<(i64, String, String, NaiveDateTime)> = memberships::table
        .inner_join(users::table)
        .filter(memberships::workspace_id.eq(workspace_id))
        .filter(memberships::user_id.eq(user))
        .select((
            users::id,
            users::email,
            memberships::role,
            memberships::created,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(view))
}

fn view((user, email, role, created): (i64, String, String, NaiveDateTime)) -> MemberView {
    MemberView {
        user,
        email,
        role: role.parse().unwrap_or(Role::Viewer),
        created: timestamp(created),
    }
}

/// Every member of the scope's workspace, oldest first.
pub fn list(conn: &mut DbConnection, scope: &Scope) -> Result<Vec<MemberView>, ApiError> {
    let rows: Vec<(i64, String, String, NaiveDateTime)> = memberships::table
        .inner_join(users::table)
        .filter(memberships::workspace_id.eq(scope.workspace_id()))
        .select((
            users::id,
            users::email,
            memberships::role,
            memberships::created,
        ))
        .order_by((memberships::created.asc(), users::id.asc()))
        .load(conn)?;
    Ok(rows.into_iter().map(view).collect())
}

pub fn find(conn: &mut DbConnection, scope: &Scope, user: i64) -> Result<MemberView, ApiError> {
    view_of(conn, scope.workspace_id(), user)?.ok_or(ApiError::NotFound)
}

/// Locks the workspace's row for the rest of the transaction (on SQLite the single writer
/// already serialises), so that owner counts stay true until commit.
fn lock_workspace(conn: &mut DbConnection, workspace_id: &str) -> Result<(), ApiError> {
    let locked = diesel::update(workspaces::table.find(workspace_id))
        .set(workspaces::name.eq(workspaces::name))
        .execute(conn)?;
    if locked == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(())
}

fn owners(conn: &mut DbConnection, workspace_id: &str) -> Result<i64, ApiError> {
    Ok(memberships::table
        .filter(memberships::workspace_id.eq(workspace_id))
        .filter(memberships::role.eq(Role::Owner.as_str()))
        .count()
        .get_result(conn)?)
}

/// The scope events about members go in: the workspace's live mode.
fn live(scope: &Scope) -> Scope {
    scope.in_mode(false)
}

fn record(
    conn: &mut DbConnection,
    scope: &Scope,
    kind: &str,
    member: &MemberView,
) -> Result<(), ApiError> {
    events::insert(
        conn,
        &live(scope),
        kind,
        "member",
        &member.user.to_string(),
        member,
    )?;
    Ok(())
}

/// Beyond an admin's role: a 403, as every request beyond its role.
fn owner_rule() -> ApiError {
    ApiError::Forbidden
}

/// Adds an existing user (by email) to the workspace with a role. Call in a transaction.
pub fn add(
    conn: &mut DbConnection,
    scope: &Scope,
    by: Manager,
    email: &str,
    role: Role,
) -> Result<MemberView, ApiError> {
    let email_error = |message: &str| ApiError::Validation(FieldErrors::one("email", message));
    let email =
        super::normalise_email(email).map_err(|_| email_error("Enter a valid email address."))?;
    lock_workspace(conn, scope.workspace_id())?;
    if role == Role::Owner && !by.may_touch_owners() {
        return Err(owner_rule());
    }
    let user: i64 = users::table
        .filter(users::email.eq(&email))
        .select(users::id)
        .first(conn)
        .optional()?
        .ok_or_else(|| {
            email_error(&format!(
                "No user with email {email}: create it first (`cobro user create`)."
            ))
        })?;
    let inserted = diesel::insert_into(memberships::table)
        .values((
            memberships::workspace_id.eq(scope.workspace_id()),
            memberships::user_id.eq(user),
            memberships::created.eq(now()),
            memberships::role.eq(role.as_str()),
        ))
        .execute(conn);
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(email_error("This user is already a member."));
        }
        other => other?,
    };
    let member = find(conn, scope, user)?;
    record(conn, scope, "member.added", &member)?;
    Ok(member)
}

/// Gives a member another role. Call in a transaction.
pub fn set_role(
    conn: &mut DbConnection,
    scope: &Scope,
    by: Manager,
    user: i64,
    role: Role,
) -> Result<MemberView, ApiError> {
    lock_workspace(conn, scope.workspace_id())?;
    let current = find(conn, scope, user)?;
    if current.role == role {
        return Ok(current);
    }
    if (current.role == Role::Owner || role == Role::Owner) && !by.may_touch_owners() {
        return Err(owner_rule());
    }
    if current.role == Role::Owner && owners(conn, scope.workspace_id())? <= 1 {
        return Err(ApiError::Validation(FieldErrors::one(
            "role",
            "A workspace keeps at least one owner: make another member owner first.",
        )));
    }
    diesel::update(
        memberships::table
            .filter(memberships::workspace_id.eq(scope.workspace_id()))
            .filter(memberships::user_id.eq(user)),
    )
    .set(memberships::role.eq(role.as_str()))
    .execute(conn)?;
    super::cache::bump(conn)?;
    let member = find(conn, scope, user)?;
    record(conn, scope, "member.updated", &member)?;
    Ok(member)
}

/// Removes a member. Call in a transaction.
pub fn remove(
    conn: &mut DbConnection,
    scope: &Scope,
    by: Manager,
    user: i64,
) -> Result<MemberView, ApiError> {
    lock_workspace(conn, scope.workspace_id())?;
    let current = find(conn, scope, user)?;
    if current.role == Role::Owner {
        if !by.may_touch_owners() {
            return Err(owner_rule());
        }
        if owners(conn, scope.workspace_id())? <= 1 {
            return Err(ApiError::Validation(FieldErrors::one(
                "non_field_errors",
                "The last owner of a workspace cannot be removed.",
            )));
        }
    }
    diesel::delete(
        memberships::table
            .filter(memberships::workspace_id.eq(scope.workspace_id()))
            .filter(memberships::user_id.eq(user)),
    )
    .execute(conn)?;
    super::cache::bump(conn)?;
    record(conn, scope, "member.removed", &current)?;
    Ok(current)
}

/// [`add`] for a request: who asks is checked in the change's own transaction.
pub fn add_as(
    conn: &mut DbConnection,
    scope: &Scope,
    principal: &super::Principal,
    email: &str,
    role: Role,
) -> Result<MemberView, ApiError> {
    write_tx(conn, |conn| {
        let by = manager_of(conn, scope, principal)?;
        add(conn, scope, by, email, role)
    })
}

/// [`set_role`] for a request.
pub fn set_role_as(
    conn: &mut DbConnection,
    scope: &Scope,
    principal: &super::Principal,
    user: i64,
    role: Role,
) -> Result<MemberView, ApiError> {
    write_tx(conn, |conn| {
        let by = manager_of(conn, scope, principal)?;
        set_role(conn, scope, by, user, role)
    })
}

/// [`remove`] for a request.
pub fn remove_as(
    conn: &mut DbConnection,
    scope: &Scope,
    principal: &super::Principal,
    user: i64,
) -> Result<MemberView, ApiError> {
    write_tx(conn, |conn| {
        let by = manager_of(conn, scope, principal)?;
        remove(conn, scope, by, user)
    })
}
