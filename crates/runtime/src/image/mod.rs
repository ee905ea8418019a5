//! OCI images on the node: the content-addressed store, registry pulls
//! (mirrors, then the registry; a registry's "not found" with the tags it
//! has) and archive imports, both reporting their [`progress`], safe layer
//! unpacking, and building small images from host files.

pub mod build;
pub mod progress;
mod pull;
mod reference;
pub mod registries;
pub mod store;
pub mod unpack;

pub use progress::Progress;
pub use store::{Health, Image, ImageError, ImageStore};

/// Registry clients use rustls with the ring provider (the only one we
/// build), installed process-wide once.
pub(crate) fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
