//! The harness itself works: Redis starts, stops and restarts on its port; livekit-server
//! starts on it and answers; `lk` talks to it; `egress_config` produces a config the egress
//! binary accepts.

use std::time::Duration;

use egress_e2e::{LiveKitServer, Lk, Redis, Resp, egress_bin, egress_config, free_port, http_get};

#[tokio::test]
async fn redis_stop_and_restart_on_the_same_port() {
    let mut redis = Redis::start().await;
    let port = redis.port();
    assert_eq!(redis.addr(), format!("127.0.0.1:{port}"));
    assert_eq!(
        redis.cmd(&["SET", "k", "v"]).await.unwrap(),
        Resp::Simple("OK".into())
    );
    assert_eq!(
        redis.cmd(&["GET", "k"]).await.unwrap(),
        Resp::Bulk(Some(b"v".to_vec()))
    );

    redis.stop().await;
    assert!(!redis.is_running());
    assert!(
        redis.cmd(&["PING"]).await.is_err(),
        "redis still answers after stop()"
    );

    redis.restart().await;
    assert_eq!(redis.port(), port);
    assert!(redis.is_running());
    assert_eq!(
        redis.cmd(&["PING"]).await.unwrap(),
        Resp::Simple("PONG".into())
    );
    // No persistence: a restart comes back empty.
    assert_eq!(redis.cmd(&["GET", "k"]).await.unwrap(), Resp::Bulk(None));

    redis.kill();
    assert!(!redis.is_running());
    redis.restart().await;
    assert_eq!(
        redis.cmd(&["PING"]).await.unwrap(),
        Resp::Simple("PONG".into())
    );
    assert!(
        redis.log().contains("Ready to accept connections"),
        "log:\n{}",
        redis.log()
    );
}

#[tokio::test]
async fn livekit_server_answers_and_lk_works() {
    let redis = Redis::start().await;
    let livekit = LiveKitServer::start(&redis).await;

    let (status, body) = http_get(&format!("{}/", livekit.http_url())).await.unwrap();
    assert_eq!((status, body.trim()), (200, "OK"));
    assert!(livekit.ws_url().starts_with("ws://127.0.0.1:"));

    // livekit-server uses this Redis as its psrpc bus.
    let channels = redis.pubsub_channels("IOInfo|*").await;
    assert!(
        channels.iter().any(|c| c == "IOInfo|CreateEgress|REQ"),
        "livekit-server did not subscribe to IOInfo on redis; channels: {channels:?}\n{}",
        livekit.log()
    );

    let lk = Lk::new(&livekit);
    assert_eq!(lk.room_list().await, Vec::<serde_json::Value>::new());
    let out = lk.run_ok(&["room", "list"]).await;
    assert!(out.contains("RoomID"), "lk room list printed:\n{out}");
    assert_eq!(lk.egress_list().await, Vec::<serde_json::Value>::new());

    // No egress is registered: a start is refused by the server, and lk reports it.
    let err = lk
        .egress_start_room_composite(r#"{"room_name":"r","file_outputs":[{"filepath":"x.mp4"}]}"#)
        .await
        .expect_err("egress start succeeded with no egress running");
    assert!(!err.stderr.is_empty() || !err.stdout.is_empty(), "{err}");
}

#[tokio::test]
async fn egress_config_is_accepted_by_egress_validate() {
    let redis = Redis::start().await;
    let livekit = LiveKitServer::start(&redis).await;
    let yaml = egress_config(&redis, &livekit, free_port(), free_port());

    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(egress_bin())
            .arg("validate")
            .env("EGRESS_CONFIG_BODY", &yaml)
            .env_remove("EGRESS_CONFIG_FILE")
            .output(),
    )
    .await
    .expect("egress validate did not exit within 30 s")
    .expect("cannot run egress validate");
    assert!(
        output.status.success(),
        "egress validate rejected the harness config ({}):\n{yaml}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

#[test]
fn free_ports_are_distinct() {
    let mut ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 50);
}
