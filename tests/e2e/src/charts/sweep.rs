//! The end of every chart scenario ([`Stack::finish`]): everything a user could look at, gathered
//! and swept for the bot token (never anywhere but Discord's hosts) and the operator's log for
//! `forbidden` (it works with the chart's RBAC and no more). The sweeps are plain functions over
//! the gathered text, tested below on evidence that must fail them.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::bail;

use super::stack::{OPERATOR_RELEASE, Stack};

/// What `kubectl get -o yaml` gathers for the token sweep (Secrets excepted: they hold it).
pub(super) const SWEPT_KINDS: &str = "shardsets,pods,deployments,replicasets,services,\
                                      endpointslices,leases,serviceaccounts,roles,rolebindings,\
                                      configmaps";

/// The first piece of evidence holding one of `secrets`: its source, and up to 200 bytes before
/// the secret (never the secret itself).
pub fn find_secret<'e>(
    evidence: &'e [(String, String)],
    secrets: &[String],
) -> Option<(&'e str, &'e str)> {
    evidence.iter().find_map(|(source, text)| {
        secrets.iter().find_map(|secret| {
            let at = text.find(secret.as_str())?;
            let from = text.floor_char_boundary(at.saturating_sub(200));
            Some((source.as_str(), &text[from..at]))
        })
    })
}

/// The first line that says `forbidden` in a log of the operator chart's pods (keys
/// `shardset-operator-...`, its Redis included): the API server refused the operator.
pub fn operator_refusal(logs: &BTreeMap<String, String>) -> Option<(&str, &str)> {
    release_logs(logs).find_map(|(pod, text)| {
        text.lines()
            .find(|l| l.to_ascii_lowercase().contains("forbidden"))
            .map(|line| (pod, line))
    })
}

/// The collected logs of the operator chart's pods (the operator and its Redis).
fn release_logs(logs: &BTreeMap<String, String>) -> impl Iterator<Item = (&str, &str)> {
    logs.iter()
        .filter(|(k, _)| k.starts_with(&format!("{OPERATOR_RELEASE}-")))
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

impl Stack<'_> {
    /// The end of every scenario: gathers what a user could look at — every log line of every pod
    /// (collected since install), the namespace's Events, `kubectl get -o yaml` of its objects,
    /// the fake's records, the statuses seen — and asserts that the token appears nowhere and
    /// that the operator's log has no `forbidden`.
    pub async fn finish(&self) -> anyhow::Result<()> {
        let mut evidence: Vec<(String, String)> = Vec::new();
        evidence.push((
            format!("kubectl get {SWEPT_KINDS} -o yaml"),
            self.ns.kubectl(&["get", SWEPT_KINDS, "-o", "yaml"])?,
        ));
        evidence.push((
            "kubectl get events -o yaml".into(),
            self.ns.kubectl(&["get", "events", "-o", "yaml"])?,
        ));
        evidence.push((
            "kubectl describe shardsets".into(),
            self.ns.kubectl(&["describe", "shardsets"])?,
        ));
        for path in ["identifies", "sessions", "violations", "counters"] {
            evidence.push((
                format!("fake /control/{path}"),
                self.fake.raw(path).await.unwrap_or_default(),
            ));
        }
        evidence.push(("operator /metrics".into(), self.operator_metrics().await?));
        evidence.extend(self.seen.lock().map(|s| s.clone()).unwrap_or_default());
        let logs = self.logs.snapshot();
        evidence.extend(logs.iter().map(|(k, v)| (format!("log {k}"), v.clone())));

        // The sweeps must be able to fail: they only mean something if the logs are there.
        if !release_logs(&logs)
            .filter(|(k, _)| !k.contains("-redis-"))
            .any(|(_, l)| l.contains("leading: starting the controller"))
        {
            bail!(
                "no operator log says it leads; collected logs: {:?}",
                logs.keys().collect::<Vec<_>>()
            );
        }
        let mut secrets = vec![self.token.clone()];
        secrets.extend(
            self.also_secret
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
        );
        if let Some((source, before)) = find_secret(&evidence, &secrets) {
            bail!("a bot token appears in {source}: ...{before}<TOKEN>...");
        }
        if let Some((pod, line)) = operator_refusal(&logs) {
            bail!("the operator was refused by RBAC ({pod}): {line}");
        }
        let _ = writeln!(
            std::io::stderr(),
            "swept {} sources ({} container logs, {} bytes) for the token and `forbidden`: clean",
            evidence.len(),
            logs.len(),
            evidence.iter().map(|(_, t)| t.len()).sum::<usize>()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_anywhere_is_found_and_not_shown() {
        let evidence = vec![
            ("clean".to_owned(), "nothing here".to_owned()),
            (
                "log p".to_owned(),
                "Identify with e2eabc.def, oops".to_owned(),
            ),
        ];
        let secrets = vec!["other".to_owned(), "e2eabc.def".to_owned()];
        assert_eq!(
            find_secret(&evidence, &secrets),
            Some(("log p", "Identify with "))
        );
        assert_eq!(find_secret(&evidence[..1], &secrets), None);
    }

    #[test]
    fn forbidden_counts_in_the_operator_releases_logs_only() {
        let mut logs = BTreeMap::new();
        logs.insert(
            "fake-discord-x@cd/fake#0".to_owned(),
            "Forbidden".to_owned(),
        );
        assert_eq!(operator_refusal(&logs), None);
        logs.insert(
            "shardset-operator-7c9-x@ef/operator#0".to_owned(),
            "ok\npods is Forbidden: cannot list\n".to_owned(),
        );
        assert_eq!(
            operator_refusal(&logs),
            Some((
                "shardset-operator-7c9-x@ef/operator#0",
                "pods is Forbidden: cannot list"
            ))
        );
    }
}
