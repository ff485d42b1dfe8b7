//! The reconciler: no charge and no refund stays in flight forever. Every second it claims
//! the charges and refunds through a provider that are still in flight (no answer came: a
//! timeout, a crash between the call and its record, a lost webhook; or waiting for the
//! payer) and have not changed for `COBRO_RECONCILE_AFTER_SECONDS` (or that a provider's
//! event asked about), asks the provider what became of each, and applies the answer, in
//! the shape of every provider call (`charges`): claim in a transaction, ask with none
//! open, apply in a second. A charge whose payer never authorized it is given up at the
//! provider after `COBRO_ACTION_TIMEOUT_SECONDS`.
//!
//! The claim is a guarded write with a deadline, as a webhook delivery's: any number of
//! servers and workers on one database run reconcilers, and never two about one charge at
//! once; a claim whose holder died lapses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use chrono::NaiveDateTime;

use super::charges;
use super::store;
use crate::audit::Origin;
use crate::db::{now, write_tx, Db, DbConnection, Scope};
use crate::error::ApiError;
use crate::gateways::Unknown;
use crate::refunds::{operations as refunds, store as refunds_store};
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
                    Ok(n) if n > 0 => {
                        log::info!("reconciler: settled {n} charges and refunds in flight")
                    }
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

/// Claims what is due, for a while: (changed before, now, claimed until, how many).
type Claim = fn(
    &mut DbConnection,
    &Arc<Origin>,
    NaiveDateTime,
    NaiveDateTime,
    NaiveDateTime,
    i64,
) -> Result<Vec<(Scope, i64)>, ApiError>;
/// Lets a claim go: (scope, id, claimed until, asked at).
type Release =
    fn(&mut DbConnection, &Scope, i64, NaiveDateTime, NaiveDateTime) -> Result<(), ApiError>;

/// One round: claims what is due and asks about each, charges then refunds. Returns how
/// many were settled.
pub fn run_once(
    db: &Db,
    keyring: &Arc<Keyring>,
    settings: &ReconcilerSettings,
    stop: &AtomicBool,
) -> Result<usize, ApiError> {
    // One run, one id: the events it writes and its log lines carry it.
    let origin = Arc::new(Origin::job("reconciler"));
    let charges = drain(
        db,
        &origin,
        settings,
        stop,
        store::claim_unsettled,
        store::release_claim,
        |scope, attempt| reconcile(db, keyring, settings, scope, attempt),
    )?;
    let refunds = drain(
        db,
        &origin,
        settings,
        stop,
        refunds_store::claim_unsettled,
        refunds_store::release_claim,
        |scope, part| reconcile_refund(db, keyring, settings, scope, part),
    )?;
    crate::metrics::reconciler_run(charges + refunds);
    Ok(charges + refunds)
}

/// Up to [`BATCH`] claims, one at a time, each taken just before asking, so that none
/// lapses while it waits.
fn drain(
    db: &Db,
    origin: &Arc<Origin>,
    settings: &ReconcilerSettings,
    stop: &AtomicBool,
    claim: Claim,
    release: Release,
    mut settle: impl FnMut(&Scope, i64) -> Result<bool, ApiError>,
) -> Result<usize, ApiError> {
    let after = chrono::Duration::from_std(settings.after).unwrap_or_default();
    let hold = chrono::Duration::from_std(CLAIM).unwrap_or_default();
    let mut settled = 0;
    for _ in 0..BATCH {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (at, until, origin) = (now(), now() + hold, origin.clone());
        let mut claimed = db.write_here(move |conn| {
            write_tx(conn, |conn| claim(conn, &origin, at - after, at, until, 1))
        })?;
        let Some((scope, id)) = claimed.pop() else {
            break;
        };
        match settle(&scope, id) {
            Ok(true) => settled += 1,
            Ok(false) => {}
            Err(err) => err.log_for(&format!("reconciling {id}")),
        }
        db.write_here(move |conn| release(conn, &scope, id, until, now()))?;
    }
    Ok(settled)
}

/// Asks about one claimed refund part and applies the answer: true when it moved.
fn reconcile_refund(
    db: &Db,
    keyring: &Arc<Keyring>,
    settings: &ReconcilerSettings,
    scope: &Scope,
    part: i64,
) -> Result<bool, ApiError> {
    let (reading, ring) = (scope.clone(), keyring.clone());
    let pending = db.run_here(move |conn| refunds::begin_reconcile(conn, &reading, part, &ring))?;
    let Some(pending) = pending else {
        return Ok(false);
    };
    let before = pending.calls.first().map(|c| c.part.status);
    // No transaction open while the provider answers.
    let outcomes = refunds::call(&pending);
    if let Some(Err(Unknown(cause))) = outcomes.first() {
        log::debug!("reconciling refund part {part}: {cause}");
        return Ok(false);
    }
    let (scope, base) = (scope.clone(), settings.base_url.clone());
    let after = db.write_here(move |conn| {
        refunds::finish(conn, &scope, &pending, &outcomes, &base)?;
        refunds_store::part(conn, &scope, part)
    })?;
    Ok(after.map(|p| p.status) != before)
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
