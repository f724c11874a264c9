//! The async face of a dylib renderer: each render is a blocking C call, run on a short-lived
//! thread of its own so that it never blocks the async executor. Renders are rare (once per
//! egress), so a thread per call costs nothing that matters.

use std::sync::Arc;

use egress_plugin_api::blocking::Worker;
use egress_plugin_api::{
    LayoutRenderer, RenderRequest, Rendering, RoomState, SinkError, async_trait,
};

use super::renderer_ffi::RendererHandle;
use crate::plugins::worker_errors::{gone, no_thread};

pub struct DylibLayoutRenderer {
    handle: Arc<RendererHandle>,
    /// Asked once at creation: the registry indexes layouts at start-up.
    layouts: Vec<String>,
}

impl DylibLayoutRenderer {
    pub fn new(handle: RendererHandle, layouts: Vec<String>) -> Self {
        DylibLayoutRenderer {
            handle: Arc::new(handle),
            layouts,
        }
    }
}

#[async_trait]
impl LayoutRenderer for DylibLayoutRenderer {
    fn layouts(&self) -> Vec<String> {
        self.layouts.clone()
    }

    async fn render(
        &self,
        request: &RenderRequest,
        room: &RoomState,
    ) -> Result<Rendering, SinkError> {
        let (handle, request, room) = (self.handle.clone(), request.clone(), room.clone());
        let worker = Worker::spawn("egress-dylib-render", ()).map_err(no_thread)?;
        worker
            .run(move |_| handle.render(&request, &room))
            .await
            .map_err(gone)?
    }
}
