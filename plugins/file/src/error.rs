//! What can go wrong writing files, and how each failure is classified for the host.

use std::io;
use std::path::{Path, PathBuf};

use egress_plugin_api::SinkError;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the file worker thread: {0}")]
    Thread(#[source] io::Error),
    #[error("the file worker thread stopped")]
    WorkerGone,
}

impl FileError {
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        FileError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<FileError> for SinkError {
    fn from(e: FileError) -> Self {
        let message = e.to_string();
        let kind = match &e {
            FileError::Io { source, .. } => source.kind(),
            FileError::Thread(source) => source.kind(),
            FileError::WorkerGone => io::ErrorKind::Other,
        };
        let sink_error = match kind {
            // A busy or interrupted file system may recover; the rest needs an operator.
            io::ErrorKind::Interrupted
            | io::ErrorKind::TimedOut
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::ResourceBusy => SinkError::retryable(message),
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                SinkError::auth(message)
            }
            _ => SinkError::permanent(message),
        };
        sink_error.with_source(e)
    }
}
