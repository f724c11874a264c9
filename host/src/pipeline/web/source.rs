//! The web source: an X display, a PulseAudio sink and Chrome showing the page, plus the
//! GStreamer recording that captures them (reference §5.1).
//!
//! Start-up runs what can run in parallel: Xvfb and PulseAudio together, then Chrome's launch
//! and page load alongside the GStreamer build, whose sources start capturing behind a closed gate
//! so that recording starts the moment the page says `START_RECORDING`.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::chrome::{Chrome, ChromeOptions, PageSignal};
use super::config::{WebConfig, redact_token};
use super::display::Display;
use super::gst::{CaptureInputs, Recording};
use super::pulse::Pulse;
use crate::config::ServiceConfig;
use crate::core::PipelineError;
use crate::outputs::OutputSet;
use crate::outputs::tap::EncodedStreams;

/// Attaches the outputs beside the file to the built pipeline, before capture starts; returns
/// them. Runs on a blocking thread, inside the runtime.
pub type AttachOutputs =
    Box<dyn FnOnce(&EncodedStreams) -> Result<OutputSet, PipelineError> + Send + 'static>;

pub struct WebSource {
    display: Display,
    pulse: Pulse,
    pub chrome: Chrome,
    pub recording: Recording,
    pub signals: mpsc::UnboundedReceiver<PageSignal>,
    /// What [`AttachOutputs`] attached, until the controller takes it into its session.
    pub attached: Option<OutputSet>,
}

impl WebSource {
    /// Starts everything and loads the page; on error, whatever was started is stopped again.
    pub async fn start(
        service: &ServiceConfig,
        cfg: &WebConfig,
        work_dir: &Path,
        output: Option<PathBuf>,
        attach: AttachOutputs,
    ) -> Result<WebSource, PipelineError> {
        let e = &cfg.encoding;
        let (display, pulse) = tokio::join!(
            Display::start(e.width, e.height, e.depth),
            Pulse::start(work_dir, &cfg.egress_id)
        );
        let (display, pulse) = match (display, pulse) {
            (Ok(d), Ok(p)) => (d, p),
            (Err(e), p) => {
                if let Ok(p) = p {
                    p.stop().await;
                }
                return Err(e);
            }
            (Ok(d), Err(e)) => {
                d.stop().await;
                return Err(e);
            }
        };

        let inputs = CaptureInputs {
            display: display.name(),
            pulse_server: pulse.server(),
            pulse_device: pulse.monitor(),
        };
        let build_cfg = cfg.clone();
        let build = tokio::task::spawn_blocking(move || {
            let r = Recording::build(&build_cfg, &inputs, output.as_deref())?;
            let attached = attach(r.streams())?;
            r.start_capture()?;
            Ok::<_, PipelineError>((r, attached))
        });

        let (signals_tx, signals) = mpsc::unbounded_channel();
        let options = ChromeOptions {
            display: display.name(),
            width: e.width,
            height: e.height,
            pulse_server: pulse.server(),
            pulse_sink: pulse.sink().to_owned(),
            sandbox: service.enable_chrome_sandbox,
            insecure: service.insecure,
            extra_flags: service.chrome_flags.clone(),
            work_dir: work_dir.to_path_buf(),
        };
        tracing::debug!(url = %redact_token(&cfg.source.url), "launching chrome");
        let page = async {
            let chrome = Chrome::launch(&options, signals_tx).await?;
            match chrome.navigate(&cfg.source.url).await {
                Ok(()) => Ok(chrome),
                Err(e) => {
                    chrome.close().await;
                    Err(e)
                }
            }
        };
        let (chrome, recording) = tokio::join!(page, build);
        let recording = recording
            .unwrap_or_else(|e| Err(PipelineError::Gst(format!("pipeline build panicked: {e}"))));
        match (chrome, recording) {
            (Ok(chrome), Ok((recording, attached))) => {
                pulse.restart_sink_clock().await;
                Ok(WebSource {
                    display,
                    pulse,
                    chrome,
                    recording,
                    signals,
                    attached: Some(attached),
                })
            }
            (chrome, recording) => {
                // A page error is what the user needs to see; a pipeline error otherwise.
                let err = match (chrome, recording) {
                    (Err(e), Ok((r, attached))) => {
                        r.stop();
                        drop(attached);
                        e
                    }
                    (Ok(c), Err(e)) => {
                        c.close().await;
                        e
                    }
                    (Err(e), Err(_)) => e,
                    (Ok(_), Ok(_)) => unreachable!("handled above"),
                };
                display.stop().await;
                pulse.stop().await;
                Err(err)
            }
        }
    }

    /// Stops capture first (so nothing reads from a display or sink that is going away), then
    /// Chrome, Xvfb and PulseAudio.
    pub async fn close(self) {
        let WebSource {
            display,
            pulse,
            chrome,
            recording,
            ..
        } = self;
        recording.stop();
        tokio::join!(chrome.close(), display.stop(), pulse.stop());
    }
}
