//! Bank transfers: the payment waits `processing`, with transfer instructions, until the
//! merchant confirms the money arrived (`PATCH {"status": "succeeded"}`) or marks it failed.

use serde_json::{json, Map, Value};

use super::{reference, Charge, Gateway, PreparedSource, Settlement};
use crate::money::Currency;

pub struct BankTransfer;

impl Gateway for BankTransfer {
    fn name(&self) -> &'static str {
        "bank_transfer"
    }

    fn live(&self) -> bool {
        true
    }

    fn prepare(&self, _gateway_data: &Map<String, Value>) -> Result<PreparedSource, String> {
        Ok(PreparedSource {
            gateway_data: Map::new(),
            card: None,
        })
    }

    fn charge(
        &self,
        _gateway_data: &Map<String, Value>,
        amount: i64,
        currency: Currency,
    ) -> Charge {
        let reference = reference("bt_");
        let instructions = json!({
            "reference": reference,
            "amount": crate::money::Amount::new(currency, amount),
            "currency": currency.code,
            "message": format!(
                "Transfer {} {} quoting the reference {reference}; the payment completes when the merchant confirms it.",
                currency.format(amount), currency.code
            ),
        });
        Charge::Pending {
            reference,
            instructions: Some(instructions),
        }
    }

    fn settlement(&self, _gateway_data: &Map<String, Value>) -> Option<Settlement> {
        None
    }
}
