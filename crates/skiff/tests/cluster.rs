//! A cluster as users build one (README's "Run a cluster"): a 3-member
//! etcd, two servers sharing it (the second joins with the first's token),
//! two agents, every node in a network namespace of its own on one bridge.
//! Pods land on every node and reach each other by pod IP without NAT; one
//! kubeconfig works against either server; SIGKILL of the server holding
//! the scheduler and controller Leases moves them to the other, which then
//! schedules new pods, and keeps every write the dead one acknowledged; a
//! SIGKILLed agent's node goes Unknown and its pods are evicted.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{caller_ip_seen, pod_on, ready_status, tolerant_pod_on, Cluster, Skiff, CALLER_IP_SERVER};

fn holder(skiff: &Skiff, lease: &str) -> Result<String> {
    let lease = skiff.get_json(&["get", "lease", "-n", "kube-system", lease])?;
    Ok(lease["spec"]["holderIdentity"].as_str().unwrap_or("").to_string())
}

fn phase(skiff: &Skiff, pod: &str) -> Result<String> {
    Ok(skiff.get_json(&["get", "pod", pod])?["status"]["phase"].as_str().unwrap_or("").to_string())
}

#[test]
fn two_servers_on_etcd_and_two_agents_survive_the_leader_and_an_agent_dying() -> Result<()> {
    let cluster = Cluster::start()?;
    let mut a = cluster.server("srv-a", 11, None)?;
    a.wait_for(Duration::from_secs(30), "srv-a to lead", || {
        Ok(holder(&a, "kube-scheduler")?.starts_with("srv-a_") && holder(&a, "kube-controller-manager")?.starts_with("srv-a_"))
    })
    .with_context(|| a.log())?;
    let token = std::fs::read_to_string(a.data_dir_path().join("node-token"))?;
    let b = cluster.server("srv-b", 12, Some(token.trim()))?;
    let c = cluster.agent("agent-c", 13, &b, "10.98.0.12")?;
    let mut d = cluster.agent("agent-d", 14, &b, "10.98.0.12")?;
    b.wait_for(Duration::from_secs(90), "four Ready nodes", || {
        let nodes = b.get_json(&["get", "nodes"])?;
        let items = nodes["items"].as_array().cloned().unwrap_or_default();
        Ok(items.len() == 4 && items.iter().all(|n| ready_status(n) == "True"))
    })
    .with_context(|| format!("{}\n{}\n{}", b.log(), c.log(), d.log()))?;

    // One kubeconfig for the cluster: the first server's works against the second.
    let (a_ca, b_ca) = (std::fs::read(a.data_dir_path().join("tls/ca.crt"))?, std::fs::read(b.data_dir_path().join("tls/ca.crt"))?);
    assert_eq!(a_ca, b_ca, "the servers share one CA");
    let a_config = std::fs::read_to_string(a.kubeconfig())?;
    let at_b = b.data_dir_path().join("a-kubeconfig-at-b.yaml");
    std::fs::write(&at_b, a_config.replace(&a.server_url()?, &b.server_url()?))?;
    let whoami = b.kubectl_cmd(&common::kubectl_binary(), &["auth", "whoami"]).env("KUBECONFIG", &at_b).output()?;
    assert!(whoami.status.success() && String::from_utf8_lossy(&whoami.stdout).contains("system:masters"), "{whoami:?}");

    // The server assigned every node its own /24 of the cluster CIDR.
    let nodes = b.get_json(&["get", "nodes"])?;
    let mut cidrs: Vec<String> = nodes["items"].as_array().into_iter().flatten().filter_map(|n| n["spec"]["podCIDR"].as_str().map(str::to_string)).collect();
    cidrs.sort();
    cidrs.dedup();
    assert_eq!(cidrs.len(), 4, "{cidrs:?}");
    assert!(cidrs.iter().all(|c| c.starts_with("10.42.") && c.ends_with(".0/24")), "{cidrs:?}");

    // Pods on the agents reach each other by pod IP, no NAT between them.
    let manifest = [
        pod_on("web", "agent-c", CALLER_IP_SERVER),
        pod_on("client", "agent-d", "sleep 3600"),
        tolerant_pod_on("tolerant", "agent-d", 10),
        pod_on("on-a", "srv-a", "sleep 3600"),
        pod_on("on-b", "srv-b", "sleep 3600"),
    ]
    .join("---\n");
    b.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    for name in ["web", "client", "tolerant", "on-a", "on-b"] {
        b.wait_for(Duration::from_secs(60), &format!("{name} to run"), || Ok(phase(&b, name)? == "Running"))
            .with_context(|| b.kubectl(&["describe", "pod", name]).map(|r| r.stdout).unwrap_or_default())?;
    }
    let web_ip = b.get_json(&["get", "pod", "web"])?["status"]["podIP"].as_str().unwrap_or_default().to_string();
    let client_ip = b.get_json(&["get", "pod", "client"])?["status"]["podIP"].as_str().unwrap_or_default().to_string();
    assert_eq!(caller_ip_seen(&b, "client", &web_ip)?, client_ip, "the web pod saw the client's own pod IP");

    // Writes through the leader, acknowledged one by one, while it is SIGKILLed.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let (ack_sender, acks) = std::sync::mpsc::channel();
    let writer = {
        let (acknowledged, kubeconfig, cache) = (acknowledged.clone(), a.kubeconfig(), a.data_dir_path().join("writer-cache"));
        let ns = a.netns.clone().context("netns")?;
        std::thread::spawn(move || {
            for i in 0..500 {
                let created = std::process::Command::new("nsenter")
                    .arg(format!("--net=/run/netns/{ns}"))
                    .args([common::kubectl_binary().as_str(), "create", "configmap", &format!("ack-{i}"), "--request-timeout=5s"])
                    .env("KUBECONFIG", &kubeconfig)
                    .env("KUBECACHEDIR", &cache)
                    .output();
                match created {
                    Ok(output) if output.status.success() => {
                        acknowledged.store(i + 1, Ordering::SeqCst);
                        let _ = ack_sender.send(i);
                    }
                    _ => return,
                }
            }
        })
    };
    for _ in 0..10 {
        if acks.recv_timeout(Duration::from_secs(30)).is_err() {
            break;
        }
    }
    a.kill9()?;
    d.kill9();
    let killed = Instant::now();
    let _ = writer.join();
    let acked = acknowledged.load(Ordering::SeqCst);
    assert!(acked >= 10, "only {acked} writes were acknowledged before the kill");

    // The survivor takes both Leases and schedules new pods.
    b.wait_for(Duration::from_secs(40), "srv-b to take the scheduler lease", || Ok(holder(&b, "kube-scheduler")?.starts_with("srv-b_")))?;
    let failover = killed.elapsed();
    assert!(failover < Duration::from_secs(25), "the scheduler moved after {failover:?}");
    b.kubectl_stdin(&["apply", "-f", "-"], &pod_on("after", "agent-c", "sleep 3600"))?.ok()?;
    b.wait_for(Duration::from_secs(30), "a pod scheduled by srv-b to run", || Ok(phase(&b, "after")? == "Running"))?;
    b.wait_for(Duration::from_secs(40), "srv-b to take the controller lease", || Ok(holder(&b, "kube-controller-manager")?.starts_with("srv-b_")))?;

    // Nothing acknowledged was lost.
    let names = b.kubectl(&["get", "configmaps", "-o", "name"])?.ok()?.stdout;
    for i in 0..acked {
        assert!(names.lines().any(|l| l == format!("configmap/ack-{i}")), "acknowledged configmap ack-{i} is missing");
    }

    // The dead agent's node goes Unknown, its pods not ready, the tolerant pod is evicted.
    b.wait_for(Duration::from_secs(60), "agent-d to go Unknown", || Ok(ready_status(&b.get_json(&["get", "node", "agent-d"])?) == "Unknown"))?;
    b.wait_for(Duration::from_secs(20), "agent-d's pods to turn not ready", || Ok(ready_status(&b.get_json(&["get", "pod", "client"])?) == "False"))?;
    b.wait_for(Duration::from_secs(30), "the tolerant pod to be evicted", || {
        Ok(!b.get_json(&["get", "pod", "tolerant"])?["metadata"]["deletionTimestamp"].is_null())
    })?;
    assert_eq!(ready_status(&b.get_json(&["get", "node", "agent-c"])?), "True", "the live agent stays Ready");
    drop((c, d));
    drop((a, b));
    drop(cluster);
    Ok(())
}
