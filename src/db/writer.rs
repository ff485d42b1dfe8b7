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

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};

use super::{DbConnection, Manager, SQLITE_WRITER};
use crate::error::ApiError;

/// The most writes one transaction carries; more wait for the next one.
const MAX_BATCH: usize = 128;

/// A write waiting for the writer.
trait Job: Send {
    /// Runs the work inside the batch's transaction and keeps its result.
    fn run(&mut self, conn: &mut DbConnection);
    /// Answers the caller once the batch's fate is known: the kept result, or the batch's
    /// error when it did not commit (or the work never ran).
    fn finish(self: Box<Self>, failed: Option<&Failed>);
}

struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T, ApiError>>,
    reply: tokio::sync::oneshot::Sender<Result<T, ApiError>>,
}

impl<T, F> Job for Pending<T, F>
where
    F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send,
    T: Send,
{
    fn run(&mut self, conn: &mut DbConnection) {
        if let Some(work) = self.work.take() {
            self.result = Some(work(conn));
        }
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

/// The handle requests use; the thread stops when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Opens the writer's connection and starts its thread.
    pub fn start(manager: Manager) -> Result<Writer, diesel::ConnectionError> {
        let conn = manager.open()?;
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(manager, conn, queue))
            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
        Ok(Writer { jobs })
    }

    /// Runs `work` in the writer's next transaction; answers after its commit.
    pub async fn write<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .map_err(|_| ApiError::internal("the SQLite writer has stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("a write failed in the SQLite writer"))?
    }
}

fn run(manager: Manager, mut conn: DbConnection, queue: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if !run_batch(&mut conn, batch) {
            // A write panicked or left the connection unusable: start afresh.
            match manager.open() {
                Ok(fresh) => conn = fresh,
                Err(err) => log::error!("reopening the SQLite writer's connection: {err}"),
            }
        }
    }
}

/// Runs one batch and answers every write in it. False when the connection must be
/// replaced.
fn run_batch(conn: &mut DbConnection, mut batch: Vec<Box<dyn Job>>) -> bool {
    let _writer = SQLITE_WRITER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let DbConnection::Sqlite(lite) = conn else {
        unreachable!("the writer runs on SQLite only")
    };
    let mut usable = true;
    let failed = match AnsiTransactionManager::begin_transaction_sql(lite, "BEGIN IMMEDIATE") {
        Err(err) => Some(Failed::from(err)),
        Ok(()) => {
            for job in &mut batch {
                if catch_unwind(AssertUnwindSafe(|| job.run(conn))).is_err() {
                    log::error!("a write panicked; its whole batch is rolled back");
                    usable = false;
                }
                // Each write must leave the batch's transaction as it found it.
                if !usable || depth(conn) != Some(1) {
                    usable = false;
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
    usable && depth(conn) == Some(0)
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
    use crate::error::ApiError;
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;
    use futures_util::future::{join, join3};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

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

    /// A write that holds the writer for 200 ms; `started` is set once it runs.
    async fn slow(
        db: &Db,
        started: &'static AtomicBool,
        name: &'static str,
    ) -> Result<(), ApiError> {
        db.write(move |conn| {
            started.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            write_tx(conn, |conn| insert(conn, name))
        })
        .await
    }

    /// Writes queued behind a busy batch commit together. One that fails is rolled back
    /// alone; one that panics costs its batch (nothing of it is kept, every caller gets an
    /// error) but not the writer, which goes on with the next writes.
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
        actix_web::rt::System::new().block_on(async {
            // The others are sent while the first holds the writer: they form one batch.
            let started: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
            let queued = async {
                running(started).await;
                let kept = db.write(|conn| write_tx(conn, |conn| insert(conn, "b")));
                let refused = db.write(|conn| {
                    write_tx(conn, |conn| {
                        insert(conn, "refused")?;
                        Err::<(), _>(ApiError::BadRequest("no".into()))
                    })
                });
                let counted = db.write(|conn| {
                    write_tx(conn, |conn| {
                        insert(conn, "c")?;
                        // Earlier writes of the batch are visible, refused ones gone.
                        let seen: Count = diesel::sql_query("SELECT count(*) AS n FROM probe")
                            .get_result(conn)?;
                        Ok(seen.n)
                    })
                });
                join3(kept, refused, counted).await
            };
            let (first, (kept, refused, counted)) = join(slow(&db, started, "a"), queued).await;
            assert!(first.is_ok() && kept.is_ok(), "{first:?} {kept:?}");
            assert!(
                matches!(refused, Err(ApiError::BadRequest(_))),
                "{refused:?}"
            );
            assert_eq!(counted.unwrap(), 3);
            assert_eq!(names(&db), ["a", "b", "c"]);

            // A panic: its batch is rolled back and answered with errors.
            let started: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
            let queued = async {
                running(started).await;
                let lost = db.write(|conn| write_tx(conn, |conn| insert(conn, "e")));
                let panics = db.write(|conn| {
                    write_tx(conn, |conn| {
                        insert(conn, "f")?;
                        if conn.begin_test_transaction().is_err() {
                            panic!("a bug in a write");
                        }
                        Ok(())
                    })
                });
                join(lost, panics).await
            };
            let (first, (lost, panics)) = join(slow(&db, started, "d"), queued).await;
            assert!(first.is_ok(), "{first:?}");
            assert!(lost.is_err() && panics.is_err(), "{lost:?} {panics:?}");
            assert_eq!(names(&db), ["a", "b", "c", "d"]);

            // The writer carries on, on a fresh connection.
            db.write(|conn| write_tx(conn, |conn| insert(conn, "g")))
                .await
                .unwrap();
            assert_eq!(names(&db), ["a", "b", "c", "d", "g"]);
        });
    }

    async fn running(flag: &AtomicBool) {
        while !flag.load(Ordering::SeqCst) {
            actix_web::rt::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
