//! Container logs: where each container's CRI-format log is, and turning
//! those files into what `kubectl logs` shows (`tailLines`, `sinceSeconds`,
//! `sinceTime`, `timestamps`, `limitBytes`, `previous`, `follow`). Bytes
//! stay bytes: a line that is not UTF-8 is served as written.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::index::ContainerIndex;
use crate::notify::Changes;

/// One parsed CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub partial: bool,
    pub text: Vec<u8>,
}

/// Parses CRI log bytes (`<time> <stream> <F|P> <text>` per line).
pub fn parse(bytes: &[u8]) -> Vec<Line> {
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let mut parts = line.splitn(4, |b| *b == b' ');
            let time = String::from_utf8_lossy(parts.next()?).into_owned();
            let stream = String::from_utf8_lossy(parts.next()?).into_owned();
            let tag = parts.next()?;
            Some(Line {
                time,
                stream,
                partial: tag == b"P",
                text: parts.next().unwrap_or(b"").to_vec(),
            })
        })
        .collect()
}

/// What a log request asks for.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub tail_lines: Option<usize>,
    pub since: Option<Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

/// Renders lines as kubelet does: full lines end with a newline, partial
/// pieces do not; timestamps prefix each line when asked.
pub fn render(lines: &[Line], options: &LogOptions) -> Vec<u8> {
    let selected: Vec<&Line> = lines
        .iter()
        .filter(|l| {
            options
                .since
                .is_none_or(|since| l.time.parse::<Timestamp>().is_ok_and(|t| t >= since))
        })
        .collect();
    let start = match options.tail_lines {
        Some(n) => {
            let complete = selected.iter().filter(|l| !l.partial).count();
            let skip_complete = complete.saturating_sub(n);
            let mut seen = 0;
            selected
                .iter()
                .position(|l| {
                    if seen >= skip_complete {
                        return true;
                    }
                    if !l.partial {
                        seen += 1;
                    }
                    false
                })
                .unwrap_or(selected.len())
        }
        None => 0,
    };
    let mut out = Vec::new();
    for line in &selected[start..] {
        if options.timestamps {
            out.extend_from_slice(line.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&line.text);
        if !line.partial {
            out.push(b'\n');
        }
    }
    if let Some(limit) = options.limit_bytes {
        out.truncate(limit);
    }
    out
}

/// The end of a log holding at least its last `lines` lines (or all of
/// it): a `--tail` of a large log reads only that much, from the end.
pub async fn read_tail(file: &mut tokio::fs::File, lines: usize) -> std::io::Result<Vec<u8>> {
    const CHUNK: u64 = 64 * 1024;
    let len = file.seek(SeekFrom::End(0)).await?;
    let mut start = len;
    let mut tail = Vec::new();
    // One newline more than asked: the line before the first kept one ends there.
    while start > 0 && tail.iter().filter(|b| **b == b'\n').count() <= lines {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; usize::try_from(start - from).unwrap_or(0)];
        file.seek(SeekFrom::Start(from)).await?;
        file.read_exact(&mut chunk).await?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        start = from;
    }
    file.seek(SeekFrom::Start(len)).await?;
    if start > 0 {
        // Drop the cut first line.
        if let Some(first_end) = tail.iter().position(|b| *b == b'\n') {
            tail.drain(..=first_end);
        }
    }
    Ok(tail)
}

/// Follows one container's log from an open file: complete lines as they
/// are written, until the container stops (the index says it no longer
/// runs this attempt). Woken by inotify on the file and by index changes,
/// never by a timer.
pub struct Follower {
    file: tokio::fs::File,
    path: PathBuf,
    unfinished: Vec<u8>,
    index: ContainerIndex,
    key: String,
    changes: tokio::sync::watch::Receiver<u64>,
    writes: Changes,
    done: bool,
}

impl Follower {
    /// Follows `file` (open on `path`, positioned where following starts)
    /// for container `key`; `unfinished` is a line already begun.
    pub fn new(file: tokio::fs::File, path: &Path, unfinished: Vec<u8>, index: ContainerIndex, key: String) -> Self {
        let writes = Changes::watch(
            path,
            inotify::WatchMask::MODIFY | inotify::WatchMask::CLOSE_WRITE,
            "the log is followed as its container's state changes only",
        );
        Follower {
            changes: index.changes(),
            file,
            path: path.to_path_buf(),
            unfinished,
            index,
            key,
            writes,
            done: false,
        }
    }

    fn running(&self) -> bool {
        self.index.get(&self.key).is_some_and(|e| {
            e.running && self.path.ends_with(format!("{}.log", e.attempt))
        })
    }

