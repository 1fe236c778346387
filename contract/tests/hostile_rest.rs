//! The REST client against a server that answers what it likes (issue 11, item 9): whatever a
//! `gateway.apiUrl` returns, the client never panics, never reads more than a bounded body, and
//! turns absurd numbers into errors or bounded waits. The server is a plain TCP listener that
//! writes canned HTTP answers, so every byte on the wire is the test's choice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shardset_contract::rest::{DiscordRest, MAX_BODY_BYTES, MAX_RETRY_AFTER, RestError};
use shardset_contract::token::Token;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server on loopback that reads each request (one read is enough for these GETs) and hands
/// the socket to `answer`; returns the REST base.
async fn listen<F, Fut>(answer: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                answer(socket).await;
            });
        }
    });
    format!("http://{addr}/api")
}

/// Serves `head` (status line and headers, without the blank line) and `body` to every
/// connection; returns the REST base.
async fn serve(head: &'static str, body: &'static str) -> String {
    listen(move |mut socket| async move {
        let answer = format!(
            "{head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(answer.as_bytes()).await;
    })
    .await
}

fn client(base: &str) -> DiscordRest {
    DiscordRest::new(base, Token::new("test-token")).expect("client")
}

fn retry_after(error: RestError) -> Duration {
    match error {
        RestError::RateLimited { retry_after } => retry_after,
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

#[tokio::test]
async fn an_absurd_retry_after_in_the_body_is_bounded() {
    for body in [
        r#"{"retry_after": 1e300, "global": false}"#,
        r#"{"retry_after": 1.7976931348623157e308}"#,
    ] {
        let base = serve("HTTP/1.1 429 Too Many Requests", body).await;
        let wait = retry_after(client(&base).gateway_bot().await.expect_err("429"));
        assert_eq!(wait, MAX_RETRY_AFTER, "{body}");
    }
    let base = serve("HTTP/1.1 429 Too Many Requests", r#"{"retry_after": -5}"#).await;
    let wait = retry_after(client(&base).current_user().await.expect_err("429"));
    assert_eq!(wait, Duration::ZERO);
}

#[tokio::test]
async fn an_absurd_retry_after_header_is_bounded() {
    for header in ["inf", "NaN", "1e300", "-inf", "18446744073709551616"] {
        let head: &'static str = Box::leak(
            format!("HTTP/1.1 429 Too Many Requests\r\nretry-after: {header}").into_boxed_str(),
        );
        let base = serve(head, "not json").await;
        let wait = retry_after(client(&base).gateway_bot().await.expect_err("429"));
        assert!(wait <= MAX_RETRY_AFTER, "{header}: {wait:?}");
        // The message path reads only the header.
        let wait = retry_after(
            client(&base)
                .create_message("1", "hi", None)
                .await
                .expect_err("429"),
        );
        assert!(wait <= MAX_RETRY_AFTER, "{header}: {wait:?}");
    }
}

#[tokio::test]
async fn absurd_gateway_numbers_are_refused() {
    for body in [
        r#"{"url":"wss://gateway.discord.gg","shards":4294967295,
            "session_start_limit":{"total":1000,"remaining":1000,"reset_after":0,"max_concurrency":1}}"#,
        r#"{"url":"wss://gateway.discord.gg","shards":1,
            "session_start_limit":{"total":1000,"remaining":1000,"reset_after":0,"max_concurrency":1e9}}"#,
    ] {
        let base = serve("HTTP/1.1 200 OK\r\ncontent-type: application/json", body).await;
        let error = client(&base).gateway_bot().await.expect_err("refused");
        assert_eq!(error.metric_label(), "malformed", "{error}");
    }
}

/// A server that sends an endless body (chunked, so no length warns the client) and counts the
/// bytes it managed to write before the client hung up.
async fn endless(status: &'static str) -> (String, Arc<AtomicU64>) {
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let base = listen(move |mut socket| {
        let counter = counter.clone();
        async move {
            let head = format!(
                "{status}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            );
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 64 * 1024];
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk,
                b"\r\n".to_vec(),
            ]
            .concat();
            // At most 1 GiB: the test must end even if the client read it all.
            for _ in 0..16 * 1024 {
                if socket.write_all(&framed).await.is_err() {
                    return;
                }
                counter.fetch_add(64 * 1024, Ordering::Relaxed);
            }
        }
    })
    .await;
    (base, written)
}

#[tokio::test]
async fn an_endless_body_is_cut_off() {
    for status in ["HTTP/1.1 200 OK", "HTTP/1.1 429 Too Many Requests"] {
        let (base, written) = endless(status).await;
        let answer = tokio::time::timeout(Duration::from_secs(10), client(&base).gateway_bot())
            .await
            .expect("the client gives up on its own");
        let error = answer.expect_err("too large");
        if status.contains("200") {
            assert_eq!(error.metric_label(), "malformed", "{error}");
            assert!(error.to_string().contains("larger than"), "{error}");
        }
        // What the server could write: the bounded read plus the socket buffers, far from 1 GiB.
        let sent = written.load(Ordering::Relaxed);
        assert!(
            sent < 64 * MAX_BODY_BYTES as u64,
            "the client read {sent} bytes"
        );
    }
}

#[tokio::test]
async fn a_declared_huge_body_is_refused_before_reading() {
    let base = listen(|mut socket| async move {
        let _ = socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10000000000\r\n\r\n{")
            .await;
        // Never sends the rest: a client that waited for it would hang.
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let answer = tokio::time::timeout(Duration::from_secs(5), client(&base).current_user())
        .await
        .expect("refused at once");
    let error = answer.expect_err("too large");
    assert_eq!(error.metric_label(), "malformed", "{error}");
}
