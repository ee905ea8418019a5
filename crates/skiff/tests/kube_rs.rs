//! kube-rs, the Rust client, against a real node: `Api::attach` with stdin,
//! `Api::portforward` (WebSocket channels) and `Api::evict`, each speaking
//! the protocols its own way, and a service-account token under RBAC.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{Skiff, TEST_IMAGE};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, EvictParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn kube_rs_attaches_port_forwards_and_evicts() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        "{}---
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  # httpd as PID 1 ignores SIGTERM.
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"mkdir -p /www && echo hello from web > /www/index.html && exec httpd -f -p 8080 -h /www\"]
",
        common::echoer_pod()
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    for pod in ["echoer", "web"] {
        skiff.wait_for(Duration::from_secs(60), "the pods to run", || {
            Ok(skiff.get_json(&["get", "pod", pod])?["status"]["phase"] == "Running")
        })?;
    }
    let kubeconfig = skiff.kubeconfig();
    skiff.in_netns(move || async move {
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await?;
        let pods: Api<Pod> = Api::default_namespaced(kube::Client::try_from(config)?);

        let params = AttachParams::default().container("echoer").stdin(true).stderr(false);
        let mut attached = pods.attach("echoer", &params).await?;
        let mut stdin = attached.stdin().context("no stdin")?;
        let mut stdout = attached.stdout().context("no stdout")?;
        stdin.write_all(b"from rust\n").await?;
        let mut seen = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), async {
            let mut buffer = [0u8; 256];
            while !String::from_utf8_lossy(&seen).contains("got:from rust\n") {
                let n = stdout.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buffer[..n]);
            }
            anyhow::Ok(())
        })
        .await;
        assert!(read.is_ok(), "attach: no answer in time: {:?}", String::from_utf8_lossy(&seen));
        assert!(String::from_utf8_lossy(&seen).contains("got:from rust\n"));
        attached.abort();

        let mut forwarder = pods.portforward("web", &[8080]).await?;
        let mut stream = forwarder.take_stream(8080).context("no stream for 8080")?;
        stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: web\r\n\r\n").await?;
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response)).await??;
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.") && response.contains("hello from web"), "{response}");
        drop(stream);
        forwarder.abort();

        let status = pods.evict("web", &EvictParams::default()).await?;
        assert_eq!(status.code, 201, "{status:?}");
        Ok(())
    })?;
    skiff.wait_for(Duration::from_secs(60), "the evicted pod to go", || {
        Ok(!skiff.kubectl(&["get", "pod", "web"])?.status.success())
    })?;
    Ok(())
}

#[test]
fn kube_rs_with_a_service_account_token_gets_what_rbac_grants() -> Result<()> {
    let skiff = Skiff::start()?;
    let token = skiff.kubectl(&["create", "token", "default"])?.ok()?.stdout.trim().to_string();
    let kubeconfig = skiff.kubeconfig();
    let list = |token: String| {
        let kubeconfig = kubeconfig.clone();
        async move {
            // The admin kubeconfig's cluster, with the token as its only credential.
            let mut file = Kubeconfig::read_from(&kubeconfig)?;
            for user in &mut file.auth_infos {
                user.auth_info = Some(kube::config::AuthInfo { token: Some(token.clone().into()), ..Default::default() });
            }
            let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
            let pods: Api<Pod> = Api::namespaced(kube::Client::try_from(config)?, "kube-system");
            anyhow::Ok(pods.list(&Default::default()).await)
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match runtime.block_on(list(token.clone()))? {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403);
            assert_eq!(
                status.message,
                r#"pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" in the namespace "kube-system""#
            );
        }
        other => anyhow::bail!("expected a 403, got {other:?}"),
    }
    skiff.kubectl(&["create", "clusterrolebinding", "sa-view", "--clusterrole=view", "--serviceaccount=default:default"])?.ok()?;
    skiff.wait_for(Duration::from_secs(10), "the binding to take effect", || {
        Ok(runtime.block_on(list(token.clone()))?.is_ok())
    })?;
    Ok(())
}

#[test]
fn kube_rs_gets_upstreams_strict_error_then_the_field_meant() -> Result<()> {
    let skiff = Skiff::start()?;
    let config = skiff.kubeconfig();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = runtime.block_on(async move {
        let file = Kubeconfig::read_from(&config)?;
        let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
        let pods: Api<Pod> = Api::namespaced(kube::Client::try_from(config)?, "default");
        let typo = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "typo"},
            "spec": {"containers": [{"name": "c", "image": TEST_IMAGE,
                "env": [{"name": "ME", "valueForm": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}
        });
        let params = kube::api::PatchParams::apply("kube-rs-test").validation(kube::api::ValidationDirective::Strict);
        anyhow::Ok(pods.patch("typo", &params, &kube::api::Patch::Apply(&typo)).await)
    })?;
    match outcome {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 400);
            assert_eq!(
                status.message,
                r#"Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].env[0].valueForm"; did you mean "spec.containers[0].env[0].valueFrom"?"#
            );
        }
        other => anyhow::bail!("expected a 400, got {other:?}"),
    }
    Ok(())
}
