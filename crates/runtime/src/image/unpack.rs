//! Unpacking one image layer (a tar, possibly gzip or zstd compressed) into
//! a directory that overlayfs can stack: OCI whiteouts (`.wh.name`) become
//! overlay whiteouts (0:0 character devices) and opaque markers
//! (`.wh..wh..opq`) become the `trusted.overlay.opaque` xattr.
//!
//! No entry may write outside the layer: absolute paths, `..` components,
//! paths through a symlink inside the layer and hard links to outside are
//! refused, and the whole layer with them. Unpacking goes to a scratch
//! directory that is renamed into place only when every entry succeeded.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{lchown, symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From an OCI or Docker layer media type.
    pub fn from_media_type(media_type: &str) -> Self {
        if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
            Self::Zstd
        } else if media_type.ends_with("+gzip")
            || media_type.ends_with(".gzip")
            || media_type.ends_with("tar.gzip")
            || media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
        {
            Self::Gzip
        } else {
            Self::None
        }
    }

    /// Sniffs the first bytes of a blob (for archives whose layers carry no media type).
    pub fn sniff(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Self::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Self::Zstd,
            _ => Self::None,
        }
    }
}

/// Why a layer was refused or could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?} would write outside the layer")]
    Escapes { entry: String },
    #[error("layer entry {entry:?} goes through a symbolic link")]
    ThroughSymlink { entry: String },
    #[error("layer entry {entry:?} links to {target:?}, outside the layer or missing")]
    BadHardLink { entry: String, target: String },
    #[error("failed to unpack layer entry {entry:?}")]
    Io { entry: String, source: io::Error },
    #[error("failed to read the layer archive")]
    Archive(#[source] io::Error),
}

type Result<T> = std::result::Result<T, UnpackError>;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// The entry's path relative to the layer root, or why it is unsafe.
fn relative_path(raw: &Path) -> Result<PathBuf> {
    let entry = raw.display().to_string();
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::Escapes { entry });
            }
        }
    }
    Ok(out)
}

/// Makes every parent of `relative` a real directory under `root`,
/// refusing to pass through a symlink.
fn prepare_parents(root: &Path, relative: &Path, entry: &str) -> Result<PathBuf> {
    let mut current = root.to_path_buf();
    if let Some(parent) = relative.parent() {
        for part in parent.components() {
            current.push(part);
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(UnpackError::ThroughSymlink {
                        entry: entry.to_string(),
                    });
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    fs::remove_file(&current).map_err(|source| UnpackError::Io {
                        entry: entry.to_string(),
                        source,
                    })?;
                    fs::create_dir(&current).map_err(|source| UnpackError::Io {
                        entry: entry.to_string(),
                        source,
                    })?;
                }
                Err(_) => fs::create_dir(&current).map_err(|source| UnpackError::Io {
                    entry: entry.to_string(),
                    source,
                })?,
            }
        }
    }
    Ok(root.join(relative))
}

