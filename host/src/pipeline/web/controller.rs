//! One web recording from start to final status (reference §1.5):
//!
//! ```text
//! STARTING ──start signal, first frame──▶ ACTIVE ──stop / END_RECORDING──▶ ENDING ──EOS, file delivered──▶ COMPLETE
//!    │                                      │ session limit ─▶ LIMIT_REACHED (then EOS and delivery)
//!    │ stop before start ─▶ ABORTED          │ GStreamer/Chrome error, kill ─▶ FAILED (partial file still delivered)
//! ```
//!
//! [`Controller`] sets the source up (Xvfb, PulseAudio, Chrome loading the page, the pipeline
//! with its outputs attached), racing stop requests and the session limit; then the page's
//! recorder ([`PageRecorder`]: start signal, first frame, size limit, the template's error,
//! EOS) runs in the loop every recorder shares ([`lifecycle::record`]), which takes stops, the
//! limit, `UpdateStream` and destination changes, and delivers and settles at the end.
//!
//! Every status change goes to the service on `updates` as it happens; the final info is the
//! return value.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use egress_proto::livekit::EgressInfo;

use super::chrome::PageSignal;
use super::config::WebConfig;
use super::gst::GstEvent;
use super::source::{AttachOutputs, WebSource};
use crate::config::ServiceConfig;
use crate::core::PipelineError;
use crate::core::status::{
    END_REASON_LIMIT, END_REASON_SOURCE_CLOSED, InfoExt, MSG_LIMIT_BEFORE_START,
    MSG_START_NOT_RECEIVED, MSG_STOPPED_BEFORE_STARTED, now_nanos,
};
use crate::outputs::context::OutputContext;
use crate::outputs::{FileOutput, OutputSet, live};
use crate::pipeline::job::{Job, StopRequest, UpdateStreamCall};
use crate::pipeline::lifecycle::{self, Flow, ManifestSource, Recorder, Session};

/// How long EOS may take to drain through the pipeline (Go: 30 s, then "pipeline frozen").
const EOS_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the output size is checked against `file_output_max_size` (Go: 15 s).
const SIZE_CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// How often a page that has not signalled start is checked for a `div.error`.
const TEMPLATE_ERROR_POLL: Duration = Duration::from_secs(1);

pub struct Controller {
    service: Arc<ServiceConfig>,
    cfg: WebConfig,
    /// What the outputs beside the file need to know of the recording.
    context: OutputContext,
    /// The info, the outputs, stops, UpdateStream calls and the limit.
    session: Session,
    /// The file the pipeline writes (none for a stream- or segments-only egress).
    local_path: Option<PathBuf>,
}

fn ticker(every: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(Instant::now() + every, every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

impl Controller {
    pub fn new(
        job: Job,
        cfg: WebConfig,
        file: Option<FileOutput>,
        updates: mpsc::UnboundedSender<EgressInfo>,
        stop: watch::Receiver<Option<StopRequest>>,
        update_stream: mpsc::Receiver<UpdateStreamCall>,
    ) -> Controller {
        let Job {
            config: service,
            request,
            info,
            work_dir,
            plugins,
            ..
        } = job;
        let local_path = file.as_ref().map(|f| f.local_path().to_path_buf());
        let context = cfg.output_context(service.clone(), request, plugins, work_dir.clone());
        let manifest = ManifestSource {
            egress_id: cfg.egress_id.clone(),
            room_id: cfg.room_id.clone(),
            room_name: cfg.room_name.clone(),
            url: cfg.source.web_url.clone(),
            disabled: cfg.file.disable_manifest,
        };
        let outputs = OutputSet {
            files: file.into_iter().collect(),
            ..Default::default()
        };
        let session = Session::new(
            info,
            outputs,
            manifest,
            work_dir,
            updates,
            stop,
            cfg.max_duration,
        )
        .with_update_stream(update_stream);
        Controller {
            service,
            cfg,
            context,
            session,
            local_path,
        }
    }

    pub async fn run(mut self) -> EgressInfo {
        self.session.write_plan();
        let output = self.local_path.clone();
        let attach: AttachOutputs = {
            let (live, plan, ctx) = (
                self.cfg.live.clone(),
                self.cfg.outputs.clone(),
                self.context.clone(),
            );
            Box::new(move |streams| {
                let mut set = OutputSet::default();
                live::attach(&mut set, &live, &plan, streams, &ctx)?;
                Ok(set)
            })
        };
        enum Setup {
            Started(Box<Result<WebSource, PipelineError>>),
            Stopped(StopRequest),
            Limit,
        }
        let work_dir = self.session.work_dir().to_path_buf();
        let setup = {
            let start = WebSource::start(&self.service, &self.cfg, &work_dir, output, attach);
            // A stop or the session limit may come while Chrome is still loading the page.
            tokio::select! {
                r = start => Setup::Started(Box::new(r)),
                req = self.session.stops.next() => Setup::Stopped(req),
                _ = lifecycle::sleep_until(self.session.limit_at) => Setup::Limit,
            }
        };
        let started = match setup {
            Setup::Started(r) => *r,
            Setup::Stopped(req) => return self.finish_unstarted(Err(req)),
            Setup::Limit => return self.finish_unstarted(Ok(MSG_LIMIT_BEFORE_START)),
        };
        let mut src = match started {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "web source failed to start");
                self.session.info.set_failed(&e);
                return self.session.finish(None).await;
            }
        };
        // The outputs beside the file: their results show from now on.
        if let Some(attached) = src.attached.take() {
            let outputs = &mut self.session.outputs;
            outputs.live = attached.live;
            outputs.segments = attached.segments;
            outputs.images = attached.images;
            self.session.send_update();
        }
        let recorder = PageRecorder::new(
            src,
            &mut self.session,
            self.cfg.source.await_start_signal,
            self.local_path.clone(),
            self.cfg.max_size,
        );
        lifecycle::record(self.session, recorder).await
    }

    /// Ends an egress whose source never started: aborted by a stop (`Err`) or the session
    /// limit (`Ok(message)`).
    fn finish_unstarted(mut self, why: Result<&str, StopRequest>) -> EgressInfo {
        match why {
            Ok(msg) => {
                self.session.info.set_end_reason(END_REASON_LIMIT);
                self.session.info.set_aborted(msg);
            }
            Err(StopRequest::Graceful { reason }) => {
                self.session.info.set_end_reason(&reason);
                self.session.info.set_aborted(MSG_START_NOT_RECEIVED);
            }
            Err(StopRequest::Kill { error }) => {
                self.session.info.set_failed(&PipelineError::Killed(error))
            }
        }
        self.session.finish_unstarted()
    }
}

