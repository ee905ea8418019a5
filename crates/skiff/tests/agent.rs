//! `skiff agent` joins a server with the k3s-format token, gets node
//! credentials (`system:node:<name>`, governed by the Node authorizer),
//! runs pods, and the two nodes share one flat pod network (host-gw routes,
//! no NAT between pods): a pod on the server's node fetches from a pod on
//! the agent's node by pod IP, and the server pod sees the client's pod IP.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{caller_ip_seen, joinable_server_args, pod_on, ready_status, tolerant_pod_on, Skiff, CALLER_IP_SERVER};

fn running(skiff: &Skiff, name: &str) -> Result<bool> {
    Ok(skiff.get_json(&["get", "pod", name])?["status"]["phase"] == "Running")
}

#[test]
fn an_agent_joins_its_pods_reach_pods_across_nodes_by_ip_and_its_death_is_noticed() -> Result<()> {
    let mut args = joinable_server_args(1);
    // Above the agents' 10 s lease renewals, so only a dead node goes Unknown.
    args.push("--node-monitor-grace-period=15s".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let skiff = Skiff::start_node_with(&args)?;
    let agent = skiff.join_agent("node-b", 1)?;
    skiff
        .wait_for(Duration::from_secs(60), "node-b to be Ready", || {
            let nodes = skiff.kubectl(&["get", "nodes"])?.stdout;
            Ok(nodes.lines().any(|l| l.starts_with("node-b ") && l.contains(" Ready ")))
        })
        .with_context(|| agent.log())?;
    let token = std::fs::read_to_string(skiff.data_dir_path().join("node-token"))?;
    assert!(token.starts_with("K10") && token.contains("::server:"), "{token}");

    // A web server on the agent's node answers with the caller's address.
    let manifest = format!("{}---\n{}---\n{}", pod_on("web", "node-b", CALLER_IP_SERVER), pod_on("client", "skiff-e2e", "sleep 3600"), tolerant_pod_on("tolerant", "node-b", 5));
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    for name in ["web", "client", "tolerant"] {
        skiff
            .wait_for(Duration::from_secs(60), &format!("{name} to run"), || running(&skiff, name))
            .with_context(|| format!("{}\n{}", skiff.kubectl(&["describe", "pod", name]).map(|r| r.stdout).unwrap_or_default(), agent.log()))?;
    }
    let web_pod = skiff.get_json(&["get", "pod", "web"])?;
    assert_eq!(web_pod["spec"]["nodeName"], "node-b");
    let web_ip = web_pod["status"]["podIP"].as_str().unwrap_or_default().to_string();
    assert!(web_ip.starts_with("10.42.1."), "{web_ip}");
    let client_ip = skiff.get_json(&["get", "pod", "client"])?["status"]["podIP"].as_str().unwrap_or_default().to_string();
    assert!(client_ip.starts_with("10.42.0."), "{client_ip}");

    // Logs and exec reach the agent's node through the API server.
    assert_eq!(skiff.kubectl(&["exec", "web", "--", "uname", "-n"])?.ok()?.stdout.trim(), "web");
    let caller = caller_ip_seen(&skiff, "client", &web_ip)?;
    assert_eq!(caller, client_ip, "the server pod saw the client's own pod IP (no NAT)");

    // The agent's credentials are a node's: its own objects, nothing else.
    let as_node = |args: &[&str]| skiff.kubectl_cmd(&common::kubectl_binary(), args).env("KUBECONFIG", agent.kubeconfig()).output();
    let whoami = String::from_utf8_lossy(&as_node(&["auth", "whoami"])?.stdout).into_owned();
    assert!(whoami.contains("system:node:node-b") && whoami.contains("system:nodes"), "{whoami}");
    let secrets = as_node(&["get", "secrets", "-n", "kube-system"])?;
    let refused = String::from_utf8_lossy(&secrets.stderr).into_owned();
    assert!(
        refused.contains(r#"User "system:node:node-b" cannot list resource "secrets""#)
            && refused.contains("no relationship found between node 'node-b' and this object"),
        "{refused}"
    );
    assert!(as_node(&["get", "nodes"])?.status.success());
    // NodeRestriction: only mirror pods of its own, no role labels on itself.
    let not_mirror = skiff.kubectl_cmd(&common::kubectl_binary(), &["run", "sneaky", "--image", common::TEST_IMAGE]).env("KUBECONFIG", agent.kubeconfig()).output()?;
    assert!(
        String::from_utf8_lossy(&not_mirror.stderr).contains(r#"pods "sneaky" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "node-b" can only create mirror pods"#),
        "{not_mirror:?}"
    );
    let role = as_node(&["label", "node", "node-b", "node-role.kubernetes.io/control-plane=true"])?;
    assert!(
        String::from_utf8_lossy(&role.stderr).contains(r#"nodes "node-b" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/control-plane"#),
        "{role:?}"
    );
    let nodes = skiff.kubectl(&["get", "nodes"])?.stdout;
    assert!(nodes.lines().any(|l| l.starts_with("skiff-e2e ") && l.contains("control-plane")), "the server labels its own node:\n{nodes}");
    assert!(nodes.lines().any(|l| l.starts_with("node-b ") && l.contains("<none>")), "an agent's node has no role:\n{nodes}");

    // The agent dies: its node goes Unknown after the grace period, its pods
    // turn not ready, and the 5 s toleration runs out.
    let mut agent = agent;
    agent.kill9();
    let ready = ready_status;
    skiff.wait_for(Duration::from_secs(60), "node-b to go Unknown", || {
        Ok(ready(&skiff.get_json(&["get", "node", "node-b"])?) == "Unknown")
    })?;
    skiff.wait_for(Duration::from_secs(10), "node-b's pods to turn not ready", || {
        Ok(ready(&skiff.get_json(&["get", "pod", "web"])?) == "False")
    })?;
    skiff.wait_for(Duration::from_secs(20), "the tolerant pod to be evicted", || {
        Ok(!skiff.get_json(&["get", "pod", "tolerant"])?["metadata"]["deletionTimestamp"].is_null())
    })?;
    assert_eq!(ready(&skiff.get_json(&["get", "node", "skiff-e2e"])?), "True", "the live node stays Ready");
    drop(agent);
    Ok(())
}
