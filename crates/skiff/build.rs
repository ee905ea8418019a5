//! Links `skiff` as a position-dependent executable (`-no-pie`): with no
//! run-time relocations, the binary's relocated read-only data (vtables,
//! the GOT: about 1 MiB in a release build) stays clean file-backed pages
//! shared by every per-pod `skiff monitor` and `skiff pause` process,
//! instead of a private copy dirtied in each (issue 17's per-pod PSS).
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
