//! Source flows: each write in one transaction with its event.

use super::domain::{self, SourceRequest, SourceView};
use super::store::{self, SourceFilter};
use crate::accounts::payer::{self, Actor};
use crate::db::{now, write_tx, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store as events;
use crate::gateways::{self, Account, PreparedSource, Refusal};
use crate::http::pagination::{Page, PageRequest};
use crate::secrets::Keyring;

/// A new source, in three steps as a charge is (a provider's gateway is asked about the
/// source's data, with no transaction open): [`begin_create`] reads the body and opens the
/// account it charges through, [`prepare`] asks the gateway, [`finish_create`] stores it.
/// A payer's (made with a checkout key) is bound to that payment, and made only while the
/// payment's checkout is open and it can still be paid.
#[derive(Clone, Debug)]
pub struct Creating {
    request: SourceRequest,
    account: Account,
    actor: Actor,
}

pub fn begin_create(
    conn: &mut DbConnection,
    scope: &Scope,
    body: &serde_json::Map<String, serde_json::Value>,
    actor: Actor,
    keyring: &Keyring,
) -> Result<Creating, ApiError> {
    let request = domain::read_source(body, scope.test_mode(), now(), actor.checkout_payment())?;
    if let Some(payment) = actor.checkout_payment() {
        payer::check_payable(&payer::still_open(conn, scope, payment)?)?;
    }
    let account = crate::integrations::operations::account_for(
        conn,
        scope,
        &request.source.gateway,
        request.integration.as_deref(),
        keyring,
        "integration",
    )?;
    Ok(Creating {
        request,
        account,
        actor,
    })
}

/// A source's check at its provider only reads: it may run again.
impl crate::idempotency::Staged for Creating {
    fn moves_money(&self) -> bool {
        false
    }
}

/// The gateway's word on the new source's data (no transaction open).
pub fn prepare(creating: &Creating) -> Result<PreparedSource, Refusal> {
    let source = &creating.request.source;
    match gateways::find(&source.gateway) {
        Some(gateway) => gateway.prepare(&creating.account, &source.gateway_data),
        None => Err(Refusal::Invalid(format!("no gateway {}", source.gateway))),
    }
}

/// The source accepted by its gateway, stored with its event.
pub fn finish_create(
    conn: &mut DbConnection,
    scope: &Scope,
    creating: &Creating,
    prepared: &Result<PreparedSource, Refusal>,
) -> Result<SourceView, ApiError> {
    let prepared = match prepared {
        Ok(prepared) => prepared.clone(),
        // A payer is told that the card did not do, not what the provider said of it (its
        // words may be about the merchant's account).
        Err(Refusal::Invalid(_)) if creating.actor != Actor::Merchant => {
            return Err(ApiError::field(
                "gateway_data",
                "This card cannot be used here; try another card or another way to pay.",
            ))
        }
        Err(Refusal::Invalid(message)) => return Err(ApiError::field("gateway_data", message)),
        Err(Refusal::NoAnswer(cause)) => return Err(ApiError::Provider(cause.clone())),
    };
    let integration = creating.account.integration.clone();
    let source = creating.request.clone().prepared(prepared, integration);
    write_tx(conn, |conn| {
        if let Some(payment) = creating.actor.checkout_payment() {
            payer::check_payable(&payer::still_open(conn, scope, payment)?)?;
        }
        let view = store::insert(conn, scope, &source)?.view();
        events::record(
            conn,
            scope,
            "source.created",
            "source",
            &view.id.to_string(),
            &view,
        )?;
        Ok(view)
    })
}

/// All three steps at once, for a built-in gateway, which answers in-process (the checkout
/// page's form).
pub fn create_builtin(
    conn: &mut DbConnection,
    scope: &Scope,
    body: &serde_json::Map<String, serde_json::Value>,
    actor: Actor,
    keyring: &Keyring,
) -> Result<SourceView, ApiError> {
    let creating = begin_create(conn, scope, body, actor, keyring)?;
    if !gateways::find(&creating.request.source.gateway).is_some_and(|g| g.builtin()) {
        return Err(ApiError::internal(
            "a provider's source made in a transaction",
        ));
    }
    let prepared = prepare(&creating);
    finish_create(conn, scope, &creating, &prepared)
}

pub fn retrieve(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<SourceView, ApiError> {
    Ok(store::find(conn, scope, id)?
        .ok_or(ApiError::NotFound)?
        .view())
}

pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &SourceFilter,
    page: &PageRequest,
) -> Result<Page<SourceView>, ApiError> {
    let count = store::count(conn, scope, filter)?;
    page.fetch(count, |offset, limit| {
        Ok(store::list(conn, scope, filter, offset, limit)?
            .iter()
            .map(|s| s.view())
            .collect())
    })
}

pub fn delete(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<(), ApiError> {
    write_tx(conn, |conn| {
        let source = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        domain::check_delete(&source)?;
        if crate::payments::store::source_was_charged(conn, scope, id)? {
            return Err(ApiError::BadRequest(
                "A source that was charged cannot be deleted: it is part of a payment's history."
                    .into(),
            ));
        }
        if !store::delete(conn, scope, &source)? {
            return Err(ApiError::Contention);
        }
        events::record(
            conn,
            scope,
            "source.deleted",
            "source",
            &id.to_string(),
            &source.view(),
        )
    })
}
