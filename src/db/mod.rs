//! The database: one schema and one connection type for SQLite and PostgreSQL.
//!
//! `DbConnection` is diesel's MultiConnection over both backends; the URL scheme picks one.
//! Every write runs in [`write_tx`], which starts SQLite transactions IMMEDIATE so that
//! read-then-write never fails with "database is locked" halfway through.

pub mod checked;
mod prepared;
pub mod schema;
pub mod time;
mod writer;

pub use prepared::update;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, SubsecRound, Utc};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::audit::Origin;
use crate::error::ApiError;
use crate::http::request_id;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

pub type Pool = r2d2::Pool<Manager>;
pub type PooledConnection = r2d2::PooledConnection<Manager>;

diesel::define_sql_function! {
    /// Lower case with Unicode's rules on both backends (on SQLite, replaced at connect).
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

diesel::define_sql_function! {
    /// `lower` of a nullable column: the same SQL function. On SQLite it is this signature
    /// that cobro registers, for both: SQLite hands NULL to a function whatever the column's
    /// type, and a non-null Rust argument would fail the whole query.
    #[sql_name = "lower"]
    fn lower_nullable(
        x: diesel::sql_types::Nullable<diesel::sql_types::Text>,
    ) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

/// A parsed `DATABASE_URL`: `postgres://…` or `postgresql://…` selects PostgreSQL; anything
/// else is a SQLite file path, with an optional `sqlite://` or `sqlite:` prefix.
#[derive(Clone, Debug)]
pub struct DatabaseUrl {
    pub backend: Backend,
    /// What the backend's driver is given: the full URL for PostgreSQL, a path for SQLite.
    pub target: String,
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("DATABASE_URL is empty".into());
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // libpq waits minutes for a host that does not answer; fail in seconds instead.
            let target = if url.contains("connect_timeout=") {
                url.to_string()
            } else {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}connect_timeout=10")
            };
            return Ok(Self {
                backend: Backend::Postgres,
                target,
            });
        }
        if let Some((scheme, _)) = url.split_once("://") {
            if scheme != "sqlite" {
                return Err(format!(
                    "DATABASE_URL has an unknown scheme \"{scheme}\": use postgres://… or a SQLite file path"
                ));
            }
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() || path == ":memory:" {
            // Every pooled connection would get its own empty in-memory database.
            return Err("DATABASE_URL must name a SQLite file (an in-memory database cannot be shared by the pool)".into());
        }
        Ok(Self {
            backend: Backend::Sqlite,
            target: path.to_string(),
        })
    }
}

/// An r2d2 manager that picks the backend by URL scheme, so that a failed connection reports
/// the driver's own error (diesel's generic manager only says the URL is invalid).
#[derive(Clone, Debug)]
pub struct Manager {
    url: DatabaseUrl,
    sqlite_synchronous: String,
    /// True while the last attempt to open a connection failed (see [`checkout`]).
    unreachable: Arc<AtomicBool>,
}

/// A pooled connection and when it last answered. A connection that answered within
/// [`FRESH`] is handed out without a test; one idle for longer, or whose last work failed
/// on the database, is tested (`SELECT 1`) first, so a connection the server dropped while
/// idle is replaced before a request meets it. Under load, that saves a round trip per
/// request.
pub struct Conn {
    conn: DbConnection,
    answered: Option<Instant>,
}

/// How recently a connection must have answered to skip the test when it is taken.
const FRESH: Duration = Duration::from_secs(1);

impl std::ops::Deref for Conn {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut DbConnection {
        &mut self.conn
    }
}

