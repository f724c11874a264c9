//! StartEgress round trip and idle footprint. Prints figures; asserts nothing.
//!
//! `cargo run -p egress-e2e --release --bin bench-rpc` (needs redis-server, livekit-server and
//! the egress binary, as the tests do). Two round trips are measured, 200 requests each:
//! * through livekit-server's Twirp API (what a user sees): POST StartTrackEgress → livekit-server
//!   → psrpc → the worker's bid and answer → back. livekit-server waits up to its 500 ms
//!   short-circuit window for better bids unless one bids 1.0, so this figure is dominated by
//!   that window, exactly as with the Go egress;
//! * directly on the bus, accepting the first bid: the worker's own bid → claim → respond path.

use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use egress_e2e::{API_KEY, API_SECRET, Stack};
use egress_host::rpc::{Bus, CallOptions, RedisTarget, Routing, RpcClient};
use egress_host::service::methods::START_EGRESS;
use egress_proto::livekit;
use egress_proto::rpc::{StartEgressRequest, start_egress_request};

const N: usize = 200;

fn jwt() -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = b64(
        serde_json::json!({"iss": API_KEY, "sub": "bench", "nbf": now - 10, "exp": now + 3600,
            "video": {"roomRecord": true, "roomCreate": true}})
        .to_string()
        .as_bytes(),
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(API_SECRET.as_bytes()).expect("hmac key");
    mac.update(format!("{header}.{claims}").as_bytes());
    format!("{header}.{claims}.{}", b64(&mac.finalize().into_bytes()))
}

async fn twirp(port: u16, method: &str, body: &str, token: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect livekit-server");
    let req = format!(
        "POST /twirp/livekit.{method} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{name:<44} n={:<4} median={:>8.2?} p99={:>8.2?} min={:>8.2?} max={:>8.2?}",
        samples.len(),
        pct(0.5),
        pct(0.99),
        samples[0],
        samples[samples.len() - 1]
    );
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[tokio::main]
async fn main() {
    let stack = Stack::start().await;
    let token = jwt();
    let port = stack.livekit.port();
    let (code, text) = twirp(
        port,
        "RoomService/CreateRoom",
        r#"{"name":"bench"}"#,
        &token,
    )
    .await;
    assert_eq!(code, 200, "CreateRoom: {text}");
    let body = r#"{"room_name":"bench","track_id":"TR_bench","file":{"filepath":"x.ogg"}}"#;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(stack.egress.pid());

    let mut through_server = Vec::with_capacity(N);
    let mut unexpected = Vec::new();
    for _ in 0..N {
        let t = Instant::now();
        let (code, text) = twirp(port, "Egress/StartTrackEgress", body, &token).await;
        if text.contains("not yet supported") {
            through_server.push(t.elapsed());
        } else {
            unexpected.push(format!(
                "{code}: {}",
                text.lines().last().unwrap_or_default()
            ));
        }
    }

    let bus = Bus::connect(&RedisTarget {
        address: stack.redis.addr(),
        ..Default::default()
    })
    .await
    .expect("bus");
    let client = RpcClient::new(bus, "EgressInternal").await;
    let first_bid = egress_host::rpc::Method {
        routing: Routing::Queue,
        ..START_EGRESS
    };
    let mut direct = Vec::with_capacity(N);
    for i in 0..N {
        let req = StartEgressRequest {
            egress_id: format!("EG_bench{i:06}"),
            request: Some(start_egress_request::Request::Track(
                livekit::TrackEgressRequest {
                    room_name: "bench".into(),
                    track_id: "TR_bench".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let t = Instant::now();
        let r = client
            .call::<_, livekit::EgressInfo>(
                first_bid,
                &[""],
                &req,
                CallOptions::with_timeout(Duration::from_secs(5)),
            )
            .await;
        direct.push(t.elapsed());
        assert!(r.is_err_and(|e| e.message.contains("not yet supported")));
    }
    let after = rss_kib(stack.egress.pid());

    println!("StartEgress round trip (worker answers with its refusal; no pipeline runs)");
    summary("via livekit-server Twirp API", through_server);
    if !unexpected.is_empty() {
        println!(
            "  {} unexpected answers, first: {}",
            unexpected.len(),
            unexpected[0]
        );
    }
    summary("direct on the bus, first bid accepted", direct);
    println!(
        "egress service RSS: idle {} KiB, after {} requests {} KiB",
        idle.map_or("?".into(), |v| v.to_string()),
        2 * N,
        after.map_or("?".into(), |v| v.to_string())
    );
}
