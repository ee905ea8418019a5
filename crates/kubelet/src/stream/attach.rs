//! `kubectl attach` to a container without a terminal: its output from
//! now on, read from its CRI log as it grows, split back into stdout and
//! stderr, until the container ends. (Containers run with stdin closed,
//! so there is no input to attach to.)

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::exec::{Channels, STDERR, STDOUT};
use super::exit_status;
use crate::index::ContainerIndex;

/// How often the log is checked for new lines.
const POLL: Duration = Duration::from_millis(100);

/// One CRI log line as (channel, text to send).
fn decode(line: &str) -> Option<(u8, String)> {
    let mut parts = line.splitn(4, ' ');
    let _time = parts.next()?;
    let channel = match parts.next()? {
        "stderr" => STDERR,
        _ => STDOUT,
    };
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some((
        channel,
        if tag == "P" {
            text.to_string()
        } else {
            format!("{text}\n")
        },
    ))
}

/// Streams what container `key` writes to `log` from now until it stops.
pub async fn follow(index: ContainerIndex, key: String, log: PathBuf, channels: Channels) -> Value {
    let mut offset = tokio::fs::metadata(&log)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let mut pending = String::new();
    loop {
        let running = index
            .get(&key)
            .is_some_and(|e| e.running && log.ends_with(format!("{}.log", e.attempt)));
        if let Ok(mut file) = tokio::fs::File::open(&log).await {
            if file.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                let mut chunk = Vec::new();
                if let Ok(n) = file.read_to_end(&mut chunk).await {
                    offset += n as u64;
                    pending.push_str(&String::from_utf8_lossy(&chunk));
                }
            }
        }
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if let Some((channel, text)) = decode(line.trim_end_matches('\n')) {
                if channels
                    .output
                    .send((channel, Bytes::from(text)))
                    .await
                    .is_err()
                {
                    return exit_status(0);
                }
            }
        }
        if !running {
            return exit_status(0);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_go_back_to_their_stream() {
        assert_eq!(
            decode("2026-01-01T00:00:01Z stderr F oops"),
            Some((STDERR, "oops\n".into()))
        );
        assert_eq!(
            decode("2026-01-01T00:00:01Z stdout P part"),
            Some((STDOUT, "part".into()))
        );
    }
}
