//! Many track egresses on one worker: they share handler processes (one per 64 egresses, not
//! one each), all of them complete with a playable file, and a crash of a shared process fails
//! exactly its egresses, with the reason and their partial files, without taking the worker or
//! later egresses down.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use egress_e2e::recording::*;
use serde_json::{Value, json};

/// Tracks published (one `lk` publisher each) and egresses per track.
const TRACKS: usize = 5;
const EGRESSES_PER_TRACK: usize = 10;
const RECORD_SECS: u64 = 5;

/// A stack whose track egresses cost 0.02 core, as a passthrough track does here (Go's default
/// of 1 core per track would admit one on this 2-core machine).
async fn dense_stack() -> RecordingStack {
    RecordingStack::start_with(|yaml| format!("{yaml}  track_cpu_cost: 0.02\n")).await
}

/// Starts a track egress through livekit-server's Twirp API; returns its id.
async fn start_track_egress(
    stack: &RecordingStack,
    room: &str,
    track_id: &str,
    filepath: &str,
) -> String {
    let request =
        json!({ "room_name": room, "track_id": track_id, "file": { "filepath": filepath } });
    let (status, body) = twirp(
        &stack.livekit,
        "Egress/StartTrackEgress",
        json!({ "roomRecord": true }),
        &request,
    )
    .await;
    assert_eq!(status, 200, "StartTrackEgress: {body:#}");
    body["egress_id"]
        .as_str()
        .or(body["egressId"].as_str())
        .expect("egress id")
        .to_owned()
}

async fn stop_egress(stack: &RecordingStack, egress_id: &str) {
    let (status, body) = twirp(
        &stack.livekit,
        "Egress/StopEgress",
        json!({ "roomRecord": true }),
        &json!({ "egress_id": egress_id }),
    )
    .await;
    assert_eq!(status, 200, "StopEgress {egress_id}: {body:#}");
}

