//! Query-string parameters, and the django-filter style readers for list filters.

use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;

use crate::error::{ApiError, FieldErrors};

/// The query string as ordered pairs (a key may repeat).
#[derive(Clone, Debug, Default)]
pub struct QueryParams(pub Vec<(String, String)>);

impl QueryParams {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs = super::urlencoded::pairs(query.as_bytes()).map_err(|cause| {
            ApiError::BadRequest(format!("The query string is not valid: {cause}."))
        })?;
        // No database stores a NUL in text (PostgreSQL refuses it): say so, as DRF does.
        if let Some((name, _)) = pairs
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(ApiError::field(name, crate::http::fields::NULL_CHARACTERS));
        }
        Ok(QueryParams(pairs))
    }

    /// The last value given for `name`, if any and not empty (an empty filter is no filter).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The query string with `name` set to `value` (added at the end when absent).
    pub fn with(&self, name: &str, value: &str) -> String {
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(self.0.len() + 1);
        let mut replaced = false;
        for (k, v) in &self.0 {
            if k == name {
                if !replaced {
                    pairs.push((name, value));
                    replaced = true;
                }
            } else {
                pairs.push((k, v));
            }
        }
        if !replaced {
            pairs.push((name, value));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// Reads filter values, collecting django-filter's messages per parameter.
pub struct FilterReader<'a> {
    pub params: &'a QueryParams,
    pub errors: FieldErrors,
}

impl<'a> FilterReader<'a> {
    pub fn new(params: &'a QueryParams) -> Self {
        Self {
            params,
            errors: FieldErrors::new(),
        }
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.params.get(name).map(str::to_string)
    }

    pub fn choice<T: std::str::FromStr>(&mut self, name: &str) -> Option<T> {
        let raw = self.params.get(name)?;
        let parsed = raw.parse().ok();
        if parsed.is_none() {
            self.invalid_choice(name, raw);
        }
        parsed
    }

    /// `name=a,b,c`: each must be a valid choice.
    pub fn choices<T: std::str::FromStr>(&mut self, name: &str) -> Option<Vec<T>> {
        let raw = self.params.get(name)?;
        let mut values = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse() {
                Ok(value) => values.push(value),
                Err(_) => {
                    self.invalid_choice(name, part);
                    return None;
                }
            }
        }
        Some(values)
    }

    fn invalid_choice(&mut self, name: &str, raw: &str) {
        self.errors.add(
            name,
            format!("Select a valid choice. {raw} is not one of the available choices."),
        );
    }

    pub fn integer(&mut self, name: &str) -> Option<i64> {
        let raw = self.params.get(name)?;
        let parsed = raw.trim().parse().ok();
        if parsed.is_none() {
            self.errors.add(name, "Enter a whole number.");
        }
        parsed
    }

    pub fn decimal(&mut self, name: &str) -> Option<Decimal> {
        let raw = self.params.get(name)?;
        let parsed = crate::money::parse_decimal(&serde_json::Value::String(raw.to_string())).ok();
        if parsed.is_none() {
            self.errors.add(name, "Enter a number.");
        }
        parsed
    }

    pub fn date(&mut self, name: &str) -> Option<NaiveDate> {
        let raw = self.params.get(name)?;
        let parsed = super::fields::parse_date(raw);
        if parsed.is_none() {
            self.errors.add(name, "Enter a valid date.");
        }
        parsed
    }

    /// A datetime, or a date meaning its midnight (UTC), as django-filter reads one.
    pub fn datetime(&mut self, name: &str) -> Option<NaiveDateTime> {
        let raw = self.params.get(name)?;
        let parsed = super::fields::parse_datetime(raw)
            .or_else(|| super::fields::parse_date(raw).and_then(|d| d.and_hms_opt(0, 0, 0)));
        if parsed.is_none() {
            self.errors.add(name, "Enter a valid date/time.");
        }
        parsed
    }

    pub fn finish(self) -> Result<(), ApiError> {
        self.errors.into_result()
    }
}
