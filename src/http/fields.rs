//! Reading typed fields out of a request body with DRF's rules and messages. A `Reader`
//! collects every field's errors so that one 400 names them all, in field order.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};

use super::body::python_type;
use crate::error::FieldErrors;

pub const REQUIRED: &str = "This field is required.";
pub const NOT_NULL: &str = "This field may not be null.";
pub const NOT_BLANK: &str = "This field may not be blank.";
pub const NULL_CHARACTERS: &str = "Null characters are not allowed.";

/// A field as the client sent it: left out, sent as null, or sent with a value.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Given<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Given<T> {
    /// The new value of a nullable field if it was sent (`Some(None)` for null).
    pub fn sent(self) -> Option<Option<T>> {
        match self {
            Given::Absent => None,
            Given::Null => Some(None),
            Given::Value(v) => Some(Some(v)),
        }
    }
}

/// Whether missing required fields are errors: yes on create and PUT, no on PATCH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Full,
    Partial,
}

pub struct Reader<'a> {
    body: &'a Map<String, Value>,
    presence: Presence,
    pub errors: FieldErrors,
}

impl<'a> Reader<'a> {
    pub fn new(body: &'a Map<String, Value>, presence: Presence) -> Self {
        Self {
            body,
            presence,
            errors: FieldErrors::new(),
        }
    }

    /// The raw value of a field, with "required" and "not null" checked.
    fn value(&mut self, name: &str, required: bool, nullable: bool) -> Given<&'a Value> {
        match self.body.get(name) {
            None => {
                if required && self.presence == Presence::Full {
                    self.errors.add(name, REQUIRED);
                }
                Given::Absent
            }
            Some(Value::Null) => {
                if !nullable {
                    self.errors.add(name, NOT_NULL);
                }
                Given::Null
            }
            Some(value) => Given::Value(value),
        }
    }

    /// Reports a required field that a full body left out.
    pub fn require(&mut self, name: &str) {
        if !self.body.contains_key(name) && self.presence == Presence::Full {
            self.errors.add(name, REQUIRED);
        }
    }

    pub fn raw(&self, name: &str) -> Option<&'a Value> {
        self.body.get(name)
    }

    /// A CharField: trimmed; numbers are taken as their text; blank is null when nullable.
    pub fn string(
        &mut self,
        name: &str,
        required: bool,
        nullable: bool,
        max_chars: usize,
    ) -> Given<String> {
        let value = match self.value(name, required, nullable) {
            Given::Value(v) => v,
            Given::Null => return Given::Null,
            Given::Absent => return Given::Absent,
        };
        let text = match value {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            _ => {
                self.errors.add(name, "Not a valid string.");
                return Given::Absent;
            }
        };
        if text.contains('\0') {
            self.errors.add(name, NULL_CHARACTERS);
            return Given::Absent;
        }
        if text.is_empty() {
            if nullable {
                return Given::Null;
            }
            self.errors.add(name, NOT_BLANK);
            return Given::Absent;
        }
        if text.chars().count() > max_chars {
            self.errors.add(
                name,
                format!("Ensure this field has no more than {max_chars} characters."),
            );
            return Given::Absent;
        }
        Given::Value(text)
    }

    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        let value = self.value(name, false, false);
        let Given::Value(value) = value else {
            return None;
        };
        let parsed = match value {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.to_string().as_str() {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            },
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" | "y" | "t" => Some(true),
                "false" | "0" | "no" | "off" | "n" | "f" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.errors.add(name, "Must be a valid boolean.");
        }
        parsed
    }

    pub fn date(&mut self, name: &str, required: bool) -> Option<NaiveDate> {
        let Given::Value(value) = self.value(name, required, false) else {
            return None;
        };
        let parsed = value.as_str().and_then(parse_date);
        if parsed.is_none() {
            self.errors.add(
                name,
                "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.",
            );
        }
        parsed
    }

    pub fn datetime(&mut self, name: &str, nullable: bool) -> Given<NaiveDateTime> {
        match self.value(name, false, nullable) {
            Given::Absent => Given::Absent,
            Given::Null => Given::Null,
            Given::Value(value) => match value.as_str().and_then(parse_datetime) {
                Some(at) => Given::Value(at),
                None => {
                    self.errors.add(
                        name,
                        "Datetime has wrong format. Use one of these formats instead: \
                         YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].",
                    );
                    Given::Absent
                }
            },
        }
    }

    /// A primary-key reference (integer), as DRF's PrimaryKeyRelatedField reads it.
    pub fn pk(&mut self, name: &str) -> Given<i64> {
        match self.value(name, false, true) {
            Given::Absent => Given::Absent,
            Given::Null => Given::Null,
            Given::Value(value) => match pk_value(value) {
                Ok(id) => Given::Value(id),
                Err(message) => {
                    self.errors.add(name, message);
                    Given::Absent
                }
            },
        }
    }

    pub fn pk_list(&mut self, name: &str) -> Option<Vec<i64>> {
        let Given::Value(value) = self.value(name, false, false) else {
            return None;
        };
        let Value::Array(items) = value else {
            self.errors.add(
                name,
                format!(
                    "Expected a list of items but got type \"{}\".",
                    python_type(value)
                ),
            );
            return None;
        };
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            match pk_value(item) {
                Ok(id) if !ids.contains(&id) => ids.push(id),
                Ok(_) => {}
                Err(message) => {
                    self.errors.add(name, message);
                    return None;
                }
            }
        }
        Some(ids)
    }

    /// A choice among `T`'s values, parsed by `T::from_str`.
    pub fn choice<T: std::str::FromStr>(&mut self, name: &str) -> Option<T> {
        let Given::Value(value) = self.value(name, false, false) else {
            return None;
        };
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let parsed = text.parse().ok();
        if parsed.is_none() {
            self.errors
                .add(name, format!("\"{text}\" is not a valid choice."));
        }
        parsed
    }

    /// An absolute http(s) URL; blank counts as null.
    pub fn url(&mut self, name: &str, max_chars: usize) -> Given<String> {
        match self.string(name, false, true, max_chars) {
            Given::Value(text) if is_web_url(&text) => Given::Value(text),
            Given::Value(_) => {
                self.errors.add(name, "Enter a valid URL.");
                Given::Absent
            }
            other => other,
        }
    }

    pub fn finish(self) -> FieldErrors {
        self.errors
    }
}

