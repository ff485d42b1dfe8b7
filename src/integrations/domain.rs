//! Integrations as values: a workspace's account at a provider, its credentials sealed, and
//! the built-in ones (the sandbox, bank transfer) that need no account.

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, FieldErrors};
use crate::gateways;
use crate::http::fields::{Given, Presence, Reader};
use crate::payments::domain::timestamp;
use crate::secrets::{Keyring, Sealed};

pub const MAX_NAME: usize = 100;

#[derive(Clone, Debug, PartialEq)]
pub struct Integration {
    /// `int_…`
    pub id: String,
    pub test_mode: bool,
    pub gateway: String,
    pub name: String,
    pub enabled: bool,
    /// The credentials' JSON, sealed for this integration.
    pub credentials: Sealed,
    /// The credentials as they may be shown: each masked (`sk_test_…4242`).
    pub shown: Map<String, Value>,
    pub version: i64,
    pub created: NaiveDateTime,
    pub updated: NaiveDateTime,
}

/// An integration as the API shows it: never a credential in full.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = Integration)]
pub struct IntegrationView {
    /// `int_…`, or a built-in gateway's name (`sandbox`, `bank_transfer`).
    pub id: String,
    pub gateway: String,
    pub name: String,
    pub enabled: bool,
    /// Built in: no account of the workspace's own, nothing to configure.
    pub builtin: bool,
    /// Each credential masked (`"secret_key": "sk_test_…4242"`); never shown in full.
    #[schema(value_type = Object)]
    pub credentials: Map<String, Value>,
    /// Where the provider sends its events (give it to Stripe); none for built-in ones.
    pub webhook_url: Option<String>,
    pub test_mode: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated: Option<String>,
}

impl Integration {
    pub fn view(&self, base_url: &str) -> IntegrationView {
        IntegrationView {
            id: self.id.clone(),
            gateway: self.gateway.clone(),
            name: self.name.clone(),
            enabled: self.enabled,
            builtin: false,
            credentials: self.shown.clone(),
            webhook_url: Some(format!("{base_url}/integrations/{}/webhook/", self.id)),
            test_mode: self.test_mode,
            created: Some(timestamp(self.created)),
            updated: Some(timestamp(self.updated)),
        }
    }

    /// What its credentials are sealed for: this integration, no other row.
    pub fn sealed_for(id: &str) -> String {
        format!("integration {id}")
    }

    /// Its credentials, opened.
    pub fn open(&self, keyring: &Keyring) -> Result<Map<String, Value>, ApiError> {
        let text = keyring.open(&Integration::sealed_for(&self.id), &self.credentials)?;
        serde_json::from_str(&text).map_err(ApiError::internal)
    }
}

/// The built-in integrations of a mode: the sandbox in test mode, bank transfer in both.
pub fn builtins(test_mode: bool) -> Vec<IntegrationView> {
    let builtin = |gateway: &str, name: &str| IntegrationView {
        id: gateway.to_string(),
        gateway: gateway.to_string(),
        name: name.to_string(),
        enabled: true,
        builtin: true,
        credentials: Map::new(),
        webhook_url: None,
        test_mode,
        created: None,
        updated: None,
    };
    let mut all = Vec::new();
    if test_mode {
        all.push(builtin("sandbox", "Sandbox (test cards)"));
    }
    all.push(builtin("bank_transfer", "Bank transfer"));
    all
}

/// What a create (gateway, name and credentials required) or a PATCH (any) asks for.
#[derive(Debug, Default)]
pub struct IntegrationInput {
    pub gateway: Option<String>,
    pub name: Option<String>,
    pub enabled: Option<bool>,
    /// Given credentials replace those of the same name; others stay.
    pub credentials: Option<Map<String, Value>>,
}

impl IntegrationInput {
    pub fn parse(body: &Map<String, Value>, presence: Presence) -> Result<Self, ApiError> {
        let mut r = Reader::new(body, presence);
        let gateway = match presence {
            Presence::Full => r.string("gateway", true, false, 64).sent().flatten(),
            // A PATCH does not change what an integration is.
            Presence::Partial => None,
        };
        let name = match r.string("name", true, false, MAX_NAME) {
            Given::Value(name) => Some(name),
            _ => None,
        };
        let enabled = r.boolean("enabled");
        r.require("credentials");
        let credentials = match r.raw("credentials") {
            None => None,
            Some(Value::Object(given)) => Some(given.clone()),
            Some(other) => {
                let kind = crate::http::body::python_type(other);
                r.errors.add(
                    "credentials",
                    format!("Expected a dictionary of items but got type \"{kind}\"."),
                );
                None
            }
        };
        r.finish().into_result()?;
        Ok(IntegrationInput {
            gateway,
            name,
            enabled,
            credentials,
        })
    }
}