/// Removes whatever is at `path` (not following symlinks).
fn clear(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

/// Unpacks `reader` into `dest`, which must not exist yet.
pub fn unpack_layer(reader: impl Read, compression: Compression, dest: &Path) -> Result<()> {
    let scratch = dest.with_extension(format!("partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|source| UnpackError::Io {
        entry: String::new(),
        source,
    })?;
    let outcome = match compression {
        Compression::None => unpack_entries(reader, &scratch),
        Compression::Gzip => unpack_entries(flate2::read::GzDecoder::new(reader), &scratch),
        Compression::Zstd => match zstd::stream::read::Decoder::new(reader) {
            Ok(decoder) => unpack_entries(decoder, &scratch),
            Err(source) => Err(UnpackError::Archive(source)),
        },
    };
    match outcome {
        Ok(()) => fs::rename(&scratch, dest).map_err(|source| UnpackError::Io {
            entry: String::new(),
            source,
        }),
        Err(error) => {
            let _ = fs::remove_dir_all(&scratch);
            Err(error)
        }
    }
}

fn unpack_entries(reader: impl Read, root: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    let mut directories = Vec::new();
    for entry in archive.entries().map_err(UnpackError::Archive)? {
        let mut entry = entry.map_err(UnpackError::Archive)?;
        let raw = entry.path().map_err(UnpackError::Archive)?.into_owned();
        let name = raw.display().to_string();
        let relative = relative_path(&raw)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let io_err = |source| UnpackError::Io {
            entry: name.clone(),
            source,
        };
        let file_name = relative
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if file_name == OPAQUE {
            let dir = prepare_parents(root, &relative, &name)?;
            let dir = dir.parent().unwrap_or(root).to_path_buf();
            xattr::set(&dir, "trusted.overlay.opaque", b"y").map_err(io_err)?;
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            let target = prepare_parents(root, &relative.with_file_name(hidden), &name)?;
            clear(&target).map_err(io_err)?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .map_err(|e| io_err(io::Error::from(e)))?;
            continue;
        }
        let path = prepare_parents(root, &relative, &name)?;
        let header = entry.header();
        let mode = header.mode().map_err(UnpackError::Archive)? & 0o7777;
        let (uid, gid) = (
            header.uid().unwrap_or(0) as u32,
            header.gid().unwrap_or(0) as u32,
        );
        let kind = header.entry_type();
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&path).map_err(io_err)?;
                        fs::create_dir(&path).map_err(io_err)?;
                    }
                    Err(_) => fs::create_dir(&path).map_err(io_err)?,
                }
                directories.push((path.clone(), mode));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(&path).map_err(io_err)?;
                let mut file = fs::File::create(&path).map_err(io_err)?;
                io::copy(&mut entry, &mut file).map_err(io_err)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_err)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Archive)?
                    .unwrap_or_default()
                    .into_owned();
                clear(&path).map_err(io_err)?;
                symlink(&target, &path).map_err(io_err)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Archive)?
                    .unwrap_or_default()
                    .into_owned();
                let bad = || UnpackError::BadHardLink {
                    entry: name.clone(),
                    target: target.display().to_string(),
                };
                let inside = relative_path(&target).map_err(|_| bad())?;
                let source = prepare_parents(root, &inside, &name).map_err(|_| bad())?;
                let meta = fs::symlink_metadata(&source).map_err(|_| bad())?;
                if meta.is_dir() {
                    return Err(bad());
                }
                clear(&path).map_err(io_err)?;
                fs::hard_link(&source, &path).map_err(io_err)?;
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let flag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                clear(&path).map_err(io_err)?;
                mknod(
                    &path,
                    flag,
                    Mode::from_bits_truncate(mode),
                    makedev(u64::from(major), u64::from(minor)),
                )
                .map_err(|e| io_err(io::Error::from(e)))?;
            }
            // PAX headers and the like carry no file.
            _ => continue,
        }
        lchown(&path, Some(uid), Some(gid)).map_err(io_err)?;
    }
    // Directory modes last, so a read-only directory does not block its own entries.
    for (path, mode) in directories.into_iter().rev() {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(|source| {
            UnpackError::Io {
                entry: path.display().to_string(),
                source,
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt;

    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// A tar built entry by entry, including entries `tar::Builder` refuses to write.
    fn layer(entries: &[(&str, tar::EntryType, &str)]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        for (path, kind, data_or_link) in entries {
            let mut header = tar::Header::new_old();
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(*kind);
            header.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            let body: &[u8] = if matches!(kind, tar::EntryType::Regular) {
                data_or_link.as_bytes()
            } else {
                b""
            };
            if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
                header.as_old_mut().linkname[..data_or_link.len()]
                    .copy_from_slice(data_or_link.as_bytes());
            }
            header.set_size(body.len() as u64);
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(body);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        Ok(out)
    }

    use tar::EntryType::{Directory as D, Link as L, Regular as F, Symlink as S};

    #[test]
    fn files_links_whiteouts_and_opaque_dirs() -> TestResult {
        let dir = tempfile::tempdir()?;
        let dest = dir.path().join("layer");
        let tar = layer(&[
            ("bin/", D, ""),
            ("bin/busybox", F, "binary"),
            ("bin/sh", S, "busybox"),
            ("bin/ash", L, "bin/busybox"),
            ("etc/.wh.passwd", F, ""),
            ("var/.wh..wh..opq", F, ""),
        ])?;
        unpack_layer(tar.as_slice(), Compression::None, &dest)?;
        assert_eq!(fs::read_to_string(dest.join("bin/busybox"))?, "binary");
        assert_eq!(
            fs::read_link(dest.join("bin/sh"))?,
            PathBuf::from("busybox")
        );
        assert_eq!(fs::read_to_string(dest.join("bin/ash"))?, "binary");
        let whiteout = fs::symlink_metadata(dest.join("etc/passwd"))?;
        assert!(
            whiteout.file_type().is_char_device(),
            "whiteout is a 0:0 char device"
        );
        assert_eq!(
            xattr::get(dest.join("var"), "trusted.overlay.opaque")?,
            Some(b"y".to_vec())
        );
        Ok(())
    }

    #[test]
    fn gzip_and_zstd_layers() -> TestResult {
        let dir = tempfile::tempdir()?;
        let tar = layer(&[("hello", F, "world")])?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar)?;
        let gz = gz.finish()?;
        assert_eq!(Compression::sniff(&gz), Compression::Gzip);
        unpack_layer(gz.as_slice(), Compression::Gzip, &dir.path().join("g"))?;
        let zst = zstd::encode_all(tar.as_slice(), 1)?;
        assert_eq!(Compression::sniff(&zst), Compression::Zstd);
        unpack_layer(zst.as_slice(), Compression::Zstd, &dir.path().join("z"))?;
        assert_eq!(fs::read_to_string(dir.path().join("z/hello"))?, "world");
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Compression::Zstd
        );
        Ok(())
    }

    #[test]
    fn malicious_layers_are_refused_and_write_nothing_outside() -> TestResult {
        let dir = tempfile::tempdir()?;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("dotdot", layer(&[("../escaped", F, "x")])?),
            ("nested dotdot", layer(&[("a/../../escaped", F, "x")])?),
            ("absolute", layer(&[("/tmp-escaped-abs", F, "x")])?),
            (
                "symlinked parent",
                layer(&[("link", S, ".."), ("link/escaped", F, "x")])?,
            ),
            (
                "symlinked parent abs",
                layer(&[("link", S, "/"), ("link/escaped", F, "x")])?,
            ),
            ("hard link out", layer(&[("h", L, "../outside")])?),
        ];
        fs::write(dir.path().join("outside"), "secret")?;
        for (what, tar) in cases {
            let dest = dir.path().join(format!("layer-{}", what.replace(' ', "-")));
            let result = unpack_layer(tar.as_slice(), Compression::None, &dest);
            assert!(result.is_err(), "{what} must be refused");
            assert!(
                !dest.exists(),
                "{what}: a refused layer leaves nothing behind"
            );
        }
        assert!(!dir.path().join("escaped").exists());
        assert!(!Path::new("/escaped").exists());
        assert!(!Path::new("/tmp-escaped-abs").exists());
        assert_eq!(fs::read_to_string(dir.path().join("outside"))?, "secret");
        let leftovers: Vec<_> = fs::read_dir(dir.path())?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            leftovers,
            vec![std::ffi::OsString::from("outside")],
            "no scratch directories left"
        );
        Ok(())
    }
}
