//! Bank transfers: the payment waits `processing`, with transfer instructions, until the
//! merchant confirms the money arrived (`PATCH {"status": "succeeded"}`) or marks it failed.
//! A refund waits `pending` the same way, until the merchant says the transfer back is made.

use serde_json::{json, Map, Value};

use super::{
    reference, Account, Charge, ChargeRequest, Gateway, PreparedSource, RefundRequest, Refunded,
    Refusal, Unknown,
};

pub struct BankTransfer;

impl Gateway for BankTransfer {
    fn name(&self) -> &'static str {
        "bank_transfer"
    }

    fn live(&self) -> bool {
        true
    }

    fn prepare(
        &self,
        _account: &Account,
        _gateway_data: &Map<String, Value>,
    ) -> Result<PreparedSource, Refusal> {
        Ok(PreparedSource {
            gateway_data: Map::new(),
            card: None,
        })
    }

    fn answers_in_process(&self, _gateway_data: &Map<String, Value>) -> bool {
        true
    }

    fn charge(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        let (amount, currency) = (request.amount, request.currency);
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
        Ok(Charge::Pending {
            reference,
            instructions: Some(instructions),
        })
    }

    /// The merchant says how a transfer ends; the gateway itself has nothing to say.
    fn retrieve(&self, _request: &ChargeRequest) -> Result<Option<Charge>, Unknown> {
        Ok(None)
    }

    fn settled_by_merchant(&self) -> bool {
        true
    }

    /// The merchant sends the money back by transfer, and says when it is done (or failed).
    fn refund(&self, _request: &RefundRequest) -> Result<Refunded, Unknown> {
        Ok(Refunded::Pending {
            reference: reference("btr_"),
        })
    }

    fn retrieve_refund(&self, _request: &RefundRequest) -> Result<Option<Refunded>, Unknown> {
        Ok(None)
    }

    /// Until the merchant makes the transfer, it may be called off.
    fn cancels_refunds(&self) -> bool {
        true
    }
}
