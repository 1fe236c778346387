//! The operator's Discord calls against the fake Discord (in-process, real HTTP): the bot id and
//! `/gateway/bot` figures, reuse within the refresh period (no call per reconcile), a 401 asked
//! once and turned into `InvalidToken` naming the Secret, and a new token asked at once.

use std::sync::Arc;

use fake_discord::{Config, FakeDiscord};
use shardset_contract::token::Token;
use shardset_operator::discord::{Discord, REFRESH, UNAUTHORIZED_RETRY};
use shardset_operator::metrics::Metrics;

const SECRET: &str = "Secret \"bot-token\" key \"token\"";

fn count(metrics: &Metrics, endpoint: &str, result: &str) -> u64 {
    let needle = format!(
        "shardset_operator_discord_requests_total{{endpoint=\"{endpoint}\",result=\"{result}\"}} "
    );
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&needle).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[tokio::test]
async fn asks_discord_on_a_schedule_and_reports_a_refused_token() {
    let config = Config {
        token: Some("right".into()),
        guilds: 2500,
        ..Config::default()
    };
    let app_id = config.application_id;
    let fake = FakeDiscord::spawn(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("fake discord");
    let metrics = Arc::new(Metrics::new());
    let discord = Discord::new(metrics.clone());
    let base = fake.api_url();

    // The right token: the bot id and the figures.
    let good = discord
        .lookup("ns/bot", &base, &Token::new("right"), SECRET)
        .await;
    assert_eq!(good.problem, None);
    assert_eq!(good.app_id, Some(app_id));
    let facts = good.facts.expect("facts");
    assert_eq!((facts.recommended_shards, facts.max_concurrency), (3, 1));
    assert_eq!((facts.session_total, facts.session_remaining), (1000, 1000));
    assert!(good.next_call_in <= REFRESH && good.next_call_in > REFRESH / 2);

    // Reconciles within the refresh period reuse the answer.
    for _ in 0..5 {
        let again = discord
            .lookup("ns/bot", &base, &Token::new("right"), SECRET)
            .await;
        assert_eq!(again.facts, Some(facts.clone()));
    }
    assert_eq!(count(&metrics, "gateway/bot", "ok"), 1);
    assert_eq!(count(&metrics, "users/@me", "ok"), 1);

    // A wrong token (another ShardSet): one 401, then quiet for the retry period.
    let bad = discord
        .lookup("ns/other", &base, &Token::new("wrong"), SECRET)
        .await;
    let problem = bad.problem.expect("a problem");
    assert_eq!(problem.reason(), "InvalidToken");
    assert!(problem.message().contains("bot-token") && !problem.message().contains("wrong"));
    assert!(bad.next_call_in > UNAUTHORIZED_RETRY / 2);
    for _ in 0..5 {
        let again = discord
            .lookup("ns/other", &base, &Token::new("wrong"), SECRET)
            .await;
        assert_eq!(again.problem.map(|p| p.reason()), Some("InvalidToken"));
    }
    assert_eq!(count(&metrics, "users/@me", "unauthorized"), 1);

    // The token is fixed: asked at once.
    let fixed = discord
        .lookup("ns/other", &base, &Token::new("right"), SECRET)
        .await;
    assert_eq!(fixed.problem, None);
    assert_eq!(fixed.app_id, Some(app_id));
    fake.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_api_backs_off() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let base = format!("http://127.0.0.1:{port}/api");
    let metrics = Arc::new(Metrics::new());
    let discord = Discord::new(metrics.clone());
    let first = discord
        .lookup("ns/bot", &base, &Token::new("t"), SECRET)
        .await;
    assert_eq!(
        first.problem.as_ref().map(|p| p.reason()),
        Some("GatewayUnreachable")
    );
    assert!(
        first.next_call_in.as_secs() >= 4,
        "{:?}",
        first.next_call_in
    );
    let again = discord
        .lookup("ns/bot", &base, &Token::new("t"), SECRET)
        .await;
    assert_eq!(
        again.problem, first.problem,
        "the cached failure, no new call"
    );
    assert_eq!(count(&metrics, "users/@me", "unreachable"), 1);
}
