//! `port-forward`: per forwarded connection the client opens an `error` and
//! a `data` SPDY stream (same `requestid`, a `port` header); we connect to
//! localhost:port inside the pod's network namespace and relay bytes. The
//! SPDY stream arrives raw, or tunnelled in WebSocket binary messages
//! (`SPDY/3.1+portforward.k8s.io`). Other clients (the official Python
//! client, kube-rs) speak WebSocket channels (`v4.channel.k8s.io`, or
//! `v4.base64.channel.k8s.io`): for the i-th port of `?ports=`, channel 2i
//! carries data and 2i+1 errors, each first announcing its port (two bytes,
//! little-endian).

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
pub async fn serve(connection: Connection, sandbox: SandboxEntry, ports: Vec<u16>) {
    match connection {
        Connection::Spdy(io) => serve_spdy(spdy::serve(io), sandbox).await,
        Connection::WebSocket(ws, protocol) if protocol.starts_with("v4.") => {
            serve_channels(*ws, protocol.contains("base64"), ports, sandbox).await
        }
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

/// What the client hears when the pod's port refuses (the kubelet's words).
fn connect_error(sandbox: &SandboxEntry, port: u16, address: &std::net::SocketAddr, error: &std::io::Error) -> String {
    tracing::info!(sandbox = %sandbox.id, port, %error, "port-forward connect failed");
    format!(
        "error forwarding port {port} to pod {}, uid : failed to connect to localhost:{port} inside namespace {:?}, IPv4: {}",
        sandbox.id,
        sandbox.id,
        dial_error("tcp4", address, error)
    )
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
            fail(connect_error(&sandbox, port, &address, &e)).await;
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

/// A frame of the channel protocol: the channel byte then the data, or
/// for the base64 variant a text frame with the channel as a digit.
fn frame(base64: bool, channel: u8, data: &[u8]) -> Message {
    use base64::Engine;
    if base64 {
        let digit = char::from(b'0' + channel);
        Message::Text(format!("{digit}{}", base64::engine::general_purpose::STANDARD.encode(data)).into())
    } else {
        let mut bytes = Vec::with_capacity(data.len() + 1);
        bytes.push(channel);
        bytes.extend_from_slice(data);
        Message::Binary(bytes.into())
    }
}

/// A client frame: (channel, data).
fn unframe(base64: bool, message: Message) -> Option<(u8, Vec<u8>)> {
    use base64::Engine;
    match message {
        Message::Binary(data) => Some((*data.first()?, data[1..].to_vec())),
        Message::Text(text) if base64 => {
            let channel = text.as_bytes().first()?.checked_sub(b'0')?;
            let data = base64::engine::general_purpose::STANDARD.decode(&text.as_bytes()[1..]).ok()?;
            Some((channel, data))
        }
        Message::Text(text) => Some((*text.as_bytes().first()?, text.as_bytes()[1..].to_vec())),
        _ => None,
    }
}

/// Port-forward over WebSocket channels: one connection per requested
/// port, for as long as the WebSocket lasts.
async fn serve_channels(ws: WebSocket, base64: bool, ports: Vec<u16>, sandbox: SandboxEntry) {
    let (mut sink, mut source) = ws.split();
    let (output, mut outputs) = tokio::sync::mpsc::channel::<(u8, Bytes)>(64);
    let mut writers: HashMap<u8, tokio::net::tcp::OwnedWriteHalf> = HashMap::new();
    for (index, port) in ports.iter().enumerate() {
        let Some(data_channel) = u8::try_from(index * 2).ok().filter(|c| *c < 254) else {
            break;
        };
        for channel in [data_channel, data_channel + 1] {
            if sink.send(frame(base64, channel, &port.to_le_bytes())).await.is_err() {
                return;
            }
        }
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
        match (Sandbox { pid: sandbox.pid }).connect(address, CONNECT_TIMEOUT).await {
            Ok(tcp) => {
                let (mut read, write) = tcp.into_split();
                writers.insert(data_channel, write);
                let output = output.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 32 * 1024];
                    loop {
                        match read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if output.send((data_channel, Bytes::copy_from_slice(&buffer[..n]))).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
            Err(e) => {
                let message = connect_error(&sandbox, *port, &address, &e);
                if sink.send(frame(base64, data_channel + 1, message.as_bytes())).await.is_err() {
                    return;
                }
            }
        }
    }
    drop(output);
    loop {
        tokio::select! {
            out = outputs.recv() => match out {
                Some((channel, data)) => {
                    if sink.send(frame(base64, channel, &data)).await.is_err() {
                        break;
                    }
                }
                // Every pod connection closed (or none opened): so does
                // the forward.
                None => break,
            },
            message = source.next() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(message)) => {
                    let Some((channel, data)) = unframe(base64, message) else { continue };
                    if let Some(writer) = writers.get_mut(&channel) {
                        if writer.write_all(&data).await.is_err() {
                            writers.remove(&channel);
                        }
                    }
                }
            },
        }
    }
    for (_, mut writer) in writers {
        let _ = writer.shutdown().await;
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_frames_carry_the_channel_then_the_data() {
        let binary = frame(false, 2, &8080u16.to_le_bytes());
        assert_eq!(binary, Message::Binary(vec![2, 0x90, 0x1f].into()));
        assert_eq!(unframe(false, binary), Some((2, vec![0x90, 0x1f])));
        let text = frame(true, 1, b"hi");
        assert_eq!(text, Message::Text("1aGk=".into()));
        assert_eq!(unframe(true, text), Some((1, b"hi".to_vec())));
        assert_eq!(unframe(false, Message::Binary(Vec::new().into())), None);
    }
}

