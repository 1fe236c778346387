//! The bot token, in a type that cannot leak it by accident.
//!
//! A token in a log line, an Event, a status field or an error message is a token to reset:
//! `Token` prints `<redacted>` for both `Debug` and `Display`, is not `Serialize`, and hands out
//! the secret only through [`Token::expose`] and [`Token::authorization`], which name what they do.

use std::fmt;

/// A Discord bot token. Accepted with or without the `Bot ` prefix, as Discord accepts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token read from a Secret or the environment; surrounding whitespace (a trailing
    /// newline from `echo > file`) and a leading `Bot ` are removed.
    pub fn new(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        let trimmed = raw.trim();
        let bare = trimmed.strip_prefix("Bot ").unwrap_or(trimmed);
        Self(bare.to_owned())
    }

    /// True when nothing is left after trimming: never worth an Identify.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bare token, for the Identify and Resume payloads only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The REST `Authorization` header value, `Bot <token>`.
    pub fn authorization(&self) -> String {
        format!("Bot {}", self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_secret() {
        let token = Token::new("Bot very.secret.value\n");
        assert_eq!(token.expose(), "very.secret.value");
        assert_eq!(token.authorization(), "Bot very.secret.value");
        assert!(!format!("{token:?} {token} {token:#?}").contains("secret"));
    }

    #[test]
    fn whitespace_only_is_empty() {
        assert!(Token::new(" \n").is_empty());
        assert!(!Token::new("x").is_empty());
    }
}
