//! Facts about the machine: physical cores, peak memory.

/// Physical cores (hyper-threads share a core's execution units, and matmul threads on siblings
/// slow each other down), from Linux's topology files; otherwise the available parallelism.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    #[cfg(target_os = "linux")]
    {
        let mut cores = std::collections::HashSet::new();
        for cpu in 0..logical.max(1) * 4 {
            let p = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
            if let Ok(s) = std::fs::read_to_string(p) {
                cores.insert(s.trim().to_string());
            }
        }
        if !cores.is_empty() {
            return cores.len().min(logical);
        }
    }
    logical
}

/// Peak resident set size in MiB (VmHWM), where the OS reports it.
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
