//! Credentials recently found valid, trusted without asking the database first, and the
//! check that makes that trust safe across every server process.
//!
//! A change to any credential (a token rotated, a key revoked, a role changed, a member
//! removed) bumps one number, `credential_epoch`, in its own transaction ([`bump`]). An
//! entry here remembers the number it was found valid under. A request let in on trust owes
//! a [`Check`]: inside its own database work (`Db::run` and `Db::write`, on the connection
//! the work uses) the number is read again, and if it moved the credential is asked about
//! afresh: refused now, the request fails with 401 or 403 and does nothing. On SQLite the
//! check comes before the work; on PostgreSQL it rides on the work's first `BEGIN` or in
//! its first read ([`at_begin`]), and a work with neither is checked after it, its answer
//! kept only if the check passes. So a request that touches the database never acts on,
//! or answers for, a credential revoked before it, on any server, and it costs one tiny
//! read (on PostgreSQL, often not even a round trip of its own) instead of a second trip
//! to the database. A request that answers without touching the database (a 400 for its
//! body, say) is checked before its answer leaves (`http::request_id::middleware`), and
//! answered 401 or 403 if the credential no longer holds.
//!
//! Entries live a minute at most (for changes made behind cobro's back, in SQL), and only
//! successes are kept.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use diesel::prelude::*;

use super::roles::{Access, Grants, Resource};
use super::Principal;
use crate::db::schema::credential_epoch;
use crate::db::DbConnection;
use crate::error::ApiError;

/// How long an entry is trusted at most, epoch unchanged.
const TTL: Duration = Duration::from_secs(60);
/// Beyond this many entries the cache starts afresh.
const MAX_ENTRIES: usize = 10_000;

/// What a request presents: its credential (by digest) and the headers that choose where it
/// acts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Asked {
    pub digest: String,
    pub is_key: bool,
    pub workspace: Option<String>,
    pub test_mode: Option<String>,
}

/// What it was found to be: who, where (workspace, test mode) and allowed what.
#[derive(Clone, Debug)]
pub struct Trusted {
    pub principal: Principal,
    pub place: (String, bool),
    pub grants: Grants,
    epoch: i64,
    at: Instant,
}

impl Trusted {
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    pub fn new(principal: Principal, place: (String, bool), grants: Grants, epoch: i64) -> Self {
        Trusted {
            principal,
            place,
            grants,
            epoch,
            at: Instant::now(),
        }
    }
}

fn entries() -> &'static Mutex<HashMap<Asked, Trusted>> {
    static ENTRIES: OnceLock<Mutex<HashMap<Asked, Trusted>>> = OnceLock::new();
    ENTRIES.get_or_init(Mutex::default)
}

pub fn get(asked: &Asked) -> Option<Trusted> {
    let entries = entries().lock().ok()?;
    entries.get(asked).filter(|t| t.at.elapsed() < TTL).cloned()
}

pub fn remember(asked: Asked, trusted: Trusted) {
    if let Ok(mut entries) = entries().lock() {
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(asked, trusted);
    }
}

fn forget(asked: &Asked) {
    if let Ok(mut entries) = entries().lock() {
        entries.remove(asked);
    }
}

/// The number every credential change bumps (read on the connection's own backend: it is
/// read by nearly every request).
pub fn epoch(conn: &mut DbConnection) -> QueryResult<i64> {
    let query = credential_epoch::table.find(1).select(credential_epoch::n);
    crate::on_backend!(conn, |c| query.first(c))
}

/// Call in the transaction of a change to a credential, a role or a membership.
pub fn bump(conn: &mut DbConnection) -> QueryResult<()> {
    diesel::update(credential_epoch::table.find(1))
        .set(credential_epoch::n.eq(credential_epoch::n + 1))
        .execute(conn)
        .map(|_| ())
}

/// What a request let in on trust owes: to be checked again inside its database work or,
/// when it answers without any, before its answer leaves.
#[derive(Clone, Debug)]
pub struct Check {
    pub asked: Asked,
    pub needed: Option<(Resource, Access)>,
    pub epoch: i64,
    /// Set once a check passed (shared by the clones taken into database work).
    pub verified: Arc<AtomicBool>,
}

impl Check {
    pub fn verified(&self) -> bool {
        self.verified.load(Ordering::Relaxed)
    }
}

tokio::task_local! {
    static OWED: RefCell<Option<Check>>;
}

/// Runs a request's handling with room for the check it may owe (the request middleware),
/// and gives back the check, so that one not yet made is made before the answer leaves.
pub async fn with_room<F: std::future::Future>(handling: F) -> (F::Output, Option<Check>) {
    OWED.scope(RefCell::new(None), async {
        let output = handling.await;
        (output, owed())
    })
    .await
}

/// This request was let in on trust.
pub fn owe(check: Check) {
    let _ = OWED.try_with(|owed| *owed.borrow_mut() = Some(check));
}

/// The check this request owes, if any (to take into its database work).
pub fn owed() -> Option<Check> {
    OWED.try_with(|owed| owed.borrow().clone()).ok().flatten()
}

/// A deferred check not yet passed (`at_begin`), on the thread running the request's work;
/// none once it passed.
enum AtBegin {
    Owed(Check),
    Refused(ApiError),
}

thread_local! {
    static AT_BEGIN: RefCell<Option<AtBegin>> = const { RefCell::new(None) };
}

/// What `cobro_epoch_is` and `cobro_epoch_holds` raise (PostgreSQL migrations 000016 and
/// 000017) when the epoch moved.
const EPOCH_MOVED: &str = "the credential epoch moved";

