//! One web recording from start to final status (reference §1.5):
//!
//! ```text
//! STARTING ──start signal, first frame──▶ ACTIVE ──stop / END_RECORDING──▶ ENDING ──EOS, file delivered──▶ COMPLETE
//!    │                                      │ session limit ─▶ LIMIT_REACHED (then EOS and delivery)
//!    │ stop before start ─▶ ABORTED          │ GStreamer/Chrome error, kill ─▶ FAILED (partial file still delivered)
//! ```
//!
//! Every status change goes to the service on `updates` as it happens; the final info is the
//! return value.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use egress_proto::livekit::{EgressInfo, EgressStatus};

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
use crate::pipeline::lifecycle::{
    self, END_REASON_ALL_STREAMS_STOPPED, Flow, ManifestSource, OutputEvent, Session, SessionEvent,
};

/// How long EOS may take to drain through the pipeline (Go: 30 s, then "pipeline frozen").
const EOS_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the output size is checked against `file_output_max_size` (Go: 15 s).
const SIZE_CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// How often a page that has not signalled start is checked for a `div.error`.
const TEMPLATE_ERROR_POLL: Duration = Duration::from_secs(1);

/// Something the controller reacts to while recording.
enum Event {
    Stop(StopRequest),
    Page(Option<PageSignal>),
    Gst(Option<GstEvent>),
    Limit,
    /// An `UpdateStream` call or a live destination's change.
    Output(OutputEvent),
    SizeCheck,
    TemplateCheck,
}

impl From<SessionEvent> for Event {
    fn from(ev: SessionEvent) -> Event {
        match ev {
            SessionEvent::Stop(req) => Event::Stop(req),
            SessionEvent::Limit => Event::Limit,
            SessionEvent::UpdateStream(call) => Event::Output(OutputEvent::UpdateStream(call)),
            SessionEvent::OutputChanged => Event::Output(OutputEvent::Changed),
        }
    }
}

