//! The SQLite ceiling of `scripts/bench.sh`: what SQLite itself can do with the rows a
//! `POST /payments/` writes, with no HTTP and no cobro logic.
//!
//!   cargo run --release --example sqlite_ceiling -- DB WORKSPACE SECONDS BATCH EVENT_JSON
//!
//! DB is a database cobro has migrated (its indexes and its count trigger are the ones a
//! create meets). One connection, WAL and `synchronous=FULL` as `cobro serve` runs, writes
//! for SECONDS, in transactions of BATCH creates (group commit, as the single writer does).
//! Each create is the webhook lookup, the payment (whose insert fires the count trigger)
//! and its event, whose data is the file EVENT_JSON, by statements prepared once. It prints
//! one line in the shape of the bench's wrk script: `BENCH {"requests": …, "rps": …}`, where
//! a create's latency is that of the batch it was committed in.

use std::ffi::{c_int, CStr, CString};
use std::ptr;
use std::time::{Duration, Instant};

use libsqlite3_sys as ffi;

struct Db(*mut ffi::sqlite3);

struct Statement(*mut ffi::sqlite3_stmt);

impl Db {
    fn open(path: &str) -> Db {
        let path = CString::new(path).expect("a path without NUL");
        let mut db = ptr::null_mut();
        // SAFETY: a valid C string and out-pointer; the handle is closed by Drop.
        let code = unsafe { ffi::sqlite3_open(path.as_ptr(), &mut db) };
        let db = Db(db);
        db.check(code, "open");
        db
    }

    fn check(&self, code: c_int, what: &str) {
        if code != ffi::SQLITE_OK && code != ffi::SQLITE_ROW && code != ffi::SQLITE_DONE {
            // SAFETY: the handle is open; SQLite owns the message.
            let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) };
            panic!("{what}: {}", message.to_string_lossy());
        }
    }

    fn execute(&self, sql: &str) {
        let sql = CString::new(sql).expect("SQL without NUL");
        // SAFETY: a valid handle and C string; no callback.
        let code = unsafe {
            ffi::sqlite3_exec(self.0, sql.as_ptr(), None, ptr::null_mut(), ptr::null_mut())
        };
        self.check(code, "exec");
    }

    fn prepare(&self, sql: &str) -> Statement {
        let sql = CString::new(sql).expect("SQL without NUL");
        let mut statement = ptr::null_mut();
        // SAFETY: a valid handle and C string; the statement is finalized by Drop.
        let code = unsafe {
            ffi::sqlite3_prepare_v2(self.0, sql.as_ptr(), -1, &mut statement, ptr::null_mut())
        };
        self.check(code, "prepare");
        Statement(statement)
    }

    /// Binds `texts` by position, steps to the end and resets; returns how many rows it gave.
    fn run(&self, statement: &Statement, texts: &[&str]) -> usize {
        let mut rows = 0;
        // SAFETY: the statement belongs to this handle; SQLITE_TRANSIENT has SQLite copy
        // each text before the call returns.
        unsafe {
            for (i, text) in texts.iter().enumerate() {
                let code = ffi::sqlite3_bind_text(
                    statement.0,
                    i as c_int + 1,
                    text.as_ptr().cast(),
                    text.len() as c_int,
                    ffi::SQLITE_TRANSIENT(),
                );
                self.check(code, "bind");
            }
            loop {
                match ffi::sqlite3_step(statement.0) {
                    ffi::SQLITE_ROW => rows += 1,
                    code => {
                        self.check(code, "step");
                        break;
                    }
                }
            }
            ffi::sqlite3_reset(statement.0);
        }
        rows
    }

    fn last_id(&self) -> i64 {
        // SAFETY: an open handle.
        unsafe { ffi::sqlite3_last_insert_rowid(self.0) }
    }
}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: finalized once.
        unsafe { ffi::sqlite3_finalize(self.0) };
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: every statement is finalized before (they are dropped first in main).
        unsafe { ffi::sqlite3_close(self.0) };
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, workspace, seconds, batch, event_json] = args.as_slice() else {
        eprintln!("usage: sqlite_ceiling DB WORKSPACE SECONDS BATCH EVENT_JSON");
        std::process::exit(2);
    };
    let seconds: u64 = seconds.parse().expect("SECONDS is a number");
    let batch: usize = batch.parse().expect("BATCH is a number");
    let event = std::fs::read_to_string(event_json).expect("read EVENT_JSON");

    let db = Db::open(path);
    db.execute(
        "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
         PRAGMA foreign_keys = ON;",
    );
    let webhooks = db.prepare(
        "SELECT * FROM webhooks WHERE workspace_id = ?1 AND test_mode = 0 \
         AND (enabled = 1 OR disabled_reason IS NOT NULL)",
    );
    let payment = db.prepare(
        "INSERT INTO payments (workspace_id, checkout_key, created, updated, test_mode, amount, \
         collected, currency, unit, date, description, sources, status, enable_checkout, metadata, \
         version, amount_refunded) VALUES (?1, ?2, ?3, ?3, 0, 1000, 0, 'CLP', 1, '2026-11-23', \
         'bench', '[]', 'requires_payment_method', 0, '{}', 1, 0) RETURNING id",
    );
    let event_insert = db.prepare(
        "INSERT INTO events (workspace_id, data, created, object_id, actor, request_id, test_mode, \
         event_type, object_type, actor_type) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, \
         'payment.created', 'payment', 'user') RETURNING id",
    );
    let actor = r#"{"type":"user","id":1,"email":"admin@cobro.local"}"#;

    // Checkout keys are unique: this run's differ from any other's.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut latencies: Vec<Duration> = Vec::new();
    let mut creates = 0usize;
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    while Instant::now() < end {
        let batch_started = Instant::now();
        let created = chrono::Utc::now()
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string();
        db.execute("BEGIN IMMEDIATE");
        for n in 0..batch {
            let key = format!("ceiling_{run}_{}", creates + n);
            let request_id = format!("req_ceiling_{}", creates + n);
            db.run(&webhooks, &[workspace]);
            db.run(&payment, &[workspace, &key, &created]);
            let id = db.last_id().to_string();
            db.run(
                &event_insert,
                &[workspace, &event, &created, &id, actor, &request_id],
            );
        }
        db.execute("COMMIT");
        creates += batch;
        let took = batch_started.elapsed();
        latencies.extend(std::iter::repeat_n(took, batch));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    drop((webhooks, payment, event_insert));
    println!(
        "BENCH {{\"requests\": {creates}, \"seconds\": {elapsed:.3}, \"rps\": {:.1}, \"p50_ms\": {:.3}, \
         \"p99_ms\": {:.3}, \"max_ms\": {:.3}, \"non_2xx\": 0, \"socket_errors\": 0}}",
        creates as f64 / elapsed,
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO)),
    );
}