/// Polls `lk egress list` (one call for all of them) until every egress in `ids` has status
/// `want`; panics on another terminal status or after `timeout`. Returns their infos.
async fn wait_all(
    stack: &RecordingStack,
    ids: &[String],
    want: i64,
    timeout: Duration,
) -> BTreeMap<String, Value> {
    let lk = stack.lk();
    let deadline = Instant::now() + timeout;
    loop {
        let infos: BTreeMap<String, Value> = lk
            .egress_list()
            .await
            .into_iter()
            .filter_map(|i| Some((i["egress_id"].as_str()?.to_owned(), i)))
            .filter(|(id, _)| ids.contains(id))
            .collect();
        for (id, info) in &infos {
            let s = status_of(info);
            assert!(
                !(s >= status::COMPLETE && s != want),
                "egress {id} ended with status {s} while waiting for {want}: {info:#}"
            );
        }
        let reached = infos.values().filter(|i| status_of(i) == want).count();
        if reached == ids.len() {
            return infos;
        }
        assert!(
            Instant::now() < deadline,
            "{reached} of {} egresses reached status {want} in {timeout:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// PIDs of this stack's `egress run-handler` processes (their config, in the environment,
/// names this stack's livekit-server).
fn handler_processes(stack: &RecordingStack) -> HashSet<u32> {
    let server = format!("127.0.0.1:{}", stack.livekit.port());
    processes_mentioning(&server)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("run-handler"))
        .map(|(pid, _)| pid)
        .collect()
}

#[tokio::test]
async fn fifty_concurrent_track_egresses_share_a_process_and_all_complete() {
    let _serial = serial().await;
    let stack = dense_stack().await;
    let media = TestMedia::generate(120).await;
    let room = "dense-room";
    let mut publishers = Vec::new();
    for i in 0..TRACKS {
        publishers.push(Publisher::start(
            &stack.livekit,
            room,
            &format!("mic-{i}"),
            &media.audio,
            None,
            stack.egress.dir(),
        ));
    }
    wait_for_publishers(&stack.lk(), room, TRACKS as i64, Duration::from_secs(60)).await;
    let mut sids = Vec::new();
    for i in 0..TRACKS {
        sids.push(track_sid(&stack, room, &format!("mic-{i}"), "AUDIO").await);
    }

    // All at once, as a burst of requests would come.
    let starts = sids.iter().enumerate().flat_map(|(t, sid)| {
        let stack = &stack;
        (0..EGRESSES_PER_TRACK).map(move |n| async move {
            start_track_egress(stack, room, sid, &format!("dense/track{t}-egress{n}.ogg")).await
        })
    });
    let t0 = Instant::now();
    let ids: Vec<String> = futures_util::future::join_all(starts).await;
    assert_eq!(ids.len(), TRACKS * EGRESSES_PER_TRACK);
    wait_all(&stack, &ids, status::ACTIVE, Duration::from_secs(60)).await;
    eprintln!(
        "{} track egresses ACTIVE {:.2} s after the first StartEgress",
        ids.len(),
        t0.elapsed().as_secs_f64()
    );
    let processes = handler_processes(&stack);
    eprintln!("handler processes while recording: {}", processes.len());
    assert!(
        processes.len() <= 2,
        "{} handler processes for {} track egresses: they should share (64 per process)",
        processes.len(),
        ids.len()
    );

    tokio::time::sleep(Duration::from_secs(RECORD_SECS)).await;
    futures_util::future::join_all(ids.iter().map(|id| stop_egress(&stack, id))).await;
    let done = wait_all(&stack, &ids, status::COMPLETE, Duration::from_secs(90)).await;
    for p in publishers {
        p.stop().await;
    }

    for (id, info) in &done {
        let file = location(info);
        let p = probe(&file).await;
        let a = p
            .audio
            .clone()
            .unwrap_or_else(|| panic!("{id}: no audio stream in {}", file.display()));
        assert_eq!(a.codec, "opus", "{id}: {p:?}");
        assert!(
            p.duration > RECORD_SECS as f64 - 1.0,
            "{id}: recorded {:.2} s of about {RECORD_SECS} s",
            p.duration
        );
        assert!(
            decodes_cleanly(&file).await,
            "{id}: {} does not decode cleanly",
            file.display()
        );
    }
}

#[tokio::test]
async fn a_crashed_shared_handler_fails_its_egresses_with_the_reason_and_the_worker_goes_on() {
    let _serial = serial().await;
    let stack = dense_stack().await;
    let media = TestMedia::generate(120).await;
    let room = "crash-room";
    let publisher = Publisher::start(
        &stack.livekit,
        room,
        "mic",
        &media.audio,
        None,
        stack.egress.dir(),
    );
    wait_for_publishers(&stack.lk(), room, 1, Duration::from_secs(30)).await;
    let sid = track_sid(&stack, room, "mic", "AUDIO").await;

    let ids = vec![
        start_track_egress(&stack, room, &sid, "crash/a.ogg").await,
        start_track_egress(&stack, room, &sid, "crash/b.ogg").await,
    ];
    wait_all(&stack, &ids, status::ACTIVE, Duration::from_secs(30)).await;
    let active_at = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let processes = handler_processes(&stack);
    assert_eq!(
        processes.len(),
        1,
        "two track egresses should share one handler process: {processes:?}"
    );
    let pid = *processes.iter().next().expect("one process");
    // SAFETY: kill(2) on a PID we just read; the worst case is signalling a process that exited.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let recorded = active_at.elapsed().as_secs_f64();
    // What a kill may lose: the Ogg page being filled (one second of audio) and the bytes the
    // writer has not handed to the file yet (it writes once a second).
    let max_loss = 2.0;

    let failed = wait_all(&stack, &ids, status::FAILED, Duration::from_secs(60)).await;
    for (id, info) in &failed {
        let error = info["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("handler process ended unexpectedly"),
            "{id}: error {error:?}: {info:#}"
        );
        // What it recorded before the crash is delivered and playable.
        let file = location(info);
        let p = probe(&file).await;
        assert_eq!(
            p.audio.map(|a| a.codec),
            Some("opus".to_owned()),
            "{id}: {}",
            file.display()
        );
        assert!(
            p.duration >= recorded - max_loss - 0.2,
            "{id}: the partial file has {:.2} s of the {recorded:.2} s recorded (at most {max_loss} s may be lost)",
            p.duration
        );
    }

    // The worker survived: a new egress gets a new process and completes.
    let after = start_track_egress(&stack, room, &sid, "crash/after.ogg").await;
    let after = vec![after];
    wait_all(&stack, &after, status::ACTIVE, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_egress(&stack, &after[0]).await;
    let done = wait_all(&stack, &after, status::COMPLETE, Duration::from_secs(30)).await;
    publisher.stop().await;
    let p = probe(&location(&done[&after[0]])).await;
    assert_eq!(p.audio.map(|a| a.codec), Some("opus".to_owned()));
}
