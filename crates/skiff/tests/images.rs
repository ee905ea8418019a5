//! `skiff image import|ls` on an air-gapped machine: an OCI archive built
//! from the host's busybox-static.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Result};
use skiff_runtime::image::build::ImageSpec;

#[test]
fn import_then_list() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("busybox.tar");
    ImageSpec::busybox(Path::new("/bin/busybox"))?
        .write_oci_archive("skiff.local/busybox:1.35", &archive)?;
    let data_dir = dir.path().join("data");
    let skiff = env!("CARGO_BIN_EXE_skiff");
    let import = Command::new(skiff)
        .args(["image", "import"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(&data_dir)
        .output()?;
    ensure!(
        import.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert!(String::from_utf8_lossy(&import.stdout)
        .starts_with("imported skiff.local/busybox:1.35 (sha256:"));
    // Not on a terminal: plain progress lines on stderr.
    let said = String::from_utf8_lossy(&import.stderr).into_owned();
    let what = format!("importing {}", archive.display());
    assert!(said.contains(&format!("{what}: reading ")), "{said}");
    assert!(said.lines().any(|l| l.starts_with(&format!("{what}: 100% ("))), "{said}");
    assert!(!said.contains('\r'), "no bar off a terminal: {said:?}");

    // On a terminal (script(1) gives it one): a bar redrawn in place.
    let again = dir.path().join("again");
    let command = format!("{skiff} image import {} --data-dir {}", archive.display(), again.display());
    let on_terminal = Command::new("script").args(["-qec", &command, "/dev/null"]).output()?;
    ensure!(on_terminal.status.success(), "import on a terminal failed");
    let drawn = String::from_utf8_lossy(&on_terminal.stdout).into_owned();
    assert!(drawn.contains(&format!("\r\x1b[K{what} [")), "{drawn:?}");
    assert!(drawn.contains("==============================]"), "the bar fills: {drawn:?}");
    let ls = Command::new(skiff)
        .args(["image", "ls", "--data-dir"])
        .arg(&data_dir)
        .output()?;
    let text = String::from_utf8_lossy(&ls.stdout).into_owned();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]);
    assert_eq!(&rows[1][..2], ["skiff.local/busybox", "1.35"]);
    assert_eq!(rows[1][2].len(), 13);
    assert!(rows[1][3].ends_with("MB"), "{text}");

    let bad = Command::new(skiff)
        .args(["image", "import", "/nonexistent.tar", "--data-dir"])
        .arg(&data_dir)
        .output()?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("failed to import /nonexistent.tar"));
    Ok(())
}
