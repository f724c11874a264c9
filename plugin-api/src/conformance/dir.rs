//! An [`Inspector`] for sinks that store objects as files under a directory.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{Inspector, Stored};
use crate::types::Receipt;

/// Objects are files `root/key` (a key's `/` are directory separators). Every file under the
/// kit's prefix, whatever its name, is listed as a leftover unless it is an object the kit
/// finished: a `.x.tmp`, an `x.part` and an `x.bin` written by an aborted object alike.
pub struct DirInspector {
    root: PathBuf,
}

impl DirInspector {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirInspector { root: root.into() }
    }
}

#[async_trait]
impl Inspector for DirInspector {
    async fn stored(
        &self,
        key: &str,
        _receipt: Option<&Receipt>,
    ) -> Result<Option<Stored>, String> {
        let path = self.root.join(key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Stored {
                size: bytes.len() as u64,
                sha256: Sha256::digest(&bytes).into(),
            })),
            // A directory at the key is not an object.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || path.is_dir() => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Every file under `root/prefix`, as its key (`prefix/…`, `/`-separated).
    async fn leftovers(&self, prefix: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        walk(&self.root.join(prefix), prefix, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }
}

fn walk(dir: &Path, key: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let child = format!("{key}/{}", entry.file_name().to_string_lossy());
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), &child, out)?;
        } else {
            out.push(child);
        }
    }
    Ok(())
}