/// DRF's message for a reference to an object that does not exist (in the caller's scope).
pub fn invalid_pk(id: impl std::fmt::Display) -> String {
    format!("Invalid pk \"{id}\" - object does not exist.")
}

fn pk_value(value: &Value) -> Result<i64, String> {
    let parsed = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| match value {
        Value::Number(_) => invalid_pk(value),
        _ => format!(
            "Incorrect type. Expected pk value, received {}.",
            python_type(value)
        ),
    })
}

/// `YYYY-MM-DD`, with a year from 1 to 9999 as Python's dates have (chrono alone also
/// takes signed and six-digit years, which PostgreSQL cannot store).
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .ok()
        .filter(|d| (1..=9999).contains(&d.year()))
}

/// ISO 8601 as DRF accepts it; a time without an offset is UTC. Returns UTC to microseconds.
pub fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    parse_any_datetime(text).filter(|at| (1..=9999).contains(&at.year()))
}

fn parse_any_datetime(text: &str) -> Option<NaiveDateTime> {
    use chrono::SubsecRound;
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(&text.replacen(' ', "T", 1)) {
        return Some(at.naive_utc().trunc_subsecs(6));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Some(at.trunc_subsecs(6));
        }
    }
    None
}

/// An absolute http or https URL with a host, and no control characters or spaces (which
/// could smuggle headers into a redirect).
pub fn is_web_url(text: &str) -> bool {
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    match url::Url::parse(text) {
        Ok(url) => {
            matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some_and(|h| !h.is_empty())
        }
        Err(_) => false,
    }
}
