//! The Helm charts, without a cluster (helm of the harness): `helm lint` is clean with the default
//! values and with every optional part on; `values.schema.json` refuses bad values with a message
//! naming the value (and the template `fail`s guard the invariants the schema cannot express); the
//! chart's CRD is byte for byte `crds/`; the RBAC the chart grants is exactly what the operator
//! needs (the e2e scenarios prove it is enough: any `forbidden` fails them).

use std::collections::BTreeSet;

use anyhow::{Context as _, bail, ensure};
use shardset_e2e::tools::{helm_template, repo_path};
use shardset_e2e::{cluster_configured, helm};

fn chart(name: &str) -> String {
    repo_path(&format!("charts/{name}"))
        .to_string_lossy()
        .into_owned()
}

#[test]
fn charts_lint_clean() -> anyhow::Result<()> {
    if !cluster_configured("charts_lint_clean") {
        return Ok(());
    }
    for (name, sets) in [
        ("shardset-operator", ""),
        (
            "shardset-operator",
            "redis.enabled=true,networkPolicy.enabled=true,metrics.serviceMonitor.enabled=true,watchNamespace=bots",
        ),
        (
            "shardset-operator",
            "redis.enabled=true,redis.tls.enabled=true",
        ),
        (
            "shardset-operator",
            "redis.enabled=true,redis.sentinel.enabled=true",
        ),
        (
            "shardset-operator",
            "replicaCount=1,leaderElection.enabled=false",
        ),
        (
            "shardset-operator",
            "podDisruptionBudget.enabled=false,workerImage.tag=v2",
        ),
        ("fake-discord", ""),
        (
            "fake-discord",
            "token=,existingSecret=bot-token,maxConcurrency=16",
        ),
    ] {
        let path = chart(name);
        let mut args = vec!["lint", "--strict", path.as_str()];
        if !sets.is_empty() {
            args.extend(["--set", sets]);
        }
        let out = helm(&args).with_context(|| format!("helm lint {name} --set {sets}"))?;
        ensure!(
            out.contains("0 chart(s) failed") && !out.contains("[WARNING]"),
            "helm lint {name} --set {sets}:\n{out}"
        );
    }
    Ok(())
}

#[test]
fn bad_values_are_refused_with_their_name() -> anyhow::Result<()> {
    if !cluster_configured("bad_values_are_refused_with_their_name") {
        return Ok(());
    }
    // By chart: (--set, what the error must mention).
    let cases: [(&str, &[(&str, &str)]); 2] = [
        (
            "shardset-operator",
            &[
                ("replicaCount=-1", "replicaCount"),
                ("logFormat=xml", "logFormat"),
                ("image.pullPolicy=Sometimes", "pullPolicy"),
                ("image.repository=", "repository"),
                ("metrics.port=70000", "port"),
                ("metrics.serviceMonitor.interval=soon", "interval"),
                ("metrics.bindAddress=anywhere", "bindAddress"),
                (
                    "leaderElection.leaseDurationSeconds=1",
                    "leaseDurationSeconds",
                ),
                ("redis.image.tag=", "tag"),
                ("workerImage.repository=", "repository"),
                ("podDisruptionBudget.maxUnavailable=0", "maxUnavailable"),
                ("watchNamespaces=bots", "watchNamespaces"),
                ("trustedApiHosts={http://evil/}", "trustedApiHosts"),
            ],
        ),
        (
            "fake-discord",
            &[
                ("maxConcurrency=0", "maxConcurrency"),
                ("identifyWindowMs=0", "identifyWindowMs"),
                ("applicationId=my-bot", "applicationId"),
                ("service.port=0", "port"),
                ("guild=10", "guild"),
            ],
        ),
    ];
    for (chart_name, sets) in cases {
        for &(set, field) in sets {
            match helm_template(chart_name, &[set]) {
                Ok(_) => bail!("helm template {chart_name} --set {set} was accepted"),
                Err(e) => {
                    let message = format!("{e:#}");
                    ensure!(
                        message.contains("values don't meet the specifications of the schema")
                            && message.contains(field),
                        "helm template {chart_name} --set {set}: the error should be the schema's and name {field}: {message}"
                    );
                }
            }
        }
    }
    // What the schema cannot say, the templates refuse with a reason.
    for (set, reason) in [
        (
            "replicaCount=2,leaderElection.enabled=false",
            "replicaCount > 1 needs leaderElection.enabled",
        ),
        (
            "metrics.serviceMonitor.enabled=true,metrics.service.enabled=false",
            "metrics.serviceMonitor.enabled needs metrics.service.enabled",
        ),
        (
            "serviceAccount.create=false",
            "serviceAccount.name is required when serviceAccount.create is false",
        ),
    ] {
        match helm_template("shardset-operator", &[set]) {
            Ok(_) => bail!("helm template --set {set} was accepted"),
            Err(e) => ensure!(
                format!("{e:#}").contains(reason),
                "--set {set} should fail with {reason:?}: {e:#}"
            ),
        }
    }
    // The same values, corrected, render: the refusals above come from the values alone.
    helm_template("shardset-operator", &["replicaCount=1", "logFormat=text"])?;
    helm_template(
        "fake-discord",
        &["maxConcurrency=16", "--set-string=applicationId=42"],
    )?;
    Ok(())
}

