//! Pods of the probe image (`shardset/cluster-probe:dev`, tests/cluster/probe): what the cluster
//! tests run, and what the operator scenarios run in place of the worker. Restricted security, as
//! our own pods.

use k8s_openapi::api::core::v1::Pod;

/// The probe image `make images` builds and loads.
pub const PROBE_IMAGE: &str = "shardset/cluster-probe:dev";

/// A pod running the probe image with `args` (none: serve `/healthz` and `/readyz` on 8080),
/// restricted security, `POD_NAME`/`NODE_NAME` in its env, and `restartPolicy: Never` when `args`
/// is a one-shot mode.
pub fn probe_pod(name: &str, args: &[&str]) -> Pod {
    let serving = args.is_empty() || args[0] == "serve";
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": probe_pod_spec(args, serving),
    }))
    .expect("a valid pod")
}

/// The pod spec of [`probe_pod`], for Deployments and other templates.
pub fn probe_pod_spec(args: &[&str], serving: bool) -> serde_json::Value {
    let mut container = serde_json::json!({
        "name": "probe",
        "image": PROBE_IMAGE,
        "imagePullPolicy": "Never",
        "args": args,
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "securityContext": {
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    if serving {
        container["ports"] = serde_json::json!([{"containerPort": 8080, "name": "http"}]);
        container["readinessProbe"] = serde_json::json!({
            "httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1,
        });
    }
    serde_json::json!({
        "restartPolicy": if serving { "Always" } else { "Never" },
        "containers": [container],
    })
}
