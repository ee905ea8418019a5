//! OpenAPI v3 at `/openapi/v3` (index with content hashes) and
//! `/openapi/v3/<group-version>` (the vendored upstream documents).

use std::sync::OnceLock;

use serde_json::{json, Value};
use sha2::{Digest, Sha512};

fn hashes() -> &'static Vec<(String, String)> {
    static HASHES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    HASHES.get_or_init(|| {
        skiff_api::schema::documents()
            .iter()
            .map(|(path, text)| {
                (
                    (*path).to_string(),
                    hex::encode_upper(Sha512::digest(text.as_bytes())),
                )
            })
            .collect()
    })
}

/// The `/openapi/v3` index.
pub fn index() -> Value {
    let paths: serde_json::Map<String, Value> = hashes()
        .iter()
        .map(|(path, hash)| {
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            )
        })
        .collect();
    json!({"paths": paths})
}

/// One group-version document.
pub fn document(path: &str) -> Option<&'static str> {
    skiff_api::schema::documents()
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, text)| *text)
}
