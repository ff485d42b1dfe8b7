//! Credentials recently found valid, so that most requests authenticate without asking the
//! database. Per process; an entry lives `COBRO_AUTH_CACHE_MS` (1 s by default). A token
//! rotated in this process is forgotten at once; elsewhere (`cobro token rotate`), servers
//! stop accepting the old token within that time. Only successes are kept: an unknown
//! token, or a user who is not (yet) a member, is asked about every time.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::Principal;

/// Beyond this many entries the cache starts afresh (old entries would expire soon anyway).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
struct Entries {
    /// Credential digest → whom it belongs to.
    principals: HashMap<String, (Principal, Instant)>,
    /// User → workspace → when they were seen to be a member.
    members: HashMap<i64, HashMap<String, Instant>>,
}

fn entries() -> &'static Mutex<Entries> {
    static ENTRIES: OnceLock<Mutex<Entries>> = OnceLock::new();
    ENTRIES.get_or_init(Mutex::default)
}

fn fresh(at: Instant, ttl: Duration) -> bool {
    at.elapsed() < ttl
}

/// The principal of a credential digest, if seen valid within `ttl`.
pub fn principal(digest: &str, ttl: Duration) -> Option<Principal> {
    let entries = entries().lock().ok()?;
    let (principal, at) = entries.principals.get(digest)?;
    fresh(*at, ttl).then(|| principal.clone())
}

/// True if the user was seen to be a member of the workspace within `ttl`.
pub fn is_member(user: i64, workspace: &str, ttl: Duration) -> bool {
    let Ok(entries) = entries().lock() else {
        return false;
    };
    entries
        .members
        .get(&user)
        .and_then(|workspaces| workspaces.get(workspace))
        .is_some_and(|at| fresh(*at, ttl))
}

/// Remembers a valid credential, and the workspace its user was found a member of.
pub fn remember(digest: &str, principal: &Principal, member_of: Option<&str>) {
    let Ok(mut entries) = entries().lock() else {
        return;
    };
    if entries.principals.len() + entries.members.len() > MAX_ENTRIES {
        *entries = Entries::default();
    }
    let now = Instant::now();
    entries
        .principals
        .insert(digest.to_string(), (principal.clone(), now));
    if let (Principal::User { id }, Some(workspace)) = (principal, member_of) {
        entries
            .members
            .entry(*id)
            .or_default()
            .insert(workspace.to_string(), now);
    }
}

/// Forgets every credential of a user (their token changed).
pub fn forget_user(user: i64) {
    if let Ok(mut entries) = entries().lock() {
        entries.principals.retain(
            |_, (principal, _)| !matches!(principal, Principal::User { id } if *id == user),
        );
    }
}
