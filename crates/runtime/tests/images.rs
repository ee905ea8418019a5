//! The image store against a real registry (Debian's docker-registry on
//! 127.0.0.1) and real archives.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_runtime::image::build::ImageSpec;
use skiff_runtime::image::registries::{Credentials, RegistriesConfig};
use skiff_runtime::image::{Health, ImageError, ImageStore, Progress};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A docker-registry on a free loopback port, stopped on drop.
struct Registry {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n", dir.path().join("data").display()),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let registry = Self {
            child,
            address,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            if Instant::now() > deadline {
                return Err("docker-registry did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn busybox() -> Result<ImageSpec, Box<dyn std::error::Error>> {
    Ok(ImageSpec::busybox(Path::new("/bin/busybox"))?)
}

#[tokio::test]
async fn pull_from_a_registry_once_and_share_layers() -> TestResult {
    let registry = Registry::start()?;
    let name = format!("{}/test/busybox:1.0", registry.address);
    let mut spec = busybox()?;
    spec.entrypoint = vec!["/bin/sh".into(), "-c".into()];
    spec.stop_signal = Some("SIGQUIT".into());
    spec.push(&name).await?;

    let dir = tempfile::tempdir()?;
    let store = ImageStore::open(dir.path())?;
    let steps = std::sync::Mutex::new(Vec::new());
    let record = |step: Progress| {
        if let Ok(mut steps) = steps.lock() {
            steps.push(step);
        }
    };
    let image = store
        .pull_reporting(&name, &RegistriesConfig::default(), &Credentials::default(), &record)
        .await?;
    assert_eq!(image.name, name);
    // Progress: what there is to fetch, the layer, then bytes up to its size.
    let steps = steps.into_inner().unwrap_or_default();
    let size = image.layers[0].size;
    assert_eq!(steps.first(), Some(&Progress::Started { layers: 1, bytes: size }));
    assert!(matches!(steps.get(1), Some(Progress::Layer { index: 1, stored: false, .. })), "{steps:?}");
    assert_eq!(steps.last(), Some(&Progress::Bytes { done: size }));
    assert!(image.repo_digest.starts_with("sha256:"));
    assert!(image.size() > 100_000, "busybox is in the layer");
    let layers = store.layer_dirs(&image)?;
    assert_eq!(layers.len(), 1);
    assert!(layers[0].join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(layers[0].join("bin/sh"))?,
        Path::new("busybox")
    );
    let config = store.config(&image)?;
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    assert_eq!(config["config"]["StopSignal"], "SIGQUIT");

    // A second pull (and a second name for the same image) reuses the blobs and the unpacked layer.
    let blob = store.blob_path(&image.layers[0].digest)?;
    let before = std::fs::metadata(&blob)?.modified()?;
    let again = store
        .pull(&name, &RegistriesConfig::default(), &Credentials::default())
        .await?;
    assert_eq!(again, image);
    assert_eq!(
        std::fs::metadata(&blob)?.modified()?,
        before,
        "no second download"
    );
    assert_eq!(store.get(&name)?, Some(image.clone()));
    assert_eq!(store.list()?.len(), 1);

    let missing = store
        .pull(
            &format!("{}/test/nope:1", registry.address),
            &RegistriesConfig::default(),
            &Credentials::default(),
        )
        .await;
    // containerd's words for a repository or tag the registry lacks.
    let message = missing.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        message,
        format!("failed to resolve reference \"{0}/test/nope:1\": {0}/test/nope:1: not found", registry.address)
    );
    assert!(matches!(missing, Err(ImageError::NotFound { tags, .. }) if tags.is_empty()));
    // A tag the repository lacks: the tags it has come with the error.
    let (repository, _) = name.rsplit_once(':').unwrap_or((&name, ""));
    let wrong_tag = store
        .pull(&format!("{repository}:no-such-tag"), &RegistriesConfig::default(), &Credentials::default())
        .await;
    let tag = name.rsplit(':').next().unwrap_or_default().to_string();
    assert!(
        matches!(&wrong_tag, Err(ImageError::NotFound { tags, .. }) if tags == &vec![tag.clone()]),
        "{wrong_tag:?}"
    );
    assert!(matches!(
        store
            .pull(
                "Bad Name",
                &RegistriesConfig::default(),
                &Credentials::default()
            )
            .await,
        Err(ImageError::InvalidName { .. })
    ));
    Ok(())
}

#[test]
fn import_oci_archives_and_docker_save_tarballs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = ImageStore::open(&dir.path().join("store"))?;
    let archive = dir.path().join("busybox.oci.tar");
    busybox()?.write_oci_archive("skiff.local/busybox:offline", &archive)?;
    let imported = store.import(&archive)?;
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].name, "skiff.local/busybox:offline");
    assert!(store.layer_dirs(&imported[0])?[0]
        .join("bin/httpd")
        .exists());

    // A `docker save` tarball: manifest.json, a config and uncompressed layer.tar files.
    let spec = busybox()?;
    let mut layer = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(spec.layer()?.as_slice()),
        &mut layer,
    )?;
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let saved = dir.path().join("saved.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&saved)?);
    let manifest =
        br#"[{"Config":"config.json","RepoTags":["busybox:saved"],"Layers":["abc/layer.tar"]}]"#;
    for (path, bytes) in [
        ("manifest.json", &manifest[..]),
        ("config.json", &config[..]),
        ("abc/layer.tar", layer.as_slice()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        tar.append_data(&mut header, path, bytes)?;
    }
    tar.finish()?;
    drop(tar);
    let saved_images = store.import(&saved)?;
    assert_eq!(saved_images[0].name, "docker.io/library/busybox:saved");
    assert!(
        saved_images[0].repo_digest.is_empty(),
        "docker save tarballs carry no repo digest"
    );
    assert!(store.layer_dirs(&saved_images[0])?[0]
        .join("bin/busybox")
        .is_file());
    assert_eq!(store.list()?.len(), 2);
    Ok(())
}

#[test]
fn an_archive_with_a_malicious_layer_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = ImageStore::open(&dir.path().join("store"))?;
    // A layer whose entry climbs out with ../, packed by hand.
    let mut layer = Vec::new();
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..12].copy_from_slice(b"../../escape");
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(4);
    header.set_cksum();
    layer.extend_from_slice(header.as_bytes());
    layer.extend_from_slice(b"evil");
    layer.resize(1024 + 1024, 0);
    let manifest = br#"[{"Config":"config.json","RepoTags":["evil:1"],"Layers":["l/layer.tar"]}]"#;
    let archive = dir.path().join("evil.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&archive)?);
    for (path, bytes) in [
        ("manifest.json", &manifest[..]),
        ("config.json", &b"{}"[..]),
        ("l/layer.tar", layer.as_slice()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        tar.append_data(&mut h, path, bytes)?;
    }
    tar.finish()?;
    drop(tar);
    let refused = store.import(&archive);
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("was refused"), "{message}");
    assert!(store.list()?.is_empty());
    assert!(!dir.path().join("escape").exists() && !dir.path().join("store/escape").exists());
    let layers: Vec<_> = std::fs::read_dir(dir.path().join("store/layers/sha256"))?.collect();
    assert!(layers.is_empty(), "nothing unpacked");
    Ok(())
}

