//! How a platform's credentials look in text. Each adapter lists its tokens' shapes, and the
//! log writer redacts whatever matches without knowing which platform a shape belongs to.

/// One shape of credential: a marker, then the token's characters (ASCII letters and digits
/// and `-_.~+/=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPattern {
    /// The text that starts the token (`xoxb-`) or comes before it (`Bearer `).
    pub marker: &'static str,
    /// Whether the marker stays in the text (a scheme such as `Bearer `) or goes with the
    /// token (a prefix that is part of it, such as `xoxb-`).
    pub keep_marker: bool,
    /// The fewest token characters after the marker for a match.
    pub min_chars: usize,
    /// Whether the token must hold a dot, so that ordinary words after the marker stay.
    pub needs_dot: bool,
}

impl TokenPattern {
    /// A token that starts with `prefix`: the prefix and what follows are replaced.
    pub const fn prefix(prefix: &'static str) -> Self {
        Self {
            marker: prefix,
            keep_marker: false,
            min_chars: 1,
            needs_dot: false,
        }
    }

    /// A token that follows `scheme` (`Bearer `): the scheme stays, the token is replaced.
    pub const fn after(scheme: &'static str) -> Self {
        Self {
            marker: scheme,
            keep_marker: true,
            min_chars: 1,
            needs_dot: false,
        }
    }

    /// Whether `token`, the characters after the marker, is a credential of this shape.
    pub fn matches(&self, token: &str) -> bool {
        token.len() >= self.min_chars && (!self.needs_dot || token.contains('.'))
    }
}

/// Serializes a secret setting as `"[redacted]"` when set (`None` when not), so that a dump of
/// the settings (`anchorbot config`) never shows it: `#[serde(serialize_with = "…")]`.
pub fn serialize_redacted<T, S: serde::Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("[redacted]"),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_needs_its_length_and_its_dot() {
        let bot = TokenPattern {
            marker: "Bot ",
            keep_marker: true,
            min_chars: 20,
            needs_dot: true,
        };
        assert!(bot.matches("MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl"));
        assert!(!bot.matches("said"));
        assert!(!bot.matches("MTIzNDU2Nzg5MDEyMzQ1Njc4"));
        assert!(TokenPattern::prefix("xoxb-").matches("1"));
        assert!(!TokenPattern::after("Bearer ").matches(""));
    }
}
