//! Console sessions and one-time sign-in links, both as long random secrets of which only
//! the SHA-256 is kept (as for tokens: see the module above).
//!
//! A session ends when its user signs out, when their password changes, after
//! [`Lifetimes::idle`] without a request, and after [`Lifetimes::absolute`] whatever
//! happens. A sign-in link works once, within [`LINK_LIFETIME`]; using it and starting the
//! session it opens are one transaction.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

use super::roles::Role;
use super::{digest, random, AccountError};
use crate::db::schema::{console_sessions, memberships, sign_in_links, users, workspaces};
use crate::db::{now, write_tx, DbConnection};
use crate::error::ApiError;

/// How long a session lasts from sign-in, however busy.
pub const MAX_SESSION: Duration = Duration::hours(12);

/// How long a sign-in link is good for.
pub const LINK_LIFETIME: Duration = Duration::minutes(15);

/// How long a session lasts.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    /// Without a request (PCI DSS 8.2.8 asks for 15 minutes at most).
    pub idle: Duration,
    /// From sign-in, however busy.
    pub absolute: Duration,
}

impl Lifetimes {
    /// `idle_seconds` without a request (`COBRO_SESSION_IDLE_SECONDS`), 12 hours at most.
    pub fn after_idle(idle_seconds: u64) -> Lifetimes {
        Lifetimes {
            idle: Duration::seconds(idle_seconds as i64),
            absolute: MAX_SESSION,
        }
    }

    /// How stale `last_seen` may get before a request writes it again: often enough that
    /// an active user is never cut off, rarely enough that reading a page is not a write.
    pub fn touch_after(&self) -> Duration {
        (self.idle / 4).min(Duration::seconds(60))
    }
}

/// A signed-in user and what their header shows.
#[derive(Clone, Debug)]
pub struct Session {
    pub digest: String,
    pub user_id: i64,
    pub email: String,
    pub workspace_id: Option<String>,
    pub test_mode: bool,
    pub last_seen: NaiveDateTime,
}

/// What a session cookie turned out to be.
pub enum Found {
    Live(Session),
    /// It was a session, and has expired.
    Expired,
    Unknown,
}

type Row = (
    String,
    i64,
    String,
    Option<String>,
    bool,
    NaiveDateTime,
    NaiveDateTime,
);

/// The session whose cookie holds `secret`.
pub fn find(conn: &mut DbConnection, secret: &str, lifetimes: Lifetimes) -> QueryResult<Found> {
    let row: Option<Row> = console_sessions::table
        .inner_join(users::table)
        .filter(console_sessions::digest.eq(digest(secret)))
        .select((
            console_sessions::digest,
            users::id,
            users::email,
            console_sessions::workspace_id,
            console_sessions::test_mode,
            console_sessions::created,
            console_sessions::last_seen,
        ))
        .first(conn)
        .optional()?;
    let Some((digest, user_id, email, workspace_id, test_mode, created, last_seen)) = row else {
        return Ok(Found::Unknown);
    };
    let at = now();
    if at - last_seen > lifetimes.idle || at - created > lifetimes.absolute {
        // Deleted by the purge (this is a read).
        return Ok(Found::Expired);
    }
    Ok(Found::Live(Session {
        digest,
        user_id,
        email,
        workspace_id,
        test_mode,
        last_seen,
    }))
}

/// Starts a session for a user; returns the cookie's secret (shown only to that browser).
/// The session whose secret the browser presented, if any, ends: one browser, one session.
pub fn start(
    conn: &mut DbConnection,
    user_id: i64,
    replacing: Option<&str>,
) -> QueryResult<String> {
    if let Some(old) = replacing {
        end_digest(conn, &digest(old))?;
    }
    let secret = random(40);
    let at = now();
    diesel::insert_into(console_sessions::table)
        .values((
            console_sessions::digest.eq(digest(&secret)),
            console_sessions::user_id.eq(user_id),
            console_sessions::created.eq(at),
            console_sessions::last_seen.eq(at),
        ))
        .execute(conn)?;
    Ok(secret)
}

/// Notes a request of a live session (see [`Lifetimes::touch_after`]).
pub fn touch(conn: &mut DbConnection, session_digest: &str) -> QueryResult<()> {
    diesel::update(console_sessions::table.find(session_digest))
        .set(console_sessions::last_seen.eq(now()))
        .execute(conn)?;
    Ok(())
}