#[test]
fn damaged_layers_are_mended_from_their_blobs_or_reported() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = ImageStore::open(&dir.path().join("store"))?;
    let archive = dir.path().join("busybox.oci.tar");
    busybox()?.write_oci_archive("skiff.local/busybox:damaged", &archive)?;
    let image = store.import(&archive)?.remove(0);
    assert_eq!(store.verify(&image)?, Health::Intact);

    // Files deleted from an unpacked layer: unpacked again from its blob.
    let layer = store.layer_dirs(&image)?.remove(0);
    std::fs::remove_file(layer.join("bin/httpd"))?;
    let digest = image.layers[0].digest.clone();
    assert_eq!(store.verify(&image)?, Health::Mended(vec![digest.clone()]));
    assert!(layer.join("bin/httpd").exists());
    assert_eq!(store.verify(&image)?, Health::Intact);

    // The layer and its blob both gone: the image must be pulled again.
    std::fs::remove_dir_all(&layer)?;
    std::fs::write(store.blob_path(&digest)?, b"corrupt")?;
    let health = store.verify(&image)?;
    assert!(
        matches!(&health, Health::Damaged(problem) if problem.contains(&digest)),
        "{health:?}"
    );
    assert!(!store.blob_path(&digest)?.exists(), "the corrupt blob is removed");

    // A corrupt config blob is damage too.
    let fresh = store.import(&archive)?.remove(0);
    assert_eq!(store.verify(&fresh)?, Health::Intact);
    std::fs::write(store.blob_path(&fresh.config)?, b"{}")?;
    assert!(matches!(store.verify(&fresh)?, Health::Damaged(_)));
    Ok(())
}
