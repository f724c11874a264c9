//! The recording session every recorder shares (the Chrome [`controller`], [`track`] and
//! [`composite`]): its phase (STARTING → ACTIVE → ENDING, [`Phase`]), stop requests taken once
//! each, the session limit, status updates with the outputs' results, and the end of an egress:
//! its outputs delivered (a partial file too), its status settled, its manifest written. One
//! place, so that the recorders end an egress the same way Go does.
//!
//! Every recorder also shares the loop itself ([`record`]): it implements [`Recorder`] (its own
//! events, what a stop does to held media, how it leaves the room and closes its media) and
//! [`record`] does the rest — stops, the limit, `UpdateStream` and destination changes
//! ([`Session::next_event`], [`Session::on_output_event`]), then delivery and the final status.
//! The Chrome recorder's setup (the page loading) runs before the loop and races stops itself.
//!
//! [`controller`]: super::web::controller
//! [`track`]: super::track
//! [`composite`]: super::composite

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use egress_proto::livekit::{EgressInfo, EgressStatus};

use super::job::{StopRequest, UpdateStreamCall};
use crate::core::PipelineError;
use crate::core::status::{
    END_REASON_LIMIT, InfoExt, MSG_LIMIT_BEFORE_START, MSG_STOPPED_BEFORE_STARTED, now_nanos,
};
use crate::outputs::OutputSet;
use crate::outputs::manifest::Manifest;
use crate::rpc::{Code, RpcError};
use crate::storage::local::DeliveryPlan;

/// The stop requests of one egress, each handed out once: the service may repeat the latest
/// (a second StopEgress) and a `watch` shows it again after every `changed`.
pub struct StopRequests {
    rx: watch::Receiver<Option<StopRequest>>,
    seen: Option<StopRequest>,
}

impl StopRequests {
    pub fn new(rx: watch::Receiver<Option<StopRequest>>) -> StopRequests {
        StopRequests { rx, seen: None }
    }

