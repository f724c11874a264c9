//! psrpc interop with a real livekit-server and real Redis: who gets StartEgress, what comes
//! back, what is ignored, and surviving a Redis restart.
//!
//! Requests go through livekit-server's public API (`lk`) where the server can send them; the
//! cases it never produces (expired and malformed requests) are crafted with the host's own
//! psrpc code, exactly as a Go peer would put them on the bus.

use std::collections::HashMap;
use std::time::Duration;

use egress_e2e::{Egress, Stack, egress_config, free_port, http_get};
use egress_host::rpc::server::now_unix_nanos;
use egress_host::rpc::{Bus, CallOptions, Code, RedisTarget, RpcClient, channel, envelope, ids};
use egress_host::service::ioinfo::{IoInfoClient, IoTimeouts};
use egress_host::service::methods::{LIST_ACTIVE_EGRESS, START_EGRESS};
use egress_proto::livekit::{EgressInfo, EgressStatus};
use egress_proto::psrpc::Request;
use egress_proto::rpc::{ListActiveEgressRequest, ListActiveEgressResponse};

/// A request this build has no pipeline for (track egress and, since, track composite and
/// participant egress have one): an audio-only room composite without a layout (Go's SDK source).
const UNSUPPORTED_TYPE: &str = "room-composite";
const UNSUPPORTED_REQUEST: &str =
    r#"{"room_name":"psrpc-room","audio_only":true,"file_outputs":[{"filepath":"x.ogg"}]}"#;

async fn bus(stack: &Stack) -> Bus {
    Bus::connect(&RedisTarget {
        address: stack.redis.addr(),
        ..Default::default()
    })
    .await
    .expect("connect to the test Redis")
}

/// A second worker on the same Redis; returns it with its metrics URL.
async fn second_worker(stack: &Stack) -> (Egress, String) {
    let (health, metrics) = (free_port(), free_port());
    let mut egress =
        Egress::start(egress_config(&stack.redis, &stack.livekit, health, metrics)).await;
    egress.wait_healthy(health).await;
    (egress, format!("http://127.0.0.1:{metrics}/metrics"))
}