impl Conn {
    /// Records how the last work on the connection went: a database failure (or a lost
    /// race) has it tested before its next use.
    fn answered<T>(&mut self, result: &Result<T, ApiError>) {
        self.answered = match result {
            Err(ApiError::Internal(_) | ApiError::Contention | ApiError::Unavailable(_)) => None,
            _ => Some(Instant::now()),
        };
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = diesel::ConnectionError;

    fn connect(&self) -> Result<Conn, Self::Error> {
        let opened = self.open();
        if self.unreachable.swap(opened.is_err(), Ordering::Relaxed) && opened.is_ok() {
            log::info!("connected to the database again");
        }
        Ok(Conn {
            conn: opened?,
            answered: Some(Instant::now()),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), Self::Error> {
        if conn.answered.is_some_and(|at| at.elapsed() < FRESH) {
            return Ok(());
        }
        conn.batch_execute("SELECT 1")
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
        conn.answered = Some(Instant::now());
        Ok(())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        // A connection left inside a transaction (a panic mid-write) must not be reused.
        std::thread::panicking()
            || DbConnection::is_broken_transaction_manager(conn)
            || DbConnection::transaction_manager_status_mut(conn)
                .transaction_depth()
                .map_or(true, |depth| depth.is_some())
    }
}

impl Manager {
    /// Opens a connection to the database the URL names.
    fn open(&self) -> Result<DbConnection, diesel::ConnectionError> {
        match self.url.backend {
            Backend::Postgres => {
                let mut conn = PgConnection::establish(&self.url.target)?;
                // Every statement is prepared once per connection; PostgreSQL then plans it
                // again on each run while its plan for unknown binds costs more than its
                // plans for the binds it saw, which a `LIMIT $n` over a large table always
                // does (a tenth of the rows is its guess): a page of a million payments was
                // planned afresh each time, 100 µs of the database's 260 per page. The
                // statements are the same few OLTP shapes, by index, whatever the binds.
                conn.batch_execute("SET plan_cache_mode = force_generic_plan")
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Pg(conn))
            }
            Backend::Sqlite => {
                configure_sqlite();
                let mut conn = SqliteConnection::establish(&self.url.target)?;
                // WAL lets readers run beside the writer; busy_timeout makes writers queue
                // instead of failing; `synchronous` is the durability setting (README).
                // busy_timeout first: setting WAL waits for the file's lock too (several
                // connections open at once at the first start). A page cache of 1 MiB, not
                // SQLite's 2: a reader empties its cache whenever another connection has
                // written, so on a busy server a bigger one holds memory (20 connections'
                // worth) more than it saves reads; the file's pages stay in the OS's cache.
                // Checkpoints are the writer's checkpointer's job; a commit makes one only
                // past the guard (`writer::WAL_GUARD_PAGES`).
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; \
                     PRAGMA cache_size = -1024; PRAGMA wal_autocheckpoint = {};",
                    self.sqlite_synchronous,
                    writer::WAL_GUARD_PAGES
                ))
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                // SQLite's own lower() is ASCII-only; searches need Ñ and É folded too.
                lower_nullable_utils::register_impl(&mut conn, |text: Option<String>| {
                    text.map(|t| t.to_lowercase())
                })
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// Sets SQLite up, once per process: savepoint journals in memory (below), and SQLite's
/// query planner stability guarantee (QPSG) for every connection opened from then on.
/// Without QPSG, SQLite prepares a statement again each time a value bound to it might
/// change its plan, and since 3.4x a bound `LIMIT` counts: every page and every single-row
/// lookup was compiled anew (a third of the server's time on `GET /payments/{id}/`). With
/// it, diesel's cached statements are reused as they are.
fn configure_sqlite() {
    use libsqlite3_sys::{
        sqlite3, sqlite3_api_routines, sqlite3_auto_extension, sqlite3_config, sqlite3_db_config,
        SQLITE_CONFIG_STMTJRNL_SPILL, SQLITE_DBCONFIG_ENABLE_QPSG, SQLITE_OK,
    };
    use std::ffi::{c_char, c_int};

    unsafe extern "C" fn on_open(
        db: *mut sqlite3,
        _error: *mut *mut c_char,
        _api: *const sqlite3_api_routines,
    ) -> c_int {
        // SAFETY: SQLite calls this with the handle it is opening; the option takes an
        // int (1: on) and an optional int pointer for the value it ends with.
        let done = unsafe {
            sqlite3_db_config(
                db,
                SQLITE_DBCONFIG_ENABLE_QPSG,
                1 as c_int,
                std::ptr::null_mut::<c_int>(),
            )
        };
        if done != SQLITE_OK {
            log::warn!("SQLite refused its query planner stability guarantee (code {done})");
        }
        SQLITE_OK
    }

    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // Savepoint journals in memory, whatever their size (SQLite's default spills one
        // past 64 KiB to a temporary file). Every write in the writer's batch is a savepoint,
        // and a create touches a dozen pages: each was copied to disk once more, a fifth of
        // the writer's time. The journal is emptied when its savepoint is released. Before
        // anything else of SQLite's: it takes settings only before it initialises.
        // SAFETY: the option takes one int; called once, before SQLite is initialised.
        let kept = unsafe { sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, -1 as c_int) };
        if kept != SQLITE_OK {
            log::warn!("SQLite refused to keep savepoint journals in memory (code {kept})");
        }
        // SAFETY: registers a function with the signature SQLite expects, once per process.
        unsafe { sqlite3_auto_extension(Some(on_open)) };
    });
}

/// The pool and what the rest of the app needs to know about the database.
#[derive(Clone)]
pub struct Db {
    pub pool: Pool,
    pub backend: Backend,
    /// SQLite's single writer (none on PostgreSQL, where writes run on the pool).
    writer: Option<writer::Writer>,
    /// One permit per pooled connection. Requests wait for a connection here, in arrival
    /// order and without holding a thread, instead of inside the pool, which wakes its
    /// waiters in no particular order: under load some waited there for half a second.
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    /// Shared with the pool's manager: whether the database refused the last connection.
    unreachable: Arc<AtomicBool>,
}

/// What a request's database work does, for [`Db::on_pool`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    Any,
    /// A read bounded by its shape ([`Db::read_bounded`]).
    BoundedRead,
}

