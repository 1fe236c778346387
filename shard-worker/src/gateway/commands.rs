//! What a shard sends on its own: the gateway URL it connects to and the session's command
//! payloads (op 1 Heartbeat, op 2 Identify, op 6 Resume). What a bot asks its shards to send is
//! [`super::bot_commands`].
//!
//! Source: discord-api-docs `developers/events/gateway.mdx` ("Connecting", "Sending Heartbeats")
//! and `developers/events/gateway-events.mdx` ("Identify", "Resume"). The token goes into Identify
//! and Resume only, which travel to the gateway and nowhere else.

use serde_json::json;
use shardset_contract::token::Token;

use super::compression::{GatewayCompression, compress_param};
use super::opcode::Opcode;

/// `url` with `?v=10&encoding=json` and `&compress=<compression>` (left out for none).
pub fn gateway_query(url: &str, compression: GatewayCompression) -> Option<String> {
    let mut parsed = url::Url::parse(url).ok()?;
    let mut query = parsed.query_pairs_mut();
    query
        .clear()
        .append_pair("v", "10")
        .append_pair("encoding", "json");
    if let Some(compress) = compress_param(compression) {
        query.append_pair("compress", compress);
    }
    drop(query);
    Some(parsed.to_string())
}

/// op 1 with the last sequence number received (`null` before the first dispatch).
pub fn heartbeat(seq: Option<u64>) -> String {
    let op = Opcode::Heartbeat.code();
    match seq {
        Some(seq) => format!(r#"{{"op":{op},"d":{seq}}}"#),
        None => format!(r#"{{"op":{op},"d":null}}"#),
    }
}

/// op 2 for shard `[shard, total]` with `intents`.
pub fn identify(token: &Token, shard: u32, total: u32, intents: u64) -> String {
    json!({
        "op": Opcode::Identify,
        "d": {
            "token": token.expose(),
            "properties": {"os": std::env::consts::OS, "browser": "shardset", "device": "shardset"},
            "shard": [shard, total],
            "intents": intents,
        }
    })
    .to_string()
}

/// op 6 for session `session_id`, replaying what followed `seq`.
pub fn resume(token: &Token, session_id: &str, seq: u64) -> String {
    json!({
        "op": Opcode::Resume,
        "d": {"token": token.expose(), "session_id": session_id, "seq": seq}
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_gateway_query() {
        assert_eq!(
            gateway_query("wss://gateway.discord.gg", GatewayCompression::default()).as_deref(),
            Some("wss://gateway.discord.gg/?v=10&encoding=json&compress=zstd-stream")
        );
        assert_eq!(
            gateway_query("ws://127.0.0.1:9/gw?v=9", GatewayCompression::ZlibStream).as_deref(),
            Some("ws://127.0.0.1:9/gw?v=10&encoding=json&compress=zlib-stream")
        );
        assert_eq!(
            gateway_query("ws://127.0.0.1:9/resume", GatewayCompression::None).as_deref(),
            Some("ws://127.0.0.1:9/resume?v=10&encoding=json")
        );
        assert!(gateway_query("not a url", GatewayCompression::None).is_none());
    }

    #[test]
    fn payloads_carry_their_opcode_and_fields() {
        assert_eq!(heartbeat(Some(42)), r#"{"op":1,"d":42}"#);
        assert_eq!(heartbeat(None), r#"{"op":1,"d":null}"#);
        let token = Token::new("Bot secret");
        let identify: serde_json::Value =
            serde_json::from_str(&identify(&token, 3, 16, 513)).expect("json");
        assert_eq!(identify["op"], 2);
        assert_eq!(identify["d"]["token"], "secret");
        assert_eq!(identify["d"]["shard"], json!([3, 16]));
        assert_eq!(identify["d"]["intents"], 513);
        let resume: serde_json::Value =
            serde_json::from_str(&resume(&token, "abc", 7)).expect("json");
        assert_eq!(
            resume,
            json!({"op": 6, "d": {"token": "secret", "session_id": "abc", "seq": 7}})
        );
    }
}
