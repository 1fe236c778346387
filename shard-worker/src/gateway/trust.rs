//! Where a shard may send its token on a Resume. op 6 carries the token to the session's
//! `resume_gateway_url`, which comes from READY or from a session saved in Redis, and anyone who
//! can write the bot's Redis can plant a record naming a host of theirs. So a resume URL is used
//! only when it names a host the worker trusts anyway (discord-api-docs
//! `developers/events/gateway.mdx`, "Resuming": resume on `resume_gateway_url`; Discord's are
//! `wss://gateway-*.discord.gg`):
//!
//! - `wss://` on the domain of the gateway URL that `GET /gateway/bot` answered, or a subdomain
//!   of it (`gateway.discord.gg` → `*.discord.gg`; an IP address: that address only), default
//!   port;
//! - when `DISCORD_API_URL` is not Discord's (a fake the operator was installed to trust): also
//!   `ws://` or `wss://` on the fake's own host and port (that of the API URL or of the gateway URL
//!   it answered).
//!
//! Anything else is [`Untrusted`]: a saved record naming it counts as absent (the shard
//! identifies through the gate), and a READY naming it is resumed on the gateway URL instead.

use url::{Host, Url};

/// Why a resume URL is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    #[error("not a URL")]
    NotAUrl,
    #[error("not wss:// (ws:// only to a configured fake)")]
    Scheme,
    #[error("not a host of the gateway's domain, nor the configured fake's")]
    Host,
}

impl Untrusted {
    /// A fixed label for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::NotAUrl => "not_a_url",
            Self::Scheme => "scheme",
            Self::Host => "host",
        }
    }
}

/// The hosts a worker resumes on, from its API URL and the gateway URL Discord answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeTrust {
    /// Resume hosts must be this host or under it (`wss://`, default port).
    gateway_domain: Option<Host<String>>,
    /// `(host, port)` of a configured fake: `ws://` or `wss://` allowed there.
    fake_origins: Vec<(String, u16)>,
}

impl ResumeTrust {
    /// Trust for a worker whose REST base is `api_url` (`DISCORD_API_URL`) and whose gateway URL
    /// (`GET /gateway/bot`) is `gateway_url`.
    pub fn new(api_url: &str, gateway_url: &str) -> Self {
        let api = Url::parse(api_url).ok();
        let gateway = Url::parse(gateway_url).ok();
        let gateway_domain = gateway
            .as_ref()
            .and_then(|g| g.host())
            .map(|host| match host {
                Host::Domain(name) => Host::Domain(parent_domain(name).to_owned()),
                other => other.to_owned(),
            });
        let fake_origins = if api.as_ref().is_some_and(is_discord_api) {
            Vec::new()
        } else {
            [api, gateway].iter().flatten().filter_map(origin).collect()
        };
        Self {
            gateway_domain,
            fake_origins,
        }
    }

