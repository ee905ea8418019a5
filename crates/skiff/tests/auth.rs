//! Who may do what, with real pods and real clients: a pod's service
//! account token reaches the API from inside the pod (the real kubectl,
//! with no kubeconfig, through the `kubernetes` Service), RBAC refuses and
//! then grants with upstream's texts, the token dies with its pod, and
//! `kubectl auth can-i`, `auth whoami` and `create token` answer as upstream.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{kubectl_binary, pod, Skiff, TEST_IMAGE};

const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A pod with the real kubectl (static, from the host) on its PATH.
fn kubectl_pod(binary: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: incluster
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {TEST_IMAGE}
    command: ["sleep", "3600"]
    volumeMounts:
    - name: kubectl
      mountPath: /usr/local/bin/kubectl
  volumes:
  - name: kubectl
    hostPath:
      path: {binary}
      type: File
"#
    )
}

/// The real kubectl binary: the dispatcher's 1.32 when it is one (it picks
/// a binary by the server's version, which it cannot do from a pod).
fn static_kubectl() -> Result<std::path::PathBuf> {
    let which = std::process::Command::new("sh").args(["-c", &format!("command -v {}", kubectl_binary())]).output()?;
    let found = std::fs::canonicalize(String::from_utf8_lossy(&which.stdout).trim())?;
    let versioned = std::path::PathBuf::from(format!("{}.1.32", found.display()));
    Ok(if versioned.exists() { versioned } else { found })
}

fn exec(skiff: &Skiff, script: &str) -> Result<common::Run> {
    skiff.kubectl(&["exec", "incluster", "--", "sh", "-c", script])
}