/// A new integration, its credentials checked by its gateway and sealed.
pub fn new_integration(
    input: &IntegrationInput,
    id: String,
    test_mode: bool,
    keyring: &Keyring,
    now: NaiveDateTime,
) -> Result<Integration, ApiError> {
    let mut errors = FieldErrors::new();
    let gateway = input.gateway.as_deref().and_then(|name| {
        match gateways::find(name).filter(|g| !g.builtin()) {
            Some(gateway) => Some(gateway),
            None if gateways::find(name).is_some() => {
                errors.add(
                    "gateway",
                    format!("The {name} gateway is built in: it takes no integration."),
                );
                None
            }
            None => {
                errors.add("gateway", format!("\"{name}\" is not a valid choice."));
                None
            }
        }
    });
    let given = input.credentials.clone().unwrap_or_default();
    let credentials = match gateway {
        Some(gateway) => {
            let kept = gateway.check_credentials(&given, test_mode, &mut errors);
            for required in gateways::stripe::required_credentials() {
                if !kept.contains_key(*required) && !given.contains_key(*required) {
                    errors.add(
                        "credentials",
                        format!("{required}: this field is required."),
                    );
                }
            }
            kept
        }
        None => Map::new(),
    };
    errors.into_result()?;
    let (Some(gateway), Some(name)) = (gateway, input.name.clone()) else {
        return Err(ApiError::internal(
            "a valid integration without gateway or name",
        ));
    };
    let credentials_json = Value::Object(credentials.clone()).to_string();
    Ok(Integration {
        credentials: keyring.seal(&Integration::sealed_for(&id), &credentials_json)?,
        shown: masked(&credentials),
        id,
        test_mode,
        gateway: gateway.name().to_string(),
        name,
        enabled: input.enabled.unwrap_or(true),
        version: 1,
        created: now,
        updated: now,
    })
}

/// A PATCH: a new name, `enabled`, or credentials (those given replace their namesakes,
/// checked again and sealed anew).
pub fn apply(
    current: &Integration,
    input: &IntegrationInput,
    keyring: &Keyring,
    now: NaiveDateTime,
) -> Result<Integration, ApiError> {
    let mut next = current.clone();
    if let Some(name) = &input.name {
        next.name = name.clone();
    }
    if let Some(enabled) = input.enabled {
        next.enabled = enabled;
    }
    if let Some(given) = &input.credentials {
        let gateway = gateways::find(&current.gateway)
            .ok_or_else(|| ApiError::internal(format!("unknown gateway {}", current.gateway)))?;
        let mut errors = FieldErrors::new();
        let kept = gateway.check_credentials(given, current.test_mode, &mut errors);
        errors.into_result()?;
        let mut credentials = current.open(keyring)?;
        credentials.extend(kept);
        let json = Value::Object(credentials.clone()).to_string();
        next.credentials = keyring.seal(&Integration::sealed_for(&current.id), &json)?;
        next.shown = masked(&credentials);
    }
    if next != *current {
        next.updated = now;
    }
    Ok(next)
}

/// The credentials as shown: each secret masked; a publishable key, public, in full.
fn masked(credentials: &Map<String, Value>) -> Map<String, Value> {
    credentials
        .iter()
        .map(|(name, value)| {
            let text = value.as_str().unwrap_or("");
            let shown = if name == gateways::stripe::PUBLISHABLE_KEY {
                text.to_string()
            } else {
                mask(text)
            };
            (name.clone(), Value::String(shown))
        })
        .collect()
}

/// The kinds of secret whose prefix says what they are (and nothing of the secret).
const KINDS: &[&str] = &["sk_test_", "sk_live_", "rk_test_", "rk_live_", "whsec_"];

/// A secret as it may be shown: its kind (a known prefix, else up to its first `_`) and its
/// last four characters, `sk_test_…4242`; a short one, its kind only.
pub fn mask(secret: &str) -> String {
    let prefix_end = KINDS
        .iter()
        .find(|kind| secret.starts_with(*kind))
        .map(|kind| kind.len())
        .or_else(|| secret.find('_').map(|i| i + 1))
        .unwrap_or(0);
    let (kind, rest) = secret.split_at(prefix_end);
    let chars: Vec<char> = rest.chars().collect();
    if chars.len() < 12 {
        return format!("{kind}…");
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{kind}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_show_their_kind_and_last_four_only() {
        assert_eq!(mask("sk_test_51HqLyjWDarjtT1zdp7dc4242"), "sk_test_…4242");
        assert_eq!(mask("rk_live_abcdefgh1234"), "rk_live_…1234");
        assert_eq!(mask("whsec_0123456789abcdef"), "whsec_…cdef");
        assert_eq!(mask("sk_test_1234"), "sk_test_…");
        assert!(!mask("sk_live_verysecretvalue9999").contains("verysecret"));
        // A secret with `_` in it shows no part of itself but its end.
        assert_eq!(mask("whsec_abc_defghijklmnopqrs"), "whsec_…pqrs");
    }
}