    /// Whether the token may be sent to `url` in a Resume.
    pub fn check(&self, url: &str) -> Result<(), Untrusted> {
        let url = Url::parse(url).map_err(|_| Untrusted::NotAUrl)?;
        if matches!(url.scheme(), "ws" | "wss")
            && origin(&url).is_some_and(|o| self.fake_origins.contains(&o))
        {
            return Ok(());
        }
        if url.scheme() != "wss" {
            return Err(Untrusted::Scheme);
        }
        let under_domain = match (url.host(), &self.gateway_domain) {
            (Some(Host::Domain(name)), Some(Host::Domain(domain))) => {
                name == domain
                    || name
                        .strip_suffix(domain.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            }
            (Some(host), Some(trusted)) => host.to_owned() == *trusted,
            _ => false,
        };
        if under_domain && url.port_or_known_default() == Some(443) {
            Ok(())
        } else {
            Err(Untrusted::Host)
        }
    }
}

/// `url` without its query, fragment and user info: what a log may say about a URL that may
/// carry anything.
pub fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Ok(url) => {
            format!(
                "{}://{}{}",
                url.scheme(),
                url.host_str().unwrap_or_default(),
                url.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + url.path()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// Discord's own REST API (`https://discord.com/api`, its `canary.`/`ptb.` hosts, the old
/// `discordapp.com`): then no fake is trusted.
fn is_discord_api(url: &Url) -> bool {
    url.scheme() == "https"
        && url.domain().is_some_and(|d| {
            ["discord.com", "discordapp.com"]
                .iter()
                .any(|root| d == *root || d.ends_with(&format!(".{root}")))
        })
}

/// The domain gateway hosts share: the host without its first label when it has three or more
/// (`gateway.discord.gg` → `discord.gg`), else the host itself.
fn parent_domain(host: &str) -> &str {
    match host.split_once('.') {
        Some((_, rest)) if rest.contains('.') => rest,
        _ => host,
    }
}

/// `(host, port)` of a URL with a host.
fn origin(url: &Url) -> Option<(String, u16)> {
    Some((url.host_str()?.to_owned(), url.port_or_known_default()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discord() -> ResumeTrust {
        ResumeTrust::new("https://discord.com/api", "wss://gateway.discord.gg")
    }

    #[test]
    fn discords_resume_hosts_are_trusted_and_nothing_else() {
        let trust = discord();
        for ok in [
            "wss://gateway-us-east1-b.discord.gg",
            "wss://gateway-us-east1-b.discord.gg/?v=10",
            "wss://gateway.discord.gg:443",
            "wss://discord.gg",
        ] {
            assert_eq!(trust.check(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("ws://gateway-us-east1-b.discord.gg", Untrusted::Scheme),
            ("https://gateway.discord.gg", Untrusted::Scheme),
            ("wss://evil.example", Untrusted::Host),
            ("wss://discord.gg.evil.example", Untrusted::Host),
            ("wss://evildiscord.gg", Untrusted::Host),
            ("wss://gateway.discord.gg:8443", Untrusted::Host),
            ("wss://127.0.0.1", Untrusted::Host),
            ("wss://user:pw@evil.example/discord.gg", Untrusted::Host),
            ("ws://127.0.0.1:9", Untrusted::Scheme),
            ("not a url", Untrusted::NotAUrl),
        ] {
            assert_eq!(trust.check(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn a_configured_fake_is_trusted_on_its_own_host_and_port_only() {
        let trust = ResumeTrust::new("http://127.0.0.1:8080/api", "ws://127.0.0.1:8080");
        assert_eq!(trust.check("ws://127.0.0.1:8080/resume"), Ok(()));
        assert_eq!(trust.check("wss://127.0.0.1:8080/resume"), Ok(()));
        assert_eq!(
            trust.check("ws://127.0.0.1:9/resume"),
            Err(Untrusted::Scheme)
        );
        assert_eq!(trust.check("ws://127.0.0.2:8080"), Err(Untrusted::Scheme));
        // A fake behind a Service, answering another public URL than the API's host.
        let trust = ResumeTrust::new(
            "http://fake-discord.test.svc:8080/api",
            "ws://fake.example:80",
        );
        assert_eq!(trust.check("ws://fake.example/resume"), Ok(()));
        assert_eq!(trust.check("ws://fake-discord.test.svc:8080/x"), Ok(()));
        assert!(trust.check("ws://fake-discord.test.svc:8081/x").is_err());
    }

    #[test]
    fn discords_api_trusts_no_plain_websocket() {
        // Even if the gateway URL it answered were ws://, Discord's API makes no host a fake.
        let trust = ResumeTrust::new("https://canary.discord.com/api", "ws://gateway.discord.gg");
        assert_eq!(
            trust.check("ws://gateway.discord.gg"),
            Err(Untrusted::Scheme)
        );
        assert_eq!(trust.check("wss://gateway-x.discord.gg"), Ok(()));
    }

    #[test]
    fn logs_get_the_url_without_query_or_credentials() {
        assert_eq!(
            redacted("ws://user:pw@127.0.0.1:9/path?leak=1#frag"),
            "ws://127.0.0.1:9/path"
        );
        assert_eq!(
            redacted("wss://gateway.discord.gg"),
            "wss://gateway.discord.gg/"
        );
        assert_eq!(redacted("::"), "(not a URL)");
    }
}