/// Where the page's recording is, inside the session's STARTING and ACTIVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PagePhase {
    /// The page has not said `START_RECORDING` yet (the gate is closed).
    AwaitingStart,
    /// The gate is open; no frame has reached the encoder yet.
    AwaitingFirstFrame,
    /// ACTIVE.
    Recording,
}

/// What the page's recorder reacts to (the session's own events come from the shared loop).
enum PageEvent {
    Page(Option<PageSignal>),
    Gst(Option<GstEvent>),
    SizeCheck,
    TemplateCheck,
}

/// The Chrome recorder in the shared loop ([`lifecycle::record`]): the page's start and end
/// signals, the first frame (ACTIVE), the size limit, the template's `div.error` and the
/// pipeline's EOS; at the end it drains the pipeline and closes Chrome, Xvfb and PulseAudio.
struct PageRecorder {
    /// Taken by `close`.
    src: Option<WebSource>,
    phase: PagePhase,
    /// Chrome's console is still there (after it goes, recording goes on until stopped, as
    /// Go does).
    page_open: bool,
    /// The pipeline reached EOS by itself: nothing left to drain.
    eos_seen: bool,
    local_path: Option<PathBuf>,
    max_size: u64,
    size_tick: tokio::time::Interval,
    template_tick: tokio::time::Interval,
}

impl PageRecorder {
    fn new(
        src: WebSource,
        session: &mut Session,
        await_start_signal: bool,
        local_path: Option<PathBuf>,
        max_size: u64,
    ) -> PageRecorder {
        let mut recorder = PageRecorder {
            src: Some(src),
            phase: PagePhase::AwaitingStart,
            page_open: true,
            eos_seen: false,
            // Go checks the file's size, so only a file output has a size limit.
            max_size: if local_path.is_some() { max_size } else { 0 },
            local_path,
            size_tick: ticker(SIZE_CHECK_INTERVAL),
            template_tick: ticker(TEMPLATE_ERROR_POLL),
        };
        if await_start_signal {
            tracing::debug!("waiting for start signal");
            session.set_abort_message(MSG_START_NOT_RECEIVED);
        } else {
            recorder.open_gate(session);
        }
        recorder
    }

    /// Starts recording: what is captured from now on is encoded.
    fn open_gate(&mut self, session: &mut Session) {
        if let Some(src) = &self.src {
            src.recording.open_gate();
        }
        self.phase = PagePhase::AwaitingFirstFrame;
        session.set_abort_message(MSG_STOPPED_BEFORE_STARTED);
    }

    /// Aborts before ACTIVE: `reason` and `message` (Go's texts for the phase).
    fn abort(session: &mut Session, reason: &str, message: &str) -> Flow {
        session.info.set_end_reason(reason);
        session.info.set_aborted(message);
        Flow::Ended
    }

    fn file_size(&self) -> u64 {
        self.local_path
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }
}

impl Recorder for PageRecorder {
    type Event = PageEvent;

