//! The real kubectl against a real `skiff server`: what a Pod user types,
//! and what kubectl prints back, as against Kubernetes 1.32.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{versioned_kubectl, Skiff};

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: nginx
    image: nginx:1.27
    ports:
    - containerPort: 80
    resources:
      requests: {cpu: 0.1, memory: 200M}
      limits: {cpu: 500m, memory: 1G}
";

#[test]
fn create_get_describe_and_delete_a_pod() -> Result<()> {
    let skiff = Skiff::start()?;
    let created = skiff.kubectl_stdin(&["create", "-f", "-"], POD)?.ok()?;
    assert_eq!(created.stdout.trim(), "pod/web created");

    let again = skiff.kubectl_stdin(&["create", "-f", "-"], POD)?.failed()?;
    assert_eq!(again.stderr.trim(), "Error from server (AlreadyExists): error when creating \"STDIN\": pods \"web\" already exists");

    let get = skiff.kubectl(&["get", "pods"])?.ok()?;
    let lines: Vec<&str> = get.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert_eq!(
        lines[1].split_whitespace().take(4).collect::<Vec<_>>(),
        ["web", "0/1", "Pending", "0"]
    );

    let wide = skiff.kubectl(&["get", "pods", "-o", "wide"])?.ok()?;
    assert!(wide.stdout.lines().next().is_some_and(|h| h.contains("IP")
        && h.contains("NOMINATED NODE")
        && h.contains("READINESS GATES")));
    assert!(wide.stdout.contains("<none>"));

    let pod = skiff.get_json(&["get", "pod", "web"])?;
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    assert_eq!(
        pod["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "100m"
    );
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    assert_eq!(pod["status"]["phase"], "Pending");
    assert!(pod["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));

    let yaml = skiff.kubectl(&["get", "pod", "web", "-o", "yaml"])?.ok()?;
    assert!(yaml
        .stdout
        .contains("terminationMessagePath: /dev/termination-log"));

    let describe = skiff.kubectl(&["describe", "pod", "web"])?.ok()?;
    // describe aligns with a tabwriter; compare values, not padding.
    let field = |name: &str| {
        describe
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_string())
    };
    assert_eq!(
        field("Name:").as_deref(),
        Some("web"),
        "{}",
        describe.stdout
    );
    assert_eq!(field("QoS Class:").as_deref(), Some("Burstable"));
    assert_eq!(field("Status:").as_deref(), Some("Pending"));
    // No node exists yet, so the scheduler reports, as upstream does.
    skiff.wait_for(
        Duration::from_secs(10),
        "the FailedScheduling event",
        || {
            let describe = skiff.kubectl(&["describe", "pod", "web"])?.ok()?;
            Ok(describe.stdout.contains("Warning  FailedScheduling")
                && describe
                    .stdout
                    .contains("default-scheduler  no nodes available to schedule pods"))
        },
    )?;

    let deleted = skiff.kubectl(&["delete", "pod", "web"])?.ok()?;
    assert_eq!(deleted.stdout.trim(), "pod \"web\" deleted");
    let gone = skiff.kubectl(&["get", "pod", "web"])?.failed()?;
    assert_eq!(
        gone.stderr.trim(),
        "Error from server (NotFound): pods \"web\" not found"
    );
    Ok(())
}

#[test]
fn apply_twice_unchanged_and_changed() -> Result<()> {
    let skiff = Skiff::start()?;
    // Canonical quantities: kubectl compares text, and the server stores `0.1` as `100m`.
    let pod = POD
        .replace("nginx:1.27", "busybox:1.36")
        .replace("cpu: 0.1", "cpu: 100m");
    assert_eq!(
        skiff
            .kubectl_stdin(&["apply", "-f", "-"], &pod)?
            .ok()?
            .stdout
            .trim(),
        "pod/web created"
    );
    assert_eq!(
        skiff
            .kubectl_stdin(&["apply", "-f", "-"], &pod)?
            .ok()?
            .stdout
            .trim(),
        "pod/web unchanged"
    );
    let changed = pod.replace("busybox:1.36", "busybox:1.37");
    assert_eq!(
        skiff
            .kubectl_stdin(&["apply", "-f", "-"], &changed)?
            .ok()?
            .stdout
            .trim(),
        "pod/web configured"
    );
    let live = skiff.get_json(&["get", "pod", "web"])?;
    assert_eq!(live["spec"]["containers"][0]["image"], "busybox:1.37");
    assert_eq!(live["metadata"]["generation"], 2);
    assert!(
        live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // A forbidden change is refused with upstream's message.
    let ports = changed.replace("containerPort: 80", "containerPort: 81");
    let refused = skiff
        .kubectl_stdin(&["apply", "-f", "-"], &ports)?
        .failed()?;
    assert!(
        refused.stderr.contains("The Pod \"web\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"),
        "{}",
        refused.stderr
    );
    Ok(())
}

#[test]
fn annotate_label_patch_and_selectors() -> Result<()> {
    let skiff = Skiff::start()?;
    skiff
        .kubectl(&["run", "one", "--image=busybox", "--labels=app=a"])?
        .ok()?;
    skiff
        .kubectl(&["run", "two", "--image=busybox", "--labels=app=b"])?
        .ok()?;
    assert_eq!(
        skiff
            .kubectl(&["annotate", "pod", "one", "note=hi"])?
            .ok()?
            .stdout
            .trim(),
        "pod/one annotated"
    );
    let refused = skiff
        .kubectl(&["annotate", "pod", "one", "note=again"])?
        .failed()?;
    assert!(
        refused.stderr.contains("--overwrite is false"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        skiff
            .kubectl(&["label", "pod", "one", "tier=front"])?
            .ok()?
            .stdout
            .trim(),
        "pod/one labeled"
    );

    let selected = skiff
        .kubectl(&["get", "pods", "-l", "tier=front", "-o", "name"])?
        .ok()?;
    assert_eq!(selected.stdout.trim(), "pod/one");
    let by_field = skiff
        .kubectl(&[
            "get",
            "pods",
            "--field-selector",
            "metadata.name=two",
            "-o",
            "name",
        ])?
        .ok()?;
    assert_eq!(by_field.stdout.trim(), "pod/two");
    let bad_field = skiff
        .kubectl(&["get", "pods", "--field-selector", "spec.bogus=x"])?
        .failed()?;
    assert!(
        bad_field
            .stderr
            .contains("field label not supported: spec.bogus"),
        "{}",
        bad_field.stderr
    );

    skiff
        .kubectl(&[
            "patch",
            "pod",
            "two",
            "-p",
            r#"{"spec":{"containers":[{"name":"two","image":"busybox:1.37"}]}}"#,
        ])?
        .ok()?;
    skiff
        .kubectl(&[
            "patch",
            "pod",
            "two",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"merged":"yes"}}}"#,
        ])?
        .ok()?;
    skiff
        .kubectl(&[
            "patch",
            "pod",
            "two",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/metadata/annotations","value":{"j":"p"}}]"#,
        ])?
        .ok()?;
    let two = skiff.get_json(&["get", "pod", "two"])?;
    assert_eq!(two["spec"]["containers"][0]["image"], "busybox:1.37");
    assert_eq!(two["metadata"]["labels"]["merged"], "yes");
    assert_eq!(two["metadata"]["labels"]["app"], "b");
    assert_eq!(two["metadata"]["annotations"]["j"], "p");
    let labels = skiff.kubectl(&["get", "pods", "--show-labels"])?.ok()?;
    assert!(
        labels.stdout.contains("app=a,tier=front"),
        "{}",
        labels.stdout
    );
    Ok(())
}

#[test]
fn error_messages_read_like_upstream() -> Result<()> {
    let skiff = Skiff::start()?;
    let typo = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: typo\nspec:\n  initContainters: []\n  containers:\n  - name: c\n    image: busybox\n";
    let strict = skiff.kubectl_stdin(&["apply", "-f", "-"], typo)?.failed()?;
    // Upstream's words verbatim, then the field that was meant.
    assert_eq!(
        strict.stderr.trim(),
        "Error from server (BadRequest): error when creating \"STDIN\": Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.initContainters\"; did you mean \"spec.initContainers\"?"
    );

    let env_typo = typo.replace(
        "image: busybox\n",
        "image: busybox\n    env:\n    - name: A\n      valueForm: {fieldRef: {fieldPath: metadata.name}}\n",
    );
    let warned = skiff
        .kubectl_stdin(&["apply", "--validate=warn", "-f", "-"], &env_typo)?
        .ok()?;
    assert_eq!(warned.stdout.trim(), "pod/typo created");
    let warnings: Vec<&str> = warned.stderr.lines().collect();
    for line in [
        "Warning: unknown field \"spec.containers[0].env[0].valueForm\"",
        "Warning: unknown field \"spec.initContainters\"",
        "Warning: unknown field \"spec.containers[0].env[0].valueForm\": did you mean \"spec.containers[0].env[0].valueFrom\"?",
        "Warning: unknown field \"spec.initContainters\": did you mean \"spec.initContainers\"?",
    ] {
        assert!(warnings.contains(&line), "{line} not in {}", warned.stderr);
    }

    let no_image =
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n";
    let invalid = skiff
        .kubectl_stdin(&["create", "-f", "-"], no_image)?
        .failed()?;
    assert_eq!(
        invalid.stderr.trim(),
        "The Pod \"bad\" is invalid: spec.containers[0].image: Required value"
    );

    let many = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec:\n  restartPolicy: Sometimes\n  containers:\n  - name: c\n    image: i\n  - name: c\n    image: i\n";
    let listed = skiff
        .kubectl_stdin(&["create", "-f", "-"], many)?
        .failed()?;
    assert!(listed.stderr.contains("The Pod \"Bad_Name\" is invalid: \n* metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", listed.stderr);
    assert!(
        listed
            .stderr
            .contains("* spec.containers[1].name: Duplicate value: \"c\""),
        "{}",
        listed.stderr
    );
    assert!(listed.stderr.contains("* spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""));

    let missing_ns = skiff
        .kubectl(&["-n", "blue", "run", "x", "--image=busybox"])?
        .failed()?;
    assert_eq!(
        missing_ns.stderr.trim(),
        "Error from server (NotFound): namespaces \"blue\" not found"
    );

    let not_found = skiff.kubectl(&["delete", "pod", "nope"])?.failed()?;
    assert_eq!(
        not_found.stderr.trim(),
        "Error from server (NotFound): pods \"nope\" not found"
    );

    let bad_quantity = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: q\nspec:\n  containers:\n  - name: c\n    image: i\n    resources:\n      limits: {memory: 1Gx}\n";
    let quantity = skiff
        .kubectl_stdin(&["create", "-f", "-"], bad_quantity)?
        .failed()?;
    assert!(
        quantity
            .stderr
            .contains("quantities must match the regular expression"),
        "{}",
        quantity.stderr
    );

    // Upstream's own kubectl tests match these two.
    let pod_yaml = skiff.data_dir_path().join("valid-pod.yaml");
    std::fs::write(&pod_yaml, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: valid-pod\nspec:\n  containers:\n  - name: c\n    image: i\n")?;
    let pod_file = pod_yaml.display().to_string();
    let wrong_kind = skiff
        .kubectl(&["create", "--raw", "/api/v1/namespaces", "-f", &pod_file])?
        .failed()?;
    assert!(
        wrong_kind.stderr.contains("the object provided is unrecognized (must be of type Namespace)"),
        "{}",
        wrong_kind.stderr
    );
    skiff.kubectl(&["create", "-f", &pod_file])?.ok()?;
    let wrong_type = skiff
        .kubectl(&["patch", "pod", "valid-pod", "-p", r#"{"metadata":{"labels":"invalid"}}"#])?
        .failed()?;
    assert_eq!(
        wrong_type.stderr.trim(),
        r#"The request is invalid: patch: Invalid value: "map[metadata:map[labels:invalid]]": cannot restore map from string"#
    );
    Ok(())
}

#[test]
fn conflict_on_stale_resource_version() -> Result<()> {
    let skiff = Skiff::start()?;
    skiff.kubectl(&["run", "p", "--image=busybox"])?.ok()?;
    let mut pod = skiff.get_json(&["get", "pod", "p"])?;
    skiff.kubectl(&["label", "pod", "p", "bump=1"])?.ok()?;
    pod["metadata"]["labels"]["stale"] = "yes".into();
    let stale = skiff
        .kubectl_stdin(&["replace", "-f", "-"], &pod.to_string())?
        .failed()?;
    assert!(
        stale.stderr.contains("Operation cannot be fulfilled on pods \"p\": the object has been modified; please apply your changes to the latest version and try again"),
        "{}",
        stale.stderr
    );
    Ok(())
}

#[test]
fn run_namespaces_all_namespaces_and_delete_forms() -> Result<()> {
    let skiff = Skiff::start()?;
    assert_eq!(
        skiff
            .kubectl(&["create", "namespace", "blue"])?
            .ok()?
            .stdout
            .trim(),
        "namespace/blue created"
    );
    assert_eq!(
        skiff
            .kubectl(&["-n", "blue", "run", "b1", "--image=nginx", "--port=80"])?
            .ok()?
            .stdout
            .trim(),
        "pod/b1 created"
    );
    skiff.kubectl(&["run", "d1", "--image=nginx"])?.ok()?;
    skiff.kubectl(&["run", "d2", "--image=nginx"])?.ok()?;

    let all = skiff.kubectl(&["get", "pods", "-A"])?.ok()?;
    assert!(all.stdout.starts_with("NAMESPACE"), "{}", all.stdout);
    assert!(all
        .stdout
        .lines()
        .any(|l| l.starts_with("blue") && l.contains("b1")));
    let blue = skiff
        .kubectl(&["get", "pods", "-n", "blue", "-o", "name"])?
        .ok()?;
    assert_eq!(blue.stdout.trim(), "pod/b1");
    let run = skiff.get_json(&["get", "pod", "b1", "-n", "blue"])?;
    assert_eq!(run["metadata"]["labels"]["run"], "b1");
    assert_eq!(run["spec"]["containers"][0]["imagePullPolicy"], "Always");

    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), "apiVersion: v1\nkind: Pod\nmetadata:\n  name: f1\nspec:\n  containers:\n  - name: c\n    image: busybox\n")?;
    let path = file.path().to_str().context("path")?;
    skiff.kubectl(&["create", "-f", path])?.ok()?;
    assert_eq!(
        skiff.kubectl(&["delete", "-f", path])?.ok()?.stdout.trim(),
        "pod \"f1\" deleted"
    );

    let deleted = skiff.kubectl(&["delete", "pod", "--all"])?.ok()?;
    assert!(
        deleted.stdout.contains("pod \"d1\" deleted")
            && deleted.stdout.contains("pod \"d2\" deleted"),
        "{}",
        deleted.stdout
    );
    let none = skiff.kubectl(&["get", "pods"])?.ok()?;
    assert_eq!(
        none.stderr.trim(),
        "No resources found in default namespace."
    );

    assert_eq!(
        skiff
            .kubectl(&["delete", "namespace", "blue"])?
            .ok()?
            .stdout
            .trim(),
        "namespace \"blue\" deleted"
    );
    let gone = skiff.kubectl(&["get", "namespace", "blue"])?.failed()?;
    assert!(gone.stderr.contains("namespaces \"blue\" not found"));
    let builtin = skiff.kubectl(&["get", "namespaces", "-o", "name"])?.ok()?;
    for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert!(
            builtin.stdout.contains(&format!("namespace/{ns}")),
            "{}",
            builtin.stdout
        );
    }
    let immortal = skiff
        .kubectl(&["delete", "namespace", "default"])?
        .failed()?;
    assert!(immortal.stderr.contains("forbidden"), "{}", immortal.stderr);
    Ok(())
}

#[test]
fn watch_prints_rows_as_pods_change() -> Result<()> {
    // Only our own changes: no scheduler updating pod status meanwhile.
    let skiff = Skiff::start_with(&["--disable-scheduler"])?;
    skiff.kubectl(&["run", "first", "--image=busybox"])?.ok()?;
    let mut watch = skiff
        .kubectl_cmd(
            &common::kubectl_binary(),
            &["get", "pods", "--watch", "-o", "wide"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = watch.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(15))
            .context("watch output")
    };
    assert!(next()?.starts_with("NAME"));
    assert!(next()?.starts_with("first"));
    skiff.kubectl(&["run", "second", "--image=busybox"])?.ok()?;
    let added = next()?;
    assert!(
        added.starts_with("second") && added.contains("Pending"),
        "{added}"
    );
    skiff.kubectl(&["delete", "pod", "first"])?.ok()?;
    assert!(next()?.starts_with("first"));
    let _ = watch.kill();
    let _ = watch.wait();
    Ok(())
}

#[test]
fn graceful_delete_of_a_bound_pod_waits_for_its_node() -> Result<()> {
    let skiff = Skiff::start()?;
    skiff
        .kubectl_stdin(
            &["create", "-f", "-"],
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n",
        )?
        .ok()?;
    let bound = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bound\nspec:\n  nodeName: n1\n  containers:\n  - name: c\n    image: busybox\n";
    skiff.kubectl_stdin(&["create", "-f", "-"], bound)?.ok()?;
    skiff
        .kubectl(&["delete", "pod", "bound", "--wait=false"])?
        .ok()?;
    let pod = skiff.get_json(&["get", "pod", "bound"])?;
    assert!(
        pod["metadata"]["deletionTimestamp"].is_string(),
        "a bound pod is marked, not removed"
    );
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
    let row = skiff
        .kubectl(&["get", "pod", "bound", "--no-headers"])?
        .ok()?;
    assert!(row.stdout.contains("Terminating"), "{}", row.stdout);

    // A namespace with such a pod stays Terminating until the pod is gone.
    skiff.kubectl(&["create", "namespace", "doomed"])?.ok()?;
    skiff
        .kubectl_stdin(&["create", "-n", "doomed", "-f", "-"], bound)?
        .ok()?;
    skiff
        .kubectl(&["delete", "namespace", "doomed", "--wait=false"])?
        .ok()?;
    let ns = skiff
        .kubectl(&["get", "namespace", "doomed", "--no-headers"])?
        .ok()?;
    assert!(ns.stdout.contains("Terminating"), "{}", ns.stdout);
    let refused = skiff
        .kubectl(&["-n", "doomed", "run", "late", "--image=busybox"])?
        .failed()?;
    assert!(
        refused.stderr.contains("because it is being terminated"),
        "{}",
        refused.stderr
    );

    // What the node does once the containers are gone: delete with grace 0.
    let forced = skiff
        .kubectl(&["delete", "pod", "bound", "--grace-period=0", "--force"])?
        .ok()?;
    assert!(forced.stdout.contains("force deleted"), "{}", forced.stdout);
    skiff.kubectl(&["get", "pod", "bound"])?.failed()?;
    skiff
        .kubectl(&[
            "-n",
            "doomed",
            "delete",
            "pod",
            "bound",
            "--grace-period=0",
            "--force",
        ])?
        .ok()?;
    skiff.wait_for(
        Duration::from_secs(20),
        "namespace doomed to go away",
        || {
            Ok(!skiff
                .kubectl(&["get", "namespace", "doomed"])?
                .status
                .success())
        },
    )?;
    Ok(())
}

#[test]
fn discovery_explain_cluster_info_and_nodes() -> Result<()> {
    let skiff = Skiff::start()?;
    let resources = skiff.kubectl(&["api-resources"])?.ok()?;
    let pods = resources
        .stdout
        .lines()
        .find(|l| l.starts_with("pods "))
        .context("pods listed")?;
    assert_eq!(
        pods.split_whitespace().collect::<Vec<_>>(),
        ["pods", "po", "v1", "true", "Pod"]
    );
    assert!(
        resources.stdout.contains("leases") && resources.stdout.contains("coordination.k8s.io/v1")
    );

    let explain = skiff.kubectl(&["explain", "pods"])?.ok()?;
    assert!(
        explain
            .stdout
            .contains("Pod is a collection of containers that can run on a host."),
        "{}",
        explain.stdout
    );
    let containers = skiff.kubectl(&["explain", "pod.spec.containers"])?.ok()?;
    assert!(
        containers
            .stdout
            .contains("FIELD: containers <[]Container>"),
        "{}",
        containers.stdout
    );
    assert!(containers.stdout.contains("imagePullPolicy"));

    let info = skiff.kubectl(&["cluster-info"])?.ok()?;
    assert!(
        info.stdout
            .contains("Kubernetes control plane is running at https://127.0.0.1:"),
        "{}",
        info.stdout
    );

    let version = skiff.kubectl(&["version"])?.ok()?;
    assert!(
        version.stdout.contains("Server Version: v1.32.0"),
        "{}",
        version.stdout
    );

    let none = skiff.kubectl(&["get", "nodes"])?.ok()?;
    assert_eq!(none.stderr.trim(), "No resources found");
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels:\n    node-role.kubernetes.io/control-plane: \"true\"\n";
    skiff.kubectl_stdin(&["create", "-f", "-"], node)?.ok()?;
    let nodes = skiff.kubectl(&["get", "nodes", "-o", "wide"])?.ok()?;
    let header: Vec<&str> = nodes
        .stdout
        .lines()
        .next()
        .context("header")?
        .split_whitespace()
        .collect();
    assert_eq!(&header[..5], ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    assert!(
        nodes.stdout.contains("n1")
            && nodes.stdout.contains("Unknown")
            && nodes.stdout.contains("control-plane")
    );
    Ok(())
}

#[test]
fn older_and_newer_kubectl_work_too() -> Result<()> {
    let skiff = Skiff::start()?;
    for version in ["1.27", "1.33"] {
        let kubectl = versioned_kubectl(version);
        ensure!(
            std::path::Path::new(&kubectl).exists(),
            "{kubectl} is not installed"
        );
        let name = format!("v{}", version.replace('.', "-"));
        let pod = POD.replace("name: web", &format!("name: {name}"));
        let mut child = skiff
            .kubectl_cmd(&kubectl, &["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        std::io::Write::write_all(&mut child.stdin.take().context("stdin")?, pod.as_bytes())?;
        let applied = child.wait_with_output()?;
        ensure!(
            applied.status.success(),
            "{version} apply: {}",
            String::from_utf8_lossy(&applied.stderr)
        );
        let get = skiff
            .kubectl_with(&kubectl, &["get", "pods", "-o", "wide"])?
            .ok()?;
        assert!(
            get.stdout
                .lines()
                .any(|l| l.starts_with(&name) && l.contains("Pending")),
            "{version}: {}",
            get.stdout
        );
        skiff
            .kubectl_with(&kubectl, &["describe", "pod", &name])?
            .ok()?;
        skiff
            .kubectl_with(&kubectl, &["label", "pod", &name, "v=1"])?
            .ok()?;
        skiff
            .kubectl_with(&kubectl, &["explain", "pod.spec"])?
            .ok()?;
        let deleted = skiff
            .kubectl_with(&kubectl, &["delete", "pod", &name])?
            .ok()?;
        assert_eq!(deleted.stdout.trim(), format!("pod \"{name}\" deleted"));
    }
    Ok(())
}

#[test]
fn describe_lists_events_for_the_pod() -> Result<()> {
    let skiff = Skiff::start_with(&["--disable-scheduler"])?;
    skiff.kubectl(&["run", "ev", "--image=busybox"])?.ok()?;
    let pod = skiff.get_json(&["get", "pod", "ev"])?;
    let uid = pod["metadata"]["uid"].as_str().context("uid")?;
    let event = format!(
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: ev.1\ninvolvedObject:\n  kind: Pod\n  name: ev\n  namespace: default\n  uid: {uid}\nreason: Scheduled\nmessage: Successfully assigned default/ev to n1\ntype: Normal\nsource:\n  component: default-scheduler\ncount: 1\nfirstTimestamp: \"2026-01-01T00:00:00Z\"\nlastTimestamp: \"2026-01-01T00:00:00Z\"\n"
    );
    skiff.kubectl_stdin(&["create", "-f", "-"], &event)?.ok()?;
    let other = event
        .replace("name: ev.1", "name: other.1")
        .replace("name: ev\n", "name: other\n")
        .replace("Scheduled", "Pulled");
    skiff.kubectl_stdin(&["create", "-f", "-"], &other)?.ok()?;
    let describe = skiff.kubectl(&["describe", "pod", "ev"])?.ok()?;
    let events = describe
        .stdout
        .split("Events:")
        .nth(1)
        .context("events section")?;
    assert!(
        events.contains("Normal  Scheduled")
            && events.contains("default-scheduler  Successfully assigned default/ev to n1"),
        "{events}"
    );
    assert!(
        !events.contains("Pulled"),
        "only this pod's events: {events}"
    );
    let table = skiff.kubectl(&["get", "events"])?.ok()?;
    assert!(
        table
            .stdout
            .lines()
            .next()
            .is_some_and(|h| h.split_whitespace().collect::<Vec<_>>()
                == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("pod/ev"));
    Ok(())
}

/// `kubectl create service` posts protobuf, as kubectl's typed clients do.
#[test]
fn create_service_sends_protobuf_and_is_understood() -> Result<()> {
    let skiff = Skiff::start()?;
    let created = skiff.kubectl(&["create", "service", "clusterip", "web", "--tcp=5678:8080"])?.ok()?;
    assert_eq!(created.stdout.trim(), "service/web created");
    let service = skiff.get_json(&["get", "service", "web"])?;
    assert_eq!(
        service["spec"]["ports"],
        serde_json::json!([{"name": "5678-8080", "port": 5678, "protocol": "TCP", "targetPort": 8080}])
    );
    assert_eq!(service["spec"]["selector"], serde_json::json!({"app": "web"}));
    let external = skiff
        .kubectl(&["create", "service", "externalname", "db", "--external-name=db.example.com"])?
        .ok()?;
    assert_eq!(external.stdout.trim(), "service/db created");
    let db = skiff.get_json(&["get", "service", "db"])?;
    assert_eq!(db["spec"]["type"], "ExternalName");
    assert_eq!(db["spec"]["externalName"], "db.example.com");
    assert!(db["spec"]["clusterIP"].is_null(), "ExternalName services get no cluster IP");

    // Cluster IPs come from the service CIDR (10.43.0.1 is the
    // `kubernetes` Service's) and may not change once set.
    assert_eq!(service["spec"]["clusterIP"], "10.43.0.2");
    assert_eq!(service["spec"]["clusterIPs"], serde_json::json!(["10.43.0.2"]));
    skiff.kubectl(&["create", "service", "clusterip", "api", "--tcp=443"])?.ok()?;
    assert_eq!(skiff.get_json(&["get", "service", "api"])?["spec"]["clusterIP"], "10.43.0.3");
    let moved = skiff
        .kubectl(&["patch", "service", "web", "-p", r#"{"spec":{"clusterIP":"10.43.0.99","clusterIPs":["10.43.0.99"]}}"#])?
        .failed()?;
    assert_eq!(
        moved.stderr.trim(),
        r#"The Service "web" is invalid: spec.clusterIPs[0]: Invalid value: []string{"10.43.0.99"}: may not change once set"#
    );
    // A replace that leaves the address out keeps it.
    let mut replaced = skiff.get_json(&["get", "service", "web"])?;
    for field in ["clusterIP", "clusterIPs"] {
        if let Some(spec) = replaced["spec"].as_object_mut() {
            spec.remove(field);
        }
    }
    skiff.kubectl_stdin(&["replace", "-f", "-"], &replaced.to_string())?.ok()?;
    assert_eq!(skiff.get_json(&["get", "service", "web"])?["spec"]["clusterIP"], "10.43.0.2");
    let taken = "apiVersion: v1\nkind: Service\nmetadata:\n  name: clash\nspec:\n  clusterIP: 10.43.0.3\n  ports: [{port: 80}]\n";
    let clash = skiff.kubectl_stdin(&["create", "-f", "-"], taken)?.failed()?;
    assert!(clash.stderr.contains("provided IP is already allocated"), "{}", clash.stderr);
    Ok(())
}

/// `kubectl apply --prune` deletes what the manifest no longer has, with
/// kubectl's default allowlist (which names PersistentVolumeClaims,
/// Deployments, Jobs, Ingresses...: listed, read-only) and with one given.
#[test]
fn apply_prune_removes_what_the_manifest_dropped() -> Result<()> {
    let skiff = Skiff::start()?;
    let config = |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{app: pruned}}\ndata: {{k: v}}\n");
    let both = format!("{}---\n{}", config("keep"), config("drop"));
    skiff.kubectl_stdin(&["apply", "-f", "-"], &both)?.ok()?;
    let pruned = skiff
        .kubectl_stdin(&["apply", "--prune", "-l", "app=pruned", "-f", "-"], &config("keep"))?
        .ok()?;
    assert!(pruned.stdout.contains("configmap/drop pruned"), "{}\n{}", pruned.stdout, pruned.stderr);
    let left = skiff.kubectl(&["get", "configmaps", "-l", "app=pruned", "-o", "name"])?.ok()?;
    assert_eq!(left.stdout.trim(), "configmap/keep");
    skiff.kubectl_stdin(&["apply", "-f", "-"], &both)?.ok()?;
    let pruned = skiff
        .kubectl_stdin(
            &["apply", "--prune", "-l", "app=pruned", "--prune-allowlist=core/v1/ConfigMap", "-f", "-"],
            &config("keep"),
        )?
        .ok()?;
    assert!(pruned.stdout.contains("configmap/drop pruned"), "{}\n{}", pruned.stdout, pruned.stderr);
    // What Skiff lists but runs nothing for is refused with the reason.
    let deployment = skiff.kubectl(&["create", "deployment", "web", "--image=busybox"])?;
    assert!(
        deployment.stderr.contains("the server does not allow this method on the requested resource: Skiff runs Pods and has no Deployment controller"),
        "{deployment:?}"
    );
    let all = skiff.kubectl(&["get", "all"])?.ok()?;
    assert!(!all.stderr.contains("error"), "{all:?}");
    // EndpointSlices are stored, checked and printed as upstream.
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-abc\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\nports: [{name: http, port: 80, protocol: TCP}]\nendpoints:\n- addresses: [10.42.0.5]\n- addresses: [10.42.0.6]\n";
    skiff.kubectl_stdin(&["apply", "-f", "-"], slice)?.ok()?;
    let row = skiff.kubectl(&["get", "endpointslices", "web-abc", "--no-headers"])?.ok()?;
    let cells: Vec<&str> = row.stdout.split_whitespace().collect();
    assert_eq!(&cells[..4], ["web-abc", "IPv4", "80", "10.42.0.5,10.42.0.6"], "{}", row.stdout);
    let bad = skiff.kubectl_stdin(&["create", "-f", "-"], &slice.replace("web-abc", "bad").replace("IPv4", "IPv5"))?;
    assert!(
        bad.stderr.contains("addressType: Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""),
        "{bad:?}"
    );
    // Endpoints are stored and printed as upstream prints them.
    let endpoints = "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: web\nsubsets:\n- addresses: [{ip: 10.42.0.5}]\n  ports: [{port: 80}]\n";
    skiff.kubectl_stdin(&["apply", "-f", "-"], endpoints)?.ok()?;
    let row = skiff.kubectl(&["get", "endpoints", "web", "--no-headers"])?.ok()?;
    assert!(row.stdout.starts_with("web") && row.stdout.contains("10.42.0.5:80"), "{}", row.stdout);
    Ok(())
}


/// What every cluster has: a `default` ServiceAccount and the cluster CA in
/// `kube-root-ca.crt` in every namespace (put back when edited or
/// deleted), and the `kubernetes` Service with endpoints naming the server.
#[test]
fn every_namespace_gets_a_service_account_and_the_root_ca() -> Result<()> {
    let skiff = Skiff::start()?;
    let ca = std::fs::read_to_string(skiff.data_dir_path().join("tls/ca.crt"))?;
    skiff.kubectl(&["create", "namespace", "team"])?.ok()?;
    let root_ca = |ns: &str| -> Result<String> {
        let run = skiff.kubectl(&["get", "configmap", "kube-root-ca.crt", "-n", ns, "-o", "jsonpath={.data.ca\\.crt}"])?;
        Ok(if run.status.success() { run.stdout } else { String::new() })
    };
    skiff.wait_for(Duration::from_secs(10), "the new namespace's account and CA", || {
        Ok(skiff.kubectl(&["get", "serviceaccount", "default", "-n", "team"])?.status.success() && root_ca("team")? == ca)
    })?;
    skiff
        .kubectl(&["patch", "configmap", "kube-root-ca.crt", "-n", "team", "-p", r#"{"data": {"ca.crt": "forged"}}"#])?
        .ok()?;
    skiff.wait_for(Duration::from_secs(10), "the CA put back", || Ok(root_ca("team")? == ca))?;
    skiff.kubectl(&["delete", "configmap", "kube-root-ca.crt", "-n", "team"])?.ok()?;
    skiff.wait_for(Duration::from_secs(10), "the CA recreated", || Ok(root_ca("team")? == ca))?;
    let service = skiff.get_json(&["get", "service", "kubernetes", "-n", "default"])?;
    assert_eq!(service["spec"]["clusterIP"], "10.43.0.1");
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    let port = skiff.server_url()?.rsplit(':').next().unwrap_or_default().to_string();
    let endpoints = skiff.get_json(&["get", "endpoints", "kubernetes", "-n", "default"])?;
    assert_eq!(endpoints["subsets"][0]["ports"][0]["port"].to_string(), port, "{endpoints}");
    assert!(endpoints["subsets"][0]["addresses"][0]["ip"].is_string(), "{endpoints}");
    let stdout = skiff.python("cluster_objects.py", &[])?;
    assert_eq!(stdout.trim(), "10.43.0.1 443 default,kube-node-lease,kube-public,kube-system,team True");
    Ok(())
}

/// managedFields and server-side apply: every write records its manager;
/// an apply that would change another manager's field is refused with
/// upstream's conflict, `--force-conflicts` takes the field over, a field
/// dropped from the next apply goes, an equal value is shared.
#[test]
fn server_side_apply_keeps_field_ownership() -> Result<()> {
    let skiff = Skiff::start()?;
    skiff.kubectl(&["create", "configmap", "cfg", "--from-literal=a=1"])?.ok()?;
    let managers = |name: &str| -> Result<Vec<(String, String, serde_json::Value)>> {
        let cm = skiff.get_json(&["get", "configmap", name, "--show-managed-fields"])?;
        Ok(cm["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| (e["manager"].as_str().unwrap_or("").to_string(), e["operation"].as_str().unwrap_or("").to_string(), e["fieldsV1"].clone()))
            .collect())
    };
    assert_eq!(
        managers("cfg")?,
        vec![("kubectl-create".to_string(), "Update".to_string(), serde_json::json!({"f:data": {".": {}, "f:a": {}}}))]
    );
    let apply = |manifest: &str, extra: &[&str]| {
        let mut args = vec!["apply", "--server-side", "-f", "-"];
        args.extend_from_slice(extra);
        skiff.kubectl_stdin(&args, manifest)
    };
    let three = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: \"2\", b: \"2\", c: \"3\"}\n";
    let refused = apply(three, &[])?;
    assert!(
        refused.stderr.contains("Apply failed with 1 conflict: conflict with \"kubectl-create\" using v1: .data.a"),
        "{refused:?}"
    );
    apply(three, &["--force-conflicts"])?.ok()?;
    let data = |name: &str| -> Result<serde_json::Value> { Ok(skiff.get_json(&["get", "configmap", name])?["data"].clone()) };
    assert_eq!(data("cfg")?, serde_json::json!({"a": "2", "b": "2", "c": "3"}));
    // Dropped from the manifest, so gone; a took over from kubectl-create.
    let one = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: \"2\"}\n";
    apply(one, &[])?.ok()?;
    assert_eq!(data("cfg")?, serde_json::json!({"a": "2"}));
    let owners = managers("cfg")?;
    assert!(owners.contains(&("kubectl".to_string(), "Apply".to_string(), serde_json::json!({"f:data": {"f:a": {}}}))), "{owners:?}");
    // The same value from another manager is shared, not a conflict.
    apply(one, &["--field-manager=other"])?.ok()?;
    let owners = managers("cfg")?;
    assert!(owners.iter().any(|(m, _, _)| m == "other") && owners.iter().any(|(m, _, _)| m == "kubectl"), "{owners:?}");
    // kubectl label is its own manager.
    skiff.kubectl(&["label", "configmap", "cfg", "tier=web"])?.ok()?;
    assert!(
        managers("cfg")?.contains(&("kubectl-label".to_string(), "Update".to_string(), serde_json::json!({"f:metadata": {"f:labels": {".": {}, "f:tier": {}}}}))),
        "{:?}",
        managers("cfg")?
    );
    let stdout = skiff.python("server_side_apply.py", &[])?;
    assert_eq!(stdout.trim(), "Apply {\"f:data\": {\"f:x\": {}}} 409 .data.x");
    Ok(())
}
