//! livekit-server's Twirp API for the benchmark: tracks of a room, StartTrackEgress,
//! StopEgress, ListEgress, and the EgressInfo fields it reads.
//!
//! Twirp answers in protojson with proto field names: int64 fields are strings and enums are
//! names (`EGRESS_ACTIVE`), unlike `lk egress list --json`; the readers accept both.

use std::time::{Duration, Instant};

use egress_e2e::recording::{RecordingStack, status, twirp, unix_nanos};
use serde_json::{Value, json};

/// An int64 EgressInfo field (a JSON string in protojson, a number elsewhere); 0 when absent.
pub fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// The status of an EgressInfo as the numbers of [`status`].
pub fn status_of(info: &Value) -> i64 {
    match &info["status"] {
        Value::Number(n) => n.as_i64().unwrap_or(status::STARTING),
        Value::String(s) => match s.as_str() {
            "EGRESS_ACTIVE" => status::ACTIVE,
            "EGRESS_ENDING" => status::ENDING,
            "EGRESS_COMPLETE" => status::COMPLETE,
            "EGRESS_FAILED" => status::FAILED,
            "EGRESS_ABORTED" => status::ABORTED,
            "EGRESS_LIMIT_REACHED" => status::LIMIT_REACHED,
            _ => status::STARTING,
        },
        _ => status::STARTING,
    }
}

pub fn is_terminal(info: &Value) -> bool {
    status_of(info) >= status::COMPLETE
}

/// The SID of `identity`'s first track of `kind` ("AUDIO"/"VIDEO"); None after 30 s.
pub async fn track_sid(
    stack: &RecordingStack,
    room: &str,
    identity: &str,
    kind: &str,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = twirp(
            &stack.livekit,
            "RoomService/ListParticipants",
            json!({ "roomAdmin": true, "room": room }),
            &json!({ "room": room }),
        )
        .await;
        let sid = (code == 200)
            .then(|| body["participants"].as_array().cloned())
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["identity"] == identity)
            .flat_map(|p| p["tracks"].as_array().cloned().unwrap_or_default())
            // AUDIO is the enum's zero value, which the encoder may leave out.
            .find(|t| t["type"] == kind || (kind == "AUDIO" && t["type"].is_null()))
            .and_then(|t| t["sid"].as_str().map(str::to_owned));
        if sid.is_some() || Instant::now() >= deadline {
            return sid;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One StartTrackEgress call: the id (or the error), and when the call was sent and answered.
pub struct Started {
    pub result: Result<String, String>,
    pub sent_ns: i64,
    pub returned_ns: i64,
}

pub async fn start_track_egress(
    stack: &RecordingStack,
    room: &str,
    track_id: &str,
    filepath: &str,
) -> Started {
    let request =
        json!({ "room_name": room, "track_id": track_id, "file": { "filepath": filepath } });
    let sent_ns = unix_nanos();
    let (code, body) = twirp(
        &stack.livekit,
        "Egress/StartTrackEgress",
        json!({ "roomRecord": true }),
        &request,
    )
    .await;
    let returned_ns = unix_nanos();
    let id = body["egress_id"].as_str().or(body["egressId"].as_str());
    let result = match id {
        Some(id) if code == 200 => Ok(id.to_owned()),
        _ => Err(format!("HTTP {code}: {body}")),
    };
    Started {
        result,
        sent_ns,
        returned_ns,
    }
}

/// StopEgress; the error text when livekit-server refused it.
pub async fn stop_egress(stack: &RecordingStack, egress_id: &str) -> Result<(), String> {
    let (code, body) = twirp(
        &stack.livekit,
        "Egress/StopEgress",
        json!({ "roomRecord": true }),
        &json!({ "egress_id": egress_id }),
    )
    .await;
    if code == 200 {
        Ok(())
    } else {
        Err(format!("StopEgress {egress_id}: HTTP {code}: {body}"))
    }
}

/// Every EgressInfo of `room` livekit-server knows (one ListEgress call).
pub async fn list_egress(stack: &RecordingStack, room: &str) -> Vec<Value> {
    let (_, body) = twirp(
        &stack.livekit,
        "Egress/ListEgress",
        json!({ "roomRecord": true }),
        &json!({ "room_name": room }),
    )
    .await;
    body["items"].as_array().cloned().unwrap_or_default()
}

/// Polls ListEgress until each of `ids` satisfies `done` (or `timeout` passes); returns the
/// latest info of each id seen.
pub async fn wait_until(
    stack: &RecordingStack,
    room: &str,
    ids: &[String],
    done: impl Fn(&Value) -> bool,
    timeout: Duration,
) -> Vec<(String, Value)> {
    let deadline = Instant::now() + timeout;
    loop {
        let infos = list_egress(stack, room).await;
        let mine: Vec<(String, Value)> = ids
            .iter()
            .filter_map(|id| {
                infos
                    .iter()
                    .find(|i| i["egress_id"] == id.as_str())
                    .map(|i| (id.clone(), i.clone()))
            })
            .collect();
        if (mine.len() == ids.len() && mine.iter().all(|(_, i)| done(i)))
            || Instant::now() >= deadline
        {
            return mine;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
