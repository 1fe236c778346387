//! The bot token, in a type that cannot leak it by accident.
//!
//! A token in a log line, an Event, a status field or an error message is a token to reset:
//! `Token` prints `<redacted>` for both `Debug` and `Display`, is not `Serialize`, and hands out
//! the secret only through [`Token::expose`] and [`Token::authorization`], which name what they do.

use std::fmt;

/// Log targets that must never reach a log, whatever `RUST_LOG` says: tungstenite traces every
/// frame it sends, payload included (Identify and Resume carry the token in clear). Binaries
/// turn these off in a filter of their own, after `RUST_LOG`'s (see `operator/src/telemetry.rs`
/// and the worker binary); without the `tracing-log` bridge their `log` records are dropped
/// anyway, this is the second lock.
pub const NEVER_LOGGED_TARGETS: &[&str] = &["tungstenite", "tokio_tungstenite"];

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

    /// The bot's user id, read from the token itself: a Discord token's first segment is the
    /// base64 of the id in decimal. Lets a worker whose token Discord refused still name its
    /// Redis prefix (to report the refusal); `None` for tokens of another shape (tests, fakes).
    pub fn bot_id(&self) -> Option<u64> {
        use base64::Engine as _;
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
        let lenient = GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true);
        let first = self.0.split('.').next()?;
        let decoded = [base64::alphabet::STANDARD, base64::alphabet::URL_SAFE]
            .iter()
            .find_map(|alphabet| GeneralPurpose::new(alphabet, lenient).decode(first).ok())?;
        let text = std::str::from_utf8(&decoded).ok()?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
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
    fn the_bot_id_is_read_from_the_first_segment() {
        // base64("1311000000000000000") without padding, as Discord writes it.
        let token = Token::new("MTMxMTAwMDAwMDAwMDAwMDAwMA.GhIjKl.not-a-real-signature");
        assert_eq!(token.bot_id(), Some(1_311_000_000_000_000_000));
        assert_eq!(Token::new("test-token-do-not-log").bot_id(), None);
        assert_eq!(
            Token::new("aGVsbG8.x.y").bot_id(),
            None,
            "base64 of 'hello'"
        );
    }

    #[test]
    fn whitespace_only_is_empty() {
        assert!(Token::new(" \n").is_empty());
        assert!(!Token::new("x").is_empty());
    }
}
