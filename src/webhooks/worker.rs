//! The delivery worker: sends what is due, records each attempt, backs off, and disables a
//! webhook that keeps failing the same way. `cobro serve` runs one; `cobro worker` runs one
//! alone. Any number may run on one database: a delivery is claimed by a guarded write
//! before it is sent, so no two workers send it at the same time.

use chrono::Duration;

use super::delivery::{self, Outcome};
use super::domain::{self, Webhook, DISABLE_AFTER, GIVE_UP_AFTER};
use super::store::{self, DeliveryRow};
use crate::db::{now, write_tx, Db, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store as events;

/// How long a claim keeps other workers off a delivery (a send takes at most 6 s).
const CLAIM: Duration = Duration::seconds(60);
const BATCH: i64 = 50;

/// What a worker needs to know (from `Settings`).
#[derive(Clone, Copy, Debug)]
pub struct WorkerSettings {
    pub allow_private: bool,
    pub first_retry_ms: u64,
}

impl WorkerSettings {
    pub fn from(settings: &crate::config::Settings) -> Self {
        WorkerSettings {
            allow_private: settings.webhook_allow_private,
            first_retry_ms: settings.webhook_first_retry_ms,
        }
    }
}

/// Runs the worker on a thread of its own, for ever.
pub fn spawn(db: Db, settings: WorkerSettings) {
    std::thread::Builder::new()
        .name("webhooks".into())
        .spawn(move || run(&db, settings))
        .expect("start the webhook worker");
}

/// The worker's loop: a batch, then a short sleep when there was nothing to do.
pub fn run(db: &Db, settings: WorkerSettings) {
    loop {
        let sent = db
            .pool
            .get()
            .map_err(ApiError::internal)
            .and_then(|mut conn| run_once(&mut conn, settings));
        match sent {
            Ok(0) => std::thread::sleep(std::time::Duration::from_millis(200)),
            Ok(_) => {}
            Err(err) => {
                log::warn!("webhook worker: {err}");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// Sends the deliveries due now (one batch); returns how many were attempted.
pub fn run_once(conn: &mut DbConnection, settings: WorkerSettings) -> Result<usize, ApiError> {
    let at = now();
    let mut attempted = 0;
    for due in store::due(conn, at, BATCH)? {
        let scope = Scope::new(due.workspace_id.clone(), due.test_mode);
        if store::waits_for_older(conn, &scope, &due)? || !store::claim(conn, &due, at, at + CLAIM)?
        {
            continue;
        }
        let Some(webhook) = store::find(conn, &scope, due.webhook_id)? else {
            continue; // deleted meanwhile, and its deliveries with it
        };
        let outcome = match events::find(conn, &scope, due.event_id)? {
            Some(event) => delivery::send(
                &webhook.url,
                &webhook.secret,
                &event,
                settings.allow_private,
                chrono::Utc::now().timestamp(),
            ),
            None => Outcome::Unreachable("the event no longer exists".into()),
        };
        attempted += 1;
        write_tx(conn, |conn| {
            record(conn, &scope, &due, &outcome, settings.first_retry_ms)
        })?;
    }
    Ok(attempted)
}

/// Writes an attempt's outcome to the delivery and to its webhook's run of failures.
fn record(
    conn: &mut DbConnection,
    scope: &Scope,
    due: &DeliveryRow,
    outcome: &Outcome,
    first_retry_ms: u64,
) -> Result<(), ApiError> {
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
    store::record_attempt(conn, scope, &delivery)?;

    let Some(webhook) = store::find(conn, scope, due.webhook_id)? else {
        return Ok(());
    };
    let next = after_attempt(&webhook, failure, at);
    if next != webhook && !store::save(conn, scope, &webhook, &next)? {
        return Err(ApiError::Contention);
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
