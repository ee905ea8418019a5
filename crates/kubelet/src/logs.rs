//! Container logs: where each container's CRI-format log is, and turning
//! those files into what `kubectl logs` shows (`tailLines`, `sinceSeconds`,
//! `sinceTime`, `timestamps`, `limitBytes`, `previous`, `follow`).

use jiff::Timestamp;

/// One parsed CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub time: String,
    pub partial: bool,
    pub text: String,
}

/// Parses CRI log text (`<time> <stream> <F|P> <text>` per line).
pub fn parse(text: &str) -> Vec<Line> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let time = parts.next()?.to_string();
            let _stream = parts.next()?;
            let tag = parts.next()?;
            Some(Line {
                time,
                partial: tag == "P",
                text: parts.next().unwrap_or("").to_string(),
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
pub fn render(lines: &[Line], options: &LogOptions) -> String {
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
    let mut out = String::new();
    for line in &selected[start..] {
        if options.timestamps {
            out.push_str(&line.time);
            out.push(' ');
        }
        out.push_str(&line.text);
        if !line.partial {
            out.push('\n');
        }
    }
    if let Some(limit) = options.limit_bytes {
        let mut cut = limit.min(out.len());
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-01-01T00:00:01.000000001Z stdout F one\n2026-01-01T00:00:02.000000001Z stderr P tw\n2026-01-01T00:00:02.100000001Z stderr F o\n2026-01-01T00:00:03.000000001Z stdout F three\n";

    #[test]
    fn renders_like_kubectl_logs() {
        let lines = parse(LOG);
        assert_eq!(render(&lines, &LogOptions::default()), "one\ntwo\nthree\n");
        assert_eq!(
            render(
                &lines,
                &LogOptions {
                    tail_lines: Some(1),
                    ..Default::default()
                }
            ),
            "three\n"
        );
        assert_eq!(
            render(
                &lines,
                &LogOptions {
                    tail_lines: Some(2),
                    ..Default::default()
                }
            ),
            "two\nthree\n"
        );
        assert_eq!(
            render(
                &lines,
                &LogOptions {
                    limit_bytes: Some(1),
                    ..Default::default()
                }
            ),
            "o"
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
            "two\nthree\n"
        );
        let stamped = render(
            &lines,
            &LogOptions {
                timestamps: true,
                tail_lines: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(stamped, "2026-01-01T00:00:03.000000001Z three\n");
    }
}
