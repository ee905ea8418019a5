//! The pages, compiled in: no toolchain beyond cargo, nothing to install.

/// The page for a browser without the token.
pub const REFUSED: &str = include_str!("assets/refused.html");

/// The content type and text of an asset, by path.
pub fn named(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", include_str!("assets/index.html"))),
        "/app.js" => Some(("text/javascript; charset=utf-8", include_str!("assets/app.js"))),
        "/app.css" => Some(("text/css; charset=utf-8", include_str!("assets/app.css"))),
        _ => None,
    }
}
