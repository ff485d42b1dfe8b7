//! What serde_json lets through but a payments API should refuse: duplicate keys (serde
//! keeps the last one silently, so two parsers could read one body two ways) and deep
//! nesting. Runs on text serde_json has already parsed, so it can trust the structure.

use std::collections::HashSet;

/// The deepest nesting a body may have (payments need 2: the body and its metadata).
pub const MAX_DEPTH: usize = 20;

pub fn check(json: &[u8]) -> Result<(), String> {
    // One entry per open container: the keys seen so far for an object, None for an array.
    let mut open: Vec<Option<HashSet<String>>> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                if expect_key {
                    expect_key = false;
                    let key: String = serde_json::from_slice(&json[start..=i.min(json.len() - 1)])
                        .map_err(|e| e.to_string())?;
                    if let Some(Some(keys)) = open.last_mut() {
                        if !keys.insert(key.clone()) {
                            return Err(format!("duplicate key \"{key}\""));
                        }
                    }
                }
            }
            b'{' | b'[' => {
                let object = json[i] == b'{';
                open.push(object.then(HashSet::new));
                expect_key = object;
                if open.len() > MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH} levels"));
                }
            }
            b'}' | b']' => {
                open.pop();
            }
            b',' => expect_key = matches!(open.last(), Some(Some(_))),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_found_at_any_depth_and_however_escaped() {
        assert!(check(br#"{"a": 1, "b": {"a": 2}, "c": [{"a": 1}, {"a": 2}]}"#).is_ok());
        assert_eq!(
            check(br#"{"amount": 1, "amount": 2}"#),
            Err("duplicate key \"amount\"".into())
        );
        assert!(check(br#"{"m": {"k": 1, "k": 2}}"#).is_err());
        assert!(check(br#"{"amount": 1, "\u0061mount": 2}"#).is_err());
        assert!(check(br#"{"a\"b": 1, "x": "\"a\\"}"#).is_ok());
        assert!(check(br#"["a", "a"]"#).is_ok());
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(check(deep.as_bytes()).is_err());
    }
}