    /// The next stop request not yet handed out; pending forever once the sender is gone.
    /// Cancel-safe: a request is marked seen only in the poll that returns it.
    pub async fn next(&mut self) -> StopRequest {
        loop {
            if let Some(req) = self.rx.borrow_and_update().clone()
                && Some(&req) != self.seen.as_ref()
            {
                self.seen = Some(req.clone());
                return req;
            }
            if self.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Sleeps until `at`, or forever when there is no deadline (no session limit).
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where a recording is. The status in `EgressInfo` follows it (STARTING, ACTIVE, ENDING) until
/// the end settles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No media yet: a stop or the limit aborts the egress.
    Starting,
    /// Media since `started_at` (Unix ns): a stop ends it, the limit is LIMIT_REACHED.
    Active { started_at: i64 },
    /// A graceful end was asked for; the media drains.
    Ending { started_at: i64 },
}

impl Phase {
    /// When the media started, once it has.
    pub fn started_at(self) -> Option<i64> {
        match self {
            Phase::Starting => None,
            Phase::Active { started_at } | Phase::Ending { started_at } => Some(started_at),
        }
    }
}

/// What the manifest says of the source.
pub struct ManifestSource {
    pub egress_id: String,
    pub room_id: String,
    pub room_name: String,
    /// The recorded page (web egress); empty otherwise.
    pub url: String,
    pub disabled: bool,
}

/// One egress's recording session: its info and outputs, its line to the service, its stop
/// requests and session limit, and its phase.
pub struct Session {
    pub info: EgressInfo,
    pub outputs: OutputSet,
    pub phase: Phase,
    pub stops: StopRequests,
    /// When the session limit ends the recording (`None`: no limit, or it has fired).
    pub limit_at: Option<Instant>,
    manifest: ManifestSource,
    work_dir: PathBuf,
    updates: mpsc::UnboundedSender<EgressInfo>,
    /// `UpdateStream` calls, for a recorder with a stream output (`None`: the caller answers
    /// them "non-streaming").
    update_stream: Option<mpsc::Receiver<UpdateStreamCall>>,
    /// Go's text for an egress stopped before it started (the Chrome recorder says the start
    /// signal never came while its page has not given it).
    abort_message: &'static str,
}

impl Session {
    /// A session in STARTING; `max_duration` 0 means no limit.
    pub fn new(
        info: EgressInfo,
        outputs: OutputSet,
        manifest: ManifestSource,
        work_dir: PathBuf,
        updates: mpsc::UnboundedSender<EgressInfo>,
        stop: watch::Receiver<Option<StopRequest>>,
        max_duration: Duration,
    ) -> Session {
        let mut session = Session {
            info,
            outputs,
            phase: Phase::Starting,
            stops: StopRequests::new(stop),
            limit_at: (!max_duration.is_zero()).then(|| Instant::now() + max_duration),
            manifest,
            work_dir,
            updates,
            update_stream: None,
            abort_message: MSG_STOPPED_BEFORE_STARTED,
        };
        session.sync_results();
        session
    }

    /// Takes the egress's `UpdateStream` calls (a recorder that can have a stream output).
    pub fn with_update_stream(mut self, calls: mpsc::Receiver<UpdateStreamCall>) -> Session {
        self.update_stream = Some(calls);
        self
    }

    /// Applies an `UpdateStream` to the stream output: adds first, then removes, each URL on its
    /// own; the answer is the updated info, or the first error's code with its text (Go's
    /// `ErrArray`). Returns whether no stream is left and nothing else is recorded (Go then
    /// ends the egress: "All streams stopped").
    async fn update_stream(&mut self, call: UpdateStreamCall) -> bool {
        let (req, reply) = call;
        let Some(live) = self.outputs.live.as_mut() else {
            let _ = reply.send(Err(RpcError::new(
                Code::InvalidArgument,
                "UpdateStream called on non-streaming egress",
            )));
            return false;
        };
        let outcome = live.update(&req).await;
        let none_left = live.active() == 0;
        self.send_update();
        let answer = match outcome.errors.first() {
            Some(crate::outputs::stream::UpdateError::NotFound(e)) => {
                Err(RpcError::new(Code::NotFound, e.to_string()))
            }
            Some(crate::outputs::stream::UpdateError::Invalid(e)) => {
                Err(RpcError::new(Code::InvalidArgument, e.to_string()))
            }
            None => Ok(self.info.clone()),
        };
        let _ = reply.send(answer);
        none_left
            && self.outputs.files.is_empty()
            && self.outputs.streams.is_empty()
            && self.outputs.segments.is_none()
            && self.outputs.images.is_empty()
    }

    /// The next thing the session itself reacts to: a stop request, the session limit (it
    /// fires once), an `UpdateStream` call or a change of a live destination. Cancel-safe, so a
    /// recorder selects on it beside its own events.
    pub async fn next_event(&mut self) -> SessionEvent {
        tokio::select! {
            req = self.stops.next() => SessionEvent::Stop(req),
            _ = sleep_until(self.limit_at) => {
                self.limit_at = None;
                SessionEvent::Limit
            }
            Some(call) = next_update_stream(&mut self.update_stream) => SessionEvent::UpdateStream(call),
            _ = self.outputs.live_changed() => SessionEvent::OutputChanged,
        }
    }

    /// Applies an `UpdateStream` call or reports a destination's change. Returns how the
    /// recording goes on: `Ended` when the last stream was removed and nothing else is recorded
    /// (Go: "All streams stopped"; the caller then ends gracefully with
    /// [`END_REASON_ALL_STREAMS_STOPPED`]), `Failed` when the last output failed.
    pub async fn on_output_event(&mut self, event: OutputEvent) -> Flow {
        match event {
            OutputEvent::UpdateStream(call) => {
                if self.update_stream(call).await {
                    Flow::Ended
                } else {
                    Flow::Continue
                }
            }
            OutputEvent::Changed => {
                self.send_update();
                match self.outputs.all_live_failed() {
                    // The last output failed: the egress fails with its error (503, as Go).
                    Some(error) => Flow::Failed(PipelineError::Request(RpcError::new(
                        Code::Unavailable,
                        error,
                    ))),
                    None => Flow::Continue,
                }
            }
        }
    }

    pub fn work_dir(&self) -> &std::path::Path {
        &self.work_dir
    }

    pub fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Active { .. })
    }

