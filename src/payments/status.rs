//! The payment status machine: one table, one function, tested pair by pair.

use std::fmt;
use std::str::FromStr;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    RequiresPaymentMethod,
    Incomplete,
    Processing,
    Succeeded,
    Failed,
    Cancelled,
}

use PaymentStatus::*;

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 6] = [
        RequiresPaymentMethod,
        Incomplete,
        Processing,
        Succeeded,
        Failed,
        Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequiresPaymentMethod => "requires_payment_method",
            Incomplete => "incomplete",
            Processing => "processing",
            Succeeded => "succeeded",
            Failed => "failed",
            Cancelled => "cancelled",
        }
    }

    /// The allowed moves of API.md §2. `incomplete → incomplete` is a further partial
    /// collection; no other status moves to itself.
    pub fn can_move_to(self, to: PaymentStatus) -> bool {
        match self {
            RequiresPaymentMethod => {
                matches!(to, Processing | Incomplete | Succeeded | Failed | Cancelled)
            }
            Incomplete => matches!(to, Processing | Incomplete | Succeeded),
            Processing => matches!(to, Succeeded | Incomplete | Failed),
            Failed => matches!(to, Processing | Incomplete | Succeeded | Cancelled),
            Succeeded | Cancelled => false,
        }
    }

    /// What a payment may be created with: nothing collected yet, a charge in flight, or
    /// an offline payment recorded as already paid.
    pub fn allowed_on_create(self) -> bool {
        matches!(self, RequiresPaymentMethod | Processing | Succeeded)
    }

    /// Money that moved is never destroyed: only these may be deleted.
    pub fn allows_delete(self) -> bool {
        matches!(self, RequiresPaymentMethod | Failed | Cancelled)
    }

    /// While nothing is collected or in flight, the amount and currency may change.
    pub fn allows_amount_change(self) -> bool {
        matches!(self, RequiresPaymentMethod | Failed)
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        PaymentStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_of_the_status_table() {
        let allowed: &[(PaymentStatus, &[PaymentStatus])] = &[
            (
                RequiresPaymentMethod,
                &[Processing, Incomplete, Succeeded, Failed, Cancelled],
            ),
            (Incomplete, &[Processing, Incomplete, Succeeded]),
            (Processing, &[Succeeded, Incomplete, Failed]),
            (Failed, &[Processing, Incomplete, Succeeded, Cancelled]),
            (Succeeded, &[]),
            (Cancelled, &[]),
        ];
        for (from, targets) in allowed {
            for to in PaymentStatus::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    targets.contains(&to),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for status in PaymentStatus::ALL {
            assert_eq!(status.as_str().parse::<PaymentStatus>(), Ok(status));
        }
        assert!("nope".parse::<PaymentStatus>().is_err());
    }
}