pub struct Controller {
    service: Arc<ServiceConfig>,
    cfg: WebConfig,
    /// What the outputs beside the file need to know of the recording.
    context: OutputContext,
    /// The info, the outputs, stops, UpdateStream calls and the limit.
    session: Session,
    /// The file the pipeline writes (none for a stream- or segments-only egress).
    local_path: Option<PathBuf>,
    size_tick: tokio::time::Interval,
    template_tick: tokio::time::Interval,
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
            size_tick: ticker(SIZE_CHECK_INTERVAL),
            template_tick: ticker(TEMPLATE_ERROR_POLL),
        }
    }

    /// Waits for the next event. `poll_template` adds the periodic `div.error` check.
    async fn next_event(
        &mut self,
        src: &mut WebSource,
        poll_template: bool,
        size_checks: bool,
    ) -> Event {
        let size_checks = size_checks && self.cfg.max_size > 0 && self.local_path.is_some();
        tokio::select! {
            ev = self.session.next_event() => ev.into(),
            sig = src.signals.recv() => Event::Page(sig),
            ev = src.recording.next_event() => Event::Gst(ev),
            _ = self.size_tick.tick(), if size_checks => Event::SizeCheck,
            _ = self.template_tick.tick(), if poll_template => Event::TemplateCheck,
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
            Ok(mut s) => {
                // The outputs beside the file: their results show from now on.
                if let Some(attached) = s.attached.take() {
                    let outputs = &mut self.session.outputs;
                    outputs.live = attached.live;
                    outputs.segments = attached.segments;
                    outputs.images = attached.images;
                    self.session.send_update();
                }
                s
            }
            Err(e) => {
                tracing::error!(error = %e, "web source failed to start");
                self.session.info.set_failed(&e);
                return self.finish(None).await;
            }
        };
        let outcome = self.record(&mut src).await;
        let duration = src.recording.media_duration();
        src.close().await;
        if let Some(e) = outcome
            && !self.session.info.status_is(EgressStatus::EgressFailed)
        {
            self.session.info.set_failed(&e);
        }
        self.finish(duration).await
    }

    /// Drives the recording until the pipeline has drained (or failed). Returns the error that
    /// ended it, if any.
    async fn record(&mut self, src: &mut WebSource) -> Option<PipelineError> {
        // Waiting for START_RECORDING.
        if self.cfg.source.await_start_signal {
            tracing::debug!("waiting for start signal");
            loop {
                match self.next_event(src, true, false).await {
                    Event::Page(Some(PageSignal::StartRecording)) => break,
                    Event::Page(Some(PageSignal::EndRecording)) => {
                        self.session.info.set_end_reason(END_REASON_SOURCE_CLOSED);
                        self.session.info.set_aborted(MSG_START_NOT_RECEIVED);
                        return None;
                    }
                    // The console listener ended: Chrome is gone, and the page will never signal.
                    Event::Page(None) => {
                        return Some(PipelineError::Chrome(
                            "chrome exited before the start signal".into(),
                        ));
                    }
                    Event::Stop(StopRequest::Graceful { reason }) => {
                        self.session.info.set_end_reason(&reason);
                        self.session.info.set_aborted(MSG_START_NOT_RECEIVED);
                        return None;
                    }
                    Event::Stop(StopRequest::Kill { error }) => {
                        return Some(PipelineError::Killed(error));
                    }
                    Event::Limit => {
                        self.session.info.set_end_reason(END_REASON_LIMIT);
                        self.session.info.set_aborted(MSG_LIMIT_BEFORE_START);
                        return None;
                    }
                    Event::Output(ev) => match self.session.on_output_event(ev).await {
                        Flow::Continue => {}
                        Flow::Ended => {
                            self.session
                                .info
                                .set_end_reason(END_REASON_ALL_STREAMS_STOPPED);
                            self.session.info.set_aborted(MSG_START_NOT_RECEIVED);
                            return None;
                        }
                        Flow::Failed(e) => return Some(e),
                    },
                    Event::Gst(Some(GstEvent::Error(e))) => return Some(PipelineError::Gst(e)),
                    Event::Gst(_) | Event::SizeCheck => {}
                    Event::TemplateCheck => {
                        if let Some(text) = src.chrome.error_text().await {
                            return Some(PipelineError::Template(text));
                        }
                    }
                }
            }
        }

        src.recording.open_gate();
        // Until the first frame is captured the egress has not started.
        loop {
            match self.next_event(src, false, false).await {
                Event::Gst(Some(GstEvent::FirstFrame)) => break,
                Event::Gst(Some(GstEvent::Error(e))) => return Some(PipelineError::Gst(e)),
                Event::Gst(None) | Event::Gst(Some(GstEvent::Eos)) => {
                    return Some(PipelineError::Gst(
                        "pipeline ended before the first frame".into(),
                    ));
                }
                Event::Stop(StopRequest::Graceful { reason }) => {
                    self.session.info.set_end_reason(&reason);
                    self.session.info.set_aborted(MSG_STOPPED_BEFORE_STARTED);
                    return None;
                }
                Event::Stop(StopRequest::Kill { error }) => {
                    return Some(PipelineError::Killed(error));
                }
                Event::Page(Some(PageSignal::EndRecording)) => {
                    self.session.info.set_end_reason(END_REASON_SOURCE_CLOSED);
                    self.session.info.set_aborted(MSG_STOPPED_BEFORE_STARTED);
                    return None;
                }
                Event::Limit => {
                    self.session.info.set_end_reason(END_REASON_LIMIT);
                    self.session.info.set_aborted(MSG_LIMIT_BEFORE_START);
                    return None;
                }
                Event::Output(ev) => match self.session.on_output_event(ev).await {
                    Flow::Continue => {}
                    Flow::Ended => {
                        self.session
                            .info
                            .set_end_reason(END_REASON_ALL_STREAMS_STOPPED);
                        self.session.info.set_aborted(MSG_STOPPED_BEFORE_STARTED);
                        return None;
                    }
                    Flow::Failed(e) => return Some(e),
                },
                Event::Page(_) | Event::SizeCheck | Event::TemplateCheck => {}
            }
        }

        // Stamps the file's start (reported with ACTIVE) and starts following the file.
        self.session.activate(now_nanos());

        // Recording.
        let mut page_open = true;
        loop {
            let event = if page_open {
                self.next_event(src, false, true).await
            } else {
                // The page's console is gone (Chrome exited); keep recording what is on screen
                // until told to stop, as the Go egress does.
                let size_checks = self.cfg.max_size > 0 && self.local_path.is_some();
                tokio::select! {
                    ev = self.session.next_event() => ev.into(),
                    ev = src.recording.next_event() => Event::Gst(ev),
                    _ = self.size_tick.tick(), if size_checks => Event::SizeCheck,
                }
            };
            match event {
                Event::Stop(StopRequest::Graceful { reason }) => {
                    return self.end(src, &reason).await;
                }
                Event::Stop(StopRequest::Kill { error }) => {
                    let err = PipelineError::Killed(error);
                    self.session.info.set_failed(&err);
                    return self.drain(src).await.or(Some(err));
                }
                Event::Page(Some(PageSignal::EndRecording)) => {
                    return self.end(src, END_REASON_SOURCE_CLOSED).await;
                }
                Event::Page(Some(PageSignal::StartRecording)) => {}
                Event::Page(None) => {
                    tracing::warn!("chrome's console closed; recording continues until stopped");
                    page_open = false;
                }
                Event::Limit => {
                    tracing::info!("session limit reached");
                    return self.end_at_limit(src).await;
                }
                Event::Output(ev) => match self.session.on_output_event(ev).await {
                    Flow::Continue => {}
                    // The last stream was removed and nothing else is recorded (Go).
                    Flow::Ended => return self.end(src, END_REASON_ALL_STREAMS_STOPPED).await,
                    // The last output failed: what the others wrote is still finished.
                    Flow::Failed(e) => {
                        self.session.fail(&e);
                        return self.drain(src).await.or(Some(e));
                    }
                },
                Event::SizeCheck => {
                    let size = self
                        .local_path
                        .as_ref()
                        .and_then(|p| std::fs::metadata(p).ok())
                        .map(|m| m.len())
                        .unwrap_or(0);
                    if size >= self.cfg.max_size {
                        tracing::warn!(
                            size,
                            limit = self.cfg.max_size,
                            "output storage limit reached"
                        );
                        return self.end_at_limit(src).await;
                    }
                }
                Event::Gst(Some(GstEvent::Error(e))) => return Some(PipelineError::Gst(e)),
                // An EOS nobody asked for: the sources ended by themselves.
                Event::Gst(Some(GstEvent::Eos)) => {
                    self.session.info.set_end_reason(END_REASON_SOURCE_CLOSED);
                    return None;
                }
                Event::Gst(None) => return Some(PipelineError::Gst("pipeline bus closed".into())),
                Event::Gst(Some(GstEvent::FirstFrame)) | Event::TemplateCheck => {}
            }
        }
    }

    /// A graceful end: ENDING (sent at once, as Go does), then EOS.
    async fn end(&mut self, src: &mut WebSource, reason: &str) -> Option<PipelineError> {
        self.session.end(reason);
        self.drain(src).await
    }

    async fn end_at_limit(&mut self, src: &mut WebSource) -> Option<PipelineError> {
        self.session.info.set_end_reason(END_REASON_LIMIT);
        self.session.info.set_limit_reached();
        self.drain(src).await
    }

    /// Sends EOS and waits for it to reach the file, or for an error, the timeout, or a kill.
    async fn drain(&mut self, src: &mut WebSource) -> Option<PipelineError> {
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
                req = self.session.stops.next() => {
                    if let StopRequest::Kill { error } = req {
                        return Some(PipelineError::Killed(error));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Some(PipelineError::Frozen),
            }
        }
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

    /// Delivers the file (also a partial one after a failure), writes the manifest and settles
    /// the final status.
    async fn finish(self, media: Option<Duration>) -> EgressInfo {
        self.session.finish(media).await
    }
}
