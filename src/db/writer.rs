//! SQLite's single writer, with group commit.
//!
//! SQLite lets one connection write at a time, and a durable commit costs an fsync. So on
//! SQLite, [`Db::write`](super::Db::write) hands its work to one thread that owns one
//! connection. The thread takes every write that is waiting, runs them one after another
//! inside a single transaction, commits once, and only then answers each of them: a write
//! is acknowledged only once it is on disk, and one fsync covers the whole batch. Each
//! write's own [`write_tx`](super::write_tx) is a savepoint inside the batch, so a write
//! that fails is rolled back alone, as it would be on its own. Being the only writer, the
//! connection also keeps its page cache: nobody else changes the file under it.
//!
//! Other writers (the webhook worker, the CLI, another process) still take the process's
//! writer lock and SQLite's file lock; the batch holds both while it runs.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Weak};
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use tokio::sync::oneshot;

use super::{DbConnection, Manager, CONNECTION_WAIT, SQLITE_WRITER};
use crate::error::ApiError;

/// The most writes one transaction carries; more wait for the next one.
const MAX_BATCH: usize = 128;

/// A write waiting for the writer.
trait Job: Send {
    /// False when nobody waits for the answer any more, or the write waited longer than a
    /// request waits for a connection: it is then answered 503 without running.
    fn wanted(&self) -> bool;
    /// Runs the work inside the batch's transaction and keeps its result.
    fn run(&mut self, conn: &mut DbConnection);
    /// Answers 503 without running the work.
    fn expire(&mut self);
    /// True when the work failed on the database (or its own code): the batch ends there,
    /// since SQLite may have rolled back the whole transaction.
    fn failed(&self) -> bool;
    /// Answers the caller once the batch's fate is known: the kept result, or the batch's
    /// error when it did not commit.
    fn finish(self: Box<Self>, failed: Option<&Failed>);
}

struct Pending<T, F> {
    work: Option<F>,
    queued: Instant,
    result: Option<Result<T, ApiError>>,
    reply: oneshot::Sender<Result<T, ApiError>>,
}

impl<T, F> Job for Pending<T, F>
where
    F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send,
    T: Send,
{
    fn wanted(&self) -> bool {
        !self.reply.is_closed() && self.queued.elapsed() < CONNECTION_WAIT
    }

    fn run(&mut self, conn: &mut DbConnection) {
        if let Some(work) = self.work.take() {
            self.result = Some(work(conn));
        }
    }

    fn expire(&mut self) {
        self.work = None;
        self.result = Some(Err(ApiError::Contention));
    }

    fn failed(&self) -> bool {
        matches!(
            self.result,
            Some(Err(ApiError::Internal(_)
                | ApiError::Contention
                | ApiError::Unavailable(_)))
        )
    }

    fn finish(self: Box<Self>, failed: Option<&Failed>) {
        let result = match (self.result, failed) {
            // A write refused on its own keeps its own answer.
            (Some(Err(err)), _) => Err(err),
            (Some(Ok(value)), None) => Ok(value),
            (_, Some(failed)) => Err(failed.error()),
            (None, None) => Err(ApiError::internal("a write did not run")),
        };
        let _ = self.reply.send(result);
    }
}

/// Why a batch did not commit; every write in it gets this error.
struct Failed {
    contention: bool,
    cause: String,
}

impl Failed {
    fn error(&self) -> ApiError {
        if self.contention {
            ApiError::Contention
        } else {
            ApiError::internal(&self.cause)
        }
    }
}

impl From<diesel::result::Error> for Failed {
    fn from(err: diesel::result::Error) -> Self {
        let cause = err.to_string();
        Failed {
            contention: matches!(ApiError::from(err), ApiError::Contention),
            cause,
        }
    }
}

/// The handle requests use; the thread stops when the last handle is dropped, and the
/// checkpointer's soon after.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    _alive: Arc<()>,
}

/// How often the checkpointer copies what the WAL gained into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// The WAL's size, in pages, beyond which a connection's commit also checkpoints (SQLite's
/// `wal_autocheckpoint`, 1,000 by default). The checkpointer does this work off the writer's
/// path; this is the guard for when it cannot keep up: a checkpoint that runs while the
/// writer appends never reaches the WAL's end, so the WAL restarts from its beginning only
/// after one made by a commit.
pub const WAL_GUARD_PAGES: u32 = 10_000;

