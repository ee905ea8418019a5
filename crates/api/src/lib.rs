//! The Kubernetes API as Skiff serves it, without any I/O.
//!
//! Owns: the list of served resources ([`resources`]), `Status` error objects
//! ([`status`]), object and pod defaulting and validation ([`object`],
//! [`pod`]), quantities, label/field selectors, patches (merge, JSON and
//! strategic merge), strict field checking against the vendored upstream
//! OpenAPI ([`schema`], [`strict`]), server-side Table printing ([`table`]) and
//! core↔events.k8s.io Event conversion, and "did you mean" hints ([`hint`]).
//!
//! Must not know: storage, HTTP, sockets, clocks or randomness; callers pass
//! `now` and random sources in. Kubernetes types come from `k8s-openapi`.

pub mod events;
pub mod hint;
pub mod managed;
pub mod names;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod node_restriction;
pub mod object;
pub mod patch;
pub mod pod;
pub mod quantity;
pub mod rbac;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod status;
pub mod strict;
pub mod table;

pub use k8s_openapi;
pub use status::{FieldError, Status};
