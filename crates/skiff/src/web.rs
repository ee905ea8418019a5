//! Starts the web view beside the API server: a loopback listener, a fresh
//! token and session secret, and the address a browser opens.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use axum::Router;
use skiff_apiserver::pki;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How many ports after the asked one to try when it is taken (as Jupyter does).
const PORT_RETRIES: u16 = 10;

/// A long random string (two v4 UUIDs: 244 bits from the OS).
fn secret() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

async fn bind(address: SocketAddr) -> Result<TcpListener> {
    let mut last = None;
    for offset in 0..=PORT_RETRIES {
        let mut candidate = address;
        if address.port() != 0 {
            candidate.set_port(address.port().saturating_add(offset));
        }
        match TcpListener::bind(candidate).await {
            Ok(listener) => return Ok(listener),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse && address.port() != 0 => {
                tracing::info!(address = %candidate, "web view port taken; trying the next");
                last = Some(error);
            }
            Err(error) => return Err(error).with_context(|| format!("cannot listen on {candidate} for the web view")),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no port"), anyhow::Error::from))
        .with_context(|| format!("ports {} to {} are taken", address.port(), address.port().saturating_add(PORT_RETRIES)))
}

/// Serves the web view at `address`, answering the page's API reads
/// through `api`; prints its address with the token and keeps it in
/// `<data-dir>/web-view.url` (readable by root only).
pub async fn start(address: SocketAddr, api: Router, data_dir: &Path, shutdown: CancellationToken) -> Result<()> {
    if !address.ip().is_loopback() {
        tracing::warn!(%address, "the web view is plain HTTP: off loopback, its token and pages cross the network unencrypted");
    }
    let listener = bind(address).await?;
    let bound = listener.local_addr().context("the web view's listener has no address")?;
    let token = secret();
    let url = format!("http://{bound}/?token={token}");
    pki::write_secret_file(&data_dir.join("web-view.url"), &format!("{url}\n"))
        .context("failed to write the web view's address")?;
    let view = skiff_webview::WebView::new(token, secret(), api);
    tokio::spawn(async move {
        view.serve(listener, shutdown).await;
    });
    tracing::info!(%url, "web view ready: open it in a browser on this machine");
    eprintln!("Skiff web view: {url}");
    Ok(())
}
