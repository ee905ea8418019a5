//! The resources Skiff serves: names, scope, verbs and subresources, as
//! discovery reports them and as request paths and storage keys use them.

/// A subresource such as `pods/status`.
#[derive(Debug)]
pub struct Subresource {
    pub name: &'static str,
    /// The kind the subresource answers with.
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One REST resource in one group-version.
#[derive(Debug)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Field selector labels besides `metadata.name` and `metadata.namespace`.
    pub field_labels: &'static [&'static str],
    /// Storage path segment; resources that share storage (core and
    /// events.k8s.io events) share it.
    pub storage: &'static str,
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
/// Kinds Skiff lists but runs nothing for: no create, update or patch.
const READ_ONLY: &[&str] = &["delete", "deletecollection", "get", "list", "watch"];

/// Everything served, in discovery order.
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[
            Subresource {
                name: "attach",
                kind: "PodAttachOptions",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "binding",
                kind: "Binding",
                verbs: &["create"],
            },
            Subresource {
                name: "ephemeralcontainers",
                kind: "Pod",
                verbs: STATUS_VERBS,
            },
            Subresource {
                name: "eviction",
                kind: "Eviction",
                verbs: &["create"],
            },
            Subresource {
                name: "exec",
                kind: "PodExecOptions",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "log",
                kind: "Pod",
                verbs: &["get"],
            },
            Subresource {
                name: "portforward",
                kind: "PodPortForwardOptions",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "status",
                kind: "Pod",
                verbs: STATUS_VERBS,
            },
        ],
        field_labels: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        storage: "pods",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        subresources: &[
            Subresource {
                name: "finalize",
                kind: "Namespace",
                verbs: &["update"],
            },
            Subresource {
                name: "status",
                kind: "Namespace",
                verbs: STATUS_VERBS,
            },
        ],
        field_labels: &["status.phase"],
        storage: "namespaces",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[Subresource {
            name: "status",
            kind: "Node",
            verbs: STATUS_VERBS,
        }],
        field_labels: &["spec.unschedulable"],
        storage: "minions",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        field_labels: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        storage: "events",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[Subresource {
            name: "status",
            kind: "Service",
            verbs: STATUS_VERBS,
        }],
        field_labels: &[],
        storage: "services/specs",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        field_labels: &[],
        storage: "services/endpoints",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        field_labels: &[],
        storage: "configmaps",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        field_labels: &["type"],
        storage: "secrets",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[Subresource {
            name: "token",
            kind: "TokenRequest",
            verbs: &["create"],
        }],
        field_labels: &[],
        storage: "serviceaccounts",
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        field_labels: &[],
        storage: "leases",
    },
    ResourceInfo {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        field_labels: &[],
        storage: "events",
    },
    ResourceInfo {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        field_labels: &[],
        storage: "endpointslices",
    },
    // Listed so that `kubectl apply --prune` (whose default allowlist names
    // them) and `kubectl get all` work; Skiff has no controller or
    // provisioner for them, so creating one is refused with that reason.
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        kind: "PersistentVolumeClaim",
        namespaced: true,
        short_names: &["pvc"],
        categories: &[],
        verbs: READ_ONLY,
        subresources: &[],
        field_labels: &[],
        storage: "persistentvolumeclaims",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        kind: "PersistentVolume",
        namespaced: false,
        short_names: &["pv"],
        categories: &[],
        verbs: READ_ONLY,
        subresources: &[],
        field_labels: &[],
        storage: "persistentvolumes",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "replicationcontrollers",
        singular: "replicationcontroller",
        kind: "ReplicationController",
        namespaced: true,
        short_names: &["rc"],
        categories: &["all"],
        verbs: READ_ONLY,
        subresources: &[],
        field_labels: &[],
        storage: "controllers",
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        short_names: &["ds"],
        categories: &["all"],
        verbs: READ_ONLY,
        subresources: &[],
        field_labels: &[],
        storage: "daemonsets",
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        verbs: READ_ONLY,
        subresources: &[],
        field_labels: &[],
        storage: "deployments",
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        verbs: READ_ONLY,
        subresources: &[],
        field_labels: &[],
        storage: "replicasets",
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        namespaced: true,
        short_names: &["sts"],
        categories: &["all"],
        verbs: READ_ONLY,
        subresources: &[],
        field_labels: &[],
        storage: "statefulsets",
    },
    ResourceInfo {
        group: "batch",
        version: "v1",
        plural: "cronjobs",
        singular: "cronjob",
        kind: "CronJob",
        namespaced: true,
        short_names: &["cj"],
        categories: &["all"],
        verbs: READ_ONLY,
        subresources: &[],
        field_labels: &[],
        storage: "cronjobs",
    },
    ResourceInfo {
        group: "batch",
        version: "v1",
        plural: "jobs",
        singular: "job",
        kind: "Job",
        namespaced: true,
        short_names: &[],
        categories: &["all"],
        verbs: READ_ONLY,
        subresources: &[],
        field_labels: &[],
        storage: "jobs",
    },
    ResourceInfo {
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingresses",
        singular: "ingress",
        kind: "Ingress",
        namespaced: true,
        short_names: &["ing"],
        categories: &[],
        verbs: READ_ONLY,
        subresources: &[],
        field_labels: &[],
        storage: "ingress",
    },
    // Role-based access control, evaluated by the API server's authorizer.
    ResourceInfo {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        field_labels: &[],
        storage: "clusterrolebindings",
    },
    ResourceInfo {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterroles",
        singular: "clusterrole",
        kind: "ClusterRole",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        field_labels: &[],
        storage: "clusterroles",
    },
    ResourceInfo {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        singular: "rolebinding",
        kind: "RoleBinding",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        field_labels: &[],
        storage: "rolebindings",
    },
    ResourceInfo {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        singular: "role",
        kind: "Role",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        field_labels: &[],
        storage: "roles",
    },
    // Reviews: asked, answered, never stored.
    ResourceInfo {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "localsubjectaccessreviews",
        singular: "localsubjectaccessreview",
        kind: "LocalSubjectAccessReview",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: &["create"],
        subresources: &[],
        field_labels: &[],
        storage: "",
    },
    ResourceInfo {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        kind: "SelfSubjectAccessReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: &["create"],
        subresources: &[],
        field_labels: &[],
        storage: "",
    },
    ResourceInfo {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectrulesreviews",
        singular: "selfsubjectrulesreview",
        kind: "SelfSubjectRulesReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: &["create"],
        subresources: &[],
        field_labels: &[],
        storage: "",
    },
    ResourceInfo {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "subjectaccessreviews",
        singular: "subjectaccessreview",
        kind: "SubjectAccessReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: &["create"],
        subresources: &[],
        field_labels: &[],
        storage: "",
    },
    ResourceInfo {
        group: "authentication.k8s.io",
        version: "v1",
        plural: "selfsubjectreviews",
        singular: "selfsubjectreview",
        kind: "SelfSubjectReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: &["create"],
        subresources: &[],
        field_labels: &[],
        storage: "",
    },
    ResourceInfo {
        group: "authentication.k8s.io",
        version: "v1",
        plural: "tokenreviews",
        singular: "tokenreview",
        kind: "TokenReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: &["create"],
        subresources: &[],
        field_labels: &[],
        storage: "",
    },
    // Served from the node agents' resource metrics, not stored.
    ResourceInfo {
        group: "metrics.k8s.io",
        version: "v1beta1",
        plural: "nodes",
        singular: "",
        kind: "NodeMetrics",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: &["get", "list"],
        subresources: &[],
        field_labels: &[],
        storage: "",
    },
    ResourceInfo {
        group: "metrics.k8s.io",
        version: "v1beta1",
        plural: "pods",
        singular: "",
        kind: "PodMetrics",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: &["get", "list"],
        subresources: &[],
        field_labels: &[],
        storage: "",
    },
];