    async fn next_event(&mut self) -> PageEvent {
        let PageRecorder {
            src,
            phase,
            page_open,
            max_size,
            size_tick,
            template_tick,
            ..
        } = self;
        let Some(src) = src.as_mut() else {
            return std::future::pending().await;
        };
        let size_checks = *phase == PagePhase::Recording && *max_size > 0;
        let template_checks = *phase == PagePhase::AwaitingStart;
        tokio::select! {
            sig = src.signals.recv(), if *page_open => PageEvent::Page(sig),
            ev = src.recording.next_event() => PageEvent::Gst(ev),
            _ = size_tick.tick(), if size_checks => PageEvent::SizeCheck,
            _ = template_tick.tick(), if template_checks => PageEvent::TemplateCheck,
        }
    }

    async fn on_event(&mut self, session: &mut Session, event: PageEvent) -> Flow {
        use PagePhase::*;
        match (self.phase, event) {
            (_, PageEvent::Gst(Some(GstEvent::Error(e)))) => Flow::Failed(PipelineError::Gst(e)),
            (_, PageEvent::Gst(None)) => {
                Flow::Failed(PipelineError::Gst("pipeline bus closed".into()))
            }
            (AwaitingStart, PageEvent::Page(Some(PageSignal::StartRecording))) => {
                self.open_gate(session);
                Flow::Continue
            }
            (AwaitingStart, PageEvent::Page(Some(PageSignal::EndRecording))) => {
                Self::abort(session, END_REASON_SOURCE_CLOSED, MSG_START_NOT_RECEIVED)
            }
            // The console listener ended: Chrome is gone, and the page will never signal.
            (AwaitingStart, PageEvent::Page(None)) => Flow::Failed(PipelineError::Chrome(
                "chrome exited before the start signal".into(),
            )),
            (AwaitingStart, PageEvent::TemplateCheck) => {
                let error = match &self.src {
                    Some(src) => src.chrome.error_text().await,
                    None => None,
                };
                match error {
                    Some(text) => Flow::Failed(PipelineError::Template(text)),
                    None => Flow::Continue,
                }
            }
            (AwaitingFirstFrame, PageEvent::Gst(Some(GstEvent::FirstFrame))) => {
                // Stamps the recording's start (reported with ACTIVE); outputs follow it.
                self.phase = Recording;
                session.activate(now_nanos());
                Flow::Continue
            }
            (AwaitingFirstFrame, PageEvent::Gst(Some(GstEvent::Eos))) => Flow::Failed(
                PipelineError::Gst("pipeline ended before the first frame".into()),
            ),
            (AwaitingFirstFrame, PageEvent::Page(Some(PageSignal::EndRecording))) => Self::abort(
                session,
                END_REASON_SOURCE_CLOSED,
                MSG_STOPPED_BEFORE_STARTED,
            ),
            (Recording, PageEvent::Page(Some(PageSignal::EndRecording))) => {
                session.end(END_REASON_SOURCE_CLOSED);
                Flow::Ended
            }
            (AwaitingFirstFrame | Recording, PageEvent::Page(None)) => {
                tracing::warn!("chrome's console closed; recording continues until stopped");
                self.page_open = false;
                Flow::Continue
            }
            (Recording, PageEvent::SizeCheck) => {
                let size = self.file_size();
                if size < self.max_size {
                    return Flow::Continue;
                }
                tracing::warn!(size, limit = self.max_size, "output storage limit reached");
                session.limit_reached();
                Flow::Ended
            }
            // An EOS nobody asked for: the sources ended by themselves.
            (Recording, PageEvent::Gst(Some(GstEvent::Eos))) => {
                self.eos_seen = true;
                session.info.set_end_reason(END_REASON_SOURCE_CLOSED);
                Flow::Ended
            }
            _ => Flow::Continue,
        }
    }

    async fn leave(&mut self) -> Option<String> {
        // No room to leave: Chrome's page is closed with the rest in `close`.
        None
    }

    /// Drains the pipeline when it recorded anything (EOS to every output), then stops
    /// capture, Chrome, Xvfb and PulseAudio.
    async fn close(&mut self, session: &mut Session) -> Option<Duration> {
        let mut src = self.src.take()?;
        if session.phase.started_at().is_some()
            && !self.eos_seen
            && let Some(e) = drain(session, &mut src).await
        {
            session.fail(&e);
        }
        let duration = src.recording.media_duration();
        src.close().await;
        duration
    }
}

/// Sends EOS and waits for it to reach every output, or for an error, the timeout, or a kill.
async fn drain(session: &mut Session, src: &mut WebSource) -> Option<PipelineError> {
    src.recording.send_eos();
    let deadline = Instant::now() + EOS_TIMEOUT;
    loop {
        tokio::select! {
            ev = src.recording.next_event() => match ev {
                Some(GstEvent::Eos) => return None,
                Some(GstEvent::Error(e)) => return Some(PipelineError::Gst(e)),
                Some(GstEvent::FirstFrame) => {}
                None => return Some(PipelineError::Gst("pipeline bus closed".into())),
            },
            req = session.stops.next() => {
                if let StopRequest::Kill { error } = req {
                    return Some(PipelineError::Killed(error));
                }
            }
            _ = tokio::time::sleep_until(deadline) => return Some(PipelineError::Frozen),
        }
    }
}
