//! The delivery worker: sends what is due, records each attempt, backs off, and disables a
//! webhook that keeps failing the same way. `cobro serve` runs one; `cobro worker` runs one
//! alone. Any number may run on one database: a delivery is claimed by a guarded write
//! before it is sent, so no two workers send it at the same time.
//!
//! One dispatcher thread claims a batch of due deliveries in one write and hands each to one
//! of `SENDERS` sender threads, so that a slow receiver holds up one sender, not every
//! webhook. A recorder thread writes what came of the sends, as many as are waiting in one
//! write: no sender waits for a commit. A worker that stops gives back the claims it did
//! not send, so that another worker sends them at once rather than when they lapse.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
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
// The dispatcher and the recorder use the pool's reserved connections; senders use none.
/// How long a claim keeps other workers off a delivery. A sender only starts a send that
/// ends (6 s timeout) with time to spare on its claim, so a claim never lapses mid-send.
const CLAIM: Duration = Duration::seconds(20);
const SPARE: Duration = Duration::seconds(5);
const BATCH: i64 = 50;
/// Outcomes the senders may hand the recorder ahead of its writes; it writes up to this
/// many at once.
const RECORDING: usize = 4 * BATCH as usize;

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
    event: Option<Arc<EventView>>,
}

/// A worker running on a thread of its own.
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Running {
    /// Stops claiming, lets the sends in flight finish (12 s at most: a sender may start one
    /// more as the dispatcher stops) and returns.
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

/// The worker: starts the senders and the recorder, then dispatches batches, sleeping
/// briefly when there was nothing to do, until `stop` is set; then waits for the senders
/// to finish and the recorder to write what they did.
pub fn run(db: &Db, settings: WorkerSettings, stop: &AtomicBool) {
    // Room for half a batch: the dispatcher claims the next batch while the senders send
    // the end of this one (with room for a few jobs only, they sat idle through every
    // claim's commit), and holds few claims ahead of them (a job waits behind about 80
    // others at most, so a claim lapses unsent only when answers take 0.4 s or more).
    let (hand_over, jobs) = mpsc::sync_channel::<Job>(BATCH as usize / 2);
    let jobs = Arc::new(Mutex::new(jobs));
    // Bounded: a recorder held up (a slow commit, a lock) holds up the senders too, rather
    // than let claims lapse on outcomes not yet written, whose deliveries would go again.
    let (done, outcomes) = mpsc::sync_channel::<(Job, Outcome)>(RECORDING);
    // Set once the dispatcher stops: the jobs still queued are put aside, not sent, so that
    // stopping waits for the sends in flight only; their claims are given back at the end.
    let stopping = Arc::new(AtomicBool::new(false));
    let unsent: Arc<Mutex<Vec<Job>>> = Arc::default();
    let senders: Vec<JoinHandle<()>> = (0..SENDERS)
        .map(|n| {
            let (jobs, done) = (jobs.clone(), done.clone());
            let (stopping, unsent) = (stopping.clone(), unsent.clone());
            thread::Builder::new()
                .name(format!("webhook-sender-{n}"))
                .spawn(move || send_all(&jobs, &done, settings, &stopping, &unsent))
                .expect("start a webhook sender")
        })
        .collect();
    // Only the senders hold these: if they all stop, handing over fails instead of waiting.
    drop((jobs, done));
    let recorder = {
        let db = db.clone();
        thread::Builder::new()
            .name("webhook-recorder".into())
            .spawn(move || record_all(&db, &outcomes, settings))
            .expect("start the webhook recorder")
    };
    while !stop.load(Ordering::Relaxed) {
        match dispatch(db, &hand_over, stop, &unsent) {
            Ok(0) => thread::sleep(std::time::Duration::from_millis(200)),
            Ok(_) => {}
            Err(err) => {
                err.log_for("webhook worker");
                thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
    stopping.store(true, Ordering::Relaxed);
    drop(hand_over);
    for sender in senders {
        let _ = sender.join();
    }
    let _ = recorder.join();
    give_back(db, &unsent);
}

/// Gives back the claims of the jobs put aside as the worker stopped (every send has ended
/// and been recorded by now): those deliveries are due again at once, for any worker.
fn give_back(db: &Db, unsent: &Mutex<Vec<Job>>) {
    let jobs = std::mem::take(&mut *unsent.lock().unwrap_or_else(PoisonError::into_inner));
    if jobs.is_empty() {
        return;
    }
    let given = jobs.len();
    let released = db.write_here(move |conn| {
        write_tx(conn, |conn| {
            for job in &jobs {
                store::release_claim(conn, &job.scope, job.due.id, job.claimed_until)?;
            }
            Ok(())
        })
    });
    match released {
        Ok(()) => log::info!("gave back {given} webhook deliveries not sent"),
        Err(err) => err.log_for("webhook worker (their claims lapse instead)"),
    }
}

/// Claims the deliveries due now (one batch, in one write) and hands each to a sender;
/// returns how many. The claim also checks that no older delivery of the same object is
/// pending, so that an object's events arrive in order.
fn dispatch(
    db: &Db,
    senders: &SyncSender<Job>,
    stop: &AtomicBool,
    unsent: &Mutex<Vec<Job>>,
) -> Result<usize, ApiError> {
    let at = now();
    let until = at + CLAIM;
    // A write: on SQLite it goes through the single writer like every other.
    let claimed =
        db.write_here(move |conn| write_tx(conn, |conn| store::claim_due(conn, at, until, BATCH)))?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let origin = Arc::new(Origin::job("webhooks"));
    let jobs = db.run_here(|conn| {
        // The batch's webhooks and events, a statement per webhook and per scope (not per
        // delivery: a drain runs at the rate of its statements).
        let mut webhooks: HashMap<i64, Option<Webhook>> = HashMap::new();
        let mut events: HashMap<i64, Arc<EventView>> = HashMap::new();
        let mut scopes: HashMap<(&str, bool), Vec<i64>> = HashMap::new();
        for due in &claimed {
            let key = (due.workspace_id.as_str(), due.test_mode);
            scopes.entry(key).or_default().push(due.event_id);
        }
        for ((workspace_id, test_mode), ids) in scopes {
            let scope = Scope::new(workspace_id.to_string(), test_mode, &origin);
            for event in events::find_many(conn, &scope, &ids)? {
                events.insert(event.id, Arc::new(event));
            }
        }
        let mut jobs = Vec::with_capacity(claimed.len());
        for due in &claimed {
            let scope = Scope::new(due.workspace_id.clone(), due.test_mode, &origin);
            let webhook = match webhooks.entry(due.webhook_id) {
                Entry::Occupied(found) => found.get().clone(),
                Entry::Vacant(entry) => entry
                    .insert(store::find(conn, &scope, due.webhook_id)?)
                    .clone(),
            };
            let Some(webhook) = webhook else {
                continue; // deleted meanwhile, and its deliveries with it
            };
            jobs.push(Job {
                event: events.get(&due.event_id).cloned(),
                scope,
                due: due.clone(),
                claimed_until: until,
                url: webhook.url,
                secret: webhook.secret,
            });
        }
        Ok(jobs)
    })?;
    let mut handed = 0;
    for job in jobs {
        if stop.load(Ordering::Relaxed) {
            set_aside(unsent, job);
            continue;
        }
        if senders.send(job).is_err() {
            return Err(ApiError::internal("every webhook sender has stopped"));
        }
        handed += 1;
    }
    Ok(handed)
}

/// A job not sent because the worker is stopping: its claim is given back at the end.
fn set_aside(unsent: &Mutex<Vec<Job>>, job: Job) {
    unsent
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(job);
}

/// A sender's loop: takes jobs one at a time until the dispatcher is gone, and hands what
/// came of each to the recorder; once the worker is stopping, sets aside the jobs left.
fn send_all(
    jobs: &Mutex<Receiver<Job>>,
    done: &SyncSender<(Job, Outcome)>,
    settings: WorkerSettings,
    stopping: &AtomicBool,
    unsent: &Mutex<Vec<Job>>,
) {
    loop {
        let job = match jobs.lock().map(|jobs| jobs.recv()) {
            Ok(Ok(job)) => job,
            _ => return,
        };
        if stopping.load(Ordering::Relaxed) {
            set_aside(unsent, job);
            continue;
        }
        if let Some(outcome) = send_one(&job, settings) {
            if done.send((job, outcome)).is_err() {
                return;
            }
        }
    }
}

/// Sends one claimed delivery; None when too little of its claim is left to send it.
fn send_one(job: &Job, settings: WorkerSettings) -> Option<Outcome> {
    if now() + Duration::from_std(delivery::TIMEOUT).unwrap_or(CLAIM) + SPARE > job.claimed_until {
        return None; // too late to finish within the claim: it lapses and is due again
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
    Some(outcome)
}

/// The recorder's loop: writes the outcomes the senders hand it, every one waiting in one
/// transaction, until the senders are gone. The outcomes of one webhook are written
/// together, in a savepoint of their own (in order of webhook, so that two recorders lock
/// webhooks alike): a run that fails there (a race lost on its webhook, say) is written
/// again alone, with `write_tx`'s retries. A sender goes on to its next delivery without
/// waiting for this write (unless `RECORDING` outcomes wait already); until it commits, the
/// delivery is still pending and claimed, so no worker sends it again while the claim
/// holds, it is not lost (a claim that lapses unrecorded makes it due again, and it is sent
/// again, as after a crash), and the object's next delivery waits behind it.
fn record_all(db: &Db, outcomes: &Receiver<(Job, Outcome)>, settings: WorkerSettings) {
    let first_retry_ms = settings.first_retry_ms;
    while let Ok(first) = outcomes.recv() {
        let mut batch = vec![first];
        batch.extend(outcomes.try_iter().take(RECORDING));
        // Stable: a webhook's outcomes stay in the order they came.
        batch.sort_by_key(|(job, _)| job.due.webhook_id);
        let runs: Arc<Vec<Vec<(Job, Outcome)>>> = Arc::new(runs_by_webhook(batch));
        let writing = runs.clone();
        let failed = db.write_here(move |conn| {
            write_tx(conn, |conn| {
                let mut failed = Vec::new();
                for (i, run) in writing.iter().enumerate() {
                    if write_tx(conn, |conn| record(conn, run, first_retry_ms)).is_err() {
                        failed.push(i);
                    }
                }
                Ok(failed)
            })
        });
        let again: Vec<usize> = match failed {
            Ok(failed) => failed,
            Err(err) => {
                err.log_for("webhook recorder");
                (0..runs.len()).collect()
            }
        };
        for i in again {
            let writing = runs.clone();
            let alone = db.write_here(move |conn| {
                write_tx(conn, |conn| record(conn, &writing[i], first_retry_ms))
            });
            if alone.is_ok() {
                continue;
            }
            // Then outcome by outcome, so that one that cannot be written loses its own
            // record only (its claim lapses and it is sent again), not its webhook's run.
            for j in 0..runs[i].len() {
                let id = runs[i][j].0.due.id;
                let writing = runs.clone();
                let one = db.write_here(move |conn| {
                    let one = std::slice::from_ref(&writing[i][j]);
                    write_tx(conn, |conn| record(conn, one, first_retry_ms))
                });
                if let Err(err) = one {
                    err.log_for(&format!("webhook delivery {id}"));
                }
            }
        }
    }
}

/// A batch sorted by webhook, cut into one run of outcomes per webhook.
fn runs_by_webhook(batch: Vec<(Job, Outcome)>) -> Vec<Vec<(Job, Outcome)>> {
    let mut runs: Vec<Vec<(Job, Outcome)>> = Vec::new();
    for outcome in batch {
        match runs.last_mut() {
            Some(run) if run[0].0.due.webhook_id == outcome.0.due.webhook_id => run.push(outcome),
            _ => runs.push(vec![outcome]),
        }
    }
    runs
}

/// Writes the outcomes of one webhook's attempts (`run`, in the order they came) to their
/// deliveries, then to the webhook's run of failures. The 2xx of one claim and status are
/// written in one statement: a drain runs at the rate of its statements.
fn record(
    conn: &mut DbConnection,
    run: &[(Job, Outcome)],
    first_retry_ms: u64,
) -> Result<(), ApiError> {
    let Some((first, _)) = run.first() else {
        return Ok(());
    };
    let (scope, webhook_id) = (&first.scope, first.due.webhook_id);
    let at = now();
    // The deliveries, then their webhook (the order in which the API deletes or re-enables
    // a webhook takes them).
    let mut delivered: HashMap<(u16, NaiveDateTime), Vec<i64>> = HashMap::new();
    for (job, outcome) in run {
        if let Outcome::Delivered(status) = outcome {
            let claim = (*status, job.claimed_until);
            delivered.entry(claim).or_default().push(job.due.id);
        }
    }
    // By claim too: an outcome of a claim that lapsed may wait beside the next claim's.
    let mut recorded = std::collections::HashSet::new();
    for ((status, claimed_until), ids) in delivered {
        let status = i32::from(status);
        let ids = store::record_delivered(conn, scope, &ids, status, claimed_until, at)?;
        recorded.extend(ids.into_iter().map(|id| (id, claimed_until)));
    }
    // What each attempt recorded means for the webhook, in order: None for a 2xx, else the
    // failure's status (0: no answer).
    let mut failures = Vec::with_capacity(run.len());
    for (job, outcome) in run {
        let failure = match outcome {
            Outcome::Delivered(_) => recorded
                .contains(&(job.due.id, job.claimed_until))
                .then_some(None),
            _ => {
                let (delivery, failure) = failed_attempt(&job.due, outcome, at, first_retry_ms);
                store::record_attempt(conn, scope, &delivery, job.claimed_until)?
                    .then_some(Some(failure))
            }
        };
        match failure {
            Some(failure) => failures.push(failure),
            None => log::warn!("webhook delivery {}: its claim was taken over", job.due.id),
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    // Locked: its run of failures is read as the last outcome recorded by any worker left
    // it (a success read beside another worker's uncommitted failure would otherwise change
    // nothing, and three failures apart would disable it).
    let Some(webhook) = store::find_locked(conn, scope, webhook_id)? else {
        return Ok(()); // deleted meanwhile, and its deliveries with it
    };
    let next = failures.into_iter().fold(webhook.clone(), |next, failure| {
        after_attempt(&next, failure, at)
    });
    if next != webhook && !store::save(conn, scope, &webhook, &next)? {
        return Err(ApiError::Contention);
    }
    if webhook.enabled && !next.enabled {
        super::operations::audit(conn, scope, "webhook.disabled", &next)?;
    }
    Ok(())
}

/// A delivery after an attempt that failed (`outcome` is no 2xx), and the failure's status
/// for its webhook's run (0: no answer): due again later, or failed once it is too old.
fn failed_attempt(
    due: &DeliveryRow,
    outcome: &Outcome,
    at: NaiveDateTime,
    first_retry_ms: u64,
) -> (DeliveryRow, i32) {
    let mut delivery = due.clone();
    delivery.attempts += 1;
    delivery.last_attempt = Some(at);
    let failure = match outcome {
        Outcome::Delivered(status) | Outcome::Refused(status) => {
            delivery.last_status = Some(i32::from(*status));
            delivery.last_error = Some(format!("HTTP {status}"));
            i32::from(*status)
        }
        Outcome::Unreachable(why) => {
            delivery.last_status = None;
            delivery.last_error = Some(why.chars().take(500).collect());
            0
        }
    };
    if at - delivery.created >= GIVE_UP_AFTER {
        delivery.status = "failed".into();
    } else {
        delivery.next_attempt = domain::next_attempt(at, delivery.attempts, first_retry_ms);
    }
    (delivery, failure)
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
