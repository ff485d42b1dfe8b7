//! `application/x-www-form-urlencoded`, strictly: bytes that are not UTF-8 once decoded are
//! an error, not U+FFFD (a lossy decoder would store, and match, text the client never sent).

/// The name-value pairs of a query string or form body, in order.
pub fn pairs(input: &[u8]) -> Result<Vec<(String, String)>, String> {
    input
        .split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = match part.iter().position(|&b| b == b'=') {
                Some(at) => (&part[..at], &part[at + 1..]),
                None => (part, &[][..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn decode(raw: &[u8]) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        bytes.push(byte);
                        i += 2;
                    }
                    // As browsers and Django do: a lone % stands for itself.
                    None => bytes.push(b'%'),
                }
            }
            other => bytes.push(other),
        }
        i += 1;
    }
    String::from_utf8(bytes).map_err(|_| "the text is not valid UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_strictly() {
        assert_eq!(
            pairs(b"a=1+2&b=%C3%91and%C3%BA&c&&d=100%").unwrap(),
            [("a", "1 2"), ("b", "Ñandú"), ("c", ""), ("d", "100%")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert!(pairs(b"a=%ff%fe").is_err());
        assert!(pairs(b"a=\xff").is_err());
        assert!(pairs(b"%ff=1").is_err());
    }
}
