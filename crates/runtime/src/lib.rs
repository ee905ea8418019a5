//! The node's side of running pods: OCI images (pull from registries,
//! import archives, content-addressed storage, safe layer unpacking), pod
//! sandboxes holding the shared namespaces, and pod networking through real
//! CNI plugins, and containers run by crun or runc from OCI bundles under
//! a monitor process each. Cgroup hierarchies come next.
//!
//! Must not know: the Kubernetes API. Callers (the node agent) translate
//! pods into the requests made here.

pub mod container;
pub mod image;
pub mod network;
pub mod sandbox;