#[test]
fn a_pods_token_reaches_the_api_as_its_service_account_until_the_pod_goes() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let binary = static_kubectl()?;
    // A Service before the pod: its variables are the pod's (enableServiceLinks).
    skiff.kubectl(&["create", "service", "clusterip", "web-svc", "--tcp=80:8080"])?.ok()?;
    let web_ip = skiff.get_json(&["get", "service", "web-svc"])?["spec"]["clusterIP"].as_str().unwrap_or_default().to_string();
    skiff.kubectl_stdin(&["apply", "-f", "-"], &kubectl_pod(&binary.display().to_string()))?.ok()?;
    skiff
        .wait_for(Duration::from_secs(60), "incluster to run", || {
            Ok(pod(&skiff, "incluster")?["status"]["phase"] == "Running")
        })
        .with_context(|| format!("{:#}", pod(&skiff, "incluster").unwrap_or_default()["status"]))?;

    // The ServiceAccount admission's volume, as upstream writes it.
    let spec = pod(&skiff, "incluster")?["spec"].clone();
    let volume = spec["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"].as_str().is_some_and(|n| n.starts_with("kube-api-access-"))))
        .context("no kube-api-access volume")?;
    assert_eq!(volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"], 3607);
    assert_eq!(spec["containers"][0]["volumeMounts"][1]["mountPath"], MOUNT);
    assert_eq!(spec["serviceAccountName"], "default");
    let files = exec(&skiff, &format!("cat {MOUNT}/namespace; echo; head -1 {MOUNT}/ca.crt; env | grep -E '^(KUBERNETES|WEB_SVC)_' | sort"))?.ok()?.stdout;
    assert!(files.starts_with("default\n-----BEGIN CERTIFICATE-----\n"), "{files}");
    let web_vars = [format!("WEB_SVC_SERVICE_HOST={web_ip}"), format!("WEB_SVC_PORT=tcp://{web_ip}:80"), "WEB_SVC_SERVICE_PORT_80_8080=80".to_string()];
    for var in ["KUBERNETES_SERVICE_HOST=10.43.0.1", "KUBERNETES_SERVICE_PORT=443", "KUBERNETES_PORT=tcp://10.43.0.1:443", "KUBERNETES_PORT_443_TCP_ADDR=10.43.0.1"]
        .into_iter()
        .chain(web_vars.iter().map(String::as_str))
    {
        assert!(files.contains(&format!("{var}\n")), "{var} missing:\n{files}");
    }

    // Inside the pod, with no kubeconfig: in-cluster config, refused by RBAC.
    let refused = exec(&skiff, "kubectl get pods")?.failed()?;
    assert!(
        refused.stderr.contains(r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{}",
        refused.stderr
    );
    let whoami = exec(&skiff, "kubectl auth whoami -o jsonpath='{.status.userInfo.username}'")?.ok()?;
    assert_eq!(whoami.stdout, "system:serviceaccount:default:default");
    // A user cannot grant themselves what they do not hold.
    let escalation = exec(&skiff, "kubectl create rolebinding mine --clusterrole=view --serviceaccount=default:default")?.failed()?;
    assert!(escalation.stderr.contains("cannot create resource \"rolebindings\""), "{}", escalation.stderr);

    skiff.kubectl(&["create", "rolebinding", "read", "--clusterrole=view", "--serviceaccount=default:default"])?.ok()?;
    skiff.wait_for(Duration::from_secs(10), "the binding to take effect", || {
        Ok(exec(&skiff, "kubectl get pods -o name")?.stdout.contains("pod/incluster"))
    })?;
    let can = exec(&skiff, "kubectl auth can-i list pods; kubectl auth can-i delete pods; kubectl auth can-i get pods --subresource=log")?;
    assert_eq!(can.stdout, "yes\nno\nyes\n", "{}", can.stderr);
    let secrets = exec(&skiff, "kubectl get secrets")?.failed()?;
    assert!(secrets.stderr.contains(r#"cannot list resource "secrets" in API group "" in the namespace "default""#), "{}", secrets.stderr);

    // The official Python client with the pod's token and CA.
    let dir = tempfile::tempdir()?;
    let (token_file, ca_file) = (dir.path().join("token"), dir.path().join("ca.crt"));
    std::fs::write(&token_file, skiff.kubectl(&["exec", "incluster", "--", "cat", &format!("{MOUNT}/token")])?.ok()?.stdout)?;
    std::fs::write(&ca_file, skiff.kubectl(&["exec", "incluster", "--", "cat", &format!("{MOUNT}/ca.crt")])?.ok()?.stdout)?;
    let server = skiff.server_url()?;
    let env = [
        ("TOKEN_FILE", token_file.to_str().unwrap_or_default()),
        ("CA_FILE", ca_file.to_str().unwrap_or_default()),
        ("SERVER", server.as_str()),
    ];
    assert_eq!(skiff.python("service_account.py", &env)?.trim(), "system:serviceaccount:default:default incluster");

    // The token is bound to the pod: gone with it.
    skiff.kubectl(&["delete", "pod", "incluster", "--wait=true"])?.ok()?;
    assert_eq!(skiff.python("service_account.py", &env)?.trim(), "refused 401");
    Ok(())
}

#[test]
fn auth_can_i_whoami_and_create_token_answer_as_upstream() -> Result<()> {
    let skiff = Skiff::start()?;
    let whoami = skiff.kubectl(&["auth", "whoami"])?.ok()?.stdout;
    assert!(whoami.contains("system:admin") && whoami.contains("[system:masters system:authenticated]"), "{whoami}");
    assert_eq!(skiff.kubectl(&["auth", "can-i", "delete", "nodes"])?.ok()?.stdout, "yes\n");
    let list = skiff.kubectl(&["auth", "can-i", "--list"])?.ok()?.stdout;
    assert!(list.lines().any(|l| l.starts_with("*.*") && l.ends_with("[*]")), "{list}");

    let token = skiff.kubectl(&["create", "token", "default", "--duration=10m"])?.ok()?.stdout;
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
    let short = skiff.kubectl(&["create", "token", "default", "--duration=5m"])?.failed()?;
    assert!(short.stderr.contains("may not specify a duration less than 10 minutes"), "{}", short.stderr);
    let missing = skiff.kubectl(&["create", "token", "nobody"])?.failed()?;
    assert!(missing.stderr.contains(r#"serviceaccounts "nobody" not found"#), "{}", missing.stderr);

    // As that token: only what every authenticated user may do.
    let server = skiff.server_url()?;
    let as_token = |args: &[&str]| {
        let mut all = vec!["--kubeconfig=/dev/null", "--server", &server, "--insecure-skip-tls-verify", "--token", token.trim()];
        all.extend(args);
        skiff.kubectl(&all)
    };
    assert_eq!(as_token(&["auth", "can-i", "list", "pods"])?.stdout, "no\n");
    let nodes = as_token(&["get", "nodes"])?.failed()?;
    assert!(nodes.stderr.contains(r#"nodes is forbidden: User "system:serviceaccount:default:default" cannot list resource "nodes" in API group "" at the cluster scope"#), "{}", nodes.stderr);
    let rules = as_token(&["auth", "can-i", "--list"])?.ok()?.stdout;
    assert!(rules.contains("selfsubjectaccessreviews.authorization.k8s.io") && rules.contains("[/api]"), "{rules}");

    // RBAC objects print as upstream's.
    let bindings = skiff.kubectl(&["get", "clusterrolebindings", "cluster-admin", "-o", "wide"])?.ok()?.stdout;
    assert!(bindings.contains("ClusterRole/cluster-admin") && bindings.contains("system:masters"), "{bindings}");
    Ok(())
}

#[test]
fn certificates_of_other_users_get_only_what_rbac_grants_them() -> Result<()> {
    let skiff = Skiff::start_node()?;
    skiff.kubectl_stdin(&["apply", "-f", "-"], &common::echoer_pod())?.ok()?;
    let tls = skiff.data_dir_path().join("tls");
    let (cert, key) = skiff_apiserver::pki::issue_client_certificate(&tls, "alice", Some("devs"))?;
    let dir = tempfile::tempdir()?;
    let (cert_file, key_file) = (dir.path().join("alice.crt"), dir.path().join("alice.key"));
    std::fs::write(&cert_file, cert)?;
    std::fs::write(&key_file, key)?;
    let server = skiff.server_url()?;
    let (cert_arg, key_arg, ca_arg) = (
        format!("--client-certificate={}", cert_file.display()),
        format!("--client-key={}", key_file.display()),
        format!("--certificate-authority={}", tls.join("ca.crt").display()),
    );
    let as_alice = |args: &[&str]| {
        let mut all = vec!["--kubeconfig=/dev/null", "--server", &server, &cert_arg, &key_arg, &ca_arg];
        all.extend(args);
        skiff.kubectl(&all)
    };
    let whoami = as_alice(&["auth", "whoami"])?.ok()?.stdout;
    assert!(whoami.contains("alice") && whoami.contains("[devs system:authenticated]"), "{whoami}");
    let refused = as_alice(&["get", "pods"])?.failed()?;
    assert!(refused.stderr.contains(r#"pods is forbidden: User "alice" cannot list resource "pods""#), "{}", refused.stderr);

    skiff.kubectl(&["create", "clusterrolebinding", "devs-edit", "--clusterrole=edit", "--group=devs"])?.ok()?;
    skiff.wait_for(Duration::from_secs(10), "the binding to take effect", || {
        Ok(as_alice(&["get", "pods", "-o", "name"])?.stdout.contains("pod/echoer"))
    })?;
    assert_eq!(as_alice(&["auth", "can-i", "create", "pods/exec"])?.stdout, "yes\n");
    assert_eq!(as_alice(&["auth", "can-i", "create", "clusterrolebindings"])?.stdout, "no\n");
    // edit does not hold RBAC: alice cannot bind herself admin.
    let escalation = as_alice(&["create", "rolebinding", "mine", "--clusterrole=admin", "--user=alice"])?.failed()?;
    assert!(escalation.stderr.contains("forbidden"), "{}", escalation.stderr);

    // The node API serves the API server and administrators, not every
    // certificate the CA signed.
    let url = "https://127.0.0.1:10250/containerLogs/default/echoer/echoer";
    let curl = |cert: &std::path::Path, key: &std::path::Path| -> Result<String> {
        let output = skiff
            .kubectl_cmd("curl", &["-sk", "--cert", &cert.display().to_string(), "--key", &key.display().to_string(), url])
            .output()?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    assert_eq!(
        curl(&cert_file, &key_file)?,
        "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[proxy])"
    );
    let admin = curl(&tls.join("admin.crt"), &tls.join("admin.key"))?;
    assert!(!admin.starts_with("Forbidden"), "{admin}");
    Ok(())
}
