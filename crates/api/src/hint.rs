//! "Did you mean …?": the closest of a set of known words to a misspelt
//! one (a field name, an image tag). Hints are said in addition to
//! upstream's text, never instead of it.

/// The candidate closest to `word`, when it is close enough to be what was
/// meant: the same but for case, or within a few edits (a transposition
/// counts as one). Ties between different candidates give no hint.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = match word.chars().count() {
        0..=1 => 0,
        2..=5 => 1,
        _ => 2,
    };
    let mut best: Option<(usize, &'a str)> = None;
    let mut tied = false;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let distance = if candidate.eq_ignore_ascii_case(word) {
            0
        } else {
            edit_distance(word, candidate)
        };
        if distance > limit {
            continue;
        }
        match best {
            Some((d, _)) if d < distance => {}
            Some((d, b)) if d == distance => tied |= b != candidate,
            _ => {
                best = Some((distance, candidate));
                tied = false;
            }
        }
    }
    best.filter(|_| !tied).map(|(_, candidate)| candidate)
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and transpositions of neighbours each cost one (`valueForm` → `valueFrom`
/// is one edit).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the distance table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        for (a, b, want) in [
            ("", "", 0),
            ("abc", "", 3),
            ("initContainters", "initContainers", 1),
            ("valueForm", "valueFrom", 1),
            ("lastest", "latest", 1),
            ("kitten", "sitting", 3),
        ] {
            assert_eq!(edit_distance(a, b), want, "{a} → {b}");
        }
    }

    #[test]
    fn closest_candidates() {
        let fields = ["containers", "initContainers", "volumes", "nodeName", "hostname"];
        for (word, want) in [
            ("initContainters", Some("initContainers")),
            ("initcontainers", Some("initContainers")),
            ("volume", Some("volumes")),
            ("containerz", Some("containers")),
            ("restart", None),
            ("x", None),
        ] {
            assert_eq!(closest(word, fields), want, "{word}");
        }
        assert_eq!(closest("lastest", ["latest", "1.36", "stable"]), Some("latest"));
        // Two different candidates equally close: no guess.
        assert_eq!(closest("ab1", ["ab2", "ab3"]), None);
    }
}
