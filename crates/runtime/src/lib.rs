//! The node's side of running pods: OCI images (pull from registries,
//! import archives, content-addressed storage, safe layer unpacking), pod
//! sandboxes holding the shared namespaces, and pod networking through real
//! CNI plugins, and containers run by crun or runc from OCI bundles under
//! a monitor process each. Pod cgroups live under a `kubepods` tree split by QoS class.
//!
//! Must not know: the Kubernetes API. Callers (the node agent) translate
//! pods into the requests made here.

pub mod cgroups;
pub mod container;
pub mod image;
pub mod network;
pub mod process;
pub mod sandbox;