/// How long a request waits for a database connection before it fails.
const CONNECTION_WAIT: Duration = Duration::from_secs(10);

/// Pooled connections beyond the requests' share (`pool_size`), for the threads that use
/// the database outside requests: the webhook worker's dispatcher and recorder, the
/// reconciler.
pub const RESERVED_CONNECTIONS: u32 = 5;

impl Db {
    pub fn connect(
        url: &DatabaseUrl,
        pool_size: u32,
        sqlite_synchronous: &str,
    ) -> Result<Db, String> {
        let manager = Manager {
            url: url.clone(),
            sqlite_synchronous: sqlite_synchronous.to_string(),
            unreachable: Arc::default(),
        };
        // Build lazily, then take one connection at once, so that a wrong URL fails now
        // with the driver's message instead of after the pool's timeout.
        let mut first = r2d2::ManageConnection::connect(&manager).map_err(|e| {
            // libpq's messages span lines; an operator's error is one line.
            let cause = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            match url.backend {
                Backend::Sqlite => {
                    format!("cannot open the SQLite database {}: {cause}", url.target)
                }
                Backend::Postgres => format!("cannot connect to the PostgreSQL database: {cause}"),
            }
        })?;
        run_migrations(&mut first).map_err(|e| format!("cannot run migrations: {e}"))?;
        drop(first);
        let manager_unreachable = manager.unreachable.clone();
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1) + RESERVED_CONNECTIONS)
            // The requests' connections open at start; each is tested when taken unless
            // fresh (`Conn`).
            .min_idle(Some(pool_size.max(1)))
            // Our own wait is `checkout`'s. This one also caps the pool's pause between
            // attempts to reconnect at half of it, so a database back from an outage is
            // found within a second.
            .connection_timeout(CHECKOUT_SLICE * 8)
            .error_handler(Box::new(crate::error::outages::ConnectFailures))
            .build(manager.clone())
            .map_err(|e| format!("cannot open the database pool: {e}"))?;
        let writer = match url.backend {
            Backend::Sqlite => Some(
                writer::Writer::start(manager)
                    .map_err(|e| format!("cannot start the SQLite writer: {e}"))?,
            ),
            Backend::Postgres => None,
        };
        Ok(Db {
            unreachable: manager_unreachable,
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(pool_size.max(1) as usize)),
            pool,
            backend: url.backend,
            writer,
        })
    }

    /// Runs blocking database work on actix's blocking thread pool.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        self.on_pool(work, Work::Any).await
    }

    /// [`Db::run`] for a read bounded by its shape: one object by its key, or a page near
    /// the start of a list its index serves. On SQLite, where such a read takes
    /// microseconds and does not wait for the writer (WAL), it runs on the request's own
    /// thread when a connection is free at once: the hop to the blocking pool and back cost
    /// more than the read (about 22 of a `GET /payments/{id}/`'s 80 µs of CPU). Anything
    /// that may read many rows stays on [`Db::run`], off the event loop. (A read can still
    /// wait for a lock that is not the writer's, a checkpoint's `TRUNCATE` or a `VACUUM` by
    /// hand, and then holds up that thread's other requests meanwhile.)
    pub async fn read_bounded<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        self.on_pool(work, Work::BoundedRead).await
    }

    /// [`Db::run`] for each kind of [`Work`]. On PostgreSQL a request's owed credential
    /// check rides on its work's first `BEGIN`, or in its first read made with
    /// [`read_checked!`](crate::read_checked), instead of taking a round trip of its own
    /// (`accounts::cache::at_begin`).
    async fn on_pool<T, F>(&self, work: F, kind: Work) -> Result<T, ApiError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let permits = self.permits.clone();
        let asked = Instant::now();
        crate::metrics::db_waiting(1);
        let permit = actix_web::rt::time::timeout(CONNECTION_WAIT, permits.acquire_owned()).await;
        crate::metrics::db_waiting(-1);
        let permit = permit
            .map_err(|_| ApiError::unavailable("none came free in 10 s (the server is busy)"))?
            .map_err(ApiError::internal)?;
        let owed = crate::accounts::cache::owed();
        let backend = self.backend;
        let on = move |mut conn: PooledConnection| {
            crate::metrics::db_waited(asked.elapsed());
            let result = match owed {
                Some(check) if backend == Backend::Postgres && !check.verified() => {
                    crate::accounts::cache::at_begin(&mut conn, &check, work)
                }
                owed => {
                    trusted_still(&mut conn, owed.as_ref(), true).and_then(|()| work(&mut conn))
                }
            };
            conn.answered(&result);
            result
        };
        if kind == Work::BoundedRead && self.backend == Backend::Sqlite {
            if let Some(conn) = self.pool.try_get() {
                let _permit = permit;
                // A panic is a 500 here too, as from the blocking pool.
                return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on(conn)))
                    .unwrap_or_else(|_| Err(ApiError::internal("a read panicked")));
            }
        }
        let (pool, unreachable) = (self.pool.clone(), self.unreachable.clone());
        let id = request_id::current();
        actix_web::web::block(move || {
            // Held until the connection is back in the pool, even if the request is gone.
            let _permit = permit;
            request_id::within(id, || on(checkout(&pool, &unreachable)?))
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// Runs database work on this thread, on a pooled connection (outside requests: no
    /// permit, the reserved connections serve these).
    pub fn run_here<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        on_pooled(&self.pool, &self.unreachable, work)
    }

    /// Runs database work that writes, on this thread (not in async code): on SQLite
    /// through the single writer, on PostgreSQL as [`Db::run_here`].
    pub fn write_here<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        match &self.writer {
            Some(writer) => writer.write_blocking(work),
            None => self.run_here(work),
        }
    }

    /// Runs database work that writes. On SQLite it goes to the single writer, which
    /// commits the writes waiting together ([`writer`]); on PostgreSQL it is [`Db::run`].
    /// The work still opens its own [`write_tx`]: there it is a savepoint.
    pub async fn write<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        match &self.writer {
            Some(writer) => {
                let id = request_id::current();
                let owed = crate::accounts::cache::owed();
                writer
                    .write(move |conn| {
                        request_id::within(id, || {
                            trusted_still(conn, owed.as_ref(), false)?;
                            work(conn)
                        })
                    })
                    .await
            }
            None => self.on_pool(work, Work::Any).await,
        }
    }
}

