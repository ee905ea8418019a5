//! OCI images on the node.

pub mod unpack;