/// Runs a request's work on PostgreSQL with its check made in the round trip of the first
/// `BEGIN` the work sends ([`begin`]), or in its first read made with `read_checked!`
/// (`db::checked`), instead of one of its own before the work. Every write runs in a
/// transaction (`db::write_tx`), so nothing is written before the check; what the work
/// read before then is thrown away if the check refuses. A work that made neither (it
/// wrote nothing) is checked after it, and its answer kept only if the check passes.
pub fn at_begin<T>(
    conn: &mut DbConnection,
    check: &Check,
    work: impl FnOnce(&mut DbConnection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    /// Leaves nothing behind on this thread for the next work it runs, even if this one
    /// panics.
    struct Cleared;
    impl Drop for Cleared {
        fn drop(&mut self) {
            AT_BEGIN.with(|at| at.borrow_mut().take());
        }
    }
    let _cleared = Cleared;
    AT_BEGIN.with(|at| *at.borrow_mut() = Some(AtBegin::Owed(check.clone())));
    let result = work(conn);
    match AT_BEGIN.with(|at| at.borrow_mut().take()) {
        Some(AtBegin::Refused(refused)) => Err(refused),
        Some(AtBegin::Owed(check)) => verify(conn, &check, true).and(result),
        None => result,
    }
}

/// Opens a PostgreSQL transaction; when a check is owed at this `BEGIN` ([`at_begin`]), the
/// same round trip makes it: `BEGIN; SELECT cobro_epoch_is(epoch)`. If the epoch moved,
/// the credential is asked about afresh (outside any transaction) and the transaction
/// opened only if it still holds; a refusal is kept for `at_begin` to answer with.
pub fn begin(conn: &mut DbConnection) -> QueryResult<()> {
    use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
    let owed = AT_BEGIN.with(|at| match &*at.borrow() {
        Some(AtBegin::Owed(check)) => Ok(Some(check.clone())),
        // Refused at an earlier BEGIN of this work: no later transaction opens either.
        Some(AtBegin::Refused(_)) => Err(diesel::result::Error::RollbackTransaction),
        None => Ok(None),
    })?;
    let (Some(check), DbConnection::Pg(pg)) = (owed, &mut *conn) else {
        return DbConnection::begin_transaction(conn);
    };
    let sql = format!("BEGIN; SELECT cobro_epoch_is({})", check.epoch);
    match AnsiTransactionManager::begin_transaction_sql(pg, &sql) {
        Ok(()) => {
            passed();
            return Ok(());
        }
        Err(moved) if is_epoch_moved(&moved) => pg.batch_execute("ROLLBACK")?,
        Err(other) => {
            // A failed SELECT leaves the BEGIN's transaction open, and aborted.
            let _ = pg.batch_execute("ROLLBACK");
            return Err(other);
        }
    }
    moved(conn)?;
    DbConnection::begin_transaction(conn)
}

/// The epoch that the check owed here (`at_begin`) expects, for a statement that carries
/// it (`db::checked`); None when none is owed.
pub fn owed_epoch() -> Option<i64> {
    AT_BEGIN.with(|at| match &*at.borrow() {
        Some(AtBegin::Owed(check)) => Some(check.epoch),
        _ => None,
    })
}

/// Whether a statement that carried the check failed because the epoch moved.
pub fn is_epoch_moved(err: &diesel::result::Error) -> bool {
    matches!(err, diesel::result::Error::DatabaseError(_, info) if info.message() == EPOCH_MOVED)
}

/// A statement that carried the check owed here succeeded: the check passed.
pub fn passed() {
    if let Some(AtBegin::Owed(check)) = AT_BEGIN.with(|at| at.borrow_mut().take()) {
        check.verified.store(true, Ordering::Relaxed);
    }
}

/// A statement that carried the check owed here found the epoch moved: the credential is
/// asked about afresh (with no transaction open). Refused, the refusal is kept for
/// `at_begin` to answer with, and this fails, so that the work goes no further.
pub fn moved(conn: &mut DbConnection) -> QueryResult<()> {
    let Some(AtBegin::Owed(check)) = AT_BEGIN.with(|at| at.borrow_mut().take()) else {
        return Ok(());
    };
    match verify(conn, &check, true) {
        Ok(()) => Ok(()),
        Err(refused) => {
            AT_BEGIN.with(|at| *at.borrow_mut() = Some(AtBegin::Refused(refused)));
            Err(diesel::result::Error::RollbackTransaction)
        }
    }
}

/// The check, on the connection the request's work is about to use: nothing to do while the
/// epoch is unchanged; otherwise the credential is asked about again, and the request
/// refused if it is no longer valid or no longer allowed what it asks.
///
/// Once per request: a request that passed is ordered before any later change, so a step
/// after a provider's call (recording its answer) is never refused for a revocation that
/// came meanwhile. `committed` is false inside the SQLite writer's batch, whose reads may
/// see writes that roll back: what it finds is then not remembered.
pub fn verify(conn: &mut DbConnection, check: &Check, committed: bool) -> Result<(), ApiError> {
    if check.verified() {
        return Ok(());
    }
    let now = epoch(conn)?;
    if now != check.epoch {
        // What is found replaces the entry (a refused credential's goes), so that the
        // credential's next request is refused before its work, not after it (on
        // PostgreSQL a read runs before its check when it carries none).
        let trusted =
            super::auth::resolve(conn, &check.asked, now).inspect_err(|_| forget(&check.asked))?;
        let allowed = super::auth::allows(&trusted.grants, check.needed);
        if committed {
            remember(check.asked.clone(), trusted);
        }
        if !allowed {
            return Err(ApiError::Forbidden);
        }
    }
    check.verified.store(true, Ordering::Relaxed);
    Ok(())
}