/// The API groups besides core, with their one version each.
pub static GROUPS: &[(&str, &str)] = &[
    ("apps", "v1"),
    ("events.k8s.io", "v1"),
    ("batch", "v1"),
    ("networking.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
    ("discovery.k8s.io", "v1"),
    ("metrics.k8s.io", "v1beta1"),
    ("rbac.authorization.k8s.io", "v1"),
    ("authorization.k8s.io", "v1"),
    ("authentication.k8s.io", "v1"),
];

impl ResourceInfo {
    /// `pods`, or `deployments.apps` outside the core group.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether the resource allows `verb` (`create`, `list`, ...).
    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Why Skiff refuses to create or change objects of a kind it lists
    /// but runs nothing for.
    pub fn read_only_reason(&self) -> Option<String> {
        let qualified = self.qualified();
        match self.kind {
            "PersistentVolumeClaim" | "PersistentVolume" => Some(format!(
                "Skiff has no volume provisioner: {qualified} are listed (for kubectl apply --prune) but cannot be created; use emptyDir, hostPath, configMap, secret, downwardAPI or projected volumes"
            )),
            _ if self.verbs == READ_ONLY => Some(format!(
                "Skiff runs Pods and has no {} controller: {qualified} are listed (for kubectl apply --prune and kubectl get all) but cannot be created; write a Pod instead",
                self.kind
            )),
            _ => None,
        }
    }

    /// Whether objects of it are kept in the store (metrics are not).
    pub fn is_stored(&self) -> bool {
        !self.storage.is_empty()
    }

    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key prefix for all objects, or those of one namespace.
    pub fn storage_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{}/", self.storage, ns),
            _ => format!("/registry/{}/", self.storage),
        }
    }

    /// The storage key of one object.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{}", self.storage_prefix(namespace), name)
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether `label` may be used in a field selector on this resource.
    pub fn supports_field_label(&self, label: &str) -> bool {
        matches!(label, "metadata.name" | "metadata.namespace")
            || self.field_labels.contains(&label)
    }
}

/// Looks up a resource by group, version and plural name.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks up the resource for a kind in a group-version (`v1` or `group/v1`).
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The core resource stored under `/registry/<storage>/...`, for decoding watch keys.
pub fn core(plural: &str) -> Option<&'static ResourceInfo> {
    find("", "v1", plural)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_keys_are_namespaced_only_for_namespaced_resources() {
        let pods = core("pods").map(|r| r.storage_key(Some("default"), "web"));
        assert_eq!(pods.as_deref(), Some("/registry/pods/default/web"));
        let nodes = core("nodes").map(|r| r.storage_key(Some("ignored"), "n1"));
        assert_eq!(nodes.as_deref(), Some("/registry/minions/n1"));
    }

    #[test]
    fn kinds_resolve_by_api_version() {
        assert_eq!(
            find_kind("coordination.k8s.io/v1", "Lease").map(|r| r.plural),
            Some("leases")
        );
        assert_eq!(find_kind("v1", "Pod").map(|r| r.plural), Some("pods"));
        assert!(find_kind("apps/v1", "ControllerRevision").is_none());
        assert_eq!(find_kind("apps/v1", "Deployment").map(|r| r.allows("create")), Some(false));
    }
}