impl Writer {
    /// Opens the writer's connection and starts its thread.
    pub fn start(manager: Manager) -> Result<Writer, diesel::ConnectionError> {
        let mut conn = manager.open()?;
        // SQLite's default cache (readers keep a smaller one): nobody else writes to the
        // file under this connection, so its cache stays valid from batch to batch.
        conn.batch_execute("PRAGMA cache_size = -2000")
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
        let checkpoints = manager.open()?;
        let (jobs, queue) = mpsc::channel();
        let alive = Arc::new(());
        let writer_alive = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(manager, conn, queue))
            .and_then(|_| {
                std::thread::Builder::new()
                    .name("sqlite-checkpointer".into())
                    .spawn(move || checkpointer(checkpoints, writer_alive))
            })
            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
        Ok(Writer {
            jobs,
            _alive: alive,
        })
    }

    /// Queues `work` for the writer's next transaction now; the future answers after its
    /// commit.
    pub fn write<T, F>(&self, work: F) -> impl Future<Output = Result<T, ApiError>> + 'static
    where
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let answer = self.queue(work);
        async move { answered(answer?.await) }
    }

    /// As [`Writer::write`], waiting on this thread (not in async code).
    pub fn write_blocking<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        answered(self.queue(work)?.blocking_recv())
    }

    fn queue<T, F>(&self, work: F) -> Result<oneshot::Receiver<Result<T, ApiError>>, ApiError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            work: Some(work),
            queued: Instant::now(),
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .map_err(|_| ApiError::internal("the SQLite writer has stopped"))?;
        crate::metrics::writer_queued(1);
        Ok(answer)
    }
}

fn answered<T>(
    answer: Result<Result<T, ApiError>, oneshot::error::RecvError>,
) -> Result<T, ApiError> {
    answer.map_err(|_| ApiError::internal("a write failed in the SQLite writer"))?
}

fn run(manager: Manager, mut conn: DbConnection, queue: mpsc::Receiver<Box<dyn Job>>) {
    // Writes left over when a batch ended early; they go first into the next one.
    let mut carried: Vec<Box<dyn Job>> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut carried);
        let carried_over = batch.len();
        if batch.is_empty() {
            match queue.recv() {
                Ok(job) => batch.push(job),
                Err(_) => return, // every handle is gone
            }
        }
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        crate::metrics::writer_queued(-((batch.len() - carried_over) as i64));
        crate::metrics::writer_batch(batch.len());
        let (usable, rest) = run_batch(&mut conn, batch);
        carried = rest;
        if !usable {
            // A write panicked or left the connection unusable: start afresh.
            match manager.open() {
                Ok(fresh) => conn = fresh,
                Err(err) => log::error!("reopening the SQLite writer's connection: {err}"),
            }
        }
    }
}

/// Copies the WAL's new pages into the database file every [`CHECKPOINT_EVERY`], beside
/// the writer (SQLite's PASSIVE checkpoint waits for nobody and nobody waits for it), so
/// that the writer's commits rarely do it themselves ([`WAL_GUARD_PAGES`]).
fn checkpointer(mut conn: DbConnection, writer: Weak<()>) {
    let mut failing = false;
    while writer.strong_count() > 0 {
        std::thread::sleep(CHECKPOINT_EVERY);
        match conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            Ok(()) => failing = false,
            // Said once per run of failures; commits checkpoint past the guard meanwhile.
            Err(err) if !failing => {
                failing = true;
                log::warn!("SQLite checkpointer: {err}");
            }
            Err(_) => {}
        }
    }
}

/// Runs one batch and answers every write in it that ran. Returns whether the connection
/// is still usable, and the writes not run because the batch ended early.
fn run_batch(conn: &mut DbConnection, mut batch: Vec<Box<dyn Job>>) -> (bool, Vec<Box<dyn Job>>) {
    let _writer = SQLITE_WRITER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let DbConnection::Sqlite(lite) = conn else {
        unreachable!("the writer runs on SQLite only")
    };
    let mut usable = true;
    let mut rest = Vec::new();
    let failed = match AnsiTransactionManager::begin_transaction_sql(lite, "BEGIN IMMEDIATE") {
        Err(err) => Some(Failed::from(err)),
        Ok(()) => {
            for (i, job) in batch.iter_mut().enumerate() {
                if !job.wanted() {
                    job.expire();
                    continue;
                }
                if catch_unwind(AssertUnwindSafe(|| job.run(conn))).is_err() {
                    log::error!("a write panicked; its whole batch is rolled back");
                    usable = false;
                    break;
                }
                // Each write must leave the batch's transaction as it found it.
                if depth(conn) != Some(1) {
                    usable = false;
                    break;
                }
                if job.failed() {
                    rest = batch.split_off(i + 1);
                    break;
                }
            }
            if usable {
                DbConnection::commit_transaction(conn)
                    .err()
                    .map(Failed::from)
            } else {
                Some(Failed {
                    contention: false,
                    cause: "another write in the same transaction failed".into(),
                })
            }
        }
    };
    if let Some(failed) = &failed {
        log::error!(
            "SQLite writer: {} writes not committed: {}",
            batch.len(),
            failed.cause
        );
        if usable {
            let _ = DbConnection::rollback_transaction(conn);
        } else {
            let _ = conn.batch_execute("ROLLBACK");
        }
    }
    for job in batch {
        job.finish(failed.as_ref());
    }
    (usable && depth(conn) == Some(0), rest)
}