/// The credential check a request let in on trust owes (`accounts::cache`), made on the
/// connection its work is about to use, before the work.
fn trusted_still(
    conn: &mut DbConnection,
    owed: Option<&crate::accounts::cache::Check>,
    committed: bool,
) -> Result<(), ApiError> {
    owed.map_or(Ok(()), |check| {
        crate::accounts::cache::verify(conn, check, committed)
    })
}

/// Runs `work` on a connection taken from `pool`, and records how it went (see `Conn`).
fn on_pooled<T>(
    pool: &Pool,
    unreachable: &AtomicBool,
    work: impl FnOnce(&mut DbConnection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut conn = checkout(pool, unreachable)?;
    let result = work(&mut conn);
    conn.answered(&result);
    result
}

/// How long `checkout` waits at a time before it asks whether the database is reachable.
const CHECKOUT_SLICE: Duration = Duration::from_millis(250);

/// A connection from the pool. Waits up to [`CONNECTION_WAIT`] while the pool is busy, but
/// gives up after a slice once connecting fails (the database is down or refuses us):
/// during an outage every request gets its 503 in a fraction of a second instead of
/// holding a connection permit for ten.
fn checkout(pool: &Pool, unreachable: &AtomicBool) -> Result<PooledConnection, ApiError> {
    let deadline = Instant::now() + CONNECTION_WAIT;
    loop {
        match pool.get_timeout(CHECKOUT_SLICE) {
            Ok(conn) => return Ok(conn),
            Err(err) if unreachable.load(Ordering::Relaxed) => {
                return Err(ApiError::unavailable(format!("cannot connect: {err}")))
            }
            Err(err) if Instant::now() >= deadline => {
                return Err(ApiError::unavailable(format!(
                    "none came free in 10 s: {err}"
                )))
            }
            Err(_) => {}
        }
    }
}

/// Runs the embedded migrations of the connection's backend. On PostgreSQL an advisory lock
/// keeps two servers starting at once from migrating the same database together.
pub fn run_migrations(
    conn: &mut DbConnection,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    const LOCK: i64 = 0x0063_6f62_726f; // "cobro"
    match conn {
        DbConnection::Pg(pg) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({LOCK})")).execute(pg)?;
            let result = pg.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ());
            diesel::sql_query(format!("SELECT pg_advisory_unlock({LOCK})")).execute(pg)?;
            result
        }
        DbConnection::Sqlite(lite) => lite.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
    }
}