    /// The outputs' results into the info.
    pub fn sync_results(&mut self) {
        self.outputs.fill_results(&mut self.info);
    }

    /// Sends the current info (with the outputs' results) to the service.
    pub fn send_update(&mut self) {
        self.sync_results();
        let _ = self.updates.send(self.info.clone());
    }

    /// Writes what a killed handler leaves for the service to deliver.
    pub fn write_plan(&self) {
        if self.outputs.files.is_empty() {
            return;
        }
        if let Err(e) = self
            .outputs
            .delivery_plan(&self.manifest.egress_id)
            .write(&self.work_dir)
        {
            tracing::warn!(error = %e, "could not write the delivery plan; a crash would lose the partial file");
        }
    }

    /// The first media is in: ACTIVE, and the outputs start following it.
    pub fn activate(&mut self, started_at: i64) {
        self.phase = Phase::Active { started_at };
        self.outputs.start(started_at);
        self.info.set_status(EgressStatus::EgressActive);
        tracing::info!("recording active");
        self.send_update();
        self.write_plan();
    }

    /// A graceful end: ENDING is reported at once, as Go does.
    pub fn end(&mut self, reason: &str) {
        tracing::info!(reason, "stopping recording");
        if let Some(started_at) = self.phase.started_at() {
            self.phase = Phase::Ending { started_at };
        }
        self.info.set_end_reason(reason);
        self.info.set_status(EgressStatus::EgressEnding);
        self.send_update();
    }

    /// A stop (or the source closing) with `reason`: ENDING when active, else ABORTED.
    pub fn stop(&mut self, reason: &str) {
        if self.is_active() {
            self.end(reason);
        } else {
            self.info.set_end_reason(reason);
            self.info.set_aborted(self.abort_message);
        }
    }

    /// What a stop before ACTIVE says (Go's `MSG_STOPPED_BEFORE_STARTED` unless set).
    pub fn set_abort_message(&mut self, message: &'static str) {
        self.abort_message = message;
    }

    /// The session limit: LIMIT_REACHED when active, else ABORTED.
    pub fn limit_reached(&mut self) {
        self.limit_at = None;
        self.info.set_end_reason(END_REASON_LIMIT);
        if self.is_active() {
            tracing::info!("session limit reached");
            self.info.set_limit_reached();
        } else {
            self.info.set_aborted(MSG_LIMIT_BEFORE_START);
        }
    }

    /// Marks the egress FAILED with `e`, unless it failed already (the first error is the one
    /// reported).
    pub fn fail(&mut self, e: &PipelineError) {
        if !self.info.status_is(EgressStatus::EgressFailed) {
            self.info.set_failed(e);
        }
    }

    /// Ends an egress whose media never started: nothing to deliver.
    pub fn finish_unstarted(mut self) -> EgressInfo {
        DeliveryPlan::remove(&self.work_dir);
        self.sync_results();
        self.info
    }

    /// Delivers the outputs (a partial file after a failure too), writes the manifest and
    /// settles the final status: a recording still ACTIVE or ENDING is COMPLETE; a COMPLETE or
    /// LIMIT_REACHED one gets its manifest beside each output that wants one; `ended_at` is
    /// stamped if nothing set it.
    pub async fn finish(mut self, media: Option<Duration>) -> EgressInfo {
        DeliveryPlan::remove(&self.work_dir);
        let started_at = self.phase.started_at().unwrap_or(0);
        self.outputs
            .deliver(&mut self.info, started_at, media)
            .await;
        let info = &mut self.info;
        if info.status_is(EgressStatus::EgressActive) || info.status_is(EgressStatus::EgressEnding)
        {
            info.set_complete();
        }
        if info.status_is(EgressStatus::EgressComplete)
            || info.status_is(EgressStatus::EgressLimitReached)
        {
            let doc = Manifest {
                egress_id: self.manifest.egress_id.clone(),
                room_id: self.manifest.room_id.clone(),
                room_name: self.manifest.room_name.clone(),
                url: self.manifest.url.clone(),
                started_at: info.started_at,
                ended_at: info.ended_at,
                files: self.outputs.manifest_files(),
                streams: crate::outputs::manifest::streams(&self.outputs),
                playlists: self.outputs.manifest_playlists(),
                images: self.outputs.manifest_images(),
            };
            let disabled = self.manifest.disabled;
            if let Some(stored) = self
                .outputs
                .store_manifest(&doc, &self.work_dir, disabled)
                .await
            {
                info.manifest_location = stored;
            }
        }
        if info.ended_at == 0 {
            info.ended_at = now_nanos();
        }
        tracing::info!(status = ?EgressStatus::try_from(info.status).ok(), error = %info.error,
            details = %info.details, location = %self.outputs.location(), "egress finished");
        self.sync_results();
        self.info
    }
}

