//! hostPath `type` checks, with upstream's messages (`checkType` in the
//! hostPath plugin): `DirectoryOrCreate` and `FileOrCreate` create what is
//! missing; the other types must already be there and be that kind.

use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The kind of file at `path` as upstream names it, following symlinks.
fn file_type(path: &Path) -> Result<&'static str, String> {
    let kind = std::fs::metadata(path).map_err(|e| e.to_string())?.file_type();
    Ok(if kind.is_dir() {
        "Directory"
    } else if kind.is_file() {
        "File"
    } else if kind.is_socket() {
        "Socket"
    } else if kind.is_char_device() {
        "CharDevice"
    } else if kind.is_block_device() {
        "BlockDevice"
    } else {
        return Err("only recognise file, directory, socket, block device and character device".into());
    })
}

fn matches(path: &Path, expected: &str, description: &str) -> Result<(), String> {
    let shown = path.display();
    if std::fs::metadata(path).is_err() {
        return Err(format!("hostPath {shown} doesn't exist"));
    }
    let actual = file_type(path).map_err(|e| {
        format!("hostPath type check failed, {shown} is not a {description}, unable to determine its type: {e}")
    })?;
    if actual != expected {
        return Err(format!("hostPath type check failed: {shown} is not a {description}, it's a {actual}"));
    }
    Ok(())
}

/// Checks (and for the `OrCreate` types makes) the host path of a volume.
pub fn check(path: &Path, kind: &str) -> Result<(), String> {
    let exists = std::fs::metadata(path).is_ok();
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" if !exists => {
            std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
        }
        "DirectoryOrCreate" | "Directory" => matches(path, "Directory", "directory"),
        "FileOrCreate" if !exists => std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(path)
            .map(drop)
            .map_err(|e| e.to_string()),
        "FileOrCreate" | "File" => matches(path, "File", "file"),
        "Socket" => matches(path, "Socket", "socket file"),
        "CharDevice" => matches(path, "CharDevice", "character device"),
        "BlockDevice" => matches(path, "BlockDevice", "block device"),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_checked_and_made_as_upstream() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::write(root.join("file"), "x")?;
        let _socket = std::os::unix::net::UnixListener::bind(root.join("sock"))?;
        let show = |name: &str| root.join(name).display().to_string();
        let cases: Vec<(&str, &str, Result<(), String>)> = vec![
            ("anything-missing", "", Ok(())),
            ("file", "File", Ok(())),
            ("file", "FileOrCreate", Ok(())),
            ("sock", "Socket", Ok(())),
            ("file", "Directory", Err(format!("hostPath type check failed: {} is not a directory, it's a File", show("file")))),
            ("file", "DirectoryOrCreate", Err(format!("hostPath type check failed: {} is not a directory, it's a File", show("file")))),
            ("sock", "File", Err(format!("hostPath type check failed: {} is not a file, it's a Socket", show("sock")))),
            ("file", "Socket", Err(format!("hostPath type check failed: {} is not a socket file, it's a File", show("file")))),
            ("file", "CharDevice", Err(format!("hostPath type check failed: {} is not a character device, it's a File", show("file")))),
            ("file", "BlockDevice", Err(format!("hostPath type check failed: {} is not a block device, it's a File", show("file")))),
            ("missing", "Directory", Err(format!("hostPath {} doesn't exist", show("missing")))),
            ("missing", "File", Err(format!("hostPath {} doesn't exist", show("missing")))),
            ("file", "Fancy", Err("Fancy is an invalid volume type".into())),
            ("made/dir", "DirectoryOrCreate", Ok(())),
            ("made-file", "FileOrCreate", Ok(())),
        ];
        for (name, kind, want) in cases {
            assert_eq!(check(&root.join(name), kind), want, "{name} as {kind:?}");
        }
        assert!(root.join("made/dir").is_dir());
        assert!(root.join("made-file").is_file());
        assert_eq!(check(Path::new("/dev/null"), "CharDevice"), Ok(()));
        Ok(())
    }
}