/// The workspace and mode the session's pages show from now on.
pub fn choose_place(
    conn: &mut DbConnection,
    session_digest: &str,
    workspace_id: &str,
    test_mode: bool,
) -> QueryResult<()> {
    diesel::update(console_sessions::table.find(session_digest))
        .set((
            console_sessions::workspace_id.eq(workspace_id),
            console_sessions::test_mode.eq(test_mode),
        ))
        .execute(conn)?;
    Ok(())
}

/// Signs a session out.
pub fn end_digest(conn: &mut DbConnection, session_digest: &str) -> QueryResult<()> {
    diesel::delete(console_sessions::table.find(session_digest)).execute(conn)?;
    Ok(())
}

/// Ends every session of a user (a password change; in the caller's transaction).
pub fn end_all(conn: &mut DbConnection, user_id: i64) -> QueryResult<()> {
    diesel::delete(console_sessions::table.filter(console_sessions::user_id.eq(user_id)))
        .execute(conn)?;
    Ok(())
}

/// Deletes the sessions older than any session may live ([`MAX_SESSION`], the same for
/// every server whatever its idle setting) and the links that can no longer be used. The
/// server does so every minute; this is housekeeping: an expired session is refused when
/// shown in any case.
pub fn purge_expired(conn: &mut DbConnection) -> QueryResult<usize> {
    let at = now();
    let sessions = diesel::delete(
        console_sessions::table.filter(console_sessions::created.lt(at - MAX_SESSION)),
    )
    .execute(conn)?;
    let links =
        diesel::delete(sign_in_links::table.filter(sign_in_links::expires.lt(at))).execute(conn)?;
    Ok(sessions + links)
}

/// Cancels a user's sign-in links not used yet (a password change; in the caller's
/// transaction).
pub fn cancel_links(conn: &mut DbConnection, user_id: i64) -> QueryResult<()> {
    diesel::delete(sign_in_links::table.filter(sign_in_links::user_id.eq(user_id)))
        .execute(conn)?;
    Ok(())
}

/// A workspace a user is a member of, as the header's switcher lists it.
#[derive(Clone, Debug)]
pub struct Membership {
    pub workspace_id: String,
    pub name: String,
    pub role: Role,
}

/// The workspaces a user belongs to, oldest membership first.
pub fn memberships_of(conn: &mut DbConnection, user_id: i64) -> QueryResult<Vec<Membership>> {
    let rows: Vec<(String, String, String)> = memberships::table
        .inner_join(workspaces::table)
        .filter(memberships::user_id.eq(user_id))
        .order_by((memberships::created, memberships::workspace_id))
        .select((workspaces::id, workspaces::name, memberships::role))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(workspace_id, name, role)| Membership {
            workspace_id,
            name,
            // The column's CHECK allows only the four roles.
            role: role.parse().unwrap_or(Role::Viewer),
        })
        .collect())
}

/// A new sign-in link's secret for a user (by email), good for [`LINK_LIFETIME`], once.
pub fn new_link(conn: &mut DbConnection, email: &str) -> Result<String, AccountError> {
    let user_id = super::user_id(conn, email)?;
    let secret = random(40);
    let at = now();
    diesel::insert_into(sign_in_links::table)
        .values((
            sign_in_links::digest.eq(digest(&secret)),
            sign_in_links::user_id.eq(user_id),
            sign_in_links::created.eq(at),
            sign_in_links::expires.eq(at + LINK_LIFETIME),
        ))
        .execute(conn)?;
    Ok(secret)
}

/// Uses a sign-in link and starts its session: the session's secret, or None for a link
/// that is unknown, used or expired. Two browsers racing for one link: one wins.
pub fn redeem_link(
    conn: &mut DbConnection,
    secret: &str,
    replacing: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let link_digest = digest(secret);
    write_tx(conn, |conn| {
        let at = now();
        let user_id: Option<i64> = diesel::update(
            sign_in_links::table
                .filter(sign_in_links::digest.eq(&link_digest))
                .filter(sign_in_links::used.is_null())
                .filter(sign_in_links::expires.gt(at)),
        )
        .set(sign_in_links::used.eq(at))
        .returning(sign_in_links::user_id)
        .get_result(conn)
        .optional()?;
        Ok(user_id
            .map(|user| start(conn, user, replacing))
            .transpose()?)
    })
}
