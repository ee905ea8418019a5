//! What a pull or an import says as it goes, and the counting that makes
//! it: callers choose how to show it (a bar on a terminal, plain lines, log
//! lines in the node agent).

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

/// One step of a pull or an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The work is known: `layers` layers (0 when not known yet, as for
    /// an archive), `bytes` to fetch or read.
    Started { layers: usize, bytes: u64 },
    /// Layer `index` (from 1) begins; `stored` when it is already here.
    Layer {
        index: usize,
        digest: String,
        size: u64,
        stored: bool,
    },
    /// Bytes fetched or read so far, in all.
    Bytes { done: u64 },
}

/// Where progress goes.
pub type Report<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// For callers with nowhere to show progress.
pub fn ignore(_: Progress) {}

/// Which tenth (or other step) of the work has just been passed: for
/// reports that say "40%" once, not at every chunk.
#[derive(Debug, Clone)]
pub struct Marks {
    step: u64,
    said: u64,
}

impl Marks {
    /// Marks every `step` percent (1 to 100).
    pub fn every(step: u64) -> Self {
        Self {
            step: step.clamp(1, 100),
            said: 0,
        }
    }

    /// The highest mark `done` of `total` reached that was not said yet.
    pub fn passed(&mut self, done: u64, total: u64) -> Option<u64> {
        if total == 0 {
            return None;
        }
        let percent = (u128::from(done.min(total)) * 100 / u128::from(total)) as u64;
        let mark = percent / self.step * self.step;
        if mark > self.said && mark > 0 {
            self.said = mark;
            Some(mark)
        } else {
            None
        }
    }
}

/// Counts what is written through it, reporting the running total.
pub(crate) struct CountingWriter<'a, W> {
    inner: W,
    done: u64,
    report: Report<'a>,
}

impl<'a, W> CountingWriter<'a, W> {
    /// `done` is what earlier layers brought.
    pub(crate) fn new(inner: W, done: u64, report: Report<'a>) -> Self {
        Self { inner, done, report }
    }

    pub(crate) fn done(&self) -> u64 {
        self.done
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CountingWriter<'_, W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                this.done += written as u64;
                (this.report)(Progress::Bytes { done: this.done });
                Poll::Ready(Ok(written))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts what is read through it, reporting the running total.
pub(crate) struct CountingReader<'a, R> {
    inner: R,
    done: u64,
    report: Report<'a>,
}

impl<'a, R> CountingReader<'a, R> {
    pub(crate) fn new(inner: R, report: Report<'a>) -> Self {
        Self { inner, done: 0, report }
    }
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        if read > 0 {
            self.done += read as u64;
            (self.report)(Progress::Bytes { done: self.done });
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn marks_are_said_once_each() {
        let mut marks = Marks::every(25);
        let said: Vec<Option<u64>> = [0, 10, 25, 26, 60, 60, 99, 100, 100]
            .into_iter()
            .map(|done| marks.passed(done, 100))
            .collect();
        assert_eq!(
            said,
            [None, None, Some(25), None, Some(50), None, Some(75), Some(100), None]
        );
        assert_eq!(Marks::every(10).passed(5, 0), None, "no total, no marks");
        assert_eq!(Marks::every(10).passed(500, 100), Some(100), "past the end is the end");
    }

    #[test]
    fn readers_count_what_passes() -> io::Result<()> {
        let seen = Mutex::new(Vec::new());
        let report = |p: Progress| {
            if let (Ok(mut seen), Progress::Bytes { done }) = (seen.lock(), p) {
                seen.push(done);
            }
        };
        let mut reader = CountingReader::new(&b"0123456789"[..], &report);
        let mut buf = [0u8; 4];
        while reader.read(&mut buf)? > 0 {}
        assert_eq!(seen.lock().map(|s| s.clone()).unwrap_or_default(), vec![4, 8, 10]);
        Ok(())
    }

    #[tokio::test]
    async fn writers_count_from_what_came_before() -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let last = Mutex::new(0);
        let report = |p: Progress| {
            if let (Ok(mut last), Progress::Bytes { done }) = (last.lock(), p) {
                *last = done;
            }
        };
        let mut writer = CountingWriter::new(Vec::new(), 100, &report);
        writer.write_all(b"hello").await?;
        assert_eq!(writer.done(), 105);
        assert_eq!(last.lock().map(|l| *l).unwrap_or_default(), 105);
        Ok(())
    }
}
