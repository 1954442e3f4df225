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
    let copy = std::env::temp_dir().join(format!("hearth-memory-{}.gguf", std::process::id()));
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
