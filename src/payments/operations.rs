//! Payment flows, each in the same shape: read, decide (domain), write with its event in one
//! transaction. A write is guarded by the version it read; if another request changed the
//! payment meanwhile, the flow reads again and decides again, so the loser gets the error
//! that the payment's new state implies.

use super::domain::{self, Change, Payment, PaymentInput, PaymentView};
use super::filter::PaymentFilter;
use super::status::PaymentStatus;
use super::store;
use crate::accounts::new_id;
use crate::db::{now, write_tx, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store as events;
use crate::http::pagination::{Page, PageRequest};

/// How many times a flow decides again after losing a race before giving up with a 503.
const MAX_ATTEMPTS: usize = 8;

fn record(
    conn: &mut DbConnection,
    scope: &Scope,
    event_type: &str,
    view: &PaymentView,
) -> Result<(), ApiError> {
    events::record(
        conn,
        scope,
        event_type,
        "payment",
        &view.id.to_string(),
        view,
    )
}

pub fn create(
    conn: &mut DbConnection,
    scope: &Scope,
    input: PaymentInput,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    let payment = domain::new_payment(input, scope.test_mode(), new_id(""), now())?;
    write_tx(conn, |conn| {
        let saved = store::insert(conn, scope, &payment)?;
        let view = saved.view(base_url);
        record(conn, scope, "payment.created", &view)?;
        // A payment created already processing or paid also announces that status, so that
        // a listener for `payment.succeeded` hears of every success, however it came.
        if saved.status != PaymentStatus::RequiresPaymentMethod {
            record(conn, scope, &format!("payment.{}", saved.status), &view)?;
        }
        Ok(view)
    })
}

pub fn retrieve(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    let payment = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
    Ok(payment.view(base_url))
}

pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &PaymentFilter,
    page: &PageRequest,
    base_url: &str,
) -> Result<Page<PaymentView>, ApiError> {
    let count = store::count(conn, scope, filter)?;
    page.fetch(count, |offset, limit| {
        let payments = store::list(conn, scope, filter, offset, limit)?;
        Ok(payments.iter().map(|p| p.view(base_url)).collect())
    })
}

/// PUT (`merge_metadata` false) and PATCH (true).
pub fn update(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    input: &PaymentInput,
    merge_metadata: bool,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    change(conn, scope, id, base_url, |current| {
        domain::update(current, input, merge_metadata, now())
    })
}

pub fn cancel(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    change(conn, scope, id, base_url, |current| {
        domain::cancel(current, now()).map(Some)
    })
}

pub fn delete(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    base_url: &str,
) -> Result<(), ApiError> {
    for _ in 0..MAX_ATTEMPTS {
        let deleted = write_tx(conn, |conn| -> Result<bool, ApiError> {
            let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
            domain::check_delete(&current)?;
            if !store::delete(conn, scope, id, current.version)? {
                return Ok(false);
            }
            record(conn, scope, "payment.deleted", &current.view(base_url))?;
            Ok(true)
        })?;
        if deleted {
            return Ok(());
        }
    }
    Err(ApiError::Unavailable(format!(
        "payment {id} kept changing while being deleted"
    )))
}

/// Read, decide with `decide` (None: nothing to change), guarded write, event.
fn change(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    base_url: &str,
    decide: impl Fn(&Payment) -> Result<Option<Change>, ApiError>,
) -> Result<PaymentView, ApiError> {
    for _ in 0..MAX_ATTEMPTS {
        let outcome = write_tx(conn, |conn| -> Result<Option<PaymentView>, ApiError> {
            let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
            let Some(change) = decide(&current)? else {
                return Ok(Some(current.view(base_url)));
            };
            if !store::save(conn, scope, &current, &change.payment)? {
                return Ok(None);
            }
            let view = change.payment.view(base_url);
            record(conn, scope, &change.event_type, &view)?;
            Ok(Some(view))
        })?;
        if let Some(view) = outcome {
            return Ok(view);
        }
    }
    Err(ApiError::Unavailable(format!(
        "payment {id} kept changing while being updated"
    )))
}
