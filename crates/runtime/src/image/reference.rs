//! Image references (`[domain/]path[:tag][@digest]`), parsed by hand.
//!
//! The same grammar and normalisation as `oci_spec`'s `Reference::from_str`
//! (Docker's `distribution/reference`), without its regular expression:
//! that one is compiled on first use into about 7 MiB that the server
//! then holds for good. Tags are ASCII word characters, as Docker's (Go's
//! `\w` is ASCII; the regex crate's is Unicode).

use oci_client::Reference;

/// The longest repository name, as upstream.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Why a reference was refused; the texts are `oci_spec`'s `ParseError`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceError {
    NameEmpty,
    InvalidFormat,
    NameTooLong,
    DigestInvalidFormat,
    DigestInvalidLength,
    DigestUnsupported,
}

impl std::fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NameEmpty => "repository name must have at least one component",
            Self::InvalidFormat => "invalid reference format",
            Self::NameTooLong => "repository name must not be more than 255 characters",
            Self::DigestInvalidFormat => "invalid checksum digest format",
            Self::DigestInvalidLength => "invalid checksum digest length",
            Self::DigestUnsupported => "unsupported digest algorithm",
        })
    }
}

/// Parses `text` as Docker does: `busybox` is `docker.io/library/busybox:latest`.
pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
    if text.is_empty() {
        return Err(ReferenceError::NameEmpty);
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) if is_digest(digest) => (rest, Some(digest)),
        Some(_) => return Err(ReferenceError::InvalidFormat),
        None => (text, None),
    };
    // A colon after the last slash starts the tag; one before it is a port.
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => {
            if !is_tag(tag) {
                return Err(ReferenceError::InvalidFormat);
            }
            (name, Some(tag))
        }
        _ => (rest, None),
    };
    if !is_name(name) {
        return Err(ReferenceError::InvalidFormat);
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    if let Some(digest) = digest {
        check_digest_length(digest)?;
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into())
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest.into()),
        (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or("latest").into()),
    })
}

/// `[domain/]component[/component]*`: the first part may be a domain
/// when a path follows it.
fn is_name(name: &str) -> bool {
    let path_only = name.split('/').all(is_path_component);
    path_only
        || name.split_once('/').is_some_and(|(domain, path)| {
            is_domain(domain) && path.split('/').all(is_path_component)
        })
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any run of `-`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    let mut separator: &[u8] = &[];
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if alnum(b) {
            if !separator.is_empty() {
                let ok = matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|&s| s == b'-');
                if !ok {
                    return false;
                }
                separator = &[];
            }
            start = i + 1;
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator = &bytes[start..=i];
        } else {
            return false;
        }
    }
    true
}

/// `label(.label)*(:port)?`, each label alphanumeric with inner hyphens.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    };
    host.split('.').all(label_ok)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[\w][\w.-]{0,127}` with ASCII word characters.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    bytes.first().is_some_and(|&b| word(b))
        && bytes.len() <= 128
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex`, the algorithm `[A-Za-z][A-Za-z0-9]*` parts joined by
/// one of `-_+.`, at least 32 hex digits.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let bytes = part.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_digest_length(digest: &str) -> Result<(), ReferenceError> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or(ReferenceError::DigestInvalidFormat)?;
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ReferenceError::DigestUnsupported),
    };
    if hex.len() != length {
        return Err(ReferenceError::DigestInvalidLength);
    }
    Ok(())
}

/// Docker's `splitDockerDomain`: a first part with a dot or a colon, or
/// `localhost`, is a registry; otherwise the name is Docker Hub's.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((left, right)) if left.contains(['.', ':']) || left == "localhost" => {
            (left.to_string(), right.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".into();
    }
    if domain == "docker.io" && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `oci_spec`'s regex-based parser makes of `text`, the oracle.
    fn upstream(text: &str) -> Result<String, String> {
        text.parse::<Reference>()
            .map(|r| format!("{} {} {:?} {:?}", r.registry(), r.repository(), r.tag(), r.digest()))
            .map_err(|e| e.to_string())
    }

    fn ours(text: &str) -> Result<String, String> {
        parse(text)
            .map(|r| format!("{} {} {:?} {:?}", r.registry(), r.repository(), r.tag(), r.digest()))
            .map_err(|e| e.to_string())
    }

    const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_same_as_oci_spec_on_known_cases() {
        let digest = format!("sha256:{HEX64}");
        let cases = [
            "busybox".to_string(),
            "busybox:latest".into(),
            "busybox:1.36.1-musl".into(),
            "library/busybox".into(),
            "docker.io/busybox".into(),
            "index.docker.io/busybox".into(),
            "index.docker.io/library/busybox:1".into(),
            "test.com:tag".into(),
            "test.com:5000".into(),
            "test.com/repo:tag".into(),
            "test:5000/repo".into(),
            "test:5000/repo:tag".into(),
            "localhost/app".into(),
            "localhost:5000/app:v1".into(),
            "127.0.0.1:5000/app:v1".into(),
            "sub-dom1.foo.com/bar/baz/quux".into(),
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag".into(),
            "b.gcr.io/test.example.com/my-app:test.example.com".into(),
            "xn--n3h.com/myimage:xn--n3h.com".into(),
            "foo_bar.com:8080".into(),
            "foo/foo_bar.com:8080".into(),
            "a__b/c--d/e.f".into(),
            "UPPERCASE.io/app".into(),
            "Uppercase/app".into(),
            "app:Tag_1.x".into(),
            format!("busybox@{digest}"),
            format!("busybox:1@{digest}"),
            format!("r.io:5000/a/b:c@{digest}"),
            format!("busybox@sha512:{HEX64}"),
            format!("busybox@md5:{HEX64}"),
            format!("busybox@sha256:{}", &HEX64[..40]),
            format!("busybox@sha256+b64:{HEX64}"),
            format!("busybox@sha256:{HEX64}@x"),
            "a".repeat(256),
            format!("r.io/{}", "a".repeat(255)),
            format!("r.io/{}", "a".repeat(256)),
            format!("app:{}", "t".repeat(128)),
            format!("app:{}", "t".repeat(129)),
            String::new(),
            "Bad Name".into(),
            "app:".into(),
            "app:.x".into(),
            ":tag".into(),
            "/app".into(),
            "app/".into(),
            "a//b".into(),
            "a..b".into(),
            "a___b".into(),
            "a._b".into(),
            "-a".into(),
            "a-".into(),
            "r.io:/app".into(),
            "r.io:50a/app".into(),
            "-r.io/app".into(),
            "r-.io/app".into(),
            "r..io/app".into(),
            "app@".into(),
            "app@sha256".into(),
            "a:b:c".into(),
            "a:b/c".into(),
        ];
        for case in &cases {
            assert_eq!(ours(case), upstream(case), "{case:?}");
        }
    }

    #[test]
    fn the_same_as_oci_spec_on_random_text() {
        // A small xorshift: deterministic, no dependency.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"ab9Z._-_/:@:/.-0f";
        let mut accepted = 0;
        for _ in 0..20_000 {
            let length = (next() % 14) as usize;
            let text: String = (0..length)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
                .collect();
            let expected = upstream(&text);
            accepted += usize::from(expected.is_ok());
            assert_eq!(ours(&text), expected, "{text:?}");
        }
        // Both sides of the grammar were exercised.
        assert!((500..19_000).contains(&accepted), "{accepted} accepted");
    }
}
