//! Integration flows: each write in one transaction with its event (whose data shows the
//! credentials masked, as the API does).

use super::domain::{self, Integration, IntegrationInput, IntegrationView};
use super::store;
use crate::accounts::new_id;
use crate::db::{now, write_tx, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store as events;
use crate::gateways::{self, Account};
use crate::http::pagination::{Page, PageRequest};
use crate::secrets::Keyring;

fn record(
    conn: &mut DbConnection,
    scope: &Scope,
    event_type: &str,
    view: &IntegrationView,
) -> Result<(), ApiError> {
    events::record(conn, scope, event_type, "integration", &view.id, view)
}

pub fn create(
    conn: &mut DbConnection,
    scope: &Scope,
    input: &IntegrationInput,
    keyring: &Keyring,
    base_url: &str,
) -> Result<IntegrationView, ApiError> {
    let integration =
        domain::new_integration(input, new_id("int_"), scope.test_mode(), keyring, now())?;
    write_tx(conn, |conn| {
        let view = store::insert(conn, scope, &integration)?.view(base_url);
        record(conn, scope, "integration.created", &view)?;
        Ok(view)
    })
}

/// An integration, or a built-in one by its gateway's name.
pub fn retrieve(
    conn: &mut DbConnection,
    scope: &Scope,
    id: &str,
    base_url: &str,
) -> Result<IntegrationView, ApiError> {
    if let Some(builtin) = domain::builtins(scope.test_mode())
        .into_iter()
        .find(|b| b.id == id)
    {
        return Ok(builtin);
    }
    Ok(store::find(conn, scope, id)?
        .ok_or(ApiError::NotFound)?
        .view(base_url))
}

/// The built-in integrations first, then the workspace's own, oldest first.
pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    page: &PageRequest,
    base_url: &str,
) -> Result<Page<IntegrationView>, ApiError> {
    let builtins = domain::builtins(scope.test_mode());
    let shown = builtins.len() as i64;
    let count = shown + store::count(conn, scope)?;
    page.fetch(count, |offset, limit| {
        let mut views: Vec<IntegrationView> = builtins
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        let own_offset = (offset - shown).max(0);
        let own_limit = limit - views.len() as i64;
        if own_limit > 0 {
            let own = store::list(conn, scope, own_offset, own_limit)?;
            views.extend(own.iter().map(|i| i.view(base_url)));
        }
        Ok(views)
    })
}

pub fn update(
    conn: &mut DbConnection,
    scope: &Scope,
    id: &str,
    input: &IntegrationInput,
    keyring: &Keyring,
    base_url: &str,
) -> Result<IntegrationView, ApiError> {
    refuse_builtin(scope, id)?;
    write_tx(conn, |conn| {
        let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let next = domain::apply(&current, input, keyring, now())?;
        if next == current {
            return Ok(current.view(base_url));
        }
        if !store::save(conn, scope, &current, &next)? {
            return Err(ApiError::Contention);
        }
        let view = next.view(base_url);
        record(conn, scope, "integration.updated", &view)?;
        Ok(view)
    })
}

/// Refused while a charge through it is in flight: its answer needs the credentials.
pub fn delete(
    conn: &mut DbConnection,
    scope: &Scope,
    id: &str,
    base_url: &str,
) -> Result<(), ApiError> {
    refuse_builtin(scope, id)?;
    write_tx(conn, |conn| {
        let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        if crate::payments::store::integration_has_charges_in_flight(conn, scope, id)? {
            return Err(ApiError::BadRequest(
                "A charge through this integration is in flight: it cannot be deleted until the charge ends (disable it meanwhile).".into(),
            ));
        }
        if !store::delete(conn, scope, &current)? {
            return Err(ApiError::Contention);
        }
        record(conn, scope, "integration.deleted", &current.view(base_url))
    })
}

fn refuse_builtin(scope: &Scope, id: &str) -> Result<(), ApiError> {
    if domain::builtins(scope.test_mode())
        .iter()
        .any(|b| b.id == id)
    {
        return Err(ApiError::BadRequest(
            "A built-in integration cannot be changed or deleted.".into(),
        ));
    }
    Ok(())
}

/// The account a source of `gateway` charges through: the integration named, or, when none
/// is named, the mode's one enabled integration of that gateway. Built-in gateways need
/// none. The error names `field`.
pub fn account_for(
    conn: &mut DbConnection,
    scope: &Scope,
    gateway: &str,
    named: Option<&str>,
    keyring: &Keyring,
    field: &str,
) -> Result<Account, ApiError> {
    let builtin = gateways::find(gateway).is_none_or(|g| g.builtin());
    if builtin && named.is_none_or(|n| n == gateway) {
        return Ok(Account::default());
    }
    let integration = match named {
        Some(id) => store::find(conn, scope, id)?
            .filter(|i| i.gateway == gateway)
            .ok_or_else(|| ApiError::field(field, crate::http::fields::invalid_pk(id)))?,
        None => {
            let mut enabled = store::enabled_of(conn, scope, gateway)?;
            match enabled.len() {
                1 => enabled.remove(0),
                0 => {
                    return Err(ApiError::field(
                        field,
                        format!("This workspace has no enabled {gateway} integration in this mode: connect one at /integrations/."),
                    ))
                }
                _ => {
                    return Err(ApiError::field(
                        field,
                        format!("This workspace has several {gateway} integrations in this mode: name one."),
                    ))
                }
            }
        }
    };
    opened(&integration, keyring, field)
}

/// An integration's account, for a source already bound to it (its charges, captures,
/// cancels and reconciling): found even when disabled since, so that what is in flight
/// can still end.
pub fn account_of(
    conn: &mut DbConnection,
    scope: &Scope,
    id: &str,
    keyring: &Keyring,
) -> Result<Account, ApiError> {
    let integration = store::find(conn, scope, id)?
        .ok_or_else(|| ApiError::internal(format!("integration {id} vanished")))?;
    Ok(Account {
        credentials: integration.open(keyring)?,
        integration: Some(integration.id),
    })
}

fn opened(integration: &Integration, keyring: &Keyring, field: &str) -> Result<Account, ApiError> {
    if !integration.enabled {
        return Err(ApiError::field(
            field,
            format!("The integration {} is disabled.", integration.id),
        ));
    }
    Ok(Account {
        credentials: integration.open(keyring)?,
        integration: Some(integration.id.clone()),
    })
}

/// Seals every integration's credentials under the keyring's current key (`cobro secrets
/// rotate`): (sealed anew, already current).
pub fn reseal_all(conn: &mut DbConnection, keyring: &Keyring) -> Result<(usize, usize), ApiError> {
    let current = keyring
        .current()
        .ok_or_else(|| ApiError::BadRequest("no secret key to seal with".into()))?
        .to_string();
    let (mut resealed, mut already) = (0, 0);
    for (id, sealed) in store::all_sealed(conn)? {
        if sealed.key_id == current {
            already += 1;
            continue;
        }
        let context = Integration::sealed_for(&id);
        let plain = keyring.open(&context, &sealed)?;
        let fresh = keyring.seal(&context, &plain)?;
        // Changed meanwhile: a PATCH sealed it, under the current key.
        match write_tx(conn, |conn| store::reseal(conn, &id, &sealed, &fresh))? {
            true => resealed += 1,
            false => already += 1,
        }
    }
    Ok((resealed, already))
}
