//! Kubelet's atomic writer: a volume's files live in a timestamped
//! directory (`..2026_12_02_14_30_00.123456`), `..data` links to the
//! current one, and each top-level name links through `..data`. An update
//! writes a new directory and swaps `..data` with one rename, so a reader
//! sees the old set or the new one, never half of either.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path};

use jiff::Timestamp;

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A volume's files by relative path.
pub type Payload = BTreeMap<String, File>;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Whether `path` may be a payload path: relative, no `..` element, not
/// starting with `..` (the writer's own names), as upstream validates.
pub fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with("..")
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Writes `payload` into `target` unless it holds exactly that already;
/// whether it wrote. `group` owns the files when set (fsGroup).
pub fn write(target: &Path, payload: &Payload, group: Option<u32>, now: Timestamp) -> io::Result<bool> {
    if let Some(bad) = payload.keys().find(|p| !valid_path(p)) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid path {bad:?}")));
    }
    std::fs::create_dir_all(target)?;
    let old = std::fs::read_link(target.join(DATA)).ok();
    if let Some(old) = &old {
        if holds(&target.join(old), payload) {
            return Ok(false);
        }
    }
    let stamp = now.strftime("..%Y_%m_%d_%H_%M_%S").to_string();
    let (name, dir) = (0..1000)
        .map(|n| format!("{stamp}.{:06}{n}", now.subsec_microsecond()))
        .map(|name| (name.clone(), target.join(name)))
        .find(|(_, dir)| !dir.exists())
        .ok_or_else(|| io::Error::other("no free timestamped directory name"))?;
    std::fs::create_dir(&dir)?;
    // Group and others must be able to walk the tree whatever the umask.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    for (path, file) in payload {
        let destination = dir.join(path);
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&destination, &file.data)?;
        std::fs::set_permissions(&destination, std::fs::Permissions::from_mode(file.mode))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&destination, None, Some(gid))?;
        }
    }
    let tmp = target.join(DATA_TMP);
    if tmp.symlink_metadata().is_ok() {
        std::fs::remove_file(&tmp)?;
    }
    symlink(&name, &tmp)?;
    std::fs::rename(&tmp, target.join(DATA))?;
    let top: BTreeSet<String> = payload.keys().filter_map(|p| p.split('/').next()).map(str::to_string).collect();
    for name in &top {
        let link = target.join(name);
        if link.symlink_metadata().is_err() {
            symlink(Path::new(DATA).join(name), &link)?;
        }
    }
    for entry in std::fs::read_dir(target)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if is_link && !name.starts_with("..") && !top.contains(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(target.join(old))?;
    }
    Ok(true)
}

/// Whether `dir` holds exactly the payload's files, contents and modes.
fn holds(dir: &Path, payload: &Payload) -> bool {
    let same = payload.iter().all(|(path, file)| {
        let path = dir.join(path);
        std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == file.mode)
            && std::fs::read(&path).is_ok_and(|data| data == file.data)
    });
    same && count_files(dir) == payload.len()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(p, d, m)| (p.to_string(), File { data: d.as_bytes().to_vec(), mode: *m }))
            .collect()
    }

    fn at(seconds: i64) -> Result<Timestamp, jiff::Error> {
        Timestamp::from_second(1_790_000_000 + seconds)
    }

    #[test]
    fn files_appear_through_data_and_updates_swap_it() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("config");
        let first = payload(&[("a", "1", 0o644), ("nested/b", "2", 0o400)]);
        assert!(write(&target, &first, None, at(0)?)?);
        assert_eq!(std::fs::read_to_string(target.join("a"))?, "1");
        assert_eq!(std::fs::read_to_string(target.join("nested/b"))?, "2");
        assert_eq!(std::fs::read_link(target.join("a"))?, Path::new("..data/a"));
        let data = std::fs::read_link(target.join(DATA))?;
        assert!(data.to_string_lossy().starts_with("..2026_"), "{data:?}");
        assert_eq!(std::fs::metadata(target.join("nested/b"))?.permissions().mode() & 0o777, 0o400);

        // The same content writes nothing.
        assert!(!write(&target, &first, None, at(1)?)?);
        assert_eq!(std::fs::read_link(target.join(DATA))?, data);

        // An update: new content, a key gone, a key added; the old
        // directory goes.
        let second = payload(&[("a", "changed", 0o644), ("c", "3", 0o644)]);
        assert!(write(&target, &second, None, at(2)?)?);
        assert_eq!(std::fs::read_to_string(target.join("a"))?, "changed");
        assert_eq!(std::fs::read_to_string(target.join("c"))?, "3");
        assert!(target.join("nested").symlink_metadata().is_err());
        assert!(!target.join(&data).exists());
        let left: Vec<String> = std::fs::read_dir(&target)?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".."))
            .collect();
        assert_eq!(left.len(), 2, "..data and one timestamped directory: {left:?}");

        // A mode change alone is an update too.
        let third = payload(&[("a", "changed", 0o600), ("c", "3", 0o644)]);
        assert!(write(&target, &third, None, at(3)?)?);

        // Empty: only the writer's own entries stay.
        assert!(write(&target, &Payload::new(), None, at(4)?)?);
        assert!(target.join("a").symlink_metadata().is_err());
        Ok(())
    }

    #[test]
    fn paths_that_escape_or_clash_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        for (path, valid) in [("a", true), ("a/b", true), ("..a", false), ("../a", false), ("a/../../b", false), ("/etc/passwd", false), ("", false), ("a/./b", true)] {
            assert_eq!(valid_path(path), valid, "{path}");
        }
        let dir = tempfile::tempdir()?;
        let error = write(dir.path(), &payload(&[("../escape", "x", 0o644)]), None, at(0)?);
        assert!(error.is_err());
        assert!(!dir.path().parent().is_some_and(|p| p.join("escape").exists()));
        Ok(())
    }
}