/// How a recorder's event left the recording.
pub enum Flow {
    /// Keep recording.
    Continue,
    /// The source or a stop ended it; deliver what was written.
    Ended,
    /// It failed; deliver what was written, then report the error.
    Failed(PipelineError),
}

/// A recorder driven by [`record`]: web (Chrome), track and composite.
pub trait Recorder {
    type Event: Send;

    /// The next event of the recorder's own sources (media, tracks, its pipeline, timers).
    fn next_event(&mut self) -> impl Future<Output = Self::Event> + Send;

    /// Reacts to one of its events.
    fn on_event(
        &mut self,
        session: &mut Session,
        event: Self::Event,
    ) -> impl Future<Output = Flow> + Send;

    /// A graceful stop arrived (before the session reacts to it): the last chance to start
    /// with media held so far.
    fn on_stop(
        &mut self,
        _session: &mut Session,
    ) -> impl Future<Output = Result<(), PipelineError>> + Send {
        async { Ok(()) }
    }

    /// The loop is over: leave the source (the room) and say why joining failed, if it did.
    fn leave(&mut self) -> impl Future<Output = Option<String>> + Send;

    /// Closes the recorder's media and returns the duration written, if known. May fail the
    /// session (a file that could not be finished).
    fn close(&mut self, session: &mut Session) -> impl Future<Output = Option<Duration>> + Send;
}

/// Runs a recorder to its end: stop requests, the session limit and the recorder's events until
/// one ends the recording; then the recorder leaves and closes, and the session delivers and
/// settles. Returns the final info.
pub async fn record<R: Recorder>(mut session: Session, mut recorder: R) -> EgressInfo {
    let flow = run_loop(&mut session, &mut recorder).await;
    // A join that never happened is what fails an egress that never started.
    let join_error = recorder.leave().await;
    let flow = match (flow, join_error) {
        (Flow::Ended, Some(e))
            if session.phase == Phase::Starting
                && !session.info.status_is(EgressStatus::EgressAborted) =>
        {
            Flow::Failed(PipelineError::Request(RpcError::new(Code::Unavailable, e)))
        }
        (flow, _) => flow,
    };
    // The first error is the one reported: the flow's, then whatever closing adds.
    if let Flow::Failed(e) = &flow {
        session.fail(e);
    }
    let media = recorder.close(&mut session).await;
    session.finish(media).await
}

/// What a [`Session`] reacts to ([`Session::next_event`]).
pub enum SessionEvent {
    Stop(StopRequest),
    Limit,
    UpdateStream(UpdateStreamCall),
    OutputChanged,
}

/// The outputs' side of [`SessionEvent`], for [`Session::on_output_event`].
pub enum OutputEvent {
    UpdateStream(UpdateStreamCall),
    Changed,
}

enum LoopEvent<E> {
    Session(SessionEvent),
    Recorder(E),
}

