//! Exact money: ISO 4217 currencies with their minor-unit exponents, amounts parsed from JSON
//! text into integer minor units (never through f64), and formatted back at the currency's scale.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

/// The most digits an amount may have in minor units: 10^18 - 1 fits an i64 with room to add.
pub const MAX_MINOR_DIGITS: u32 = 18;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Currency {
    pub code: &'static str,
    /// Digits after the decimal point: 0 for CLP and JPY, 2 for USD, 3 for KWD, 4 for CLF.
    pub exponent: u32,
}

impl Currency {
    /// Looks up an ISO 4217 code; lower case is accepted.
    pub fn parse(code: &str) -> Option<Currency> {
        let code = code.trim().to_ascii_uppercase();
        let exponent = if ZERO_DECIMAL.contains(&code.as_str()) {
            0
        } else if THREE_DECIMAL.contains(&code.as_str()) {
            3
        } else if FOUR_DECIMAL.contains(&code.as_str()) {
            4
        } else if TWO_DECIMAL.contains(&code.as_str()) {
            2
        } else {
            return None;
        };
        let code = ALL.iter().find(|known| **known == code)?;
        Some(Currency { code, exponent })
    }

    /// Minor units in one major unit: 10^exponent.
    pub fn unit(self) -> i64 {
        10i64.pow(self.exponent)
    }

    /// Converts an exact decimal to minor units, with DRF's messages for what does not fit.
    pub fn to_minor(self, value: Decimal) -> Result<i64, String> {
        let value = value.normalize();
        if value.scale() > self.exponent {
            return Err(format!(
                "Ensure that there are no more than {} decimal places.",
                self.exponent
            ));
        }
        let too_big = || {
            format!(
                "Ensure that there are no more than {} digits before the decimal point.",
                MAX_MINOR_DIGITS - self.exponent
            )
        };
        let scaled = value
            .checked_mul(Decimal::from(self.unit()))
            .ok_or_else(too_big)?
            .normalize();
        let minor = i64::try_from(scaled).map_err(|_| too_big())?;
        if minor.unsigned_abs() >= 10u64.pow(MAX_MINOR_DIGITS) {
            return Err(too_big());
        }
        Ok(minor)
    }

    /// For people: the code and the amount with thousands separators, `USD 1,234.50`.
    pub fn for_people(self, minor: i64) -> String {
        let plain = self.format(minor.abs());
        let (whole, fraction) = plain
            .split_once('.')
            .map_or((plain.as_str(), None), |(w, f)| (w, Some(f)));
        let mut grouped = String::new();
        for (i, digit) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        let sign = if minor < 0 { "-" } else { "" };
        match fraction {
            Some(f) => format!("{} {sign}{grouped}.{f}", self.code),
            None => format!("{} {sign}{grouped}", self.code),
        }
    }

    /// Formats minor units at the currency's scale: `1050` USD is `"10.50"`, `1000` CLP `"1000"`.
    /// Integer arithmetic, not `Decimal`'s `Display`: a page of payments writes 60 amounts.
    pub fn format(self, minor: i64) -> String {
        let unit = 10u64.pow(self.exponent);
        let (whole, fraction) = (minor.unsigned_abs() / unit, minor.unsigned_abs() % unit);
        let sign = if minor < 0 { "-" } else { "" };
        match self.exponent as usize {
            0 => format!("{sign}{whole}"),
            width => format!("{sign}{whole}.{fraction:0width$}"),
        }
    }
}

/// Reads a decimal number from JSON text exactly: a JSON number (kept as written, thanks to
/// serde_json's `arbitrary_precision`) or a numeric string, as DRF's DecimalField accepts.
/// Exponent forms, NaN and Infinity are refused.
pub fn parse_decimal(value: &serde_json::Value) -> Result<Decimal, &'static str> {
    const INVALID: &str = "A valid number is required.";
    let text = match value {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_string(),
        _ => return Err(INVALID),
    };
    let digits = text.strip_prefix(['-', '+']).unwrap_or(&text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(INVALID);
    }
    // Trailing zeros add no precision; what is left must fit rust_decimal exactly (28
    // digits), which every amount we accept does. `from_str_exact` refuses, never rounds.
    let fraction = fraction.trim_end_matches('0');
    let exact = if fraction.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    };
    let sign = if text.starts_with('-') { "-" } else { "" };
    Decimal::from_str_exact(&format!(
        "{sign}{}",
        if exact.is_empty() { "0" } else { &exact }
    ))
    .map_err(|_| "Ensure that there are no more than 18 digits in total.")
}

/// An amount as the API shows it: a JSON number at the currency's scale, written exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amount(pub String);

impl Amount {
    pub fn new(currency: Currency, minor: i64) -> Self {
        Amount(currency.format(minor))
    }
}

