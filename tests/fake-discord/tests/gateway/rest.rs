//! REST: `/gateway`, `/gateway/bot`, `/users/@me`, and Discord's 401 for a bad token.

use serde_json::Value;

use crate::fixture::{self, TOKEN};

#[tokio::test]
async fn gateway_bot_answers_discords_shape_and_refuses_a_bad_token() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        guilds: 2_500,
        max_concurrency: 16,
        session_start_limit: 2_000,
        ..fixture::config()
    })
    .await;
    let http = fixture::http();
    for base in [format!("{}/v10", fake.api_url()), fake.api_url()] {
        let body: Value = http
            .get(format!("{base}/gateway/bot"))
            .header("Authorization", format!("Bot {TOKEN}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(body["url"], fake.gateway_url());
        assert_eq!(body["shards"], 3, "about 1,000 guilds per shard");
        let limit = &body["session_start_limit"];
        assert_eq!(limit["total"], 2_000);
        assert_eq!(limit["remaining"], 2_000);
        assert_eq!(limit["max_concurrency"], 16);
        assert!(
            limit["reset_after"]
                .as_u64()
                .is_some_and(|ms| ms > 86_000_000)
        );
    }
    for auth in [Some("Bot wrong"), Some(TOKEN), None] {
        let mut request = http.get(format!("{}/v10/gateway/bot", fake.api_url()));
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await?;
        assert_eq!(response.status(), 401, "{auth:?}");
        let body: Value = response.json().await?;
        assert_eq!(body["message"], "401: Unauthorized");
    }
    let gateway: Value = http
        .get(format!("{}/v10/gateway", fake.api_url()))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(gateway["url"], fake.gateway_url());
    Ok(())
}

#[tokio::test]
async fn users_me_is_the_bot_and_the_public_url_overrides_the_host() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        public_url: Some("http://fake-discord.test:8080/".into()),
        application_id: 123_456_789_012_345_678,
        ..fixture::config()
    })
    .await;
    let http = fixture::http();
    let me: Value = http
        .get(format!("{}/v10/users/@me", fake.api_url()))
        .header("Authorization", format!("Bot {TOKEN}"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(me["id"], "123456789012345678");
    assert_eq!(me["bot"], true);
    assert_eq!(me["discriminator"], "0");
    let bot: Value = http
        .get(format!("{}/v10/gateway/bot", fake.api_url()))
        .header("Authorization", format!("Bot {TOKEN}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(bot["url"], "ws://fake-discord.test:8080");
    let missing = http
        .get(format!("{}/v10/nope", fake.api_url()))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);
    Ok(())
}
