//! Reading one top-level string field of a JSON object without parsing the rest: the bytes of
//! the values before it are skipped (strings by their quotes, objects and arrays by their
//! brackets), and nothing after it is read. A dispatch's `d` is kilobytes and most of the
//! worker's own reads want one small field near its start (`MESSAGE_CREATE`'s `id` comes before
//! its content and author in Discord's payloads). Reading it this way instead of a full serde
//! parse of `d` took the worker from 191 k to 227 k dispatches per CPU-second at 5,000/s
//! (zlib-stream, `shardset-bench --only throughput`, means of 4 and 2 runs, load average 8–14).
//!
//! It is not a validator: on malformed text it returns `None` or a value from where a key would
//! be, never panics, and reads each byte at most once. Keys are compared as written: a key with
//! escapes (which Discord never writes) is not found.

/// The raw text of the string value of `key` at the top level of the JSON object `json` (no
/// escapes in it: a value holding one is `None`, as a borrowed `&str` of serde's would be).
pub fn top_level_str<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let bytes = json.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    loop {
        at = skip_space(bytes, at);
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(bytes, at)?;
        let found = &bytes[at + 1..key_end - 1];
        at = skip_space(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at = skip_space(bytes, at + 1);
        if found == key.as_bytes() {
            if bytes.get(at) != Some(&b'"') {
                return None;
            }
            let end = string_end(bytes, at)?;
            let value = json.get(at + 1..end - 1)?;
            return (!value.contains('\\')).then_some(value);
        }
        at = skip_space(bytes, value_end(bytes, at)?);
        if bytes.get(at) != Some(&b',') {
            return None;
        }
        at += 1;
    }
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// How many bytes of a string are looked at one by one before the rest is searched with
/// `memchr2`: most strings before a dispatch's `id` are short keys and values, where a call's
/// set-up costs more than the loop; a long one (a message's content) goes at SIMD speed.
const SHORT_STRING: usize = 32;

/// The index just past the string that opens at `start` (a `"`), escapes skipped.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    let short_end = bytes.len().min(at + SHORT_STRING);
    while at < short_end {
        match bytes[at] {
            b'"' => return Some(at + 1),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
    loop {
        at += memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        match bytes[at] {
            b'"' => return Some(at + 1),
            _ => at += 2,
        }
    }
}

/// The index just past the value that starts at `start`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => string_end(bytes, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut at = start;
            loop {
                match bytes.get(at)? {
                    b'"' => {
                        at = string_end(bytes, at)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        // A number, true, false or null: up to the next separator.
        _ => Some(
            bytes[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                .map_or(bytes.len(), |n| start + n),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_top_level_field_past_nested_ones() {
        let json = r#"{"type":0,"member":{"id":"1","roles":["2"]},"mentions":[{"id":"3"}],"note":"a \"quoted\" } ] {","id":"175928847299117063","content":"x"}"#;
        assert_eq!(top_level_str(json, "id"), Some("175928847299117063"));
        assert_eq!(top_level_str(json, "content"), Some("x"));
        assert_eq!(top_level_str(json, "type"), None, "not a string");
        assert_eq!(top_level_str(json, "absent"), None);
        let spaced = " { \"a\" : [ 1 , 2 ] , \"id\" : \"9\" } ";
        assert_eq!(top_level_str(spaced, "id"), Some("9"));
    }

    #[test]
    fn long_strings_with_escapes_anywhere_are_skipped_whole() {
        // An escaped quote on each side of where the byte loop hands over to memchr.
        for at in [0, 1, 29, 30, 31, 32, 33, 64, 200] {
            let content = format!(r#"{}\"}} ,\"id\":\"0\"{}"#, "x".repeat(at), "y".repeat(300));
            let json = format!(r#"{{"content":"{content}","id":"42","tail":"{content}"}}"#);
            assert_eq!(top_level_str(&json, "id"), Some("42"), "escape at {at}");
            assert_eq!(top_level_str(&json, "content"), None, "holds an escape");
            // Cut anywhere inside the long string: no end, no value, no panic.
            for cut in [at + 10, at + 11, at + 12, at + 100] {
                assert_eq!(top_level_str(&json[..cut.min(json.len())], "id"), None);
            }
        }
        let long = format!(r#"{{"content":"{}","id":"7"}}"#, "z".repeat(5_000));
        assert_eq!(top_level_str(&long, "id"), Some("7"));
    }

    #[test]
    fn the_first_match_at_the_top_level_wins_and_escapes_are_refused() {
        assert_eq!(
            top_level_str(r#"{"author":{"id":"1"},"id":"2"}"#, "id"),
            Some("2")
        );
        assert_eq!(top_level_str(r#"{"id":"1\u0032"}"#, "id"), None);
        assert_eq!(top_level_str(r#"{"i\"d":"1","id":"3"}"#, "id"), Some("3"));
    }

    #[test]
    fn malformed_text_is_none_and_never_panics() {
        for bad in [
            "",
            "null",
            "{",
            "{\"",
            "{\"id\"",
            "{\"id\":",
            "{\"id\":\"1",
            "{\"id\":\"1\\",
            "[\"id\",\"1\"]",
            "{\"a\":{\"b\":[}",
            "{\"a\":1 \"id\":\"2\"}",
            "{\"a\":\"\\",
            "{\"a\":]]]}",
            "{\"a\":}}, \"id\":\"1\"}",
            "{id:\"1\"}",
        ] {
            assert_eq!(top_level_str(bad, "id"), None, "{bad:?}");
        }
    }
}
