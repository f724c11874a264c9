//! The [`SinkObject`] the host holds: a handle to an upload task on the sink's runtime.
//!
//! The [`Upload`] lives in its own task and takes commands one at a time from a channel of
//! capacity one; each command answers on a oneshot channel. The host's future only awaits
//! channels, which works on any executor. When the handle is dropped without `finish` or
//! `abort` (the host task was cancelled), the channel closes and the task aborts the upload:
//! dropping an unfinished object leaves nothing behind.

use std::sync::Arc;

use egress_plugin_api::{Bytes, Receipt, SinkError, SinkObject, async_trait};
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::runtime::SinkRuntime;
use crate::upload::Upload;

enum Command {
    Write(Bytes, oneshot::Sender<Result<(), StoreError>>),
    Finish(oneshot::Sender<Result<Receipt, StoreError>>),
    Abort(oneshot::Sender<()>),
}

pub struct StoreObject {
    sink: &'static str,
    commands: mpsc::Sender<Command>,
}

impl StoreObject {
    /// Start the upload task on `runtime`. The task keeps the runtime alive until it ends, so an
    /// abort after the factory is gone still runs.
    pub fn spawn(sink: &'static str, runtime: Arc<SinkRuntime>, upload: Upload) -> Self {
        let (commands, receiver) = mpsc::channel(1);
        let handle = runtime.handle().clone();
        handle.spawn(run(upload, receiver, runtime));
        StoreObject { sink, commands }
    }

    fn gone(&self) -> StoreError {
        StoreError::TaskGone { sink: self.sink }
    }
}

async fn run(
    mut upload: Upload,
    mut commands: mpsc::Receiver<Command>,
    _runtime: Arc<SinkRuntime>,
) {
    while let Some(command) = commands.recv().await {
        match command {
            Command::Write(chunk, reply) => {
                // The host may have stopped waiting (cancelled write): nothing to tell then.
                let _ = reply.send(upload.write(chunk).await);
            }
            Command::Finish(reply) => {
                let _ = reply.send(upload.finish().await);
                return;
            }
            Command::Abort(reply) => {
                upload.abort().await;
                let _ = reply.send(());
                return;
            }
        }
    }
    // The handle was dropped unfinished.
    upload.abort().await;
}

#[async_trait]
impl SinkObject for StoreObject {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Write(chunk, reply))
            .await
            .map_err(|_| self.gone())?;
        Ok(answer.await.map_err(|_| self.gone())??)
    }

    async fn finish(self: Box<Self>) -> Result<Receipt, SinkError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Finish(reply))
            .await
            .map_err(|_| self.gone())?;
        Ok(answer.await.map_err(|_| self.gone())??)
    }

    async fn abort(self: Box<Self>) {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Abort(reply)).await.is_ok() {
            let _ = answer.await;
        }
    }
}
