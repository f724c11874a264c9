//! Finding binaries and per-service temp dirs.

use std::path::{Path, PathBuf};

/// Where `scripts/setup` puts livekit-server and lk unless `EGRESS_CACHE` says otherwise.
const DEFAULT_CACHE: &str = "/var/cache/egress-rs";

fn cache_bin_dir() -> PathBuf {
    let cache = std::env::var_os("EGRESS_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE));
    cache.join("bin")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds `name` on `PATH`, then in `$EGRESS_CACHE/bin`. Panics with a hint to run
/// `scripts/setup` when it is nowhere.
pub fn find_binary(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(cache_bin_dir());
    for dir in &dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "`{name}` was not found on PATH nor in {}: run scripts/setup (it installs redis-server \
         with apt and builds livekit-server and lk into $EGRESS_CACHE/bin)",
        cache_bin_dir().display()
    );
}

/// A temp dir for one service's config, data and logs. Removed on drop unless
/// `EGRESS_E2E_KEEP` is set (then its path is printed so the logs can be read).
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let keep = std::env::var_os("EGRESS_E2E_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
        let dir = tempfile::Builder::new()
            .prefix(&format!("egress-e2e-{name}-"))
            .disable_cleanup(keep)
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for {name}: {e}"));
        if keep {
            eprintln!("egress-e2e: {name} files kept in {}", dir.path().display());
        }
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file in the dir, panicking with the path on failure.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}
