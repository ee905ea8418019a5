//! The node's side of running pods: OCI images today (pull from registries,
//! import archives, content-addressed storage, safe layer unpacking); OCI
//! bundles, sandboxes, CNI networking and cgroups as they land.
//!
//! Must not know: the Kubernetes API. Callers (the node agent) translate
//! pods into the requests made here.

pub mod image;
