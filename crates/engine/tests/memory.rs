//! `ModelSource::memory`: mapped bytes, residency from mincore(2), owned copies. Residency is
//! checked against the page cache itself: after `posix_fadvise(DONTNEED)` on a fresh copy of a
//! model file few of its pages are resident, after reading it through every page all are.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use hearth_engine::ModelSource;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

fn tiny(name: &str) -> PathBuf {
    std::env::var_os("HEARTH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth"))
        .join("tiny")
        .join(name)
}

#[test]
fn residency_follows_the_page_cache() {
    let src = tiny("tiny-qwen2-f32.gguf");
    assert!(
        src.exists(),
        "{} is missing: scripts/test.sh writes it",
        src.display()
    );
    // Beside the models (on disk), not in the temp directory, which may be a tmpfs whose pages
    // cannot be dropped.
    let copy = src.with_file_name(format!("hearth-memory-{}.gguf", std::process::id()));
    std::fs::copy(&src, &copy).unwrap();
    let f = std::fs::File::open(&copy).unwrap();
    f.sync_all().unwrap();
    // SAFETY: plain syscall on an open descriptor.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
    let m = ModelSource::open_gguf(&copy).unwrap();
    let len = std::fs::metadata(&copy).unwrap().len() as usize;
    let before = m.memory();
    assert_eq!(before.mapped, len);
    assert_eq!(before.owned, 0);
    let cold = before.resident.expect("mincore works here");
    if cold >= len / 2 && on_tmpfs(&copy) {
        eprintln!(
            "SKIPPED: {} is on a tmpfs, whose pages cannot be dropped",
            copy.display()
        );
        let _ = std::fs::remove_file(&copy);
        return;
    }
    // Opening parses the header and metadata (the first pages); the tensor data stays out.
    assert!(
        cold < len / 2,
        "{cold} of {len} bytes resident right after DONTNEED"
    );
    // Read every tensor's bytes through the engine's own views.
    let mut sum = 0u64;
    for t in m.tensors() {
        sum += m.tensor_data(t).iter().map(|&b| b as u64).sum::<u64>();
    }
    std::hint::black_box(sum);
    let warm = m.memory().resident.unwrap();
    assert!(
        warm >= len * 9 / 10,
        "{warm} of {len} bytes resident after reading the tensors"
    );
    assert!(warm <= len.next_multiple_of(4096));
    drop(m);
    let _ = std::fs::remove_file(&copy);
}

fn on_tmpfs(p: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: `st` is a plain C struct filled in by statfs for a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    // TMPFS_MAGIC (linux/magic.h).
    rc == 0 && st.f_type as i64 == 0x0102_1994
}
