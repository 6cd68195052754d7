//! Small helpers shared by every layer: atomic writes, reading text files with clear errors.

use std::path::Path;

use crate::error::{GlassboxError, Result};

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, then rename.
/// A crash mid-write leaves the old file intact.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_via(path, |tmp| std::fs::write(tmp, bytes))
}

/// [`write_atomic`] for a writer that makes the file itself: `write` creates and fills the
/// temporary file it is given, which is then synced and renamed over `path` (so a large file is
/// streamed to disk, never held in memory whole).
pub fn write_atomic_via(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| GlassboxError::io(dir, e))?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        write(&tmp)?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&tmp)?
            .sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(GlassboxError::io(path, e));
    }
    Ok(())
}

/// Reads a whole file as UTF-8, naming the file and the first bad byte otherwise.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| GlassboxError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| GlassboxError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Bytes of memory this process can still take, if known: the least of what Linux says is
/// available (`MemAvailable`), what the cgroup the process runs in still allows (containers,
/// systemd slices) and what its address-space limit (`ulimit -v`) leaves.
pub fn available_memory_bytes() -> Option<u64> {
    [
        meminfo_available(),
        cgroup_headroom(),
        address_space_headroom(),
    ]
    .into_iter()
    .flatten()
    .min()
}

fn meminfo_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// cgroup v2: `memory.max` less `memory.current` of the process's own cgroup.
fn cgroup_headroom() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let max: u64 = read("memory.max")?.trim().parse().ok()?; // "max" (no limit) fails here
    let current: u64 = read("memory.current")?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// `RLIMIT_AS` less the address space already mapped (`VmSize`).
fn address_space_headroom() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } != 0
            || limit.rlim_cur == libc::RLIM_INFINITY
        {
            return None;
        }
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
        let used_kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every Unix
        Some((limit.rlim_cur as u64).saturating_sub(used_kib * 1024))
    }
    #[cfg(not(unix))]
    None
}

/// Lowers the calling thread's scheduling priority (Linux: nice +10, this thread only; threads
/// it starts inherit it). A training run's thread does this in the app, so the window's thread
/// gets a core whenever it has a frame to draw and training takes the rest. Elsewhere a no-op.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls with no pointers; on Linux the nice value is per thread, and
    // `gettid` names this one.
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, 10);
    }
}
