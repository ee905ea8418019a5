//! `exec` (and `attach`) sessions: the client's stdin and terminal
//! resizes in, stdout and stderr out, and a final Status on the error
//! channel; over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`) or
//! SPDY (`v4.channel.k8s.io` streams).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use skiff_runtime::container::exec::{ExecIo, ExecSession, Pty};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::{error_status, exit_status, spdy, Connection, Upgraded, WebSocket};

/// How long a SPDY client has to open its streams.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output may keep flowing after the process ended (a daemon it
/// left behind may hold the pipes).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Which streams the client asked for (query `stdin`, `stdout`, `stderr`,
/// `tty`, or the kubelet's `input`, `output`, `error`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamOptions {
    pub fn from_query(query: &[(String, String)]) -> Self {
        let flag = |k: &str| {
            query
                .iter()
                .any(|(key, v)| key == k && matches!(v.as_str(), "true" | "1"))
        };
        // The kubelet's own names (`input`, `output`, `error`), as its API
        // clients send them, or the pod API's.
        let tty = flag("tty");
        Self {
            stdin: flag("stdin") || flag("input"),
            stdout: flag("stdout") || flag("output"),
            // With a terminal, stderr is merged into stdout.
            stderr: (flag("stderr") || flag("error")) && !tty,
            tty,
        }
    }
}

/// The session's side of the streams, whatever the wire.
pub struct Channels {
    /// Client input; `None` when not requested. Ends at the client's EOF.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    /// Terminal sizes (columns, rows).
    pub resize: mpsc::Receiver<(u16, u16)>,
    /// Output to the client: (`STDOUT` or `STDERR`, bytes).
    pub output: mpsc::Sender<(u8, Bytes)>,
}

/// What runs once the streams are up; returns the Status for the error channel.
pub type Session = Box<dyn FnOnce(Channels) -> BoxFuture<'static, Value> + Send>;

/// Serves one session on an upgraded connection.
pub async fn serve(connection: Connection, options: StreamOptions, session: Session) {
    match connection {
        Connection::WebSocket(ws, protocol) => {
            serve_websocket(*ws, &protocol, options, session).await
        }
        Connection::Spdy(io) => serve_spdy(io, options, session).await,
    }
}

/// `{"Width":100,"Height":30}`.
fn parse_size(value: &Value) -> Option<(u16, u16)> {
    let dim = |k: &str| value[k].as_u64().and_then(|v| u16::try_from(v).ok());
    Some((dim("Width")?, dim("Height")?))
}

