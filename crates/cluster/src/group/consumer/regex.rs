//! `subscribed_topic_regex` matching.
//!
//! Kafka compiles the pattern with RE2/J and resolves it with `matcher(topic).matches()`: a full
//! match in linear time. The `regex` crate implements the same RE2 syntax with the same
//! linear-time guarantee, so a hostile pattern cannot make matching slow; its compiled size is
//! bounded below.

/// Bound on a compiled pattern's size (the `regex` crate's `size_limit`), so a client cannot
/// make the coordinator build a huge automaton.
const COMPILED_BYTES_MAX: usize = 1 << 20;

/// A compiled pattern that matches whole topic names.
#[derive(Debug, Clone)]
pub struct Regex {
    inner: regex::Regex,
}

impl Regex {
    /// Compiles `pattern` for full matches; the error text goes to the client with
    /// INVALID_REGULAR_EXPRESSION.
    pub fn new(pattern: &str) -> Result<Regex, String> {
        regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(COMPILED_BYTES_MAX)
            .dfa_size_limit(COMPILED_BYTES_MAX)
            .build()
            .map(|inner| Regex { inner })
            .map_err(|e| e.to_string())
    }

    /// Whether the whole of `text` matches (Java's `Matcher.matches`).
    pub fn full_match(&self, text: &str) -> bool {
        self.inner.is_match(text)
    }
}

#[cfg(test)]
mod tests {
    use super::Regex;

    // Full-match semantics and RE2 syntax on topic-like names; invalid patterns are refused.
    #[test]
    fn regex_full_match() {
        let cases: &[(&str, &str, bool)] = &[
            ("orders.*", "orders-eu", true),
            ("orders.*", "x-orders", false),
            ("orders", "orders-eu", false),
            ("orders-(eu|us)", "orders-us", true),
            ("orders-(?:eu|us)", "orders-ca", false),
            ("t[0-9]+", "t42", true),
            ("t[0-9]+", "t", false),
            ("t\\d{2}", "t42", true),
            ("t\\d{2}", "t423", false),
            ("[^_].*", "_internal", false),
            ("(?i)ORDERS", "orders", true),
            ("a|b", "b", true),
            (
                "(a*)*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac",
                false,
            ),
        ];
        for (pattern, text, want) in cases {
            let re = Regex::new(pattern).expect("valid pattern");
            assert_eq!(re.full_match(text), *want, "{pattern} vs {text}");
        }
        for bad in ["(", "a)", "[a", "*a", "a{2,1}"] {
            assert!(Regex::new(bad).is_err(), "{bad} should be invalid");
        }
        assert!(
            Regex::new(&"(a{1000}){1000}".repeat(10)).is_err(),
            "oversized pattern refused"
        );
    }
}