/// `livekit_egress_available` as a worker reports it.
async fn available(metrics_url: &str) -> Option<f64> {
    let (_, text) = http_get(metrics_url).await.ok()?;
    text.lines()
        .find(|l| l.starts_with("livekit_egress_available{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn claimed_ids(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("StartEgress claimed"))
        .filter_map(|l| l.split("egress_id=").nth(1))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn start_egress_reaches_exactly_one_of_two_workers_and_is_refused_honestly() {
    let stack = Stack::start().await;
    let (second, second_metrics) = second_worker(&stack).await;
    let lk = stack.lk();
    lk.run_ok(&["room", "create", "psrpc-room"]).await;

    const ATTEMPTS: usize = 6;
    for _ in 0..ATTEMPTS {
        let err = lk
            .egress_start(UNSUPPORTED_TYPE, UNSUPPORTED_REQUEST)
            .await
            .expect_err("an audio-only room composite without a layout has no pipeline yet");
        // The Go egress's ErrNotSupported text, as an invalid_argument through Twirp.
        let out = format!("{}{}", err.stdout, err.stderr);
        assert!(
            out.contains("audio-only room_composite egress without a layout is not yet supported"),
            "unexpected refusal: {out}"
        );
        assert!(out.contains("invalid_argument"), "wrong code: {out}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut per_egress: HashMap<String, usize> = HashMap::new();
    for id in claimed_ids(&stack.egress.log())
        .into_iter()
        .chain(claimed_ids(&second.log()))
    {
        *per_egress.entry(id).or_default() += 1;
    }
    assert_eq!(
        per_egress.len(),
        ATTEMPTS,
        "every request claimed once: {per_egress:?}"
    );
    assert!(
        per_egress.values().all(|&n| n == 1),
        "a request ran on both workers: {per_egress:?}"
    );
    // Nothing was started: both workers are still idle.
    for url in [stack.metrics_url(), second_metrics] {
        assert_eq!(
            available(&url).await,
            Some(1.0),
            "worker at {url} is not idle"
        );
    }
    assert!(
        lk.egress_list().await.is_empty(),
        "a refused request must not be stored at the server"
    );
}

#[tokio::test]
async fn list_active_egress_is_answered_by_every_worker() {
    let stack = Stack::start().await;
    let (_second, _) = second_worker(&stack).await;
    let client = RpcClient::new(bus(&stack).await, "EgressInternal").await;
    let answers = client
        .call_multi::<_, ListActiveEgressResponse>(
            LIST_ACTIVE_EGRESS,
            &[""],
            &ListActiveEgressRequest {},
            Duration::from_secs(1),
        )
        .await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().is_ok_and(|r| r.egress_ids.is_empty())),
        "{answers:?}"
    );
}

/// Publishes a raw request on StartEgress and returns whatever arrives on the client's CLAIM
/// and RES channels within `wait`.
async fn raw_start_egress(
    stack: &Stack,
    raw_request: Vec<u8>,
    expiry: i64,
    wait: Duration,
) -> Vec<envelope::Envelope> {
    let bus = bus(stack).await;
    let client_id = ids::new_client_id();
    let mut claims = bus
        .subscribe(&channel::claim_request("EgressInternal", &client_id))
        .await;
    let mut responses = bus
        .subscribe(&channel::response("EgressInternal", &client_id))
        .await;
    let request = Request {
        request_id: ids::new_request_id(),
        client_id,
        sent_at: now_unix_nanos(),
        expiry,
        raw_request,
        ..Default::default()
    };
    let ch = channel::request(START_EGRESS.service, START_EGRESS.name, &[""]);
    bus.publish(&ch, envelope::encode_request(&request))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            Some(p) = claims.recv() => seen.push(envelope::Envelope::decode(&p)),
            Some(p) = responses.recv() => seen.push(envelope::Envelope::decode(&p)),
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    seen
}

#[tokio::test]
async fn an_expired_request_is_ignored() {
    let stack = Stack::start().await;
    let seen = raw_start_egress(
        &stack,
        Vec::new(),
        now_unix_nanos() - 1_000_000,
        Duration::from_millis(1500),
    )
    .await;
    assert!(
        seen.is_empty(),
        "an expired request must get no claim and no response: {seen:?}"
    );
    let (_, text) = http_get(&stack.metrics_url()).await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("livekit_psrpc_requests_expired_total{") && l.ends_with(" 1")),
        "expired counter:\n{text}"
    );
}

/// The value of the first `name{…}` sample whose labels contain all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The psrpc series dashboards query since protocol's #1687/#1699 (egress `main`): requests
/// received and expired, the claim wait by outcome, errors by `error_code`.
#[tokio::test]
async fn psrpc_metrics_count_received_expired_claimed_and_failed_requests() {
    let stack = Stack::start().await;
    let lk = stack.lk();
    lk.run_ok(&["room", "create", "psrpc-room"]).await;
    // 1. A StartEgress through livekit-server: claimed (granted), then refused by the handler.
    let err = lk
        .egress_start(UNSUPPORTED_TYPE, UNSUPPORTED_REQUEST)
        .await
        .expect_err("an audio-only room composite without a layout has no pipeline yet");
    assert!(
        format!("{}{}", err.stdout, err.stderr).contains("invalid_argument"),
        "{err:?}"
    );
    // 2. An expired request: received, dropped unanswered.
    let seen = raw_start_egress(
        &stack,
        Vec::new(),
        now_unix_nanos() - 1_000_000,
        Duration::from_millis(500),
    )
    .await;
    assert!(seen.is_empty(), "{seen:?}");
    // 3. A request whose caller never grants the bid: the claim times out at its expiry.
    let expiry = now_unix_nanos() + 1_200_000_000;
    let seen = raw_start_egress(&stack, Vec::new(), expiry, Duration::from_millis(2000)).await;
    assert!(
        matches!(seen[..], [envelope::Envelope::ClaimRequest(_)]),
        "one bid, no response: {seen:?}"
    );

    let (_, text) = http_get(&stack.metrics_url()).await.unwrap();
    let start = [
        r#"service="EgressInternal""#,
        r#"method="StartEgress""#,
        r#"node_type="EGRESS""#,
        "node_id=",
    ];
    let with =
        |extra: &[&'static str]| -> Vec<&str> { start.iter().chain(extra).copied().collect() };
    assert_eq!(
        sample(&text, "livekit_psrpc_requests_received_total", &start),
        Some(3.0),
        "received:\n{text}"
    );
    assert_eq!(
        sample(&text, "livekit_psrpc_requests_expired_total", &start),
        Some(1.0),
        "expired:\n{text}"
    );
    let granted = with(&[r#"outcome="granted""#]);
    let timed_out = with(&[r#"outcome="timed_out""#]);
    assert_eq!(
        sample(&text, "livekit_psrpc_claim_wait_time_ms_count", &granted),
        Some(1.0),
        "granted claim:\n{text}"
    );
    assert_eq!(
        sample(&text, "livekit_psrpc_claim_wait_time_ms_count", &timed_out),
        Some(1.0),
        "timed-out claim:\n{text}"
    );
    // The timed-out bid waited for the rest of the request's 1.2 s: Go's 1000..3000 ms bucket.
    let waited = sample(&text, "livekit_psrpc_claim_wait_time_ms_sum", &timed_out).unwrap_or(0.0);
    assert!((900.0..=1200.0).contains(&waited), "waited {waited} ms");
    assert_eq!(
        sample(
            &text,
            "livekit_psrpc_claim_wait_time_ms_bucket",
            &with(&[r#"outcome="timed_out""#, r#"le="1000""#])
        ),
        Some(if waited <= 1000.0 { 1.0 } else { 0.0 }),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "livekit_psrpc_error_total",
            &with(&[
                r#"role="server""#,
                r#"kind="rpc""#,
                r#"error_code="invalid_argument""#
            ])
        ),
        Some(1.0),
        "errors by code:\n{text}"
    );
}

#[tokio::test]
async fn a_malformed_payload_gets_an_error_and_the_worker_stays_up() {
    let mut stack = Stack::start().await;
    // Field 1 (egress_id) declared as a 100-byte string but truncated: not decodable.
    let garbage = vec![0x0a, 100, b'E', b'G'];
    let expiry = now_unix_nanos() + 5_000_000_000;
    let seen = raw_start_egress(&stack, garbage, expiry, Duration::from_millis(1500)).await;
    let responses: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            envelope::Envelope::Response(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(responses.len(), 1, "{seen:?}");
    assert_eq!(responses[0].code, Code::MalformedRequest.as_str());
    assert!(!responses[0].error.is_empty());
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, envelope::Envelope::ClaimRequest(_))),
        "a malformed request is answered without a claim"
    );
    stack.egress.assert_running();
    let (code, _) = http_get(&stack.health_url()).await.unwrap();
    assert_eq!(code, 200);
    // And it still serves real requests.
    stack.lk().run_ok(&["room", "create", "psrpc-room"]).await;
    let err = stack
        .lk()
        .egress_start(UNSUPPORTED_TYPE, UNSUPPORTED_REQUEST)
        .await
        .expect_err("refused");
    assert!(format!("{}{}", err.stdout, err.stderr).contains("not yet supported"));
}

#[tokio::test]
async fn the_worker_serves_again_after_redis_is_down_for_five_seconds() {
    let mut stack = Stack::start().await;
    stack.redis.stop().await;
    let mut saw_unhealthy = false;
    for _ in 0..30 {
        if let Ok((503, _)) = http_get(&stack.health_url()).await {
            saw_unhealthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_unhealthy, "health must say 503 while Redis is down");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stack.redis.restart().await;
    stack.egress.wait_healthy(stack.health_port).await;
    stack.egress.assert_running();

    // Resubscribed: a request through livekit-server reaches it again. livekit-server has its
    // own Redis reconnect to do, so allow a few tries.
    let lk = stack.lk();
    let mut last = String::new();
    for _ in 0..20 {
        let _ = lk.try_run(&["room", "create", "psrpc-room"]).await;
        match lk.egress_start(UNSUPPORTED_TYPE, UNSUPPORTED_REQUEST).await {
            Err(e) if format!("{}{}", e.stdout, e.stderr).contains("not yet supported") => return,
            Err(e) => last = format!("{}{}", e.stdout, e.stderr),
            Ok(s) => panic!("unexpectedly started {s:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "worker did not serve after the Redis restart; last answer: {last}\n{}",
        stack.egress.log_tail()
    );
}

#[tokio::test]
async fn status_sent_through_ioinfo_is_what_livekit_server_reports() {
    let stack = Stack::start().await;
    let timeouts = IoTimeouts {
        create: Duration::from_secs(5),
        update: Duration::from_secs(5),
        selection: Duration::ZERO,
    };
    let io = IoInfoClient::new(bus(&stack).await, timeouts).await;
    let egress_id = ids::new_id("EG_");
    let now = now_unix_nanos();
    let mut info = EgressInfo {
        egress_id: egress_id.clone(),
        room_name: "ioinfo-room".into(),
        status: EgressStatus::EgressStarting as i32,
        started_at: now,
        updated_at: now,
        ..Default::default()
    };
    io.create_egress(&info, None)
        .await
        .expect("CreateEgress through livekit-server");
    let listed = stack.lk().egress_list_with(&["--id", &egress_id]).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    // Go marshals the zero enum (STARTING) by omitting it.
    assert_eq!(
        listed[0]["status"].as_i64().unwrap_or(0),
        0,
        "STARTING: {:?}",
        listed[0]
    );

    info.status = EgressStatus::EgressActive as i32;
    info.updated_at = now_unix_nanos();
    io.update_egress(&info, Duration::from_secs(10))
        .await
        .expect("UpdateEgress");
    let listed = stack.lk().egress_list_with(&["--id", &egress_id]).await;
    assert_eq!(
        listed[0]["status"].as_i64(),
        Some(EgressStatus::EgressActive as i64),
        "{:?}",
        listed[0]
    );

    info.status = EgressStatus::EgressFailed as i32;
    info.error = "handler process ended unexpectedly".into();
    info.ended_at = now_unix_nanos();
    info.updated_at = info.ended_at;
    io.update_egress(&info, Duration::from_secs(10))
        .await
        .expect("UpdateEgress");
    let listed = stack.lk().egress_list_with(&["--id", &egress_id]).await;
    assert_eq!(
        listed[0]["status"].as_i64(),
        Some(EgressStatus::EgressFailed as i64),
        "{:?}",
        listed[0]
    );
    assert_eq!(listed[0]["error"], "handler process ended unexpectedly");
}

#[tokio::test]
async fn a_psrpc_call_with_no_server_fails_fast_with_no_response() {
    let stack = Stack::start().await;
    let client = RpcClient::new(bus(&stack).await, "EgressHandler").await;
    let err = client
        .call::<_, EgressInfo>(
            egress_host::service::methods::STOP_EGRESS,
            &["EG_nobodyhasthis"],
            &egress_proto::livekit::StopEgressRequest {
                egress_id: "EG_nobodyhasthis".into(),
            },
            CallOptions::with_timeout(Duration::from_secs(3)),
        )
        .await
        .expect_err("no worker runs that egress");
    assert_eq!(err.code, Code::Unavailable);
    assert_eq!(err.message, "no response from servers");
}