/// How serde_json (with `arbitrary_precision`) names the struct that a `Number` serializes
/// as; its serializers write the struct's one field as the number's text, unquoted. The
/// test `amounts_serialize_as_numbers` fails if serde_json stops doing so.
const JSON_NUMBER: &str = "$serde_json::private::Number";

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // What `Number::from_str(..).serialize` does, without parsing text that is already a
        // plain JSON number (a page of payments writes 60 amounts). Anything else (none is
        // made, but a field holds any String) takes serde_json's own parse.
        if !plain_number(&self.0) {
            return match serde_json::Number::from_str(&self.0) {
                Ok(number) => number.serialize(serializer),
                Err(_) => serializer.serialize_str(&self.0),
            };
        }
        let mut number = serializer.serialize_struct(JSON_NUMBER, 1)?;
        number.serialize_field(JSON_NUMBER, &self.0)?;
        number.end()
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`: what `Currency::format` writes.
fn plain_number(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && all_digits(fraction) && (whole == "0" || !whole.starts_with('0'))
}

const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];
const THREE_DECIMAL: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
const FOUR_DECIMAL: &[&str] = &["CLF", "UYW"];
const TWO_DECIMAL: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHE", "CHF", "CHW", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR", "KPW",
    "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT",
    "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK",
    "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR",
    "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP",
    "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "USN", "UYU",
    "UZS", "VED", "VES", "WST", "XCD", "XCG", "YER", "ZAR", "ZMW", "ZWG",
];

/// Every known code, for `Currency::parse` to hand out a `&'static str`.
static ALL: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| [ZERO_DECIMAL, THREE_DECIMAL, FOUR_DECIMAL, TWO_DECIMAL].concat());

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minor(code: &str, text: &str) -> Result<i64, String> {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let decimal = parse_decimal(&value).map_err(str::to_string)?;
        Currency::parse(code).unwrap().to_minor(decimal)
    }

    #[test]
    fn amounts_serialize_as_numbers() {
        for text in ["0", "10.50", "-0.05", "1000", "123456789012345678.9999"] {
            let amount = Amount(text.to_string());
            assert_eq!(serde_json::to_string(&amount).unwrap(), text);
            let value = serde_json::to_value(&amount).unwrap();
            assert_eq!(
                value,
                serde_json::Value::Number(text.parse().unwrap()),
                "{text}"
            );
        }
        // Text that is not a plain number is not written raw: serde_json reads it, or it is
        // a string.
        let number = serde_json::Number::from_str("1e3").unwrap();
        let written = serde_json::to_string(&number).unwrap();
        assert_eq!(
            serde_json::to_string(&Amount("1e3".into())).unwrap(),
            written
        );
        assert_eq!(
            serde_json::to_string(&Amount("007".into())).unwrap(),
            "\"007\""
        );
        assert_eq!(
            serde_json::to_string(&Amount("1.".into())).unwrap(),
            "\"1.\""
        );
        assert_eq!(serde_json::to_string(&Amount("x".into())).unwrap(), "\"x\"");
    }

    #[test]
    fn amounts_are_written_as_decimal_writes_them() {
        for code in ["CLP", "USD", "KWD", "CLF"] {
            let currency = Currency::parse(code).unwrap();
            for minor in [
                0,
                1,
                5,
                9,
                10,
                99,
                100,
                1050,
                123_456,
                -1,
                -5,
                -1050,
                i64::MAX,
                i64::MIN + 1,
            ] {
                let decimal = Decimal::new(minor, currency.exponent).to_string();
                assert_eq!(currency.format(minor), decimal, "{code} {minor}");
            }
        }
    }

    #[test]
    fn exponents_follow_iso_4217() {
        for (code, exponent) in [
            ("CLP", 0),
            ("JPY", 0),
            ("KRW", 0),
            ("USD", 2),
            ("EUR", 2),
            ("MXN", 2),
            ("COP", 2),
            ("PEN", 2),
            ("BRL", 2),
            ("ARS", 2),
            ("GBP", 2),
            ("KWD", 3),
            ("BHD", 3),
            ("JOD", 3),
            ("OMR", 3),
            ("TND", 3),
            ("CLF", 4),
            ("UYW", 4),
        ] {
            assert_eq!(Currency::parse(code).unwrap().exponent, exponent, "{code}");
        }
        assert_eq!(Currency::parse("usd").unwrap().code, "USD");
        assert!(Currency::parse("XYZ").is_none());
    }

    #[test]
    fn amounts_convert_exactly() {
        assert_eq!(minor("USD", "10.50"), Ok(1050));
        assert_eq!(minor("USD", "0.3"), Ok(30));
        assert_eq!(minor("CLF", "0.0001"), Ok(1));
        assert_eq!(minor("CLP", "123456789012345"), Ok(123456789012345));
        assert_eq!(minor("USD", "\"10.500\""), Ok(1050));
        assert_eq!(
            minor("USD", "10.001"),
            Err("Ensure that there are no more than 2 decimal places.".into())
        );
        assert_eq!(
            minor("CLP", "1.5"),
            Err("Ensure that there are no more than 0 decimal places.".into())
        );
        assert!(minor("CLP", "1000000000000000000").is_err());
        assert!(minor("USD", "99999999999999999999999999999999").is_err());
        // Past rust_decimal's 28 digits: refused, never rounded to a valid amount.
        assert!(minor("USD", "0.0099999999999999999999999999999").is_err());
        assert!(minor("USD", "0.01000000000000000000000000000000000").is_ok());
    }

    #[test]
    fn only_plain_decimal_text_is_a_number() {
        for bad in [
            json!("1e3"),
            json!("NaN"),
            json!("Infinity"),
            json!(""),
            json!("."),
            json!(true),
            json!(null),
            json!("1,5"),
        ] {
            assert!(parse_decimal(&bad).is_err(), "{bad}");
        }
        let exponent: serde_json::Value = serde_json::from_str("1e3").unwrap();
        assert!(parse_decimal(&exponent).is_err());
    }

    #[test]
    fn formatting_keeps_the_currency_scale() {
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(usd.format(1050), "10.50");
        assert_eq!(usd.format(5), "0.05");
        assert_eq!(Currency::parse("CLF").unwrap().format(1), "0.0001");
        assert_eq!(Currency::parse("CLP").unwrap().format(1000), "1000");
        assert_eq!(
            serde_json::to_string(&Amount::new(usd, 1050)).unwrap(),
            "10.50"
        );
        assert_eq!(usd.for_people(123450), "USD 1,234.50");
        assert_eq!(
            Currency::parse("CLP").unwrap().for_people(1234567),
            "CLP 1,234,567"
        );
        assert_eq!(Currency::parse("CLP").unwrap().for_people(999), "CLP 999");
    }
}
