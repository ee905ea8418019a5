//! How `skiff image pull` and `skiff image import` show their progress on
//! stderr: a bar redrawn in place on a terminal, plain lines otherwise
//! (logs, pipes, CI).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use skiff_runtime::image::progress::Marks;
use skiff_runtime::image::Progress;

/// How often the bar is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);
const BAR_WIDTH: usize = 30;
const MIB: f64 = 1024.0 * 1024.0;

/// Progress of one pull or import, shown as it comes.
pub struct Shown {
    what: String,
    terminal: bool,
    state: Mutex<State>,
}

struct State {
    layers: usize,
    layer: usize,
    total: u64,
    done: u64,
    marks: Marks,
    drawn: Option<Instant>,
}

impl Shown {
    pub fn new(what: &str) -> Self {
        Self {
            what: what.to_string(),
            terminal: std::io::stderr().is_terminal(),
            state: Mutex::new(State {
                layers: 0,
                layer: 0,
                total: 0,
                done: 0,
                marks: Marks::every(25),
                drawn: None,
            }),
        }
    }

    pub fn see(&self, step: Progress) {
        let Ok(mut state) = self.state.lock() else { return };
        let mut err = std::io::stderr().lock();
        match step {
            Progress::Started { layers, bytes } => {
                state.layers = layers;
                state.total = bytes;
                if !self.terminal {
                    let _ = writeln!(err, "{}", started_line(&self.what, layers, bytes));
                }
            }
            Progress::Layer { index, digest, size, stored } => {
                state.layer = index;
                if !self.terminal {
                    let _ = writeln!(err, "{}", layer_line(index, state.layers, &digest, size, stored));
                }
            }
            Progress::Bytes { done } => {
                state.done = done;
                if self.terminal {
                    let due = state.drawn.is_none_or(|at| at.elapsed() >= REDRAW) || done >= state.total;
                    if due {
                        state.drawn = Some(Instant::now());
                        let line = bar_line(done, state.total, state.layer, state.layers);
                        let _ = write!(err, "\r\x1b[K{} {line}", self.what);
                        let _ = err.flush();
                    }
                } else {
                    let total = state.total;
                    if let Some(percent) = state.marks.passed(done, total) {
                        let _ = writeln!(err, "{}: {percent}% ({})", self.what, of_mib(done, total));
                    }
                }
            }
        }
    }

    /// Ends the bar's line (on a terminal).
    pub fn finish(&self) {
        let Ok(state) = self.state.lock() else { return };
        if self.terminal && state.drawn.is_some() {
            let line = bar_line(state.done, state.total, state.layer, state.layers);
            eprintln!("\r\x1b[K{} {line}", self.what);
        }
    }
}

fn of_mib(done: u64, total: u64) -> String {
    format!("{:.1} of {:.1} MiB", done as f64 / MIB, total as f64 / MIB)
}

fn started_line(what: &str, layers: usize, bytes: u64) -> String {
    if layers == 0 {
        format!("{what}: reading {:.1} MiB", bytes as f64 / MIB)
    } else {
        let plural = if layers == 1 { "" } else { "s" };
        format!("{what}: {layers} layer{plural}, {:.1} MiB to fetch", bytes as f64 / MIB)
    }
}

fn layer_line(index: usize, layers: usize, digest: &str, size: u64, stored: bool) -> String {
    let short: String = digest.trim_start_matches("sha256:").chars().take(12).collect();
    let state = if stored { ", already stored" } else { "" };
    format!("layer {index}/{layers} {short} ({:.1} MiB{state})", size as f64 / MIB)
}

/// `[=======>      ] 12.3 of 45.6 MiB, layer 2/3`
fn bar_line(done: u64, total: u64, layer: usize, layers: usize) -> String {
    let filled = if total == 0 {
        BAR_WIDTH
    } else {
        (u128::from(done.min(total)) * BAR_WIDTH as u128 / u128::from(total)) as usize
    };
    let mut bar = "=".repeat(filled);
    if filled < BAR_WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat(BAR_WIDTH - filled - 1));
    }
    let layer = if layers > 0 { format!(", layer {layer}/{layers}") } else { String::new() };
    format!("[{bar}] {}{layer}", of_mib(done, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            bar_line(0, 4 * 1024 * 1024, 1, 2),
            "[>                             ] 0.0 of 4.0 MiB, layer 1/2"
        );
        assert_eq!(
            bar_line(2 * 1024 * 1024, 4 * 1024 * 1024, 2, 2),
            "[===============>              ] 2.0 of 4.0 MiB, layer 2/2"
        );
        assert_eq!(
            bar_line(5, 5, 0, 0),
            "[==============================] 0.0 of 0.0 MiB"
        );
        assert_eq!(
            layer_line(1, 3, "sha256:0123456789abcdef", 3 * 1024 * 1024, true),
            "layer 1/3 0123456789ab (3.0 MiB, already stored)"
        );
        assert_eq!(started_line("pulling x", 3, 1024 * 1024), "pulling x: 3 layers, 1.0 MiB to fetch");
        assert_eq!(started_line("pulling x", 1, 0), "pulling x: 1 layer, 0.0 MiB to fetch");
        assert_eq!(started_line("importing a.tar", 0, 1024 * 1024), "importing a.tar: reading 1.0 MiB");
    }
}