/// SQLite has one writer at a time. This process's writers queue here, in memory, rather
/// than on the file lock, whose busy handler sleeps up to 100 ms between tries (that sleep
/// made the slowest writes under load take over a second). Other processes on the same
/// file still meet the file lock and its busy_timeout. One lock per process, shared by every
/// SQLite database it opens (in practice one).
static SQLITE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How many times a write transaction runs before its contention reaches the client (503).
const MAX_TX_RUNS: u32 = 12;

/// Runs a diesel query on the connection's own backend rather than through
/// `DbConnection`: the query is written once and compiled for each backend. For the hottest
/// writes (a payment's insert, an event's): through the multi-backend connection, diesel
/// walks a query once more to carry it across, a tenth of the SQLite writer's time on a
/// create.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $query:expr) => {
        match $conn {
            $crate::db::DbConnection::Sqlite($c) => $query,
            $crate::db::DbConnection::Pg($c) => $query,
        }
    };
}

/// Whether a transaction is open on the connection (for the checks of work that must run
/// inside its caller's).
pub fn in_transaction(conn: &mut DbConnection) -> bool {
    matches!(
        DbConnection::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(Some(_))
    )
}

/// Runs `work` in a write transaction: `BEGIN IMMEDIATE` on SQLite (the write lock is taken
/// up front, so a read-then-write cannot be refused halfway), a plain `BEGIN` on PostgreSQL
/// (guarded updates decide races there). Rolls back on error.
///
/// When `work` fails with [`ApiError::Contention`] (a guarded write lost a race, or the
/// database gave up on a serialization failure, a deadlock or a busy lock) the whole
/// transaction runs again, after a short random pause, up to [`MAX_TX_RUNS`] times: `work`
/// then reads the new state and decides again. Inside another write transaction this is a
/// savepoint, and the retry belongs to the outermost one.
pub fn write_tx<T, E: TxError>(
    conn: &mut DbConnection,
    mut work: impl FnMut(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E> {
    let depth = DbConnection::transaction_manager_status_mut(conn).transaction_depth()?;
    if depth.is_some() {
        return conn.transaction(|conn| work(conn));
    }
    let mut run = 1;
    loop {
        match write_tx_once(conn, &mut work) {
            Err(err) if err.is_contention() && run < MAX_TX_RUNS => {
                // Let the winner finish; the jitter keeps losers from colliding again.
                let pause = rand::random_range(0..(1u64 << run.min(6)) * 1000);
                std::thread::sleep(Duration::from_micros(pause));
                run += 1;
                crate::metrics::transaction_retried();
            }
            other => return other,
        }
    }
}

/// An error a write transaction can end with; a contention runs the transaction again.
pub trait TxError: From<diesel::result::Error> {
    fn is_contention(&self) -> bool;
    /// The connection is gone: there is nothing left to roll back.
    fn is_connection_lost(&self) -> bool {
        false
    }
}

impl TxError for ApiError {
    fn is_contention(&self) -> bool {
        matches!(self, ApiError::Contention)
    }
    fn is_connection_lost(&self) -> bool {
        matches!(self, ApiError::Unavailable(_))
    }
}

fn write_tx_once<T, E: TxError>(
    conn: &mut DbConnection,
    work: &mut impl FnMut(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E> {
    // Held until the transaction ends (SQLite only).
    let _writer;
    match conn {
        DbConnection::Sqlite(lite) => {
            _writer = SQLITE_WRITER
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            AnsiTransactionManager::begin_transaction_sql(lite, "BEGIN IMMEDIATE")?
        }
        DbConnection::Pg(_) => crate::accounts::cache::begin(conn)?,
    }
    match work(conn) {
        Ok(value) => {
            DbConnection::commit_transaction(conn)?;
            Ok(value)
        }
        Err(err) => {
            match DbConnection::rollback_transaction(conn) {
                // A lost connection rolls back on the server's side by itself.
                Err(_) if err.is_connection_lost() => {}
                Err(rollback) => log::error!("rollback failed: {rollback}"),
                Ok(()) => {}
            }
            Err(err)
        }
    }
}

/// The workspace and mode that a request acts in, and on whose behalf ([`Origin`]: the
/// actor and the request id that its events record). Storage functions for tenant data take
/// a `&Scope` and filter by it in one place; the fields are private so that only
/// authentication (or an operator command, or a job) can make one, and none without saying
/// who acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    workspace_id: String,
    test_mode: bool,
    origin: Arc<Origin>,
}

impl Scope {
    pub(crate) fn new(workspace_id: String, test_mode: bool, origin: &Arc<Origin>) -> Self {
        Self {
            workspace_id,
            test_mode,
            origin: origin.clone(),
        }
    }
    pub fn workspace_id(&self) -> &str {
        &self.workspace_id
    }
    pub fn test_mode(&self) -> bool {
        self.test_mode
    }
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
    /// The same workspace and actor, in the other mode or this one.
    pub fn in_mode(&self, test_mode: bool) -> Scope {
        Scope::new(self.workspace_id.clone(), test_mode, &self.origin)
    }
}

/// A LIKE pattern (escape character `\`) for text containing `term`, in lower case, with
/// the term's own `%` and `_` taken literally. Compare it with `lower(column)`.
pub fn containing(term: &str) -> String {
    let escaped = term
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Now, in UTC, truncated to microseconds: what both backends store exactly.
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

/// True when the error is a unique-constraint violation (reported alike by both backends).
pub fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(
        err,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Tenant tables and the one store module that may touch each. A new table with a
/// `workspace_id` column must be listed here (or in ACCOUNT_TABLES); the test below holds
/// the code to the rule.
#[cfg(test)]
const TENANT_TABLES: &[(&str, &str)] = &[
    ("payments", "src/payments/store.rs"),
    ("payment_metadata", "src/payments/store.rs"),
    ("payment_counts", "src/payments/store.rs"),
    ("events", "src/events/store.rs"),
    ("sources", "src/sources/store.rs"),
    ("payment_attempts", "src/payments/store.rs"),
    ("idempotency_keys", "src/idempotency/store.rs"),
    ("webhooks", "src/webhooks/store.rs"),
    ("webhook_deliveries", "src/webhooks/store.rs"),
    ("customers", "src/customers/store.rs"),
    ("invoices", "src/invoices/store.rs"),
    ("integrations", "src/integrations/store.rs"),
    ("provider_events", "src/integrations/store.rs"),
    ("refunds", "src/refunds/store.rs"),
    ("refund_parts", "src/refunds/store.rs"),
];

/// Tables that carry a workspace but hold credentials and membership, not tenant data.
#[cfg(test)]
const ACCOUNT_TABLES: &[&str] = &["memberships", "secret_keys", "console_sessions"];

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    /// Every statement that names a tenant table lives in that table's store and either
    /// filters with the scope helper (`in_scope(…)`) or, for an insert, writes the
    /// workspace column. So a query of tenant data that forgets its scope fails this test.
    #[test]
    fn tenant_tables_are_reached_only_through_scoped_store_code() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        for file in files {
            let relative = file
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if relative == "src/db/schema.rs" || relative == "src/db/mod.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (table, store) in TENANT_TABLES {
                let needle = format!("{table}::table");
                for (at, _) in text.match_indices(&needle) {
                    let before = text[..at].chars().last().unwrap_or(' ');
                    if before.is_alphanumeric() || before == '_' {
                        continue; // another table whose name ends the same way
                    }
                    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                    if text[line_start..at].trim_start().starts_with("type ") {
                        continue; // a type alias, not a query
                    }
                    assert_eq!(
                        &relative, store,
                        "{relative} touches the tenant table {table}: go through {store}"
                    );
                    // To the end of the statement, or of the function when the statement is
                    // its tail expression (no `;`).
                    let end = [text[at..].find(';'), text[at..].find("\n}")]
                        .into_iter()
                        .flatten()
                        .min()
                        .unwrap_or(text.len() - at);
                    let statement = &text[at..at + end];
                    // Two exceptions, each marked where it stands: the checkout lookup (its
                    // key is the credential) and loops that work across workspaces.
                    let marked = text[..at]
                        .rsplit("\n\n")
                        .next()
                        .unwrap_or("")
                        .contains("// tenancy: across workspaces by design");
                    let scoped = statement.contains("in_scope(")
                        || statement.contains("checkout_key.eq(key)")
                        || marked
                        || (text[..at].ends_with("insert_into(")
                            && statement.contains("workspace_id.eq("));
                    assert!(
                        scoped,
                        "an unscoped query of {table} in {relative}:\n{statement}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_table_with_a_workspace_is_classified() {
        let schema = include_str!("schema.rs");
        for block in schema.split("diesel::table! {").skip(1) {
            let name = block.split_whitespace().next().unwrap();
            if block.contains("workspace_id ->") {
                let known =
                    TENANT_TABLES.iter().any(|(t, _)| *t == name) || ACCOUNT_TABLES.contains(&name);
                assert!(
                    known,
                    "table {name} has a workspace_id: list it in TENANT_TABLES or ACCOUNT_TABLES"
                );
            }
        }
    }

    #[test]
    fn database_urls_pick_the_backend() {
        assert_eq!(
            DatabaseUrl::parse("postgres://u@h/db").unwrap().backend,
            Backend::Postgres
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://u@h/db").unwrap().backend,
            Backend::Postgres
        );
        let lite = DatabaseUrl::parse("sqlite://data/cobro.db").unwrap();
        assert_eq!(
            (lite.backend, lite.target.as_str()),
            (Backend::Sqlite, "data/cobro.db")
        );
        assert_eq!(DatabaseUrl::parse("cobro.db").unwrap().target, "cobro.db");
        assert!(DatabaseUrl::parse("mysql://u@h/db").is_err());
        assert!(DatabaseUrl::parse(":memory:").is_err());
        assert!(DatabaseUrl::parse("").is_err());
    }
}
