//! The envelope of a gateway payload: `op`, `s`, `t`, and `d` left as raw JSON text.
//!
//! Discord writes every payload as `{"t":..,"s":..,"op":..,"d":..}` with `d` last. The fast path
//! reads the three small fields and takes the rest as `d` without scanning it: a dispatch's
//! payload (often kilobytes) is then read once, by whoever needs its fields, instead of twice.
//! Anything else (other field order, escapes in `t`, whitespace quirks) falls back to a full
//! serde_json parse, so correctness never depends on the fast path.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::opcode::Opcode;

/// A parsed envelope, borrowing from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The raw `op` ([`Envelope::opcode`] names it).
    pub op: u8,
    pub s: Option<u64>,
    /// The event name (borrowed unless it held escapes).
    pub t: Option<Cow<'a, str>>,
    /// The raw JSON text of `d` (`None` for a missing or `null` d).
    pub d: Option<&'a str>,
}

impl Envelope<'_> {
    /// The opcode, if Discord documents `op`.
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_code(self.op)
    }
}

/// Parses a payload's envelope.
pub fn parse(json: &[u8]) -> Result<Envelope<'_>, serde_json::Error> {
    if let Some(envelope) = fast(json) {
        return Ok(envelope);
    }
    #[derive(Deserialize)]
    struct Full<'a> {
        op: u8,
        #[serde(default)]
        s: Option<u64>,
        #[serde(default, borrow)]
        t: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        d: Option<&'a RawValue>,
    }
    let full: Full<'_> = serde_json::from_slice(json)?;
    Ok(Envelope {
        op: full.op,
        s: full.s,
        t: full.t,
        d: full.d.map(RawValue::get),
    })
}

/// The fast path: `{"t":<str|null>,"s":<int|null>,"op":<int>,"d":<rest>}` in any order of the
/// first three, `d` last. `None` means "use the full parser".
fn fast(json: &[u8]) -> Option<Envelope<'_>> {
    let text = std::str::from_utf8(json).ok()?;
    let mut rest = text.trim_start().strip_prefix('{')?;
    let (mut op, mut s, mut t) = (None, None, None);
    loop {
        rest = rest.trim_start().strip_prefix('"')?;
        let end = find_byte(rest, |b| b == b'"')?;
        let key = &rest[..end];
        rest = rest[end + 1..].trim_start().strip_prefix(':')?.trim_start();
        if key == "d" {
            let body = rest.trim_end().strip_suffix('}')?.trim_end();
            let d = (body != "null").then_some(body);
            return Some(Envelope { op: op?, s, t, d });
        }
        let value_end = if let Some(quoted) = rest.strip_prefix('"') {
            let close = find_byte(quoted, |b| b == b'"')?;
            let value = &quoted[..close];
            if value.contains('\\') {
                return None;
            }
            match key {
                "t" => t = Some(Cow::Borrowed(value)),
                _ => return None,
            }
            close + 2
        } else {
            let end = find_byte(rest, |b| b == b',' || b == b'}').unwrap_or(rest.len());
            let value = rest[..end].trim_end();
            match (key, value) {
                (_, "null") => {}
                ("s", n) => s = Some(n.parse().ok()?),
                ("op", n) => op = Some(n.parse().ok()?),
                _ => return None,
            }
            end
        };
        rest = rest[value_end..].trim_start();
        if let Some(next) = rest.strip_prefix(',') {
            rest = next;
        } else {
            // `}` before `d`: a payload without d.
            return rest.starts_with('}').then_some(Envelope {
                op: op?,
                s,
                t,
                d: None,
            });
        }
    }
}

/// The index of the first byte of `text` that `is` an ASCII delimiter. A byte loop, not
/// `str::find`: its char searcher (memchr, then a memcmp to confirm each match) cost more than
/// the short fields it searched, 3 % of the worker's CPU at 5,000 dispatches/s. An ASCII byte
/// never occurs inside a UTF-8 sequence, so the index is a char boundary.
fn find_byte(text: &str, is: impl Fn(u8) -> bool) -> Option<usize> {
    text.bytes().position(is)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_discords_field_order_without_scanning_d() {
        let json = br#"{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{"id":"1","content":"a \"quoted\" } brace"}}"#;
        let env = parse(json).expect("parse");
        assert_eq!(env.op, 0);
        assert_eq!(env.s, Some(42));
        assert_eq!(env.t.as_deref(), Some("MESSAGE_CREATE"));
        assert_eq!(
            env.d,
            Some(r#"{"id":"1","content":"a \"quoted\" } brace"}"#)
        );
        assert!(fast(json).is_some(), "took the fast path");
    }

    #[test]
    fn control_payloads() {
        let hello = parse(br#"{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250}}"#)
            .expect("hello");
        assert_eq!(hello.opcode(), Some(Opcode::Hello));
        assert_eq!((hello.op, hello.s, hello.t), (10, None, None));
        let unknown = parse(br#"{"t":null,"s":null,"op":99,"d":null}"#).expect("op 99");
        assert_eq!(unknown.opcode(), None, "kept, not refused");
        let escaped = parse(br#"{"t":"X\u0041","s":3,"op":0,"d":{}}"#).expect("escaped");
        assert_eq!(escaped.t.as_deref(), Some("XA"));
        assert_eq!(hello.d, Some(r#"{"heartbeat_interval":41250}"#));
        let ack = parse(br#"{"t":null,"s":null,"op":11,"d":null}"#).expect("ack");
        assert_eq!((ack.op, ack.d), (11, None));
        let invalid = parse(br#"{"t":null,"s":null,"op":9,"d":false}"#).expect("op 9");
        assert_eq!(invalid.d, Some("false"));
        let no_d = parse(br#"{"op":11}"#).expect("no d");
        assert_eq!((no_d.op, no_d.d), (11, None));
    }

    #[test]
    fn other_shapes_fall_back_to_the_full_parser() {
        // d first, spaces, escapes in t: all still parse, just not on the fast path.
        for json in [
            &br#"{"d":{"a":1},"op":0,"s":3,"t":"X"}"#[..],
            br#" { "op" : 0 , "s" : 3 , "t" : "X" , "d" : { "a" : 1 } } "#,
            br#"{"t":"X\u0041","s":3,"op":0,"d":{"a":1}}"#,
        ] {
            let env = parse(json).expect("parse");
            assert_eq!(
                (env.op, env.s),
                (0, Some(3)),
                "{}",
                String::from_utf8_lossy(json)
            );
            assert!(env.d.is_some_and(|d| d.contains("\"a\"")));
        }
        assert!(fast(br#"{"d":{"a":1},"op":0}"#).is_none());
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{"s":1}"#).is_err(), "op is required");
    }
}