#[test]
fn the_charts_crd_is_the_generated_one() -> anyhow::Result<()> {
    let generated = std::fs::read(repo_path("crds/shardset.io_shardsets.yaml"))?;
    let shipped = std::fs::read(repo_path(
        "charts/shardset-operator/crds/shardset.io_shardsets.yaml",
    ))?;
    ensure!(
        generated == shipped,
        "charts/shardset-operator/crds/ differs from crds/: run make generate"
    );
    Ok(())
}

/// `(apiGroup, resource, verb)` of every rule in the rendered Roles and ClusterRoles of `kind`.
fn rules(rendered: &str, kind: &str) -> anyhow::Result<BTreeSet<(String, String, String)>> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(rendered)?;
    let mut out = BTreeSet::new();
    for doc in docs.iter().filter(|d| d["kind"] == kind) {
        for rule in doc["rules"].as_array().into_iter().flatten() {
            let all = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            };
            for group in all("apiGroups") {
                for resource in all("resources") {
                    for verb in all("verbs") {
                        out.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    Ok(out)
}

#[test]
fn rbac_is_exactly_what_the_operator_uses() -> anyhow::Result<()> {
    if !cluster_configured("rbac_is_exactly_what_the_operator_uses") {
        return Ok(());
    }
    let expected: BTreeSet<(String, String, String)> = [
        ("shardset.io", "shardsets", "get"),
        ("shardset.io", "shardsets", "list"),
        ("shardset.io", "shardsets", "watch"),
        ("shardset.io", "shardsets", "patch"),
        ("shardset.io", "shardsets/status", "get"),
        ("shardset.io", "shardsets/status", "patch"),
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("", "secrets", "get"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
        ("policy", "poddisruptionbudgets", "get"),
        ("policy", "poddisruptionbudgets", "create"),
        ("policy", "poddisruptionbudgets", "patch"),
        ("networking.k8s.io", "networkpolicies", "get"),
        ("networking.k8s.io", "networkpolicies", "create"),
        ("networking.k8s.io", "networkpolicies", "patch"),
    ]
    .into_iter()
    .map(|(g, r, v)| (g.to_owned(), r.to_owned(), v.to_owned()))
    .collect();
    let lease: BTreeSet<(String, String, String)> = ["get", "create", "patch"]
        .into_iter()
        .map(|v| {
            (
                "coordination.k8s.io".to_owned(),
                "leases".to_owned(),
                v.to_owned(),
            )
        })
        .collect();

    // Watching one namespace: a Role there (plus the Lease Role), no cluster-wide grant.
    let scoped = helm_template("shardset-operator", &["watchNamespace=bots"])?;
    ensure!(
        rules(&scoped, "ClusterRole")?.is_empty(),
        "a namespaced install must not grant cluster-wide rights"
    );
    let mut want = expected.clone();
    want.extend(lease.iter().cloned());
    ensure!(
        rules(&scoped, "Role")? == want,
        "Roles: {:#?}",
        rules(&scoped, "Role")?
    );

    // Watching every namespace: the same rules in a ClusterRole.
    let cluster = helm_template("shardset-operator", &[])?;
    ensure!(
        rules(&cluster, "ClusterRole")? == expected,
        "ClusterRole: {:#?}",
        rules(&cluster, "ClusterRole")?
    );
    ensure!(rules(&cluster, "Role")? == lease, "the Lease Role");

    // Without the worker NetworkPolicies, no right to make them.
    let no_policies = helm_template("shardset-operator", &["networkPolicy.workers=false"])?;
    let mut without = expected.clone();
    without.retain(|(_, resource, _)| resource != "networkpolicies");
    ensure!(
        rules(&no_policies, "ClusterRole")? == without,
        "ClusterRole: {:#?}",
        rules(&no_policies, "ClusterRole")?
    );
    Ok(())
}

/// The rendered objects of `kind`.
fn objects(rendered: &str, kind: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(rendered)?;
    Ok(docs.into_iter().filter(|d| d["kind"] == kind).collect())
}

/// The operator's arguments in a rendered chart.
fn operator_args(rendered: &str) -> anyhow::Result<Vec<String>> {
    let deployment = objects(rendered, "Deployment")?
        .into_iter()
        .find(|d| d["metadata"]["name"] == "release-shardset-operator")
        .context("the operator Deployment")?;
    Ok(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(String::from))
            .collect(),
    )
}

/// The operator container's `--worker-image`.
fn worker_image_arg(rendered: &str) -> anyhow::Result<String> {
    operator_args(rendered)?
        .iter()
        .find_map(|a| a.strip_prefix("--worker-image=").map(String::from))
        .context("no --worker-image")
}

/// `trustedApiHosts` reaches the operator as `--trusted-api-hosts` (issue 11, item 9); by
/// default nothing is trusted but Discord.
#[test]
fn trusted_api_hosts_reach_the_operator() -> anyhow::Result<()> {
    if !cluster_configured("trusted_api_hosts_reach_the_operator") {
        return Ok(());
    }
    let default = operator_args(&helm_template("shardset-operator", &[])?)?;
    ensure!(
        !default.iter().any(|a| a.starts_with("--trusted-api-hosts")),
        "the default trusts a host: {default:?}"
    );
    let trusted = operator_args(&helm_template(
        "shardset-operator",
        &["trustedApiHosts={fake-discord.bots.svc,127.0.0.1:8080}"],
    )?)?;
    ensure!(
        trusted.contains(&"--trusted-api-hosts=fake-discord.bots.svc,127.0.0.1:8080".to_owned()),
        "{trusted:?}"
    );
    Ok(())
}

#[test]
fn the_worker_image_default_and_the_operators_budget() -> anyhow::Result<()> {
    if !cluster_configured("the_worker_image_default_and_the_operators_budget") {
        return Ok(());
    }
    // The worker image released with the chart: the operator's tag unless set apart.
    let defaults = helm_template("shardset-operator", &[])?;
    ensure!(worker_image_arg(&defaults)? == "shardset/shard-worker:dev");
    let tagged = helm_template("shardset-operator", &["image.tag=v1"])?;
    ensure!(worker_image_arg(&tagged)? == "shardset/shard-worker:v1");
    let own = helm_template(
        "shardset-operator",
        &[
            "image.tag=v1",
            "workerImage.repository=reg/bot,workerImage.tag=v2",
        ],
    )?;
    ensure!(worker_image_arg(&own)? == "reg/bot:v2");
    // Values of an older chart (`helm upgrade --reuse-values`): no workerImage at all.
    let older = helm_template("shardset-operator", &["workerImage=null"])?;
    ensure!(worker_image_arg(&older)? == "shardset/shard-worker:dev");

    // The operator's own budget: one replica at a time, over its pods only.
    let budgets = objects(&defaults, "PodDisruptionBudget")?;
    ensure!(budgets.len() == 1, "{budgets:#?}");
    ensure!(
        budgets[0]["spec"]["maxUnavailable"] == 1,
        "{:#?}",
        budgets[0]
    );
    ensure!(
        budgets[0]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator",
        "{:#?}",
        budgets[0]
    );
    for sets in [
        "replicaCount=1,leaderElection.enabled=false",
        "podDisruptionBudget.enabled=false",
    ] {
        let rendered = helm_template("shardset-operator", &[sets])?;
        ensure!(
            objects(&rendered, "PodDisruptionBudget")?.is_empty(),
            "--set {sets} renders a budget"
        );
    }
    let older = helm_template("shardset-operator", &["podDisruptionBudget=null"])?;
    ensure!(objects(&older, "PodDisruptionBudget")?.len() == 1);
    Ok(())
}

/// The chart's Redis container in a rendered chart: its args, mounts and the pod's volumes.
fn redis_pod(rendered: &str) -> anyhow::Result<serde_json::Value> {
    let deployment = object(rendered, "Deployment", "release-shardset-operator-redis")?;
    Ok(deployment["spec"]["template"]["spec"].clone())
}

/// The names of the TLS Secrets the chart generated (the password's Secret is always there).
fn tls_secrets(rendered: &str) -> anyhow::Result<Vec<String>> {
    Ok(objects(rendered, "Secret")?
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str().map(String::from))
        .filter(|name| name.ends_with("-redis-tls") || name.ends_with("-redis-ca"))
        .collect())
}

/// The Redis pod's volume named `name`, and its container's mount of it.
fn redis_volume(pod: &serde_json::Value, name: &str) -> (serde_json::Value, serde_json::Value) {
    let find = |list: &serde_json::Value| {
        list.as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    (
        find(&pod["volumes"]),
        find(&pod["containers"][0]["volumeMounts"]),
    )
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

#[test]
fn the_charts_redis_serves_tls_with_a_generated_ca_or_a_secret_of_ones_own() -> anyhow::Result<()> {
    if !cluster_configured(
        "the_charts_redis_serves_tls_with_a_generated_ca_or_a_secret_of_ones_own",
    ) {
        return Ok(());
    }
    // Default: plain on 6379, no TLS Secret.
    let plain = helm_template("shardset-operator", &["redis.enabled=true"])?;
    let args = strings(&redis_pod(&plain)?["containers"][0]["args"]);
    ensure!(args[..2] == ["--port", "6379"], "{args:?}");
    ensure!(!args.iter().any(|a| a.starts_with("--tls")), "{args:?}");
    ensure!(tls_secrets(&plain)?.is_empty(), "no TLS Secret without TLS");

    // TLS: a generated CA and server certificate, the CA alone in its own Secret.
    let tls = helm_template(
        "shardset-operator",
        &["redis.enabled=true", "redis.tls.enabled=true"],
    )?;
    let pod = redis_pod(&tls)?;
    let args = strings(&pod["containers"][0]["args"]);
    for pair in [
        ["--port", "0"],
        ["--tls-port", "6379"],
        ["--tls-cert-file", "/tls/tls.crt"],
        ["--tls-key-file", "/tls/tls.key"],
        ["--tls-ca-cert-file", "/tls/ca.crt"],
        ["--tls-auth-clients", "no"],
    ] {
        ensure!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
    }
    let (volume, mount) = redis_volume(&pod, "tls");
    ensure!(
        mount["mountPath"] == "/tls" && mount["readOnly"] == true,
        "{mount}"
    );
    ensure!(
        volume["secret"]["secretName"] == "release-shardset-operator-redis-tls",
        "{volume}"
    );
    // The password still comes from its Secret's redis.conf with TLS on.
    ensure!(redis_pod(&tls)?["containers"][0]["command"][1] == "/etc/redis/auth/redis.conf");
    let secrets = objects(&tls, "Secret")?;
    let server = secrets
        .iter()
        .find(|s| s["metadata"]["name"] == "release-shardset-operator-redis-tls")
        .context("the server's Secret")?;
    let ca = secrets
        .iter()
        .find(|s| s["metadata"]["name"] == "release-shardset-operator-redis-ca")
        .context("the CA's Secret")?;
    let pem = |secret: &serde_json::Value, key: &str| -> anyhow::Result<String> {
        let b64 = secret["data"][key].as_str().context("a key")?;
        Ok(String::from_utf8(base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            b64,
        )?)?)
    };
    ensure!(pem(server, "tls.crt")?.starts_with("-----BEGIN CERTIFICATE-----"));
    ensure!(pem(server, "tls.key")?.contains("PRIVATE KEY-----"));
    ensure!(pem(server, "ca.crt")? == pem(ca, "ca.crt")?, "one CA");
    let ca_keys: Vec<&String> = ca["data"].as_object().context("data")?.keys().collect();
    ensure!(
        ca_keys == ["ca.crt"],
        "the CA Secret holds no key: {ca_keys:?}"
    );
    // A ShardSet can take the CA as the worker and the operator read it.
    shardset_contract::redis_tls::CaBundle::from_pem(pem(ca, "ca.crt")?.into_bytes(), "chart")?;

    // A Secret of one's own: mounted, nothing generated.
    let own = helm_template(
        "shardset-operator",
        &[
            "redis.enabled=true",
            "redis.tls.enabled=true",
            "redis.tls.existingSecret=redis-cert",
        ],
    )?;
    ensure!(
        redis_volume(&redis_pod(&own)?, "tls").0["secret"]["secretName"] == "redis-cert",
        "the user's Secret"
    );
    ensure!(tls_secrets(&own)?.is_empty(), "nothing generated");
    Ok(())
}

/// The rendered object of `kind` named `name`.
fn object(rendered: &str, kind: &str, name: &str) -> anyhow::Result<serde_json::Value> {
    objects(rendered, kind)?
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
        .with_context(|| format!("no {kind} {name}"))
}

/// The chart's Redis requires a password (issue 11, item 2): generated into a Secret, read by
/// Redis from a file of that Secret (in no command line, no environment variable), protected
/// mode left as Redis defaults it.
#[test]
fn the_charts_redis_requires_a_generated_password() -> anyhow::Result<()> {
    if !cluster_configured("the_charts_redis_requires_a_generated_password") {
        return Ok(());
    }
    let rendered = helm_template("shardset-operator", &["redis.enabled=true"])?;
    let secret = object(&rendered, "Secret", "release-shardset-operator-redis")?;
    let decode = |key: &str| secret_text(&secret, key);
    let password = decode("password")?;
    ensure!(
        password.len() == 32 && password.chars().all(|c| c.is_ascii_alphanumeric()),
        "a 32-character password: {} characters",
        password.len()
    );
    ensure!(decode("redis.conf")? == format!("requirepass {password}\n"));
    // Each render (each install) makes a new one; an upgrade reads the installed one back
    // (`lookup`, which only a cluster answers: seen by the e2e scenario).
    let again = helm_template("shardset-operator", &["redis.enabled=true"])?;
    ensure!(
        !again.contains(&password),
        "a password is generated, not fixed"
    );

    let deployment = object(&rendered, "Deployment", "release-shardset-operator-redis")?;
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    ensure!(
        container["command"] == serde_json::json!(["redis-server", "/etc/redis/auth/redis.conf"]),
        "{container:#}"
    );
    let text = container.to_string();
    ensure!(
        !text.contains("protected-mode") && !text.contains(&password) && container["env"].is_null(),
        "no protected-mode override, the password in no argument or variable: {container:#}"
    );
    ensure!(
        pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["secret"]["secretName"] == "release-shardset-operator-redis"),
        "{pod:#}"
    );
    Ok(())
}

/// `redis.auth.enabled=false` (issue 15, upgrades): chart 0.1.0's password-less Redis container
/// exactly (its command, its arguments, no Secret, no auth volume), so that `helm upgrade` from
/// 0.1.0 leaves the Redis pod and the sessions it holds alone (`make test-upgrade` runs it).
#[test]
fn redis_without_auth_is_the_previous_releases_redis() -> anyhow::Result<()> {
    if !cluster_configured("redis_without_auth_is_the_previous_releases_redis") {
        return Ok(());
    }
    let rendered = helm_template(
        "shardset-operator",
        &["redis.enabled=true", "redis.auth.enabled=false"],
    )?;
    ensure!(
        object(&rendered, "Secret", "release-shardset-operator-redis").is_err(),
        "no password Secret without auth"
    );
    let pod = redis_pod(&rendered)?;
    let container = &pod["containers"][0];
    // Chart 0.1.0's templates/redis.yaml.
    ensure!(
        container["command"] == serde_json::json!(["redis-server"]),
        "{container:#}"
    );
    ensure!(
        strings(&container["args"])
            == [
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
                "/data"
            ],
        "{container:#}"
    );
    let (volume, mount) = redis_volume(&pod, "auth");
    ensure!(volume.is_null() && mount.is_null(), "{pod:#}");
    Ok(())
}

/// NetworkPolicies by default (issue 11, items 2 and 18): the operator's (ingress to its metrics
/// port, egress to Redis only at the chart's Redis pod, the trusted fakes' ports), the chart's
/// Redis's (ingress on 6379 only from this release's operator and from worker pods), and the
/// operator told to make the workers' own.
#[test]
fn network_policies_are_on_by_default() -> anyhow::Result<()> {
    if !cluster_configured("network_policies_are_on_by_default") {
        return Ok(());
    }
    let rendered = helm_template(
        "shardset-operator",
        &[
            "redis.enabled=true",
            "trustedApiHosts={fake-discord:8080,other}",
        ],
    )?;
    ensure!(operator_args(&rendered)?.contains(&"--worker-network-policy=true".to_owned()));
    let operator = object(&rendered, "NetworkPolicy", "release-shardset-operator")?;
    let spec = &operator["spec"];
    ensure!(spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator");
    ensure!(spec["ingress"] == serde_json::json!([{"ports": [{"port": 8080, "protocol": "TCP"}]}]));
    let egress = spec["egress"].as_array().context("egress")?;
    let mut open_ports = BTreeSet::new();
    for rule in egress {
        for port in rule["ports"].as_array().into_iter().flatten() {
            let number = port["port"].as_u64().context("port")?;
            if rule["to"].is_null() {
                open_ports.insert(number);
            } else {
                ensure!(number == 6379, "{rule:#}");
                ensure!(
                    rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                        == "redis",
                    "{rule:#}"
                );
            }
        }
    }
    ensure!(
        open_ports == BTreeSet::from([53, 443, 6443, 8080]),
        "to any address only DNS, the API server, Discord and the fake: {open_ports:?}"
    );

    let redis = object(
        &rendered,
        "NetworkPolicy",
        "release-shardset-operator-redis",
    )?;
    let spec = &redis["spec"];
    ensure!(spec["policyTypes"] == serde_json::json!(["Ingress"]));
    ensure!(spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis");
    let ingress = spec["ingress"].as_array().context("ingress")?;
    ensure!(ingress.len() == 1, "{ingress:#?}");
    ensure!(ingress[0]["ports"] == serde_json::json!([{"port": 6379, "protocol": "TCP"}]));
    let from = &ingress[0]["from"];
    ensure!(from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator");
    ensure!(
        from[1]["namespaceSelector"] == serde_json::json!({}),
        "{from:#}"
    );
    ensure!(
        from[1]["podSelector"]["matchLabels"]
            == serde_json::json!({
                "app.kubernetes.io/name": "shard-worker",
                "app.kubernetes.io/managed-by": "shardset-operator",
            }),
        "the labels the operator puts on every worker pod: {from:#}"
    );
    // Watching one namespace: workers from that namespace only.
    let scoped = helm_template(
        "shardset-operator",
        &["redis.enabled=true", "watchNamespace=bots"],
    )?;
    let redis = object(&scoped, "NetworkPolicy", "release-shardset-operator-redis")?;
    ensure!(
        redis["spec"]["ingress"][0]["from"][1]["namespaceSelector"]
            == serde_json::json!({"matchLabels": {"kubernetes.io/metadata.name": "bots"}}),
        "{redis:#}"
    );

    // Without the chart's Redis: 6379 anywhere unless narrowed; no Redis policy.
    let own = helm_template("shardset-operator", &[])?;
    ensure!(objects(&own, "NetworkPolicy")?.len() == 1);
    ensure!(own.contains("port: 6379"));
    let narrowed = helm_template("shardset-operator", &["networkPolicy.redisEgress=false"])?;
    ensure!(!narrowed.contains("port: 6379"), "{narrowed}");
    // Off: none, and the operator makes none for the workers.
    let off = helm_template(
        "shardset-operator",
        &[
            "redis.enabled=true",
            "networkPolicy.enabled=false",
            "networkPolicy.workers=false",
        ],
    )?;
    ensure!(objects(&off, "NetworkPolicy")?.is_empty());
    ensure!(operator_args(&off)?.contains(&"--worker-network-policy=false".to_owned()));
    Ok(())
}

/// The decoded text of `key` in a rendered Secret.
fn secret_text(secret: &serde_json::Value, key: &str) -> anyhow::Result<String> {
    use base64::Engine as _;
    let text = secret["data"][key]
        .as_str()
        .with_context(|| format!("no key {key} in {}", secret["metadata"]["name"]))?;
    Ok(String::from_utf8(
        base64::engine::general_purpose::STANDARD.decode(text)?,
    )?)
}

/// `redis.sentinel.enabled` (issue 15, "the chart can run that topology"): a primary and
/// `replicas` replicas, `sentinels` Sentinels at the majority quorum, each pod with a stable name
/// (StatefulSet and headless Service), password auth on the servers, a writable copy of each
/// pod's config (Sentinel rewrites its own), a budget for each group, the NetworkPolicy letting
/// workers, the operator, the nodes and the sentinels reach 6379 and 26379 only; TLS refused.
#[test]
fn the_charts_redis_runs_sentinel() -> anyhow::Result<()> {
    if !cluster_configured("the_charts_redis_runs_sentinel") {
        return Ok(());
    }
    let rendered = helm_template(
        "shardset-operator",
        &[
            "redis.enabled=true",
            "redis.sentinel.enabled=true",
            "--namespace=bots",
        ],
    )?;
    let base = "release-shardset-operator-redis";
    let node_host = |i: u32| format!("{base}-node-{i}.{base}-node.bots.svc.cluster.local");
    let sentinel_host =
        |i: u32| format!("{base}-sentinel-{i}.{base}-sentinel.bots.svc.cluster.local");
    // No single Redis beside them.
    ensure!(
        object(&rendered, "Deployment", base).is_err()
            && object(&rendered, "Service", base).is_err(),
        "the single Redis is not rendered with Sentinel"
    );
    // Two nodes (the primary and one replica) and three sentinels, each with a stable name.
    for (name, replicas, port, component) in [
        (format!("{base}-node"), 2, 6379, "redis"),
        (format!("{base}-sentinel"), 3, 26379, "redis-sentinel"),
    ] {
        let set = object(&rendered, "StatefulSet", &name)?;
        ensure!(set["spec"]["replicas"] == replicas, "{set:#}");
        ensure!(set["spec"]["serviceName"] == name.as_str(), "{set:#}");
        ensure!(
            set["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component,
            "{set:#}"
        );
        let service = object(&rendered, "Service", &name)?;
        ensure!(
            service["spec"]["clusterIP"] == "None"
                && service["spec"]["publishNotReadyAddresses"] == true
                && service["spec"]["ports"][0]["port"] == port
                && service["spec"]["selector"]["app.kubernetes.io/component"] == component,
            "a headless Service naming each pod, also before it is ready: {service:#}"
        );
        // Each pod copies its own config (named after the pod) into a writable emptyDir.
        let pod = &set["spec"]["template"]["spec"];
        let init = &pod["initContainers"][0];
        ensure!(
            strings(&init["command"]) == ["cp", "/config/$(POD_NAME).conf", "/data/redis.conf"],
            "{init:#}"
        );
        ensure!(
            init["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name",
            "{init:#}"
        );
        let volumes = pod["volumes"].as_array().context("volumes")?;
        ensure!(
            volumes
                .iter()
                .any(|v| v["name"] == "data" && v["emptyDir"].is_object())
                && volumes
                    .iter()
                    .any(|v| v["name"] == "config" && v["secret"]["secretName"] == base),
            "{pod:#}"
        );
        let command = strings(&pod["containers"][0]["command"]);
        if component == "redis" {
            ensure!(
                command == ["redis-server", "/data/redis.conf"],
                "{command:?}"
            );
        } else {
            ensure!(
                command == ["redis-server", "/data/redis.conf", "--sentinel"],
                "{command:?}"
            );
        }
        // A budget: one pod at a time (the sentinels keep their majority).
        let budget = object(&rendered, "PodDisruptionBudget", &name)?;
        ensure!(
            budget["spec"]["maxUnavailable"] == 1
                && budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
                    == component,
            "{budget:#}"
        );
    }

    // The configs, in the password's Secret.
    let secret = object(&rendered, "Secret", base)?;
    let password = secret_text(&secret, "password")?;
    let primary = secret_text(&secret, &format!("{base}-node-0.conf"))?;
    let replica = secret_text(&secret, &format!("{base}-node-1.conf"))?;
    for (conf, host) in [(&primary, node_host(0)), (&replica, node_host(1))] {
        for line in [
            format!("requirepass {password}"),
            format!("masterauth {password}"),
            format!("replica-announce-ip {host}"),
            "port 6379".to_owned(),
        ] {
            ensure!(conf.lines().any(|l| l == line), "{line:?} in\n{conf}");
        }
    }
    ensure!(
        !primary.contains("replicaof"),
        "node 0 starts as the primary:\n{primary}"
    );
    ensure!(
        replica
            .lines()
            .any(|l| l == format!("replicaof {} 6379", node_host(0))),
        "{replica}"
    );
    ensure!(
        secret_text(&secret, &format!("{base}-node-2.conf")).is_err(),
        "one replica by default"
    );
    for i in 0..3 {
        let conf = secret_text(&secret, &format!("{base}-sentinel-{i}.conf"))?;
        for line in [
            "port 26379".to_owned(),
            "sentinel resolve-hostnames yes".to_owned(),
            "sentinel announce-hostnames yes".to_owned(),
            format!("sentinel announce-ip {}", sentinel_host(i)),
            format!("sentinel monitor shardset {} 6379 2", node_host(0)),
            format!("sentinel auth-pass shardset {password}"),
        ] {
            ensure!(conf.lines().any(|l| l == line), "{line:?} in\n{conf}");
        }
        // Hostnames resolve before the monitor line names one.
        let position = |needle: &str| conf.find(needle).unwrap_or(usize::MAX);
        ensure!(
            position("sentinel resolve-hostnames yes") < position("sentinel monitor"),
            "{conf}"
        );
        ensure!(!conf.contains("requirepass"), "sentinels have no password");
    }
    ensure!(secret_text(&secret, &format!("{base}-sentinel-3.conf")).is_err());

    // Quorum is the majority; a budget keeps it.
    let five = helm_template(
        "shardset-operator",
        &[
            "redis.enabled=true",
            "redis.sentinel.enabled=true",
            "redis.sentinel.sentinels=5",
            "redis.sentinel.replicas=2",
            "redis.sentinel.masterName=bot",
            "clusterDomain=k8s.example",
        ],
    )?;
    let secret = object(&five, "Secret", base)?;
    let conf = secret_text(&secret, &format!("{base}-sentinel-4.conf"))?;
    ensure!(
        conf.contains(&format!(
            "sentinel monitor bot {base}-node-0.{base}-node.default.svc.k8s.example 6379 3\n"
        )),
        "{conf}"
    );
    ensure!(secret_text(&secret, &format!("{base}-node-2.conf"))?.contains("replicaof"));
    ensure!(object(&five, "StatefulSet", &format!("{base}-node"))?["spec"]["replicas"] == 3);
    ensure!(
        object(&five, "PodDisruptionBudget", &format!("{base}-sentinel"))?["spec"]["maxUnavailable"]
            == 2
    );

    // The NetworkPolicies: the nodes take 6379 from workers, the operator, each other and the
    // sentinels; the sentinels take 26379 from workers, the operator and each other; the operator
    // may reach both.
    let from_components = |rule: &serde_json::Value| -> BTreeSet<String> {
        rule["from"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| {
                f["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                    .as_str()
                    .map(String::from)
            })
            .collect()
    };
    for (name, port, peers) in [
        (
            base.to_owned(),
            6379,
            ["operator", "redis", "redis-sentinel"],
        ),
        (
            format!("{base}-sentinel"),
            26379,
            ["operator", "redis-sentinel", "redis-sentinel"],
        ),
    ] {
        let policy = object(&rendered, "NetworkPolicy", &name)?;
        let ingress = policy["spec"]["ingress"].as_array().context("ingress")?;
        ensure!(ingress.len() == 1, "{policy:#}");
        ensure!(
            ingress[0]["ports"] == serde_json::json!([{"port": port, "protocol": "TCP"}]),
            "{policy:#}"
        );
        let from = from_components(&ingress[0]);
        ensure!(
            peers.iter().all(|p| from.contains(*p)),
            "{name} from {from:?}"
        );
        ensure!(
            ingress[0]["from"].as_array().into_iter().flatten().any(
                |f| f["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "shard-worker"
            ),
            "workers reach {name}: {policy:#}"
        );
    }
    let operator = object(&rendered, "NetworkPolicy", "release-shardset-operator")?;
    let egress = operator["spec"]["egress"].to_string();
    ensure!(
        egress.contains("\"port\":26379") && egress.contains("\"port\":6379"),
        "{egress}"
    );

    // What the release prints: the ShardSet's URL, through the three sentinels.
    let notes = helm(&[
        "install",
        "release",
        &chart("shardset-operator"),
        "--dry-run=client",
        "--namespace=bots",
        "--set=redis.enabled=true,redis.sentinel.enabled=true",
    ])?;
    let url = format!(
        "redis+sentinel://{},{},{}/shardset",
        sentinel_host(0) + ":26379",
        sentinel_host(1) + ":26379",
        sentinel_host(2) + ":26379"
    );
    ensure!(notes.contains(&format!("url: {url}")), "{url} in\n{notes}");

    // Refused with a reason: TLS (not supported with Sentinel yet), no password.
    for (set, reason) in [
        (
            "redis.tls.enabled=true",
            "redis.sentinel.enabled does not support redis.tls.enabled",
        ),
        (
            "redis.auth.enabled=false",
            "redis.sentinel.enabled needs redis.auth.enabled",
        ),
    ] {
        match helm_template(
            "shardset-operator",
            &["redis.enabled=true", "redis.sentinel.enabled=true", set],
        ) {
            Ok(_) => bail!("--set {set} with Sentinel was accepted"),
            Err(e) => ensure!(format!("{e:#}").contains(reason), "--set {set}: {e:#}"),
        }
    }
    for set in [
        "redis.sentinel.sentinels=2",
        "redis.sentinel.replicas=0",
        "redis.sentinel.masterName=a b",
    ] {
        ensure!(
            helm_template(
                "shardset-operator",
                &["redis.enabled=true", "redis.sentinel.enabled=true", set]
            )
            .is_err(),
            "--set {set} was accepted"
        );
    }
    Ok(())
}
