//! Errors that teach: a sentence appended to the kubelet's upstream
//! wording (never replacing it) that says what went wrong in plain words
//! and what was probably meant. Pure.

use skiff_api::hint;

/// Tags named when none is close to the one asked for.
const TAGS_LISTED: usize = 8;
/// Log lines a crash-loop event carries.
const LOG_LINES: usize = 5;
/// Bytes of log a crash-loop event carries at most.
const LOG_BYTES: usize = 512;

/// For an image whose tag the registry does not have: the close tags that
/// exist (`lastest` → `latest`), or some that do.
pub fn image_not_found(image: &str, tags: &[String]) -> Option<String> {
    let (repository, tag) = split_tag(image)?;
    if tags.is_empty() {
        return None;
    }
    let said = format!("the repository has no tag {tag:?}");
    if let Some(meant) = hint::closest(tag, tags.iter().map(String::as_str)) {
        return Some(format!("{said}: did you mean \"{repository}:{meant}\"?"));
    }
    let mut listed: Vec<&str> = tags.iter().map(String::as_str).take(TAGS_LISTED).collect();
    if tags.len() > TAGS_LISTED {
        listed.push("…");
    }
    Some(format!("{said}; it has {}", listed.join(", ")))
}

/// `repo/name:tag` → (`repo/name`, `tag`); `latest` when no tag is given;
/// nothing for a digest reference.
fn split_tag(image: &str) -> Option<(&str, &str)> {
    if image.contains('@') {
        return None;
    }
    let last_part = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_part..].rfind(':') {
        Some(i) => Some((&image[..last_part + i], &image[last_part + i + 1..])),
        None => Some((image, "latest")),
    }
}

/// What a crash-loop back-off event adds: how the container ended and the
/// end of what it wrote, on one line (`kubectl describe` prints events as
/// table rows).
pub fn crash_loop(exit_code: i32, reason: &str, log: &str) -> String {
    let mut lines: Vec<&str> = log.lines().rev().filter(|l| !l.trim().is_empty()).take(LOG_LINES).collect();
    lines.reverse();
    let mut tail = lines.join(" | ");
    if tail.len() > LOG_BYTES {
        let mut start = tail.len() - LOG_BYTES;
        while !tail.is_char_boundary(start) {
            start += 1;
        }
        tail = format!("…{}", &tail[start..]);
    }
    let ended = format!("the container exited with code {exit_code} ({reason})");
    if tail.is_empty() {
        format!("{ended} and wrote nothing to its log")
    } else {
        format!("{ended}; the end of its log: {tail}")
    }
}

/// What a failing readiness probe means for the pod, in one line.
pub const READINESS: &str = "while readiness fails the pod is not Ready: Services send it no traffic (the container is not restarted)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        let tags: Vec<String> = ["latest", "1.36", "stable"].map(String::from).to_vec();
        for (image, want) in [
            (
                "busybox:lastest",
                Some("the repository has no tag \"lastest\": did you mean \"busybox:latest\"?"),
            ),
            (
                "127.0.0.1:5000/library/busybox:1.63",
                Some("the repository has no tag \"1.63\": did you mean \"127.0.0.1:5000/library/busybox:1.36\"?"),
            ),
            (
                "127.0.0.1:5000/busybox:v9-experimental",
                Some("the repository has no tag \"v9-experimental\"; it has latest, 1.36, stable"),
            ),
            ("busybox@sha256:0123", None),
        ] {
            assert_eq!(image_not_found(image, &tags).as_deref(), want, "{image}");
        }
        assert_eq!(image_not_found("busybox:x", &[]), None);
        let many: Vec<String> = (0..20).map(|i| format!("v{i}.0.0-rc")).collect();
        let listed = image_not_found("app:zzz", &many).unwrap_or_default();
        assert!(listed.ends_with("v7.0.0-rc, …"), "{listed}");
    }

    #[test]
    fn tags_split_after_the_registry_port() {
        assert_eq!(split_tag("localhost:5000/a"), Some(("localhost:5000/a", "latest")));
        assert_eq!(split_tag("a:1"), Some(("a", "1")));
    }

    #[test]
    fn crash_loop_detail() {
        assert_eq!(
            crash_loop(1, "Error", "starting\n\nconfig missing: /etc/app.conf\n"),
            "the container exited with code 1 (Error); the end of its log: starting | config missing: /etc/app.conf"
        );
        assert_eq!(
            crash_loop(137, "OOMKilled", ""),
            "the container exited with code 137 (OOMKilled) and wrote nothing to its log"
        );
        let noisy: String = (0..10).map(|i| format!("line {i}\n")).collect();
        assert!(crash_loop(2, "Error", &noisy).ends_with("log: line 5 | line 6 | line 7 | line 8 | line 9"));
        let long = "é".repeat(600);
        let detail = crash_loop(2, "Error", &long);
        assert!(detail.len() < 700 && detail.contains('…'), "{detail}");
    }
}
