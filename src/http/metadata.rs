//! Metadata as every object takes it: at most 50 keys of at most 40 characters, values
//! strings (at most 500 characters), numbers or booleans; merged by PATCH, replaced otherwise.

use serde_json::{Map, Value};

use super::body::python_type;
use super::fields::Reader;
use crate::error::FieldErrors;

pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY: usize = 40;
pub const MAX_METADATA_VALUE: usize = 500;

/// What a metadata field in a body asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataChange {
    /// `metadata: null` or `""`: remove every key.
    Clear,
    /// Keys to set (Some) or remove (None: sent as null or "").
    Keys(Vec<(String, Option<Value>)>),
}

pub fn read_metadata(r: &mut Reader, name: &str) -> Option<MetadataChange> {
    let value = r.raw(name)?;
    let object = match value {
        Value::Null => return Some(MetadataChange::Clear),
        Value::String(s) if s.is_empty() => return Some(MetadataChange::Clear),
        Value::Object(object) => object,
        other => {
            r.errors.add(
                name,
                format!(
                    "Expected a dictionary of items but got type \"{}\".",
                    python_type(other)
                ),
            );
            return None;
        }
    };
    let mut keys = Vec::with_capacity(object.len());
    for (key, value) in object {
        let has_nul = |v: &Value| matches!(v, Value::String(s) if s.contains('\0'));
        if key.contains('\0') || has_nul(value) {
            r.errors.add(name, crate::http::fields::NULL_CHARACTERS);
            continue;
        }
        if key.trim().is_empty() || key.chars().count() > MAX_METADATA_KEY {
            r.errors.add(
                name,
                format!("Keys must be 1 to {MAX_METADATA_KEY} characters long: \"{key}\" is not."),
            );
            continue;
        }
        match value {
            Value::Null => keys.push((key.clone(), None)),
            Value::String(s) if s.is_empty() => keys.push((key.clone(), None)),
            Value::String(s) if s.chars().count() > MAX_METADATA_VALUE => r.errors.add(
                name,
                format!("Values must be at most {MAX_METADATA_VALUE} characters long: the value of \"{key}\" is not."),
            ),
            Value::String(_) | Value::Number(_) | Value::Bool(_) => keys.push((key.clone(), Some(value.clone()))),
            _ => r.errors.add(
                name,
                format!("Values must be strings, numbers or booleans: the value of \"{key}\" is a {}.", python_type(value)),
            ),
        }
    }
    Some(MetadataChange::Keys(keys))
}

/// Applies a metadata change: merging (PATCH) or replacing (create, PUT).
pub fn apply_metadata(
    current: &Map<String, Value>,
    change: Option<&MetadataChange>,
    merge: bool,
    errors: &mut FieldErrors,
) -> Map<String, Value> {
    let Some(change) = change else {
        return current.clone();
    };
    let mut metadata = if merge { current.clone() } else { Map::new() };
    match change {
        MetadataChange::Clear => metadata.clear(),
        MetadataChange::Keys(keys) => {
            for (key, value) in keys {
                match value {
                    Some(value) => metadata.insert(key.clone(), value.clone()),
                    None => metadata.remove(key),
                };
            }
        }
    }
    if metadata.len() > MAX_METADATA_KEYS {
        errors.add(
            "metadata",
            format!("Ensure there are no more than {MAX_METADATA_KEYS} keys."),
        );
    }
    metadata
}
