//! A local TCP port forwarded to a pod's port through the API server (kube's port-forward): how a
//! scenario reaches a Service-less port of the stack, such as the chart's Redis.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use crate::background::Background;

/// A listener on 127.0.0.1 whose every connection is forwarded to `pod:port`; stops on drop.
pub struct PortForward {
    /// Where to connect.
    pub addr: SocketAddr,
    _task: Background,
}

impl PortForward {
    /// Listens on a free local port and forwards each connection to `pod:port`.
    pub async fn start(pods: Api<Pod>, pod: String, port: u16) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = Background::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (pods, pod) = (pods.clone(), pod.clone());
                tokio::spawn(async move {
                    let Ok(mut forwarder) = pods.portforward(&pod, &[port]).await else {
                        return;
                    };
                    if let Some(mut upstream) = forwarder.take_stream(port) {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                    }
                    let _ = forwarder.join().await;
                });
            }
        });
        Ok(Self { addr, _task: task })
    }
}
