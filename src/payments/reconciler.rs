//! The reconciler: no charge stays in flight forever. Every second it claims the charges
//! through a provider that are still in flight (no answer came: a timeout, a crash between
//! the call and its record, a lost webhook; or waiting for the payer) and have not changed
//! for `COBRO_RECONCILE_AFTER_SECONDS`, asks the provider what became of each, and applies
//! the answer, in the shape of every provider call (`charges`): claim in a transaction, ask
//! with none open, apply in a second. A charge whose payer never authorized it is given up
//! at the provider after `COBRO_ACTION_TIMEOUT_SECONDS`.
//!
//! The claim is a guarded write with a deadline, as a webhook delivery's: any number of
//! servers and workers on one database run reconcilers, and never two about one charge at
//! once; a claim whose holder died lapses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::charges;
use super::store;
use crate::db::{now, write_tx, Db, Scope};
use crate::error::ApiError;
use crate::gateways::Unknown;
use crate::secrets::Keyring;

/// How long a claim holds: two of the longest provider calls.
const CLAIM: Duration = Duration::from_secs(2 * crate::gateways::CALL_LIMIT.as_secs());
/// Charges claimed at a time.
const BATCH: i64 = 20;

#[derive(Clone, Debug)]
pub struct ReconcilerSettings {
    /// Ask about a charge once it has not changed for this long.
    pub after: Duration,
    /// Give up a charge waiting for its payer after this long.
    pub action_timeout: Duration,
    /// The base of the links written into sources (the payer's redirect).
    pub base_url: String,
}

pub struct Reconciler {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Reconciler {
    /// Stops once the charge in hand is settled.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn spawn(db: Db, keyring: Arc<Keyring>, settings: ReconcilerSettings) -> Reconciler {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = thread::Builder::new()
        .name("reconciler".into())
        .spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match run_once(&db, &keyring, &settings, &stopping) {
                    Ok(n) if n > 0 => log::info!("reconciler: settled {n} charges in flight"),
                    Ok(_) => {}
                    Err(err) => err.log_for("reconciler"),
                }
                thread::sleep(Duration::from_secs(1));
            }
        })
        .expect("start the reconciler");
    Reconciler {
        stop,
        thread: Some(thread),
    }
}

/// One round: claims what is due and asks about each. Returns how many were settled.
pub fn run_once(
    db: &Db,
    keyring: &Arc<Keyring>,
    settings: &ReconcilerSettings,
    stop: &AtomicBool,
) -> Result<usize, ApiError> {
    let after = chrono::Duration::from_std(settings.after).unwrap_or_default();
    let claim = chrono::Duration::from_std(CLAIM).unwrap_or_default();
    let mut settled = 0;
    // One claim at a time, taken just before asking, so that none lapses while it waits.
    for _ in 0..BATCH {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (at, until) = (now(), now() + claim);
        let mut claimed = db.write_here(move |conn| {
            write_tx(conn, |conn| {
                store::claim_unsettled(conn, at - after, at, until, 1)
            })
        })?;
        let Some((scope, attempt)) = claimed.pop() else {
            break;
        };
        match reconcile(db, keyring, settings, &scope, attempt) {
            Ok(true) => settled += 1,
            Ok(false) => {}
            Err(err) => err.log_for(&format!("reconciling attempt {attempt}")),
        }
        db.write_here(move |conn| store::release_claim(conn, &scope, attempt, until, now()))?;
    }
    Ok(settled)
}

/// Asks about one claimed attempt and applies the answer: true when it moved.
fn reconcile(
    db: &Db,
    keyring: &Arc<Keyring>,
    settings: &ReconcilerSettings,
    scope: &Scope,
    attempt: i64,
) -> Result<bool, ApiError> {
    let timeout = chrono::Duration::from_std(settings.action_timeout).unwrap_or_default();
    let (reading, ring) = (scope.clone(), keyring.clone());
    let pending =
        db.run_here(move |conn| charges::begin_reconcile(conn, &reading, attempt, timeout, &ring))?;
    let Some(pending) = pending else {
        return Ok(false);
    };
    // No transaction open while the provider answers.
    let outcome = charges::call(&pending);
    if let Err(Unknown(cause)) = &outcome {
        log::debug!("reconciling attempt {attempt}: {cause}");
        return Ok(false);
    }
    let (scope, base) = (scope.clone(), settings.base_url.clone());
    let before = pending.attempt.status;
    let after = db.write_here(move |conn| {
        charges::finish(conn, &scope, &pending, &outcome, &base)?;
        store::attempt(conn, &scope, attempt)
    })?;
    Ok(after.is_some_and(|a| a.status != before))
}
