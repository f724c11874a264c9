//! Local files of a recording: the delivery plan, the last resort and the KEEP marker.
//!
//! Recordings reach their storage through sink plugins ([`super::upload`]). This module keeps
//! what is about the work dir and local storage itself:
//! * [`DeliveryPlan`]: a handler that is killed cannot deliver its own file, so before recording
//!   starts it writes the plan into its work dir; the service then salvages the partial file
//!   (fragmented MP4, Ogg or MP3: all playable when cut short) with [`super::salvage`].
//! * [`deliver`]: the last resort when no storage takes a recording: the file is renamed into
//!   local storage (`EGRESS_LOCAL_STORAGE_DIR`, default the working directory, which is what
//!   Go's `abs("")` gives; fsync + atomic rename) so that the work dir's cleanup cannot delete it.
//! * [`mark_keep`]: when even that fails, the work dir is marked and the service keeps it.

use std::fs::{self, File};
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Env var naming the local storage root.
pub const ENV_LOCAL_STORAGE_DIR: &str = "EGRESS_LOCAL_STORAGE_DIR";
/// The plan's file name inside the work dir.
const PLAN_FILE: &str = "delivery-plan.json";
/// Marker of a work dir that must not be removed.
const KEEP_FILE: &str = "KEEP";

/// Where one output goes once finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedDestination {
    /// The storage path (`FileInfo.filename`), relative to the storage root.
    pub storage_path: String,
}

/// What [`deliver`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Where the file is now (for local storage, an absolute path).
    pub location: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("storage path {0:?} has no file name")]
    NoFileName(String),
}

impl DeliveryError {
    /// The Go egress names the storage in upload errors (`Local upload failed: …`).
    pub fn storage_name(&self) -> &'static str {
        "Local"
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DeliveryError + '_ {
    move |source| DeliveryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The local storage root: `$EGRESS_LOCAL_STORAGE_DIR`, else the working directory.
pub fn local_storage_root() -> PathBuf {
    match std::env::var_os(ENV_LOCAL_STORAGE_DIR).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
    }
}

/// `root` joined with `storage_path` the way Go's `path.Join` does it: an absolute storage path
/// is still placed under the root, and `..` cannot climb out of it.
pub fn local_destination(root: &Path, storage_path: &str) -> Result<PathBuf, DeliveryError> {
    let mut out = root.to_path_buf();
    for c in Path::new(storage_path).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir
            | Component::RootDir
            | Component::CurDir
            | Component::Prefix(_) => {}
        }
    }
    if out == root {
        return Err(DeliveryError::NoFileName(storage_path.to_owned()));
    }
    Ok(out)
}

/// Moves a finished local file to its destination and reports where it went.
///
/// The file is fsynced, moved under a temporary name in the destination directory (renamed if
/// on the same filesystem, else copied), fsynced again, then renamed to its final name, so a
/// reader never sees a half-written file under the final name.
pub fn deliver(local_path: &Path, dest: &PlannedDestination) -> Result<Delivered, DeliveryError> {
    let root = local_storage_root();
    let final_path = local_destination(&root, &dest.storage_path)?;
    let dir = final_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.clone());
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    File::open(local_path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(local_path))?;

    let file_name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.partial", std::process::id()));
    match fs::rename(local_path, &tmp) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            fs::copy(local_path, &tmp).map_err(io_err(&tmp))?;
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&tmp))?;
            let _ = fs::remove_file(local_path);
        }
        Err(e) => {
            return Err(DeliveryError::Io {
                path: tmp,
                source: e,
            });
        }
    }
    if let Err(e) = fs::rename(&tmp, &final_path) {
        let _ = fs::remove_file(&tmp);
        return Err(DeliveryError::Io {
            path: final_path,
            source: e,
        });
    }
    // The rename itself must survive a crash too.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    let size = fs::metadata(&final_path)
        .map_err(io_err(&final_path))?
        .len();
    let location = fs::canonicalize(&final_path)
        .unwrap_or(final_path)
        .to_string_lossy()
        .into_owned();
    Ok(Delivered { location, size })
}

/// What a handler will deliver, written before recording so the service can salvage it (`crate::storage::salvage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPlan {
    pub egress_id: String,
    pub files: Vec<PlannedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFile {
    pub local_path: PathBuf,
    pub destination: PlannedDestination,
    /// Unix ns of the first captured frame; 0 until the recording is active.
    pub started_at: i64,
}

impl DeliveryPlan {
    pub fn write(&self, work_dir: &Path) -> io::Result<()> {
        let path = work_dir.join(PLAN_FILE);
        let tmp = work_dir.join(format!("{PLAN_FILE}.tmp"));
        fs::write(&tmp, serde_json::to_vec(self).map_err(io::Error::other)?)?;
        fs::rename(&tmp, path)
    }

    pub fn read(work_dir: &Path) -> io::Result<DeliveryPlan> {
        let bytes = fs::read(work_dir.join(PLAN_FILE))?;
        serde_json::from_slice(&bytes).map_err(io::Error::other)
    }

    /// Marks the plan as delivered (the handler finished normally): nothing left to salvage.
    pub fn remove(work_dir: &Path) {
        let _ = fs::remove_file(work_dir.join(PLAN_FILE));
    }
}

/// Marks a work dir whose recording could not be delivered anywhere: the service keeps it.
pub fn mark_keep(work_dir: &Path) {
    let _ = fs::write(
        work_dir.join(KEEP_FILE),
        b"a recording that could not be delivered is in this directory\n",
    );
}

/// Whether the work dir holds an undelivered recording ([`mark_keep`]).
pub fn is_kept(work_dir: &Path) -> bool {
    work_dir.join(KEEP_FILE).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_stay_under_the_root() {
        let root = Path::new("/data");
        assert_eq!(
            local_destination(root, "a/b.mp4").unwrap(),
            PathBuf::from("/data/a/b.mp4")
        );
        assert_eq!(
            local_destination(root, "/out/x.mp4").unwrap(),
            PathBuf::from("/data/out/x.mp4")
        );
        assert_eq!(
            local_destination(root, "../../etc/passwd").unwrap(),
            PathBuf::from("/data/etc/passwd")
        );
        assert!(local_destination(root, "/").is_err());
    }

    #[test]
    fn deliver_moves_atomically() {
        let root = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        // SAFETY of the env change: this test module is the only user of the variable.
        unsafe { std::env::set_var(ENV_LOCAL_STORAGE_DIR, root.path()) };
        let local = work.path().join("a.mp4");
        fs::write(&local, b"0123456789").unwrap();
        let d = deliver(
            &local,
            &PlannedDestination {
                storage_path: "rec/a.mp4".into(),
            },
        )
        .unwrap();
        assert_eq!(d.size, 10);
        assert!(d.location.ends_with("/rec/a.mp4"), "{}", d.location);
        assert!(!local.exists());
        assert_eq!(
            fs::read_dir(root.path().join("rec")).unwrap().count(),
            1,
            "no temp file left behind"
        );

        unsafe { std::env::remove_var(ENV_LOCAL_STORAGE_DIR) };
    }
}
