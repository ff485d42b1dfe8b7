//! The delivery worker: sends what is due, records each attempt, backs off, and disables a
//! webhook that keeps failing the same way. `cobro serve` runs one; `cobro worker` runs one
//! alone. Any number may run on one database: a delivery is claimed by a guarded write
//! before it is sent, so no two workers send it at the same time.
//!
//! One dispatcher thread finds due deliveries, claims them and hands each to one of
//! `SENDERS` sender threads, so that a slow receiver holds up one sender, not every webhook.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use chrono::{Duration, NaiveDateTime};

use super::delivery::{self, Outcome};
use super::domain::{self, Webhook, DISABLE_AFTER, GIVE_UP_AFTER};
use super::store::{self, DeliveryRow};
use crate::audit::Origin;
use crate::db::{now, write_tx, Db, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::{store as events, EventView};

/// Deliveries sent at the same time by one worker.
pub const SENDERS: usize = 4;
// The dispatcher and the senders use the pool's reserved connections.
const _: () = assert!((SENDERS as u32) < crate::db::RESERVED_CONNECTIONS);
/// How long a claim keeps other workers off a delivery. A sender only starts a send that
/// ends (6 s timeout) with time to spare on its claim, so a claim never lapses mid-send.
const CLAIM: Duration = Duration::seconds(20);
const SPARE: Duration = Duration::seconds(2);
const BATCH: i64 = 50;

/// What a worker needs to know (from `Settings`).
#[derive(Clone, Copy, Debug)]
pub struct WorkerSettings {
    pub allow_private: bool,
    pub first_retry_ms: u64,
}

impl From<&crate::config::Settings> for WorkerSettings {
    fn from(settings: &crate::config::Settings) -> Self {
        WorkerSettings {
            allow_private: settings.webhook_allow_private,
            first_retry_ms: settings.webhook_first_retry_ms,
        }
    }
}

/// A claimed delivery, with what sending it needs.
struct Job {
    scope: Scope,
    due: DeliveryRow,
    /// The claim's end: it also identifies the claim when the outcome is recorded.
    claimed_until: NaiveDateTime,
    url: String,
    secret: String,
    event: Option<EventView>,
}

/// A worker running on a thread of its own.
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Running {
    /// Stops claiming, lets the sends in flight finish (6 s at most) and returns.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Starts a worker on a thread of its own.
pub fn spawn(db: Db, settings: WorkerSettings) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = thread::Builder::new()
        .name("webhooks".into())
        .spawn(move || run(&db, settings, &flag))
        .expect("start the webhook worker");
    Running { stop, thread }
}

/// The worker: starts the senders, then dispatches batches, sleeping briefly when there was
/// nothing to do, until `stop` is set; then waits for the senders to finish.
pub fn run(db: &Db, settings: WorkerSettings, stop: &AtomicBool) {
    // A rendezvous channel: a job is handed over only when a sender is free to send it now.
    let (hand_over, jobs) = mpsc::sync_channel::<Job>(0);
    let jobs = Arc::new(Mutex::new(jobs));
    let senders: Vec<JoinHandle<()>> = (0..SENDERS)
        .map(|n| {
            let (db, jobs) = (db.clone(), jobs.clone());
            thread::Builder::new()
                .name(format!("webhook-sender-{n}"))
                .spawn(move || send_all(&db, &jobs, settings))
                .expect("start a webhook sender")
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        match dispatch(db, &hand_over, stop) {
            Ok(0) => thread::sleep(std::time::Duration::from_millis(200)),
            Ok(_) => {}
            Err(err) => {
                err.log_for("webhook worker");
                thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
    drop(hand_over);
    for sender in senders {
        let _ = sender.join();
    }
}

/// Claims the deliveries due now (one batch) and hands each to a sender; returns how many.
/// The claim also checks that no older delivery of the same object is pending, so that an
/// object's events arrive in order.
fn dispatch(db: &Db, senders: &SyncSender<Job>, stop: &AtomicBool) -> Result<usize, ApiError> {
    let mut handed = 0;
    let origin = Arc::new(Origin::job("webhooks"));
    for due in db.run_here(|conn| store::due(conn, now(), BATCH))? {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let scope = Scope::new(due.workspace_id.clone(), due.test_mode, &origin);
        let at = now();
        // A write: on SQLite it goes through the single writer like every other.
        let claiming = due.clone();
        if !db.write_here(move |conn| store::claim(conn, &claiming, at, at + CLAIM))? {
            continue;
        }
        let found = db.run_here(|conn| {
            let webhook = store::find(conn, &scope, due.webhook_id)?;
            Ok((webhook, events::find(conn, &scope, due.event_id)?))
        })?;
        let (Some(webhook), event) = found else {
            continue; // deleted meanwhile, and its deliveries with it
        };
        let job = Job {
            scope,
            due,
            claimed_until: at + CLAIM,
            url: webhook.url,
            secret: webhook.secret,
            event,
        };
        if senders.send(job).is_err() {
            return Err(ApiError::internal("every webhook sender has stopped"));
        }
        handed += 1;
    }
    Ok(handed)
}

/// A sender's loop: takes jobs one at a time until the dispatcher is gone.
fn send_all(db: &Db, jobs: &Mutex<Receiver<Job>>, settings: WorkerSettings) {
    loop {
        let job = match jobs.lock().map(|jobs| jobs.recv()) {
            Ok(Ok(job)) => job,
            _ => return,
        };
        let id = job.due.id;
        if let Err(err) = send_one(db, job, settings) {
            err.log_for(&format!("webhook delivery {id}"));
        }
    }
}

/// Sends one claimed delivery and records what came of it.
fn send_one(db: &Db, job: Job, settings: WorkerSettings) -> Result<(), ApiError> {
    if now() + Duration::from_std(delivery::TIMEOUT).unwrap_or(CLAIM) + SPARE > job.claimed_until {
        return Ok(()); // too late to finish within the claim: it lapses and is due again
    }
    let outcome = match &job.event {
        Some(event) => delivery::send(
            &job.url,
            &job.secret,
            event,
            settings.allow_private,
            chrono::Utc::now().timestamp(),
        ),
        None => Outcome::Unreachable("the event no longer exists".into()),
    };
    log::debug!("webhook delivery {}: {outcome:?}", job.due.id);
    let (kind, delivered_after) = match &outcome {
        // From the event (its deliveries are made in its transaction) to its 2xx.
        Outcome::Delivered(_) => ("delivered", (now() - job.due.created).to_std().ok()),
        Outcome::Refused(_) => ("refused", None),
        Outcome::Unreachable(_) => ("unreachable", None),
    };
    crate::metrics::webhook_attempt(kind, delivered_after);
    let first_retry_ms = settings.first_retry_ms;
    db.write_here(move |conn| write_tx(conn, |conn| record(conn, &job, &outcome, first_retry_ms)))
}

/// Writes an attempt's outcome to the delivery and to its webhook's run of failures.
fn record(
    conn: &mut DbConnection,
    job: &Job,
    outcome: &Outcome,
    first_retry_ms: u64,
) -> Result<(), ApiError> {
    let (scope, due) = (&job.scope, &job.due);
    let at = now();
    let mut delivery = due.clone();
    delivery.attempts += 1;
    delivery.last_attempt = Some(at);
    let failure = match outcome {
        Outcome::Delivered(status) => {
            delivery.status = "succeeded".into();
            delivery.last_status = Some(i32::from(*status));
            delivery.last_error = None;
            None
        }
        Outcome::Refused(status) => {
            delivery.last_status = Some(i32::from(*status));
            delivery.last_error = Some(format!("HTTP {status}"));
            Some(i32::from(*status))
        }
        Outcome::Unreachable(why) => {
            delivery.last_status = None;
            delivery.last_error = Some(why.chars().take(500).collect());
            Some(0)
        }
    };
    if failure.is_some() {
        if at - delivery.created >= GIVE_UP_AFTER {
            delivery.status = "failed".into();
        } else {
            delivery.next_attempt = domain::next_attempt(at, delivery.attempts, first_retry_ms);
        }
    }
    if !store::record_attempt(conn, scope, &delivery, job.claimed_until)? {
        log::warn!("webhook delivery {}: its claim was taken over", delivery.id);
        return Ok(());
    }

    let Some(webhook) = store::find(conn, scope, due.webhook_id)? else {
        return Ok(());
    };
    let next = after_attempt(&webhook, failure, at);
    if next != webhook && !store::save(conn, scope, &webhook, &next)? {
        return Err(ApiError::Contention);
    }
    if webhook.enabled && !next.enabled {
        super::operations::audit(conn, scope, "webhook.disabled", &next)?;
    }
    Ok(())
}

/// A webhook after an attempt: a success ends its run of failures; the third failure in a
/// row with one status (0: no answer) disables it.
fn after_attempt(webhook: &Webhook, failure: Option<i32>, at: chrono::NaiveDateTime) -> Webhook {
    let mut next = webhook.clone();
    match failure {
        None => {
            next.failure_status = None;
            next.failure_streak = 0;
        }
        Some(status) => {
            if webhook.failure_status == Some(status) {
                next.failure_streak += 1;
            } else {
                next.failure_status = Some(status);
                next.failure_streak = 1;
            }
            if next.failure_streak >= DISABLE_AFTER && next.enabled {
                next.enabled = false;
                let what = if status == 0 {
                    "no answer".to_string()
                } else {
                    format!("HTTP {status}")
                };
                next.disabled_reason = Some(format!(
                    "Disabled after {DISABLE_AFTER} consecutive failed deliveries ({what}); enable it to resume."
                ));
            }
        }
    }
    if next != *webhook {
        next.updated = at;
    }
    next
}
