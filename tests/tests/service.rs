//! The egress service against a real Redis and a real livekit-server: registration, health,
//! metrics, drain on signals, and a clear error plus recovery when Redis is unreachable.

use std::time::Duration;

use egress_e2e::{
    Egress, LiveKitServer, Redis, SIGINT, SIGTERM, Stack, egress_config, free_port, http_get,
};

async fn get(url: &str) -> (u16, String) {
    http_get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The value of an unlabelled-by-us gauge line such as `livekit_egress_available{…} 1`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn registers_with_livekit_and_serves_health_and_metrics() {
    let stack = Stack::start().await;

    let (code, body) = get(&stack.health_url()).await;
    assert_eq!(code, 200, "health: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("health body is JSON");
    assert_eq!(json["status"], "ok");
    assert!(
        json["CpuLoad"].as_f64().is_some_and(|c| c > 0.0),
        "CpuLoad in {body}"
    );

    let (code, text) = get(&stack.metrics_url()).await;
    assert_eq!(code, 200);
    assert_eq!(
        metric(&text, "livekit_egress_available"),
        Some(1.0),
        "idle node is available:\n{text}"
    );
    assert_eq!(metric(&text, "livekit_egress_is_disabled"), Some(0.0));
    assert_eq!(metric(&text, "livekit_egress_is_terminating"), Some(0.0));
    assert!(
        text.contains("livekit_egress_requests{"),
        "requests gauge missing"
    );

    // Registered with the server's bus exactly as the Go egress: StartEgress (affinity, so
    // REQ + RCLAIM), ListActiveEgress (multi, REQ only) and the IOInfo client's reply channels.
    let channels = stack.redis.pubsub_channels("*").await;
    for expected in [
        "EgressInternal|StartEgress|REQ",
        "EgressInternal|StartEgress|RCLAIM",
        "EgressInternal|ListActiveEgress|REQ",
    ] {
        assert!(
            channels.iter().any(|c| c == expected),
            "{expected} not subscribed; channels: {channels:?}"
        );
    }
    assert!(
        channels
            .iter()
            .any(|c| c.starts_with("IOInfo|CLI_") && c.ends_with("|RES")),
        "IOInfo client not subscribed: {channels:?}"
    );
    // livekit-server itself is on the same bus (its IOInfo server).
    assert!(
        channels.iter().any(|c| c == "IOInfo|CreateEgress|REQ"),
        "livekit-server not on this Redis: {channels:?}"
    );
}

async fn drains_on(signal: i32) {
    let mut stack = Stack::start().await;
    stack.egress.signal(signal);
    let status = stack.egress.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "exit after signal {signal}: {status:?}\n{}",
        stack.egress.log_tail()
    );
    assert!(
        stack.egress.log().contains("drained"),
        "no drain in log:\n{}",
        stack.egress.log_tail()
    );
    // livekit-server's own EgressInternal client channels (`…|CLI_…|…`) stay; ours must be gone.
    let ours: Vec<String> = stack
        .redis
        .pubsub_channels("EgressInternal*")
        .await
        .into_iter()
        .filter(|c| !c.contains("|CLI_"))
        .collect();
    assert!(ours.is_empty(), "still subscribed after exit: {ours:?}");
}

#[tokio::test]
async fn drains_and_exits_zero_on_sigterm() {
    drains_on(SIGTERM).await;
}

#[tokio::test]
async fn drains_and_exits_zero_on_sigint() {
    drains_on(SIGINT).await;
}

#[tokio::test]
async fn unreachable_redis_is_reported_and_recovered_from() {
    // Start the service first, against a Redis that is not running yet.
    let mut redis = Redis::start().await;
    let livekit = LiveKitServer::start(&redis).await;
    let (health, metrics) = (free_port(), free_port());
    let config = egress_config(&redis, &livekit, health, metrics);
    redis.stop().await;
    let mut egress = Egress::start(config).await;

    let url = format!("http://127.0.0.1:{health}/");
    let mut unhealthy = None;
    for _ in 0..50 {
        if let Ok((code, body)) = http_get(&url).await {
            unhealthy = Some((code, body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = unhealthy.expect("health endpoint never answered");
    assert_eq!(code, 503, "health while Redis is down: {body}");
    assert!(body.contains("redis disconnected"), "{body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = egress.log();
    assert!(
        log.contains("cannot connect to redis") && log.contains(&redis.addr()),
        "the log must say Redis is unreachable and where:\n{log}"
    );
    egress.assert_running();

    redis.restart().await;
    egress.wait_healthy(health).await;
}
