//! The test-mode sandbox: a gateway that behaves like a real one, driven by test tokens in
//! the source's `gateway_data.token`. No real money, no card numbers.

use chrono::Datelike;
use serde_json::{json, Map, Value};

use super::{
    reference, Account, Card, Charge, ChargeRequest, Gateway, PreparedSource, RefundRequest,
    Refunded, Refusal, Unknown,
};

pub struct Sandbox;

/// Each token, the card it shows, and what charging it does.
struct TestToken {
    token: &'static str,
    last4: &'static str,
    behaviour: Behaviour,
    /// What refunding its charge does.
    refund: Refund,
    /// What the checkout page says of it.
    label: &'static str,
}

/// The test tokens and what each does, for the checkout page: (token, label).
pub fn test_tokens() -> impl Iterator<Item = (&'static str, &'static str)> {
    TOKENS.iter().map(|t| (t.token, t.label))
}

#[derive(Clone, Copy)]
enum Behaviour {
    Succeed,
    Decline(&'static str),
    /// Goes `processing`, then settles to success or to this failure code.
    Async(Option<&'static str>),
    /// The payer authorizes (or refuses) on the sandbox's page, reached by a redirect.
    Redirect,
    /// Succeeds, after [`SLOW_ANSWER`]: a provider that takes its time.
    Slow,
    /// Succeeds, but the answer is lost on its way back (as a timeout loses it): the charge
    /// stays in flight until the sandbox is asked again, which says it succeeded.
    AnswerLost,
}

/// What a refund of a sandbox charge does.
#[derive(Clone, Copy)]
enum Refund {
    Succeed,
    /// Refused, with this failure code.
    Fail(&'static str),
    /// Stays `pending`, then succeeds when the sandbox settles it.
    Async,
}

/// How long the sandbox's slow card takes to answer.
pub const SLOW_ANSWER: std::time::Duration = std::time::Duration::from_secs(3);

const TOKENS: &[TestToken] = &[
    TestToken {
        token: "tok_visa",
        last4: "4242",
        refund: Refund::Succeed,
        behaviour: Behaviour::Succeed,
        label: "Visa ending 4242: succeeds",
    },
    TestToken {
        token: "tok_chargeDeclined",
        last4: "0002",
        refund: Refund::Succeed,
        behaviour: Behaviour::Decline("card_declined"),
        label: "Visa ending 0002: declined",
    },
    TestToken {
        token: "tok_chargeDeclinedInsufficientFunds",
        last4: "9995",
        refund: Refund::Succeed,
        behaviour: Behaviour::Decline("insufficient_funds"),
        label: "Visa ending 9995: declined for insufficient funds",
    },
    TestToken {
        token: "tok_async_success",
        last4: "3155",
        refund: Refund::Succeed,
        behaviour: Behaviour::Async(None),
        label: "Visa ending 3155: processing, then succeeds",
    },
    TestToken {
        token: "tok_async_fail",
        last4: "3220",
        refund: Refund::Succeed,
        behaviour: Behaviour::Async(Some("card_declined")),
        label: "Visa ending 3220: processing, then fails",
    },
    TestToken {
        token: "tok_redirect",
        last4: "3184",
        refund: Refund::Succeed,
        behaviour: Behaviour::Redirect,
        label: "Visa ending 3184: asks you to authorize it (redirect)",
    },
    TestToken {
        token: "tok_slow",
        last4: "0077",
        refund: Refund::Succeed,
        behaviour: Behaviour::Slow,
        label: "Visa ending 0077: succeeds after 3 seconds",
    },
    TestToken {
        token: "tok_answer_lost",
        last4: "0069",
        refund: Refund::Succeed,
        behaviour: Behaviour::AnswerLost,
        label: "Visa ending 0069: succeeds, but the answer is lost (settled later)",
    },
    TestToken {
        token: "tok_refund_fail",
        last4: "5126",
        refund: Refund::Fail("expired_or_canceled_card"),
        behaviour: Behaviour::Succeed,
        label: "Visa ending 5126: succeeds; its refunds fail",
    },
    TestToken {
        token: "tok_refund_async",
        last4: "7726",
        refund: Refund::Async,
        behaviour: Behaviour::Succeed,
        label: "Visa ending 7726: succeeds; its refunds stay pending, then succeed",
    },
];

fn token_of(data: &Map<String, Value>) -> Option<&'static TestToken> {
    let token = data.get("token")?.as_str()?;
    TOKENS.iter().find(|t| t.token == token)
}

impl Gateway for Sandbox {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn live(&self) -> bool {
        false
    }

    fn prepare(
        &self,
        _account: &Account,
        gateway_data: &Map<String, Value>,
    ) -> Result<PreparedSource, Refusal> {
        let known = TOKENS
            .iter()
            .map(|t| t.token)
            .collect::<Vec<_>>()
            .join(", ");
        let test = token_of(gateway_data).ok_or_else(|| {
            Refusal::Invalid(format!(
                "The sandbox needs a test token in \"token\": one of {known}."
            ))
        })?;
        Ok(PreparedSource {
            gateway_data: json!({ "token": test.token })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            card: Some(Card {
                brand: "visa".into(),
                last4: test.last4.into(),
                exp_month: 12,
                exp_year: chrono::Utc::now().year() + 3,
            }),
        })
    }

    /// Every token but `tok_slow`, which stands for a provider slow to answer.
    fn answers_in_process(&self, gateway_data: &Map<String, Value>) -> bool {
        !matches!(
            token_of(gateway_data).map(|t| t.behaviour),
            Some(Behaviour::Slow)
        )
    }

    fn charge(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        let reference = reference("sbx_");
        let behaviour = token_of(request.gateway_data).map(|t| t.behaviour);
        if let Some(Behaviour::Slow) = behaviour {
            std::thread::sleep(SLOW_ANSWER);
        }
        if let Some(Behaviour::AnswerLost) = behaviour {
            return Err(Unknown(
                "the sandbox's answer was lost (tok_answer_lost)".into(),
            ));
        }
        Ok(match behaviour {
            Some(Behaviour::Succeed | Behaviour::Slow) if !request.capture => {
                Charge::RequiresCapture { reference }
            }
            Some(Behaviour::Succeed | Behaviour::Slow | Behaviour::AnswerLost) => {
                Charge::succeeded(reference)
            }
            Some(Behaviour::Redirect) => Charge::RequiresAction {
                reference,
                client_secret: None,
            },
            Some(Behaviour::Async(_)) => Charge::Pending {
                reference,
                instructions: None,
            },
            Some(Behaviour::Decline(code)) => Charge::Declined {
                reference,
                code: code.into(),
            },
            None => Charge::Declined {
                reference,
                code: "invalid_token".into(),
            },
        })
    }

    /// The sandbox holds whatever it is asked to, and captures any part of it.
    fn capture(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        Ok(Charge::Succeeded {
            reference: request.reference.unwrap_or_default().to_string(),
            amount: Some(request.amount),
        })
    }

    fn cancel(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        Ok(Charge::Declined {
            reference: request.reference.unwrap_or_default().to_string(),
            code: "canceled".into(),
        })
    }

    /// What the sandbox says when asked about a charge in flight: how its token ends. Also
    /// for a charge whose answer never reached cobro (lost, or cobro stopped while asking).
    fn retrieve(&self, request: &ChargeRequest) -> Result<Option<Charge>, Unknown> {
        let reference = request
            .reference
            .map_or_else(|| super::reference("sbx_"), str::to_string);
        let Some(test) = token_of(request.gateway_data) else {
            return Ok(None);
        };
        Ok(match test.behaviour {
            Behaviour::Succeed
            | Behaviour::Slow
            | Behaviour::AnswerLost
            | Behaviour::Async(None) => Some(Charge::succeeded(reference)),
            Behaviour::Async(Some(code)) | Behaviour::Decline(code) => Some(Charge::Declined {
                reference,
                code: code.into(),
            }),
            // The payer answers that one.
            Behaviour::Redirect => None,
        })
    }

    fn refund(&self, request: &RefundRequest) -> Result<Refunded, Unknown> {
        let reference = reference("sbxr_");
        Ok(match token_of(request.gateway_data).map(|t| t.refund) {
            Some(Refund::Fail(code)) => Refunded::Failed {
                reference,
                code: code.into(),
            },
            Some(Refund::Async) => Refunded::Pending { reference },
            Some(Refund::Succeed) | None => Refunded::Succeeded { reference },
        })
    }

    /// How a refund in flight ends: a pending one succeeds once asked again.
    fn retrieve_refund(&self, request: &RefundRequest) -> Result<Option<Refunded>, Unknown> {
        let reference = request
            .reference
            .map_or_else(|| super::reference("sbxr_"), str::to_string);
        Ok(Some(
            match token_of(request.gateway_data).map(|t| t.refund) {
                Some(Refund::Fail(code)) => Refunded::Failed {
                    reference,
                    code: code.into(),
                },
                Some(Refund::Async | Refund::Succeed) | None => Refunded::Succeeded { reference },
            },
        ))
    }

    /// A pending sandbox refund has not gone anywhere: it may be called off.
    fn cancels_refunds(&self) -> bool {
        true
    }
}
