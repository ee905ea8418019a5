//! `kubectl attach` to a container without a terminal: its output from
//! now on, read from its CRI log as it grows, split back into stdout and
//! stderr, until the container ends. (Containers run with stdin closed,
//! so there is no input to attach to.)

use std::path::PathBuf;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::AsyncSeekExt;

use super::exec::{Channels, STDERR, STDOUT};
use super::exit_status;
use crate::index::ContainerIndex;
use crate::logs::Follower;

/// Streams what container `key` writes to `log` from now until it stops,
/// each line back on its own stream.
pub async fn follow(index: ContainerIndex, key: String, log: PathBuf, channels: Channels) -> Value {
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
    let mut follower = Follower::new(file, &log, Vec::new(), index, key);
    while let Some(lines) = follower.next().await {
        for line in lines {
            let channel = if line.stream == "stderr" { STDERR } else { STDOUT };
            let mut text = line.text;
            if !line.partial {
                text.push(b'\n');
            }
            if channels.output.send((channel, Bytes::from(text))).await.is_err() {
                return exit_status(0);
            }
        }
    }
    exit_status(0)
}
