//! Reading Discord snowflakes: ids are strings in payloads (JSON numbers cannot hold 64 bits in
//! every client), but numbers and `null` are accepted too, as Discord accepts them.

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw<'a> {
    Str(&'a str),
    Owned(String),
    Num(u64),
}

impl Raw<'_> {
    fn id(self) -> Option<u64> {
        match self {
            Self::Str(s) => s.parse().ok(),
            Self::Owned(s) => s.parse().ok(),
            Self::Num(n) => Some(n),
        }
    }
}

/// An optional snowflake (`"41"`, `41` or `null`; anything unparsable is `None`).
pub fn opt_snowflake<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Raw<'de>>::deserialize(d)?.and_then(Raw::id))
}

/// A list of snowflakes (`null` or absent: empty; unparsable entries are left out).
pub fn snowflake_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    let ids = Option::<Vec<Raw<'de>>>::deserialize(d)?.unwrap_or_default();
    Ok(ids.into_iter().filter_map(Raw::id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Ids {
        #[serde(default, deserialize_with = "opt_snowflake")]
        one: Option<u64>,
        #[serde(default, deserialize_with = "snowflake_list")]
        many: Vec<u64>,
    }

    #[test]
    fn strings_numbers_and_null_are_read() {
        let ids: Ids = serde_json::from_str(r#"{"one":"41","many":["1",2,"x"]}"#).expect("ids");
        assert_eq!((ids.one, ids.many), (Some(41), vec![1, 2]));
        let ids: Ids = serde_json::from_str(r#"{"one":null,"many":null}"#).expect("nulls");
        assert_eq!((ids.one, ids.many), (None, vec![]));
        let ids: Ids = serde_json::from_str(r#"{"one":"a\u0031"}"#).expect("escaped");
        assert_eq!(ids.one, None);
        let ids: Ids = serde_json::from_str(r#"{"one":"\u0034\u0031"}"#).expect("escaped");
        assert_eq!(ids.one, Some(41));
    }
}
