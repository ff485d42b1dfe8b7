//! Customers as values: the object, what a create or update body asks for, and the rules.

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use validator::ValidateEmail;

use crate::error::{ApiError, FieldErrors};
use crate::http::fields::{Given, Presence, Reader};
use crate::http::metadata::{apply_metadata, read_metadata, MetadataChange};
use crate::payments::domain::timestamp;
use crate::text_enum::text_enum;

text_enum!(
    /// An archived customer stays readable and referenced; it is what a delete leaves when
    /// payments still name the customer.
    CustomerStatus { Active = "active", Archived = "archived" }
);

/// ISO 3166-1 alpha-2 codes.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI \
    BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY \
    CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN \
    GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH \
    KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO \
    MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL \
    PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV \
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN \
    VU WF WS YE YT ZA ZM ZW";

pub const MAX_NAME: usize = 256;
pub const MAX_EMAIL: usize = 254;
pub const MAX_TAX_ID: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub struct Customer {
    pub id: String,
    pub test_mode: bool,
    pub name: String,
    pub email: Option<String>,
    pub tax_id: Option<String>,
    pub country: Option<String>,
    pub status: CustomerStatus,
    pub metadata: Map<String, Value>,
    pub version: i64,
    pub created: NaiveDateTime,
    pub updated: NaiveDateTime,
}

/// A customer as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Customer)]
pub struct CustomerView {
    /// `cus_…`
    pub id: String,
    pub name: String,
    /// Stored in lower case.
    pub email: Option<String>,
    pub tax_id: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
    pub status: CustomerStatus,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub test_mode: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated: String,
}

impl Customer {
    pub fn view(&self) -> CustomerView {
        CustomerView {
            id: self.id.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            tax_id: self.tax_id.clone(),
            country: self.country.clone(),
            status: self.status,
            metadata: self.metadata.clone(),
            test_mode: self.test_mode,
            created: timestamp(self.created),
            updated: timestamp(self.updated),
        }
    }
}

/// The fields of a create or PUT (`name` required) or a PATCH (any).
#[derive(Default)]
pub struct CustomerInput {
    pub name: Option<String>,
    pub email: Given<String>,
    pub tax_id: Given<String>,
    pub country: Given<String>,
    pub status: Option<CustomerStatus>,
    pub metadata: Option<MetadataChange>,
}

impl CustomerInput {
    pub fn parse(body: &Map<String, Value>, presence: Presence) -> Result<Self, ApiError> {
        let mut r = Reader::new(body, presence);
        let name = match r.string("name", true, false, MAX_NAME) {
            Given::Value(name) => Some(name),
            _ => None,
        };
        let email = match r.string("email", false, true, MAX_EMAIL) {
            Given::Value(email) if !email.validate_email() => {
                r.errors.add("email", "Enter a valid email address.");
                Given::Absent
            }
            Given::Value(email) => Given::Value(email.to_lowercase()),
            other => other,
        };
        let tax_id = r.string("tax_id", false, true, MAX_TAX_ID);
        let country = match r.string("country", false, true, 2) {
            Given::Value(code) => {
                let code = code.to_uppercase();
                if COUNTRIES.split_whitespace().any(|c| c == code) {
                    Given::Value(code)
                } else {
                    r.errors
                        .add("country", format!("\"{code}\" is not a valid choice."));
                    Given::Absent
                }
            }
            other => other,
        };
        let status = r.choice::<CustomerStatus>("status");
        let metadata = read_metadata(&mut r, "metadata");
        r.finish().into_result()?;
        Ok(CustomerInput {
            name,
            email,
            tax_id,
            country,
            status,
            metadata,
        })
    }
}

/// A new customer from a create's fields.
pub fn new_customer(
    input: &CustomerInput,
    test_mode: bool,
    at: NaiveDateTime,
) -> Result<Customer, ApiError> {
    let mut errors = FieldErrors::new();
    let metadata = apply_metadata(&Map::new(), input.metadata.as_ref(), false, &mut errors);
    errors.into_result()?;
    Ok(Customer {
        id: crate::accounts::new_id("cus_"),
        test_mode,
        name: input.name.clone().unwrap_or_default(),
        email: input.email.clone().sent().flatten(),
        tax_id: input.tax_id.clone().sent().flatten(),
        country: input.country.clone().sent().flatten(),
        status: input.status.unwrap_or(CustomerStatus::Active),
        metadata,
        version: 1,
        created: at,
        updated: at,
    })
}

/// The customer an update asks for; `merge` (PATCH) merges metadata keys. Fields left out
/// keep their value, as in DRF (a PUT must still send `name`).
pub fn apply(current: &Customer, input: &CustomerInput, merge: bool) -> Result<Customer, ApiError> {
    let mut errors = FieldErrors::new();
    let metadata = apply_metadata(
        &current.metadata,
        input.metadata.as_ref(),
        merge,
        &mut errors,
    );
    errors.into_result()?;
    let optional = |given: &Given<String>, now: &Option<String>| {
        given.clone().sent().unwrap_or_else(|| now.clone())
    };
    Ok(Customer {
        name: input.name.clone().unwrap_or_else(|| current.name.clone()),
        email: optional(&input.email, &current.email),
        tax_id: optional(&input.tax_id, &current.tax_id),
        country: optional(&input.country, &current.country),
        status: input.status.unwrap_or(current.status),
        metadata,
        ..current.clone()
    })
}
