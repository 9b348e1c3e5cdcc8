//! Strict parsing of the console API's path segments and query strings: anything malformed
//! (bad percent escapes, non-UTF-8, unknown or repeated parameters, numbers out of range) is
//! refused with a reason, which the caller answers with 400.

/// Longest path segment or query value accepted, decoded (topic names are at most 249
/// bytes; group ids are client-chosen but rarely long).
pub const SEGMENT_BYTES_MAX: usize = 1024;

/// Parameters in one query string.
pub const QUERY_PARAMETERS_MAX: usize = 8;

/// Decodes one `%`-escaped path segment or query value into UTF-8 text.
pub fn percent_decode(raw: &str, plus_is_space: bool) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len().min(SEGMENT_BYTES_MAX));
    let mut i = 0;
    while i < bytes.len() {
        let byte = match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| "malformed %-escape".to_owned())?;
                i += 3;
                hex
            }
            b'+' if plus_is_space => {
                i += 1;
                b' '
            }
            b => {
                i += 1;
                b
            }
        };
        if out.len() >= SEGMENT_BYTES_MAX {
            return Err(format!("longer than {SEGMENT_BYTES_MAX} bytes"));
        }
        out.push(byte);
    }
    String::from_utf8(out).map_err(|_| "not UTF-8".to_owned())
}

/// The `name=value` pairs of a query string, decoded; only names in `allowed`, each at most
/// once.
pub fn parameters<'a>(query: &str, allowed: &[&'a str]) -> Result<Vec<(&'a str, String)>, String> {
    let mut found: Vec<(&'a str, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if found.len() >= QUERY_PARAMETERS_MAX {
            return Err(format!("more than {QUERY_PARAMETERS_MAX} query parameters"));
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name, true)?;
        let Some(known) = allowed.iter().find(|a| **a == name) else {
            return Err(format!(
                "unknown query parameter '{}' (known: {})",
                name.chars().take(64).collect::<String>(),
                allowed.join(", ")
            ));
        };
        if found.iter().any(|(n, _)| n == known) {
            return Err(format!("query parameter '{known}' given twice"));
        }
        found.push((known, percent_decode(value, true)?));
    }
    Ok(found)
}

/// A decimal integer in `min..=max` (no sign tricks, no spaces).
pub fn integer(name: &str, value: &str, min: i64, max: i64) -> Result<i64, String> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let well_formed = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    well_formed
        .then(|| value.parse::<i64>().ok())
        .flatten()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("'{name}' must be an integer in {min}..={max}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Escapes decode; malformed, non-UTF-8 and overlong input is refused, not panicked on.
    #[test]
    fn decoding_is_strict() {
        assert_eq!(percent_decode("a%20b", false).unwrap(), "a b");
        assert_eq!(percent_decode("a+b", true).unwrap(), "a b");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        for bad in ["%", "%2", "%zz", "%ff", "%e2%82"] {
            assert!(percent_decode(bad, false).is_err(), "{bad}");
        }
        let long = "x".repeat(SEGMENT_BYTES_MAX + 1);
        assert!(percent_decode(&long, false).is_err());
        assert!(percent_decode(&"x".repeat(SEGMENT_BYTES_MAX), false).is_ok());
    }

    // Only known parameters, each once; integers within their range.
    #[test]
    fn parameters_are_checked() {
        let p = parameters("offset=5&limit=2", &["offset", "limit"]).unwrap();
        assert_eq!(
            p,
            vec![("offset", "5".to_owned()), ("limit", "2".to_owned())]
        );
        assert!(parameters("offset=1&offset=2", &["offset"]).is_err());
        assert!(parameters("evil=1", &["offset"]).is_err());
        assert!(parameters(&"a=1&".repeat(20), &["a"]).is_err());
        assert_eq!(integer("limit", "3", 1, 10), Ok(3));
        for bad in [
            "",
            "0",
            "11",
            "-1",
            "+3",
            " 3",
            "3x",
            "99999999999999999999",
        ] {
            assert!(integer("limit", bad, 1, 10).is_err(), "{bad}");
        }
    }
}