/// The next `UpdateStream` call (forever without a line for them).
async fn next_update_stream(
    calls: &mut Option<mpsc::Receiver<UpdateStreamCall>>,
) -> Option<UpdateStreamCall> {
    match calls.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Go's end reason when the last stream is removed.
pub const END_REASON_ALL_STREAMS_STOPPED: &str = "All streams stopped";

async fn run_loop<R: Recorder>(session: &mut Session, recorder: &mut R) -> Flow {
    loop {
        let event = tokio::select! {
            ev = session.next_event() => LoopEvent::Session(ev),
            ev = recorder.next_event() => LoopEvent::Recorder(ev),
        };
        match event {
            LoopEvent::Session(SessionEvent::Stop(StopRequest::Graceful { reason })) => {
                if let Err(e) = recorder.on_stop(session).await {
                    return Flow::Failed(e);
                }
                session.stop(&reason);
                return Flow::Ended;
            }
            LoopEvent::Session(SessionEvent::Stop(StopRequest::Kill { error })) => {
                return Flow::Failed(PipelineError::Killed(error));
            }
            LoopEvent::Session(SessionEvent::Limit) => {
                session.limit_reached();
                return Flow::Ended;
            }
            LoopEvent::Session(SessionEvent::UpdateStream(call)) => {
                match session
                    .on_output_event(OutputEvent::UpdateStream(call))
                    .await
                {
                    Flow::Continue => {}
                    Flow::Ended => {
                        if let Err(e) = recorder.on_stop(session).await {
                            return Flow::Failed(e);
                        }
                        session.stop(END_REASON_ALL_STREAMS_STOPPED);
                        return Flow::Ended;
                    }
                    flow => return flow,
                }
            }
            LoopEvent::Session(SessionEvent::OutputChanged) => {
                match session.on_output_event(OutputEvent::Changed).await {
                    Flow::Continue => {}
                    flow => return flow,
                }
            }
            LoopEvent::Recorder(ev) => match recorder.on_event(session, ev).await {
                Flow::Continue => {}
                flow => return flow,
            },
        }
    }
}

/// A media subscriber task (WebRTC: one track, or a room's set of tracks) and the events it
/// sends, until the recorder leaves.
pub struct Subscription<T, E> {
    events: mpsc::Receiver<T>,
    task: Option<SubscriberTask<E>>,
}

/// The running subscriber and the switch that asks it to stop.
type SubscriberTask<E> = (JoinHandle<Result<(), E>>, watch::Sender<bool>);

impl<T: Send + 'static, E: std::fmt::Display + Send + 'static> Subscription<T, E> {
    /// Spawns `run(events, stop)` with a queue of `queue` events between it and the recorder.
    pub fn spawn<F, Fut>(queue: usize, run: F) -> Subscription<T, E>
    where
        F: FnOnce(mpsc::Sender<T>, watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let (tx, events) = mpsc::channel(queue);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(tx, stop_rx));
        Subscription {
            events,
            task: Some((task, stop)),
        }
    }

    /// The next event; `None` once the subscriber is gone.
    pub async fn recv(&mut self) -> Option<T> {
        self.events.recv().await
    }

    /// Stops the subscriber (it leaves the room) and says how it ended: `None` when cleanly,
    /// else why — a join that never happened is what fails an egress that never started.
    pub async fn leave(&mut self) -> Option<String> {
        let (task, stop) = self.task.take()?;
        let _ = stop.send(true);
        // Dropping the receiver tells the subscriber nobody listens any more.
        drop(std::mem::replace(&mut self.events, mpsc::channel(1).1));
        match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("subscriber task: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graceful(reason: &str) -> Option<StopRequest> {
        Some(StopRequest::Graceful {
            reason: reason.into(),
        })
    }

    #[tokio::test]
    async fn each_stop_request_is_handed_out_once() {
        let (tx, rx) = watch::channel(None);
        let mut stops = StopRequests::new(rx);
        tx.send_replace(graceful("StopEgress API"));
        assert_eq!(
            stops.next().await,
            StopRequest::Graceful {
                reason: "StopEgress API".into()
            }
        );
        // The same request again (a repeated StopEgress) is not a new one ...
        tx.send_replace(graceful("StopEgress API"));
        let again = tokio::time::timeout(Duration::from_millis(50), stops.next()).await;
        assert!(
            again.is_err(),
            "a repeated request was handed out twice: {again:?}"
        );
        // ... a kill after it is.
        tx.send_replace(Some(StopRequest::Kill {
            error: "CPU exhausted".into(),
        }));
        assert_eq!(
            stops.next().await,
            StopRequest::Kill {
                error: "CPU exhausted".into()
            }
        );
        // With the sender gone, no request ever comes.
        drop(tx);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), stops.next())
                .await
                .is_err()
        );
    }
}
