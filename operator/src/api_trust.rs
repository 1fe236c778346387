//! Which REST bases a ShardSet may send its bot token to. The operator sends `Bot <token>` to
//! `spec.gateway.apiUrl` (and the worker pods do the same), so without a check any ShardSet author
//! could send any Secret of the namespace to any URL. A base is allowed when it is Discord's own
//! (`https://` on `discord.com`, `discordapp.com` or a subdomain), or when its host is one the
//! operator was installed to trust (`--trusted-api-hosts`, the chart's `trustedApiHosts`, empty by
//! default: set for the fake Discord by `make demo` and the tests). An Identify window below
//! Discord's 5 s is allowed only against such a trusted, non-Discord host. Pure: the reconcile
//! turns a refusal into `UntrustedApiUrl` and calls nothing.

use url::Url;

use crate::crd::ShardSetSpec;

/// The hosts named by `--trusted-api-hosts`: `host` (any port) or `host:port`, compared without
/// regard to case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedHosts {
    entries: Vec<(String, Option<u16>)>,
}

impl TrustedHosts {
    /// Parses the entries (`fake-discord`, `fake-discord.bots.svc:8080`, `127.0.0.1`, `[::1]:80`);
    /// blank entries are skipped, a malformed one is an error naming it.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut parsed = Vec::new();
        for entry in entries.iter().map(|e| e.as_ref().trim()) {
            if entry.is_empty() {
                continue;
            }
            // A scheme without default ports keeps whatever port the entry names.
            let url = Url::parse(&format!("trusted://{entry}"))
                .ok()
                .filter(|u| u.path().is_empty() && u.username().is_empty())
                .ok_or_else(|| format!("{entry:?} is not a host or host:port"))?;
            let host = url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| format!("{entry:?} is not a host or host:port"))?;
            parsed.push((host.to_ascii_lowercase(), url.port()));
        }
        Ok(Self { entries: parsed })
    }

    /// Whether `url`'s host (and port) is one of the entries.
    fn contains(&self, url: &Url) -> bool {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.entries
            .iter()
            .any(|(h, p)| *h == host && p.is_none_or(|p| p == port))
    }

    /// True when no host is trusted (the default).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `https://` on Discord's API domains (`discord.com`, `discordapp.com`) or a subdomain
/// (`canary.discord.com`): the real Discord, always allowed, never with a shorter window.
pub fn is_discord_api(url: &Url) -> bool {
    url.scheme() == "https"
        && url.domain().is_some_and(|d| {
            let d = d.to_ascii_lowercase();
            ["discord.com", "discordapp.com"]
                .iter()
                .any(|root| d == *root || d.ends_with(&format!(".{root}")))
        })
}

/// Why a ShardSet's REST settings are refused: a message for the `UntrustedApiUrl` condition,
/// or `Ok` when the token may go to its base.
pub fn check(spec: &ShardSetSpec, trusted: &TrustedHosts) -> Result<(), String> {
    let api_url = spec.api_url();
    let url =
        Url::parse(api_url).map_err(|_| format!("spec.gateway.apiUrl {api_url:?} is not a URL"))?;
    let discord = is_discord_api(&url);
    let host = url.host_str().unwrap_or_default();
    let how = "the operator sends the bot token there: list the host in the operator's trusted API hosts (chart value trustedApiHosts, flag --trusted-api-hosts) if it is your fake Discord or proxy";
    if !discord && !trusted.contains(&url) {
        return Err(format!(
            "spec.gateway.apiUrl names host \"{host}\", which is neither Discord's nor one this operator was installed to trust; {how}. No pods are created and nothing is sent there"
        ));
    }
    let window = spec.gateway.as_ref().and_then(|g| g.identify_window_ms);
    if let Some(window) =
        window.filter(|w| u64::from(*w) < shardset_contract::DISCORD_IDENTIFY_WINDOW_MS)
        && discord
    {
        return Err(format!(
            "spec.gateway.identifyWindowMs is {window}, below Discord's 5000, but spec.gateway.apiUrl is Discord's: a shorter window is only for a fake Discord this operator trusts"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(gateway: serde_json::Value) -> ShardSetSpec {
        serde_json::from_value(serde_json::json!({
            "shards": 1,
            "tokenSecretRef": {"name": "t"},
            "image": "w",
            "redis": {"url": "redis://r:6379"},
            "gateway": gateway,
        }))
        .expect("spec")
    }

    fn hosts(entries: &[&str]) -> TrustedHosts {
        TrustedHosts::parse(entries).expect("hosts")
    }

    #[test]
    fn discord_is_always_allowed_and_nothing_else_by_default() {
        let none = TrustedHosts::default();
        assert_eq!(check(&spec(serde_json::json!({})), &none), Ok(()));
        for ok in [
            "https://discord.com/api",
            "https://canary.discord.com/api",
            "https://DISCORDAPP.com/api",
        ] {
            assert_eq!(
                check(&spec(serde_json::json!({"apiUrl": ok})), &none),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "http://discord.com/api",
            "https://discord.com.evil.example/api",
            "https://evildiscord.com/api",
            "http://fake-discord:8080/api",
            "http://127.0.0.1:8080/api",
            "https://user@evil.example/discord.com",
        ] {
            let refused = check(&spec(serde_json::json!({"apiUrl": bad})), &none).expect_err(bad);
            assert!(refused.contains("trustedApiHosts"), "{refused}");
        }
    }

    #[test]
    fn trusted_hosts_match_host_and_optionally_port() {
        let trusted = hosts(&[
            "fake-discord",
            "Fake.Bots.svc:8080",
            " ",
            "127.0.0.1:9000",
            "[::1]",
        ]);
        for ok in [
            "http://fake-discord:8080/api",
            "https://fake-discord/api",
            "http://fake.bots.svc:8080/api",
            "http://127.0.0.1:9000/api",
            "http://[::1]:1234/api",
        ] {
            assert_eq!(
                check(&spec(serde_json::json!({"apiUrl": ok})), &trusted),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "http://fake.bots.svc:8081/api",
            "http://fake.bots.svc/api",
            "http://127.0.0.1:9001/api",
            "http://fake-discord.evil.example/api",
            "http://evil.example/fake-discord",
        ] {
            assert!(
                check(&spec(serde_json::json!({"apiUrl": bad})), &trusted).is_err(),
                "{bad}"
            );
        }
        assert!(!trusted.is_empty() && TrustedHosts::default().is_empty());
    }

    #[test]
    fn malformed_entries_are_named() {
        for bad in ["http://x", "a/b", "user@x", "x:port"] {
            let error = TrustedHosts::parse(&[bad]).expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn short_windows_only_against_a_trusted_fake() {
        let trusted = hosts(&["fake-discord"]);
        let fake = spec(
            serde_json::json!({"apiUrl": "http://fake-discord:8080/api", "identifyWindowMs": 500}),
        );
        assert_eq!(check(&fake, &trusted), Ok(()));
        assert!(check(&fake, &TrustedHosts::default()).is_err());
        let discord =
            spec(serde_json::json!({"apiUrl": "https://discord.com/api", "identifyWindowMs": 500}));
        let refused = check(&discord, &trusted).expect_err("Discord's window is 5 s");
        assert!(refused.contains("identifyWindowMs"), "{refused}");
        let long = spec(
            serde_json::json!({"apiUrl": "https://discord.com/api", "identifyWindowMs": 6000}),
        );
        assert_eq!(check(&long, &TrustedHosts::default()), Ok(()));
    }
}
