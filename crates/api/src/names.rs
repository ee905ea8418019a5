//! Name, label and annotation validation with upstream's messages.

use std::collections::BTreeMap;

use crate::status::FieldError;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const ENV_NAME_MSG: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";
const PORT_NAME_CHARS_MSG: &str =
    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)";

/// Kubernetes' limit on the total size of a metadata.annotations map.
pub const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

fn is_label_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
}

fn dns1123_label_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.iter().all(|c| is_label_char(*c)) && b[0] != b'-' && b[b.len() - 1] != b'-'
}

/// Errors for a DNS-1123 label (container, volume and namespace names).
pub fn dns1123_label(field: &str, value: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push(FieldError::invalid(
            field,
            value,
            "must be no more than 63 characters",
        ));
    }
    if !dns1123_label_ok(value) {
        errors.push(FieldError::invalid(field, value, DNS1123_LABEL_MSG));
    }
    errors
}

/// Errors for a DNS-1123 subdomain (most object names).
pub fn dns1123_subdomain(field: &str, value: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if value.len() > 253 {
        errors.push(FieldError::invalid(
            field,
            value,
            "must be no more than 253 characters",
        ));
    }
    if !value.split('.').all(dns1123_label_ok) {
        errors.push(FieldError::invalid(field, value, DNS1123_SUBDOMAIN_MSG));
    }
    errors
}

/// Errors for a DNS-1035 label (service names).
/// upstream's `ValidatePathSegmentName` (RBAC object names such as
/// `system:discovery`).
pub fn path_segment(field: &str, value: &str) -> Vec<FieldError> {
    if value == "." || value == ".." {
        return vec![FieldError::invalid(field, value, format!("may not be '{value}'"))];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| value.contains(**bad))
        .map(|bad| FieldError::invalid(field, value, format!("may not contain '{bad}'")))
        .collect()
}

pub fn dns1035_label(field: &str, value: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push(FieldError::invalid(
            field,
            value,
            "must be no more than 63 characters",
        ));
    }
    if !(dns1123_label_ok(value) && value.as_bytes()[0].is_ascii_lowercase()) {
        errors.push(FieldError::invalid(field, value, DNS1035_LABEL_MSG));
    }
    errors
}

fn qualified_name_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Errors for a qualified name such as a label key (`prefix/name`).
pub fn qualified_name(field: &str, value: &str) -> Vec<FieldError> {
    let (prefix, name) = match value.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, value),
    };
    let mut errors = Vec::new();
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errors.push(FieldError::invalid(
                field,
                value,
                "prefix part must be non-empty",
            ));
        } else if !dns1123_subdomain("", prefix).is_empty() {
            errors.push(FieldError::invalid(
                field,
                value,
                format!("prefix part {DNS1123_SUBDOMAIN_MSG}"),
            ));
        }
    }
    if name.is_empty() {
        errors.push(FieldError::invalid(
            field,
            value,
            "name part must be non-empty",
        ));
    } else if name.len() > 63 {
        errors.push(FieldError::invalid(
            field,
            value,
            "name part must be no more than 63 characters",
        ));
    } else if !qualified_name_part_ok(name) {
        errors.push(FieldError::invalid(field, value, QUALIFIED_NAME_MSG));
    }
    errors
}

/// Errors for a label value.
pub fn label_value(field: &str, value: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push(FieldError::invalid(
            field,
            value,
            "must be no more than 63 characters",
        ));
    }
    if !value.is_empty() && !qualified_name_part_ok(&value[..value.len().min(63)]) {
        errors.push(FieldError::invalid(field, value, LABEL_VALUE_MSG));
    }
    errors
}

/// Errors for a labels map (keys and values).
pub fn labels(field: &str, labels: &BTreeMap<String, String>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in labels {
        errors.extend(qualified_name(field, key));
        errors.extend(label_value(&format!("{field}[{key}]"), value));
    }
    errors
}

/// Errors for an annotations map (keys and total size).
pub fn annotations(field: &str, annotations: &BTreeMap<String, String>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut total = 0;
    for (key, value) in annotations {
        errors.extend(qualified_name(field, &key.to_lowercase()));
        total += key.len() + value.len();
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errors.push(FieldError::too_long(field, TOTAL_ANNOTATION_SIZE));
    }
    errors
}

/// Errors for an environment variable name.
pub fn env_var_name(field: &str, value: &str) -> Vec<FieldError> {
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Vec::new()
    } else {
        vec![FieldError::invalid(field, value, ENV_NAME_MSG)]
    }
}

/// Errors for an IANA service name (named ports).
pub fn port_name(field: &str, value: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if value.len() > 15 {
        errors.push(FieldError::invalid(
            field,
            value,
            "must be no more than 15 characters",
        ));
    }
    if !value.bytes().all(is_label_char) {
        errors.push(FieldError::invalid(field, value, PORT_NAME_CHARS_MSG));
    }
    if !value.bytes().any(|c| c.is_ascii_lowercase()) {
        errors.push(FieldError::invalid(
            field,
            value,
            "must contain at least one letter (a-z)",
        ));
    }
    if value.contains("--") {
        errors.push(FieldError::invalid(
            field,
            value,
            "must not contain consecutive hyphens",
        ));
    }
    if value.starts_with('-') || value.ends_with('-') {
        errors.push(FieldError::invalid(
            field,
            value,
            "must not begin or end with a hyphen",
        ));
    }
    errors
}

/// Errors for a port number that must be in 1..=65535.
pub fn port_number(field: &str, port: i32) -> Vec<FieldError> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            field,
            port,
            "must be between 1 and 65535, inclusive",
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc1123() {
        assert!(dns1123_subdomain("metadata.name", "web-1.example").is_empty());
        let bad = dns1123_subdomain("metadata.name", "Foo_Bar");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].to_string().starts_with(
            "metadata.name: Invalid value: \"Foo_Bar\": a lowercase RFC 1123 subdomain"
        ));
        assert!(dns1123_label("spec.containers[0].name", "web").is_empty());
        assert_eq!(dns1123_label("n", "Web_App").len(), 1);
        assert_eq!(dns1123_label("n", &"a".repeat(64)).len(), 1);
    }

    #[test]
    fn label_keys_and_values() {
        assert!(qualified_name("k", "app.kubernetes.io/name").is_empty());
        assert!(!qualified_name("k", "-bad").is_empty());
        assert!(label_value("v", "").is_empty());
        assert!(!label_value("v", "bad value").is_empty());
    }

    #[test]
    fn env_and_ports() {
        assert!(env_var_name("e", "MY_VAR.x-1").is_empty());
        assert!(!env_var_name("e", "1ABC").is_empty());
        assert!(port_name("p", "http").is_empty());
        assert!(!port_name("p", "8080").is_empty());
        assert!(!port_number("p", 0).is_empty());
    }
}
