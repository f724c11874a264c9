//! StopEgress through livekit-server reaches the worker that runs the egress, and only while it
//! runs: two workers on one Redis, a real web recording on one of them.

use std::time::Duration;

use egress_e2e::recording::*;
use egress_e2e::{Egress, Resp, free_port};
use serde_json::json;

/// The same config with this worker's own ports.
fn second_config(config: &str) -> (String, u16) {
    let health = free_port();
    let out = config
        .lines()
        .map(|l| {
            if l.starts_with("health_port:") {
                format!("health_port: {health}")
            } else if l.starts_with("prometheus_port:") {
                format!("prometheus_port: {}", free_port())
            } else if l.starts_with("template_port:") {
                format!("template_port: {}", free_port())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    (out + "\n", health)
}

#[tokio::test]
async fn stop_egress_reaches_the_worker_running_it() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let (config, health) = second_config(&stack.config);
    let templates = templates_dir().to_string_lossy().into_owned();
    let mut second =
        Egress::start_with(config, &[], &[("EGRESS_TEMPLATES_DIR", templates.as_str())]).await;
    second.wait_healthy(health).await;

    let page = TestPage::start().await;
    let lk = stack.lk();
    let request =
        json!({ "url": page.url(""), "file_outputs": [{ "filepath": "routing/{time}.mp4" }] });
    let id = lk
        .egress_start("web", &request.to_string())
        .await
        .expect("egress start")
        .egress_id;
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;

    let runs_it = |log: &str| {
        log.lines()
            .any(|l| l.contains("egress handed to its handler") && l.contains(&id))
    };
    let (a, b) = (runs_it(&stack.egress.log()), runs_it(&second.log()));
    assert!(
        a ^ b,
        "exactly one worker must run {id} (first: {a}, second: {b})"
    );

    // Exactly one process is subscribed to this egress's StopEgress topic.
    let channel = format!("EgressHandler|StopEgress|{id}|REQ");
    let numsub = stack
        .redis
        .cmd(&["PUBSUB", "NUMSUB", &channel])
        .await
        .expect("PUBSUB NUMSUB");
    let subscribers = match &numsub {
        Resp::Array(Some(items)) => match items.get(1) {
            Some(Resp::Integer(n)) => *n,
            _ => -1,
        },
        _ => -1,
    };
    assert_eq!(subscribers, 1, "subscribers of {channel}: {numsub:?}");

    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    assert_eq!(done["details"], "End reason: StopEgress API", "{done:#}");

    // The topic lives exactly as long as the handler.
    let mut gone = false;
    for _ in 0..50 {
        if stack
            .redis
            .pubsub_channels(&format!("EgressHandler|*|{id}|*"))
            .await
            .is_empty()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "StopEgress/UpdateStream topics of {id} still subscribed after the egress ended"
    );
}