    /// The next complete lines, or `None` once the container stopped and
    /// everything it wrote was returned.
    pub async fn next(&mut self) -> Option<Vec<Line>> {
        while !self.done {
            self.changes.borrow_and_update();
            // Asked before reading: a container that stopped wrote its
            // last line by then.
            let running = self.running();
            if let Err(error) = self.file.read_to_end(&mut self.unfinished).await {
                tracing::warn!(log = %self.path.display(), %error, "failed to follow a container log");
                return None;
            }
            self.done = !running;
            if let Some(end) = self.unfinished.iter().rposition(|b| *b == b'\n') {
                let rest = self.unfinished.split_off(end + 1);
                let complete = std::mem::replace(&mut self.unfinished, rest);
                return Some(parse(&complete));
            }
            if self.done {
                break;
            }
            tokio::select! {
                _ = self.writes.next() => {}
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        self.done = true;
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-01-01T00:00:01.000000001Z stdout F one\n2026-01-01T00:00:02.000000001Z stderr P tw\n2026-01-01T00:00:02.100000001Z stderr F o\n2026-01-01T00:00:03.000000001Z stdout F three\n";

    #[test]
    fn renders_like_kubectl_logs() {
        let lines = parse(LOG.as_bytes());
        assert_eq!(render(&lines, &LogOptions::default()), b"one\ntwo\nthree\n");
        assert_eq!(
            render(
                &lines,
                &LogOptions {
                    tail_lines: Some(1),
                    ..Default::default()
                }
            ),
            b"three\n"
        );
        assert_eq!(
            render(
                &lines,
                &LogOptions {
                    tail_lines: Some(2),
                    ..Default::default()
                }
            ),
            b"two\nthree\n"
        );
        assert_eq!(
            render(
                &lines,
                &LogOptions {
                    limit_bytes: Some(1),
                    ..Default::default()
                }
            ),
            b"o"
        );
        let since = "2026-01-01T00:00:02Z".parse().ok();
        assert_eq!(
            render(
                &lines,
                &LogOptions {
                    since,
                    ..Default::default()
                }
            ),
            b"two\nthree\n"
        );
        let stamped = render(
            &lines,
            &LogOptions {
                timestamps: true,
                tail_lines: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(stamped, b"2026-01-01T00:00:03.000000001Z three\n");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_kept() {
        let log = b"2026-01-01T00:00:01Z stdout F caf\xe9 \xff\xfe\n";
        let lines = parse(log);
        assert_eq!(lines[0].stream, "stdout");
        assert_eq!(render(&lines, &LogOptions::default()), b"caf\xe9 \xff\xfe\n");
    }

    #[tokio::test]
    async fn tails_read_from_the_end() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("0.log");
        let mut log = Vec::new();
        for n in 0..20_000 {
            log.extend_from_slice(format!("2026-01-01T00:00:01Z stdout F line {n}\n").as_bytes());
        }
        std::fs::write(&path, &log)?;
        let mut file = tokio::fs::File::open(&path).await?;
        let tail = read_tail(&mut file, 2).await?;
        assert!(tail.len() < 200 * 1024, "read from the end only");
        let options = LogOptions { tail_lines: Some(2), ..Default::default() };
        assert_eq!(render(&parse(&tail), &options), b"line 19998\nline 19999\n");
        let mut small = tokio::fs::File::open(&path).await?;
        let all = read_tail(&mut small, 50_000).await?;
        assert_eq!(all, log);
        Ok(())
    }

    #[tokio::test]
    async fn a_follower_wakes_on_writes_and_ends_when_the_container_stops() -> std::io::Result<()> {
        use std::io::Write;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("0.log");
        let mut writer = std::fs::File::create(&path)?;
        let index = ContainerIndex::default();
        let entry = |running| crate::index::ContainerEntry {
            dir: dir.path().to_path_buf(),
            attempt: 0,
            running,
            runtime_id: "c1".into(),
            bundle: dir.path().join("c1"),
            cgroup: String::new(),
        };
        index.set("ns/p/c".into(), entry(true));
        let file = tokio::fs::File::open(&path).await?;
        let mut follower = Follower::new(file, &path, Vec::new(), index.clone(), "ns/p/c".into());
        let next = tokio::spawn(async move {
            let first = follower.next().await;
            let second = follower.next().await;
            let end = follower.next().await;
            (first, second, end)
        });
        writer.write_all(b"2026-01-01T00:00:01Z stdout F one \xff\n2026-01-01T00:00:01Z stderr P tw")?;
        writer.flush()?;
        writer.write_all(b"\n")?;
        index.set("ns/p/c".into(), entry(false));
        let (first, second, end) = next.await.map_err(std::io::Error::other)?;
        let mut seen: Vec<Line> = first.unwrap_or_default();
        seen.extend(second.unwrap_or_default());
        assert_eq!(render(&seen, &LogOptions::default()), b"one \xff\ntw");
        assert!(end.is_none() || end == Some(Vec::new()));
        Ok(())
    }
}
