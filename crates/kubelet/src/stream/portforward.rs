//! `port-forward`: per forwarded connection the client opens an `error` and
//! a `data` SPDY stream (same `requestid`, a `port` header); we connect to
//! localhost:port inside the pod's network namespace and relay bytes. The
//! SPDY stream arrives raw, or tunnelled in WebSocket binary messages
//! (`SPDY/3.1+portforward.k8s.io`).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use skiff_runtime::sandbox::Sandbox;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::{spdy, Connection, WebSocket};
use crate::index::SandboxEntry;
use crate::probe::dial_error;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one port-forward connection for the pod whose sandbox is `sandbox`.
pub async fn serve(connection: Connection, sandbox: SandboxEntry) {
    match connection {
        Connection::Spdy(io) => serve_spdy(spdy::serve(io), sandbox).await,
        Connection::WebSocket(ws, _) => {
            let (ours, theirs) = tokio::io::duplex(256 * 1024);
            tokio::spawn(tunnel(*ws, theirs));
            serve_spdy(spdy::serve(ours), sandbox).await;
        }
    }
}

/// Carries a byte stream in WebSocket binary messages, both ways.
async fn tunnel(ws: WebSocket, pipe: tokio::io::DuplexStream) {
    let (mut sink, mut source) = ws.split();
    let (mut read, mut write) = tokio::io::split(pipe);
    let inbound = async move {
        while let Some(Ok(message)) = source.next().await {
            match message {
                Message::Binary(data) if write.write_all(&data).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = write.shutdown().await;
    };
    let outbound = async move {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let data = Bytes::copy_from_slice(&buffer[..n]);
                    if sink.send(Message::Binary(data)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    tokio::join!(inbound, outbound);
}

async fn serve_spdy(mut connection: spdy::Connection, sandbox: SandboxEntry) {
    let mut errors: HashMap<String, spdy::StreamWriter> = HashMap::new();
    while let Some(stream) = connection.streams.recv().await {
        let request = stream.header("requestid").to_string();
        match stream.header("streamtype") {
            "error" => {
                errors.insert(request, stream.writer);
            }
            "data" => {
                let error = errors.remove(&request);
                tokio::spawn(forward(stream, error, sandbox.clone()));
            }
            other => {
                tracing::debug!(streamtype = other, "unexpected port-forward stream");
                stream.writer.reset(spdy::CANCEL).await;
            }
        }
    }
}

/// Relays one forwarded connection.
async fn forward(mut data: spdy::Stream, error: Option<spdy::StreamWriter>, sandbox: SandboxEntry) {
    let port = data.header("port").parse::<u16>().ok().filter(|p| *p > 0);
    let fail = |message: String| {
        let error = error.clone();
        let writer = data.writer.clone();
        async move {
            if let Some(error) = &error {
                error.send(Bytes::from(message)).await;
                error.finish().await;
            }
            writer.finish().await;
        }
    };
    let Some(port) = port else {
        let message = format!("invalid port {:?}", data.header("port"));
        fail(message).await;
        return;
    };
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let socket = Sandbox { pid: sandbox.pid }
        .connect(address, CONNECT_TIMEOUT)
        .await;
    let tcp = match socket {
        Ok(tcp) => tcp,
        Err(e) => {
            let message = format!(
                "error forwarding port {port} to pod {}, uid : failed to connect to localhost:{port} inside namespace {:?}, IPv4: {}",
                sandbox.id,
                sandbox.id,
                dial_error("tcp4", &address, &e)
            );
            tracing::info!(sandbox = %sandbox.id, port, error = %e, "port-forward connect failed");
            fail(message).await;
            return;
        }
    };
    let (mut read, mut write) = tcp.into_split();
    let writer = data.writer.clone();
    let upstream = async {
        while let Some(chunk) = data.incoming.recv().await {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    };
    let downstream = async {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !writer.send(Bytes::copy_from_slice(&buffer[..n])).await {
                        break;
                    }
                }
            }
        }
        writer.finish().await;
    };
    tokio::join!(upstream, downstream);
    if let Some(error) = error {
        error.finish().await;
    }
}
