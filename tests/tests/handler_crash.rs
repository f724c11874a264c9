//! A handler process that crashes (issue 20): the egress it ran ends FAILED naming the signal,
//! and the log holds the handler's crash report — the signal, the ids of the egresses it ran
//! and a backtrace — for whoever has to find out why. Real livekit-server, egress and `lk`.
//!
//! Cores are switched off for the stack this test starts (a debug handler's core is hundreds of
//! megabytes); the egress's details then say so, which is what an operator without cores sees.

use std::time::Duration;

use egress_e2e::recording::*;
use serde_json::json;

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

/// No core files from the processes this test starts (inherited through fork/exec).
fn no_cores() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct; only the soft core limit is lowered (the
    // hard one is kept, which needs no privilege).
    unsafe {
        libc::getrlimit(libc::RLIMIT_CORE, &mut limit);
        limit.rlim_cur = 0;
        assert_eq!(
            libc::setrlimit(libc::RLIMIT_CORE, &limit),
            0,
            "cannot switch core files off"
        );
    }
}

#[tokio::test]
async fn a_handler_killed_by_sigsegv_fails_its_egress_with_the_signal_and_logs_a_crash_report() {
    let _serial = serial().await;
    no_cores();
    let stack = RecordingStack::start_with(|yaml| format!("{yaml}  track_cpu_cost: 0.02\n")).await;
    let media = TestMedia::generate(60).await;
    let room = "crash-report-room";
    let publisher = Publisher::start(
        &stack.livekit,
        room,
        "mic",
        &media.audio,
        None,
        stack.egress.dir(),
    );
    let sid = track_sid(&stack, room, "mic", "AUDIO").await;
    let id = start_track_egress(&stack, room, &sid, "crash-report/a.ogg").await;
    let lk = stack.lk();
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let server = format!("127.0.0.1:{}", stack.livekit.port());
    let handlers: Vec<u32> = processes_mentioning(&server)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("run-handler"))
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(
        handlers.len(),
        1,
        "one handler process runs the track egress: {handlers:?}"
    );
    // SAFETY: kill(2) on a PID we just read; the worst case is signalling a process that exited.
    unsafe { libc::kill(handlers[0] as i32, libc::SIGSEGV) };

    let (done, _) = wait_for_status(&lk, &id, status::FAILED, Duration::from_secs(60)).await;
    publisher.stop().await;
    let error = done["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("handler process ended unexpectedly (signal: 11 (SIGSEGV)"),
        "{done:#}"
    );
    let details = done["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("SIGSEGV") && details.contains("no core file (core dumps are off"),
        "{done:#}"
    );

    let log = stack.egress.log();
    let report = log
        .lines()
        .find(|l| l.starts_with("egress handler crashed: signal 11 (SIGSEGV)"))
        .unwrap_or_else(|| panic!("no crash report in the log:\n{log}"));
    assert!(
        report.contains(&format!("running egress ids: {id}")),
        "the report names the egress it ran: {report}"
    );
    let raw = log
        .split("egress handler crashed: raw backtrace")
        .nth(1)
        .unwrap_or_else(|| panic!("no raw backtrace:\n{log}"));
    // Other threads of the handler run on while it reports, so a line of theirs may come between.
    let frames = raw
        .lines()
        .skip(1)
        .take(12)
        .filter(|l| l.contains("[0x"))
        .count();
    assert!(
        frames >= 3,
        "raw frames (module(+offset) [address]):\n{raw}"
    );
    assert!(
        log.contains("egress handler crashed: symbolised backtrace:"),
        "no symbolised backtrace:\n{log}"
    );
    assert!(
        log.contains("egress handler crashed: dying of the signal now"),
        "{log}"
    );
}
