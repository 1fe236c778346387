//! Message nonces (message.mdx, "Create Message": `nonce`, "integer or string … up to 25
//! characters"; `enforce_nonce`: "If true and nonce is present, it will be checked for uniqueness
//! in the past few minutes. If another message was created by the same author with the same
//! nonce, that message will be returned and no new message will be created").
//!
//! The fake keys a nonce by channel: every REST create is the bot's, so one author, and a
//! nonce is the reply's identity in the channel it answers in. `"7"` and `7` are one nonce.
//! Entries live for the window (`--nonce-window-ms`), at most `CAPACITY` of them.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use serde_json::Value;

use crate::rules::{Micros, US_PER_MS};

/// Longest nonce, in characters.
const MAX_NONCE_CHARS: usize = 25;
/// Most nonces remembered at once (oldest forgotten first).
const CAPACITY: usize = 200_000;

/// A create's `nonce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce {
    /// What identifies it: the string, or the integer's digits.
    pub key: String,
    /// As it was sent (a JSON string or integer), to echo in the message.
    pub json: String,
}

/// Reads a `nonce`: a string of at most 25 characters or an integer; anything else is an
/// invalid form body.
pub fn parse_nonce(value: &Value) -> Result<Nonce, String> {
    match value {
        Value::String(s) if s.chars().count() <= MAX_NONCE_CHARS => Ok(Nonce {
            key: s.clone(),
            json: value.to_string(),
        }),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Nonce {
            key: n.to_string(),
            json: n.to_string(),
        }),
        _ => Err(format!(
            "nonce must be an integer or a string of at most {MAX_NONCE_CHARS} characters"
        )),
    }
}

/// The messages created with `enforce_nonce`, by channel and nonce.
#[derive(Debug)]
pub struct Nonces {
    window: Micros,
    /// (channel, nonce) → when, and the message created.
    by_key: HashMap<(u64, String), (Micros, Bytes)>,
    /// Keys in creation order, for forgetting.
    order: VecDeque<(Micros, (u64, String))>,
}

impl Nonces {
    pub fn new(window_ms: u64) -> Self {
        Self {
            window: window_ms * US_PER_MS,
            by_key: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Forgets what is older than the window, and the oldest beyond the capacity.
    fn forget(&mut self, now: Micros) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_sub(*at) < self.window && self.order.len() <= CAPACITY {
                break;
            }
            if let Some((at, key)) = self.order.pop_front()
                && self.by_key.get(&key).is_some_and(|(t, _)| *t == at)
            {
                self.by_key.remove(&key);
            }
        }
    }

    /// The message created in `channel` with `nonce` within the window, if any.
    pub fn find(&mut self, channel: u64, nonce: &str, now: Micros) -> Option<Bytes> {
        self.forget(now);
        self.by_key
            .get(&(channel, nonce.to_owned()))
            .map(|(_, message)| message.clone())
    }

    /// Remembers the message created in `channel` with `nonce` at `now`.
    pub fn remember(&mut self, channel: u64, nonce: &str, now: Micros, message: Bytes) {
        let key = (channel, nonce.to_owned());
        self.by_key.insert(key.clone(), (now, message));
        self.order.push_back((now, key));
        self.forget(now);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const S: Micros = 1_000_000;

    #[test]
    fn nonces_are_short_strings_or_integers() {
        assert_eq!(
            parse_nonce(&json!("abc")),
            Ok(Nonce {
                key: "abc".into(),
                json: r#""abc""#.into()
            })
        );
        let number = parse_nonce(&json!(1_234)).expect("an integer");
        assert_eq!(
            (number.key.as_str(), number.json.as_str()),
            ("1234", "1234")
        );
        assert_eq!(
            parse_nonce(&json!("1234")).map(|n| n.key),
            Ok("1234".into())
        );
        assert!(parse_nonce(&json!("x".repeat(25))).is_ok());
        for bad in [json!("x".repeat(26)), json!(1.5), json!(true), json!({})] {
            assert!(parse_nonce(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_nonce_finds_its_message_in_its_channel_within_the_window() {
        let mut nonces = Nonces::new(60_000);
        let first = Bytes::from_static(b"{\"id\":\"1\"}");
        nonces.remember(7, "n", 10 * S, first.clone());
        assert_eq!(nonces.find(7, "n", 20 * S), Some(first.clone()));
        assert_eq!(nonces.find(8, "n", 20 * S), None, "another channel");
        assert_eq!(nonces.find(7, "m", 20 * S), None, "another nonce");
        assert_eq!(nonces.find(7, "n", 70 * S - 1), Some(first));
        assert_eq!(nonces.find(7, "n", 70 * S), None, "the window is over");
        // Used again after the window: a new message, remembered anew.
        let second = Bytes::from_static(b"{\"id\":\"2\"}");
        nonces.remember(7, "n", 71 * S, second.clone());
        assert_eq!(nonces.find(7, "n", 72 * S), Some(second));
    }
}
