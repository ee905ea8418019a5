//! `kubectl attach`: the container's output from now on, read from its CRI
//! log as it grows (split back into stdout and stderr, or all on stdout
//! for a terminal), until the container ends; the client's stdin and
//! terminal sizes go to the container's monitor, which holds its stdin.

use std::path::PathBuf;

use bytes::Bytes;
use serde_json::Value;
use skiff_runtime::container::attach::{AttachSession, Frame};
use tokio::io::AsyncSeekExt;

use super::exec::{Channels, STDERR, STDOUT};
use super::exit_status;
use crate::index::ContainerIndex;
use crate::logs::Follower;

/// Streams what container `key` writes to `log` from now until it stops,
/// each line back on its own stream; relays input to `input`.
pub async fn follow(
    index: ContainerIndex,
    key: String,
    log: PathBuf,
    input: Option<AttachSession>,
    tty: bool,
    channels: Channels,
) -> Value {
    let Channels {
        stdin,
        resize,
        output,
    } = channels;
    let mut file = match tokio::fs::File::open(&log).await {
        Ok(file) => file,
        Err(error) => {
            tracing::warn!(log = %log.display(), %error, "cannot open the log to attach to");
            return exit_status(0);
        }
    };
    if let Err(error) = file.seek(std::io::SeekFrom::End(0)).await {
        tracing::warn!(log = %log.display(), %error, "cannot seek the log to attach to");
        return exit_status(0);
    }
    // The relay ends with the session: dropping it closes the socket, which
    // the monitor takes as the end of this attach.
    let relay = input.map(|input| tokio::spawn(relay_input(input, stdin, resize)));
    let mut follower = Follower::new(file, &log, Vec::new(), index, key);
    'lines: while let Some(lines) = follower.next().await {
        for line in lines {
            let channel = if line.stream == "stderr" && !tty { STDERR } else { STDOUT };
            let mut text = line.text;
            if !line.partial {
                text.push(b'\n');
            }
            if output.send((channel, Bytes::from(text))).await.is_err() {
                break 'lines;
            }
        }
    }
    if let Some(relay) = relay {
        relay.abort();
    }
    exit_status(0)
}

/// The client's stdin and resizes, as frames to the monitor, until the
/// client's stdin ends (then the monitor hears so) or the session does.
async fn relay_input(
    mut input: AttachSession,
    mut stdin: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    mut resize: tokio::sync::mpsc::Receiver<(u16, u16)>,
) {
    let mut resizes_open = true;
    loop {
        let frame = tokio::select! {
            data = async { match stdin.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => match data {
                Some(data) => Frame::Stdin(data.to_vec()),
                None => {
                    stdin = None;
                    Frame::CloseStdin
                }
            },
            size = resize.recv(), if resizes_open => match size {
                Some((width, height)) => Frame::Resize { width, height },
                None => {
                    resizes_open = false;
                    continue;
                }
            },
        };
        if let Err(error) = input.send(&frame).await {
            tracing::debug!(%error, "the container's monitor closed the attach session");
            return;
        }
        if stdin.is_none() && !resizes_open {
            return;
        }
    }
}
