//! A pod reaches the apiserver through the `kubernetes` Service with its service-account token:
//! what its Role allows is answered, what it does not is refused by RBAC (403).

use shardset_e2e::TestNamespace;

#[tokio::test]
async fn service_account_reaches_apiserver_and_rbac_refuses_the_rest() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("cluster-api").await else {
        return Ok(());
    };
    let n = &ns.name;
    // The namespace's default service account may list pods here, and nothing else.
    ns.apply(&format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: list-pods}}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: list-pods}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: list-pods}}
subjects:
- {{kind: ServiceAccount, name: default, namespace: {n}}}
"#
    ))?;

    let allowed = ns
        .run_probe(
            "allowed",
            &["api", &format!("/api/v1/namespaces/{n}/pods")],
            None,
        )
        .await?;
    assert_eq!(allowed["status"], 200, "listing pods is allowed: {allowed}");

    let refused = ns
        .run_probe(
            "refused",
            &["api", &format!("/api/v1/namespaces/{n}/secrets")],
            None,
        )
        .await?;
    assert_eq!(
        refused["status"], 403,
        "listing secrets is refused: {refused}"
    );
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("system:serviceaccount:{n}:default"))
            && message.contains("cannot list resource \"secrets\""),
        "the refusal names the service account and the verb: {message}"
    );
    Ok(())
}