/// How many transactions are open on the connection; none when its state is broken.
fn depth(conn: &mut DbConnection) -> Option<u32> {
    match DbConnection::transaction_manager_status_mut(conn).transaction_depth() {
        Ok(depth) => Some(depth.map_or(0, |d| d.get())),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{write_tx, DatabaseUrl, Db};
    use super::{mpsc, Writer};
    use crate::error::ApiError;
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;
    use futures_util::future::{join3, join4};

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    fn insert(conn: &mut super::DbConnection, name: &str) -> Result<(), ApiError> {
        diesel::sql_query(format!("INSERT INTO probe (name) VALUES ('{name}')")).execute(conn)?;
        Ok(())
    }

    fn names(db: &Db) -> Vec<String> {
        #[derive(QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            name: String,
        }
        let mut conn = db.pool.get().unwrap();
        let rows: Vec<Name> = diesel::sql_query("SELECT name FROM probe ORDER BY name")
            .load(&mut **conn)
            .unwrap();
        rows.into_iter().map(|r| r.name).collect()
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        actix_web::rt::System::new().block_on(future)
    }

    /// Queues a write that holds the writer until `release` is called; returns once it is
    /// running, so that writes queued next form the following batch together.
    fn hold(
        writer: &Writer,
        name: &'static str,
    ) -> (
        impl std::future::Future<Output = Result<(), ApiError>>,
        impl FnOnce(),
    ) {
        let (started_tx, started) = mpsc::channel();
        let (release_tx, release) = mpsc::channel::<()>();
        let held = writer.write(move |conn| {
            started_tx.send(()).unwrap();
            release.recv().unwrap();
            write_tx(conn, |conn| insert(conn, name))
        });
        started.recv().unwrap();
        (held, move || release_tx.send(()).unwrap())
    }

    /// Writes queued behind a busy batch commit together, in one transaction. One that
    /// fails is rolled back alone; one that panics costs its batch (nothing of it is kept,
    /// every caller gets an error) but not the writer, which goes on with the next writes.
    #[test]
    fn a_batch_commits_its_writes_and_isolates_the_ones_that_fail() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::parse(dir.path().join("w.db").to_str().unwrap()).unwrap();
        let db = Db::connect(&url, 2, "FULL").unwrap();
        db.pool
            .get()
            .unwrap()
            .batch_execute("CREATE TABLE probe (name TEXT NOT NULL)")
            .unwrap();
        let writer = db.writer.clone().unwrap();

        let (first, release) = hold(&writer, "a");
        let kept = writer.write(|conn| write_tx(conn, |conn| insert(conn, "b")));
        let refused = writer.write(|conn| {
            write_tx(conn, |conn| {
                insert(conn, "refused")?;
                Err::<(), _>(ApiError::BadRequest("no".into()))
            })
        });
        let pool = db.pool.clone();
        let counted = writer.write(move |conn| {
            write_tx(conn, |conn| {
                insert(conn, "c")?;
                let count = "SELECT count(*) AS n FROM probe";
                // Inside the batch: a (committed), b and c; the refused one is gone.
                let inside: Count = diesel::sql_query(count).get_result(conn)?;
                // Another connection sees a alone: b and c are one uncommitted transaction.
                let outside: Count =
                    diesel::sql_query(count).get_result(&mut **pool.get().unwrap())?;
                Ok((inside.n, outside.n))
            })
        });
        release();
        let (first, kept, refused, counted) = block_on(join4(first, kept, refused, counted));
        assert!(first.is_ok() && kept.is_ok(), "{first:?} {kept:?}");
        assert!(
            matches!(refused, Err(ApiError::BadRequest(_))),
            "{refused:?}"
        );
        assert_eq!(counted.unwrap(), (3, 1));
        assert_eq!(names(&db), ["a", "b", "c"]);

        // A panic: its batch is rolled back and answered with errors.
        let (first, release) = hold(&writer, "d");
        let lost = writer.write(|conn| write_tx(conn, |conn| insert(conn, "e")));
        let panics = writer.write(|conn| {
            write_tx(conn, |conn| {
                insert(conn, "f")?;
                if conn.begin_test_transaction().is_err() {
                    panic!("a bug in a write");
                }
                Ok(())
            })
        });
        release();
        let (first, lost, panics) = block_on(join3(first, lost, panics));
        assert!(first.is_ok(), "{first:?}");
        assert!(lost.is_err() && panics.is_err(), "{lost:?} {panics:?}");
        assert_eq!(names(&db), ["a", "b", "c", "d"]);

        // The writer carries on, on a fresh connection.
        writer
            .write_blocking(|conn| write_tx(conn, |conn| insert(conn, "g")))
            .unwrap();
        assert_eq!(names(&db), ["a", "b", "c", "d", "g"]);
    }
}
