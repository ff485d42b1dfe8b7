//! Who did something, and in which request: every event records its [`Origin`], so the event
//! log is an audit trail ("who turned this webhook off?"). A [`Scope`](crate::db::Scope)
//! carries its origin, so whatever writes an event in a scope says who asked for it without
//! being told twice.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::text_enum::text_enum;

/// Who acted: a user (their token), a workspace key, a payer (a checkout key), a provider (a
/// signed webhook), or one of cobro's own jobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    User {
        email: String,
    },
    /// Shown as Stripe shows keys: `sk_test_…abcd`.
    Key {
        prefix: String,
    },
    Checkout,
    Provider {
        integration: String,
    },
    /// `reconciler`, `sandbox`, `webhooks`, `cli`, …
    System {
        job: String,
    },
}

text_enum! {
    /// The `type` of an actor, as `GET /events/?actor_type=` filters it.
    ActorType {
        User = "user",
        Key = "key",
        Checkout = "checkout",
        Provider = "provider",
        System = "system",
    }
}

impl Actor {
    pub fn kind(&self) -> ActorType {
        match self {
            Actor::User { .. } => ActorType::User,
            Actor::Key { .. } => ActorType::Key,
            Actor::Checkout => ActorType::Checkout,
            Actor::Provider { .. } => ActorType::Provider,
            Actor::System { .. } => ActorType::System,
        }
    }

    /// A one-line name for logs (never a secret: a key by its masked prefix).
    pub fn label(&self) -> String {
        match self {
            Actor::User { email } => format!("user:{email}"),
            Actor::Key { prefix } => format!("key:{prefix}"),
            Actor::Checkout => "checkout".to_string(),
            Actor::Provider { integration } => format!("provider:{integration}"),
            Actor::System { job } => format!("system:{job}"),
        }
    }
}

/// An actor and the request (or job run) it acted in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub actor: Actor,
    pub request_id: String,
}

impl Origin {
    pub fn new(actor: Actor, request_id: String) -> Self {
        Origin { actor, request_id }
    }

    /// One run of one of cobro's jobs, with a fresh id of its own (logged by the job).
    pub fn job(job: &str) -> Self {
        Origin {
            actor: Actor::System {
                job: job.to_string(),
            },
            request_id: crate::http::request_id::generate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_serialise_with_their_type() {
        let key = Actor::Key {
            prefix: "sk_test_…abcd".into(),
        };
        assert_eq!(
            serde_json::to_value(&key).unwrap(),
            serde_json::json!({"type": "key", "prefix": "sk_test_…abcd"})
        );
        assert_eq!(
            serde_json::to_value(Actor::Checkout).unwrap(),
            serde_json::json!({"type": "checkout"})
        );
        for actor in [
            Actor::User {
                email: "a@b.c".into(),
            },
            key,
            Actor::Checkout,
            Actor::Provider {
                integration: "int_1".into(),
            },
            Actor::System { job: "cli".into() },
        ] {
            let value = serde_json::to_value(&actor).unwrap();
            assert_eq!(value["type"], actor.kind().as_str());
            assert_eq!(actor.kind().as_str().parse::<ActorType>(), Ok(actor.kind()));
            assert_eq!(serde_json::from_value::<Actor>(value).unwrap(), actor);
        }
    }
}