async fn serve_websocket(ws: WebSocket, protocol: &str, options: StreamOptions, session: Session) {
    let (mut sink, mut source) = ws.split();
    let (stdin_sender, stdin) = mpsc::channel::<Bytes>(16);
    let (resize_sender, resize) = mpsc::channel(4);
    let (output, mut outputs) = mpsc::channel::<(u8, Bytes)>(16);
    let can_close = protocol.starts_with("v5");
    let reader = tokio::spawn(async move {
        let mut stdin = Some(stdin_sender);
        while let Some(Ok(message)) = source.next().await {
            let data = match message {
                Message::Binary(data) => data,
                // Clients that write `str` (the official Python client) send
                // text frames: the channel byte, then the UTF-8 data.
                Message::Text(text) => Bytes::copy_from_slice(text.as_bytes()),
                Message::Close(_) => break,
                _ => continue,
            };
            match data.first().copied() {
                Some(STDIN) => {
                    if let Some(sender) = &stdin {
                        if sender.send(data.slice(1..)).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Some(RESIZE) => {
                    let size = serde_json::from_slice(&data[1..])
                        .ok()
                        .and_then(|v: Value| parse_size(&v));
                    if let Some(size) = size {
                        let _ = resize_sender.send(size).await;
                    }
                }
                Some(CLOSE) if can_close && data.get(1) == Some(&STDIN) => stdin = None,
                _ => {}
            }
        }
    });
    let channels = Channels {
        stdin: options.stdin.then_some(stdin),
        resize,
        output,
    };
    let running = tokio::spawn(session(channels));
    while let Some((channel, data)) = outputs.recv().await {
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(channel);
        frame.extend_from_slice(&data);
        if sink.send(Message::Binary(frame.into())).await.is_err() {
            break;
        }
    }
    let status = running
        .await
        .unwrap_or_else(|_| error_status("the session ended unexpectedly"));
    let mut frame = vec![ERROR];
    frame.extend_from_slice(status.to_string().as_bytes());
    let _ = sink.send(Message::Binary(frame.into())).await;
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    reader.abort();
}

async fn serve_spdy(io: Upgraded, options: StreamOptions, session: Session) {
    let mut connection = spdy::serve(io);
    let expected = 1
        + usize::from(options.stdin)
        + usize::from(options.stdout)
        + usize::from(options.stderr)
        + usize::from(options.tty);
    let mut streams: HashMap<String, spdy::Stream> = HashMap::new();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while streams.len() < expected {
        match tokio::time::timeout_at(deadline, connection.streams.recv()).await {
            Ok(Some(stream)) => {
                let kind = stream.header("streamtype").to_string();
                streams.insert(kind, stream);
            }
            Ok(None) => return,
            Err(_) => {
                tracing::debug!("timed out waiting for the client to create streams");
                connection.go_away().await;
                return;
            }
        }
    }
    let Some(error) = streams.remove("error") else {
        connection.go_away().await;
        return;
    };
    let stdout = streams.remove("stdout").map(|s| s.writer);
    let stderr = streams.remove("stderr").map(|s| s.writer);
    let stdin = streams.remove("stdin").map(|s| s.incoming);
    let (resize_sender, resize) = mpsc::channel(4);
    if let Some(mut stream) = streams.remove("resize") {
        // Sizes arrive as a stream of JSON objects.
        tokio::spawn(async move {
            let mut pending = Vec::new();
            while let Some(chunk) = stream.incoming.recv().await {
                pending.extend_from_slice(&chunk);
                let mut values =
                    serde_json::Deserializer::from_slice(&pending).into_iter::<Value>();
                let mut used = 0;
                while let Some(Ok(value)) = values.next() {
                    used = values.byte_offset();
                    if let Some(size) = parse_size(&value) {
                        let _ = resize_sender.send(size).await;
                    }
                }
                pending.drain(..used);
            }
        });
    }
    let (output, mut outputs) = mpsc::channel::<(u8, Bytes)>(16);
    let channels = Channels {
        stdin,
        resize,
        output,
    };
    let running = tokio::spawn(session(channels));
    while let Some((channel, data)) = outputs.recv().await {
        let writer = if channel == STDERR { &stderr } else { &stdout };
        if let Some(writer) = writer {
            if !writer.send(data).await {
                break;
            }
        }
    }
    let status = running
        .await
        .unwrap_or_else(|_| error_status("the session ended unexpectedly"));
    // v4 reports success too (a Status with "Success").
    error.writer.send(Bytes::from(status.to_string())).await;
    for writer in [stdout, stderr, Some(error.writer)].into_iter().flatten() {
        writer.finish().await;
    }
    connection.go_away().await;
}

/// Copies `reader` to the client's `channel` until it ends.
async fn copy_out(
    mut reader: impl AsyncRead + Unpin,
    channel: u8,
    output: mpsc::Sender<(u8, Bytes)>,
) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if output
                    .send((channel, Bytes::copy_from_slice(&buffer[..n])))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn copy_pty_out(pty: Arc<Pty>, output: mpsc::Sender<(u8, Bytes)>) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match pty.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if output
                    .send((STDOUT, Bytes::copy_from_slice(&buffer[..n])))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Runs an exec to its end: stdin and resizes in, output out; returns the
/// exit Status.
pub async fn run_exec(mut session: ExecSession, channels: Channels) -> Value {
    let Channels {
        stdin,
        mut resize,
        output,
    } = channels;
    let resizer = session.resizer();
    let mut copies = Vec::new();
    let mut feeding = None;
    match session.io.take() {
        Some(ExecIo::Tty(pty)) => {
            copies.push(tokio::spawn(copy_pty_out(pty.clone(), output.clone())));
            if let Some(mut input) = stdin {
                feeding = Some(tokio::spawn(async move {
                    while let Some(data) = input.recv().await {
                        if pty.write_all(&data).await.is_err() {
                            return;
                        }
                    }
                }));
            }
        }
        Some(ExecIo::Pipes {
            stdin: process_stdin,
            stdout,
            stderr,
        }) => {
            copies.push(tokio::spawn(copy_out(stdout, STDOUT, output.clone())));
            copies.push(tokio::spawn(copy_out(stderr, STDERR, output.clone())));
            if let (Some(mut input), Some(mut process_stdin)) = (stdin, process_stdin) {
                feeding = Some(tokio::spawn(async move {
                    while let Some(data) = input.recv().await {
                        if process_stdin.write_all(&data).await.is_err() {
                            return;
                        }
                    }
                    // Dropping the pipe gives the process its EOF.
                }));
            }
        }
        None => {}
    }
    drop(output);
    let code = loop {
        tokio::select! {
            code = session.wait() => break code,
            Some((width, height)) = resize.recv() => {
                if let Some(resizer) = &resizer {
                    resizer.resize(width, height);
                }
            }
        }
    };
    for copy in copies {
        let _ = tokio::time::timeout(OUTPUT_DRAIN, copy).await;
    }
    if let Some(feeding) = feeding {
        feeding.abort();
    }
    match code {
        Ok(code) => exit_status(code),
        Err(error) => error_status(&error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_merged_into_stdout_with_a_terminal() {
        let query = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let options = StreamOptions::from_query(&query(&[
            ("stdin", "true"),
            ("stdout", "true"),
            ("stderr", "true"),
            ("tty", "true"),
        ]));
        assert!(options.stdin && options.stdout && options.tty);
        assert!(!options.stderr);
        let options = StreamOptions::from_query(&query(&[("stdout", "true"), ("stderr", "true")]));
        assert!(options.stderr && !options.stdin);
        // The kubelet's own query names.
        let options = StreamOptions::from_query(&query(&[("input", "1"), ("output", "1"), ("error", "1")]));
        assert_eq!(options, StreamOptions { stdin: true, stdout: true, stderr: true, tty: false });
    }

    #[test]
    fn sizes_parse_from_the_resize_json() {
        let value: Value = serde_json::json!({"Width": 100, "Height": 30});
        assert_eq!(parse_size(&value), Some((100, 30)));
        assert_eq!(parse_size(&serde_json::json!({})), None);
    }
}
