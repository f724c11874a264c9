//! The `internal.Msg` envelope around every Redis payload (spec §1.4).
//!
//! Encoding wraps one psrpc message with its exact Go type URL. Decoding dispatches on the type
//! URL and never fails loudly: anything unexpected becomes [`Envelope::Unknown`] and is ignored
//! by receivers, because a peer may be newer than us (and Go peers do the same).

use base64::Engine;
use prost::Message;
use sha2::{Digest, Sha256};

use egress_proto::psrpc::{ClaimRequest, ClaimResponse, Msg, Request, Response, type_url};

/// A decoded payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    Request(Request),
    Response(Response),
    ClaimRequest(ClaimRequest),
    ClaimResponse(ClaimResponse),
    /// A type we do not handle (streams, pub/sub messages) or a payload that did not decode.
    Unknown,
}

impl Envelope {
    pub fn decode(payload: &[u8]) -> Envelope {
        let Ok(msg) = Msg::decode(payload) else {
            return Envelope::Unknown;
        };
        let value = msg.value.as_slice();
        let decoded = match msg.type_url.as_str() {
            type_url::REQUEST => Request::decode(value).map(Envelope::Request),
            type_url::RESPONSE => Response::decode(value).map(Envelope::Response),
            type_url::CLAIM_REQUEST => ClaimRequest::decode(value).map(Envelope::ClaimRequest),
            type_url::CLAIM_RESPONSE => ClaimResponse::decode(value).map(Envelope::ClaimResponse),
            _ => return Envelope::Unknown,
        };
        decoded.unwrap_or(Envelope::Unknown)
    }
}

fn wrap(type_url: &str, inner: &impl Message) -> Vec<u8> {
    Msg {
        type_url: type_url.to_owned(),
        value: inner.encode_to_vec(),
        channel: String::new(),
    }
    .encode_to_vec()
}

pub fn encode_request(m: &Request) -> Vec<u8> {
    wrap(type_url::REQUEST, m)
}

pub fn encode_response(m: &Response) -> Vec<u8> {
    wrap(type_url::RESPONSE, m)
}

pub fn encode_claim_request(m: &ClaimRequest) -> Vec<u8> {
    wrap(type_url::CLAIM_REQUEST, m)
}

pub fn encode_claim_response(m: &ClaimResponse) -> Vec<u8> {
    wrap(type_url::CLAIM_RESPONSE, m)
}

/// The `SET … NX` key for queue subscriptions: standard base64 (padded) of SHA-256(payload).
pub fn lock_key(payload: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_proto::livekit;
    use egress_proto::rpc::{StartEgressRequest, start_egress_request};

    // Golden vectors from psrpc-redis.md §5.4 (hex, wrapped lines joined).
    const A: &str = "0a0f45475f7853346142396344326546361a0f524d5f5177384572355479325569372a250a0964656d6f2d726f6f6d12046772696440025a100801120c6f75742f64656d6f2e6d7034";
    const A2: &str = "0a0f45475f7853346142396344326546361a0f524d5f5177384572355479325569378201290a0964656d6f2d726f6f6d12060a046772696428023a120a100801120c6f75742f64656d6f2e6d7034";
    const B: &str = "0a24747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e526571756573741283010a105245515f38664a64324c7150307356621210434c495f6b335a7039517752326d5478188080e8ef9eca9cc3182080c89790c4ca9cc31842490a0f45475f7853346142396344326546361a0f524d5f5177384572355479325569372a250a0964656d6f2d726f6f6d12046772696440025a100801120c6f75742f64656d6f2e6d7034";
    const C: &str = "0a29747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e436c61696d5265717565737412290a105245515f38664a64324c71503073566212105352565f5965344e633748753147614b1d0000003f";
    const D: &str = "0a2a747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e436c61696d526573706f6e736512240a105245515f38664a64324c71503073566212105352565f5965344e633748753147614b";
    const E: &str = "0a0f45475f785334614239634432654636120f524d5f51773845723554793255693722250a0964656d6f2d726f6f6d12046772696440025a100801120c6f75742f64656d6f2e6d70345080f7ffe2a0ca9cc3186a0964656d6f2d726f6f6d900180f7ffe2a0ca9cc318";
    const F: &str = "0a24747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e5265717565737412a3010a105245515f7531436d344e7837526b32511210434c495f72375473334471365770304c1880a4e2e7a0ca9cc3182080c89790c4ca9cc31842690a0f45475f785334614239634432654636120f524d5f51773845723554793255693722250a0964656d6f2d726f6f6d12046772696440025a100801120c6f75742f64656d6f2e6d70345080f7ffe2a0ca9cc3186a0964656d6f2d726f6f6d900180f7ffe2a0ca9cc318";
    const G: &str = "0a29747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e436c61696d5265717565737412290a105245515f7531436d344e7837526b325112105352565f5061364769305865384277311d0000803f";
    const H: &str = "0a2a747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e436c61696d526573706f6e736512240a105245515f7531436d344e7837526b325112105352565f506136476930586538427731";
    const I: &str = "0a25747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e526573706f6e7365122e0a105245515f7531436d344e7837526b325112105352565f50613647693058653842773118c0e7f5eea0ca9cc318";
    const J: &str = "0a25747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e526573706f6e73651299010a105245515f38664a64324c71503073566212105352565f5965344e633748753147614b1880d2fb9ca2ca9cc3183a690a0f45475f785334614239634432654636120f524d5f51773845723554793255693722250a0964656d6f2d726f6f6d12046772696440025a100801120c6f75742f64656d6f2e6d70345080f7ffe2a0ca9cc3186a0964656d6f2d726f6f6d900180f7ffe2a0ca9cc318";
    const K: &str = "0a25747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e526573706f6e7365124b0a105245515f38664a64324c71503073566212105352565f5965344e633748753147614b1880a4e2e7a0ca9cc3182a0e6e6f7420656e6f75676820435055320b756e617661696c61626c65";
    const L: &str = "0a24747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e52657175657374124b0a105245515f5a7439576133457936486f351210434c495f486e355662384d6331587a341880b085b2fecb9cc3182080ecc6c889cc9cc31842110a0f45475f785334614239634432654636";
    const M: &str = "0a29747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e436c61696d5265717565737412290a105245515f5a7439576133457936486f3512105352565f4a6f32466b395364354c79331d0000803f";
    const N: &str = "0a2a747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e436c61696d526573706f6e736512240a105245515f5a7439576133457936486f3512105352565f4a6f32466b395364354c7933";
    const O: &str = "0a0f45475f785334614239634432654636120f524d5f517738457235547932556937180222250a0964656d6f2d726f6f6d12046772696440025a100801120c6f75742f64656d6f2e6d70345080f7ffe2a0ca9cc3186a0964656d6f2d726f6f6d900180dde7b6fecb9cc318";
    const P: &str = "0a25747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e526573706f6e7365129b010a105245515f5a7439576133457936486f3512105352565f4a6f32466b395364354c793318808acabbfecb9cc3183a6b0a0f45475f785334614239634432654636120f524d5f517738457235547932556937180222250a0964656d6f2d726f6f6d12046772696440025a100801120c6f75742f64656d6f2e6d70345080f7ffe2a0ca9cc3186a0964656d6f2d726f6f6d900180dde7b6fecb9cc318";
    const Q: &str = "0a24747970652e676f6f676c65617069732e636f6d2f696e7465726e616c2e52657175657374123a0a105245515f4c6d334b6e385071315273361210434c495f6b335a7039517752326d5478188080e8ef9eca9cc3182080bca986aaca9cc3182801";

    const T0: i64 = 1_767_225_600_000_000_000;
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn req(id: &str, client: &str, sent_at: i64, expiry: i64, multi: bool, raw: &str) -> Request {
        Request {
            request_id: id.into(),
            client_id: client.into(),
            sent_at,
            expiry,
            multi,
            raw_request: hex(raw),
            ..Default::default()
        }
    }

    fn claim(id: &str, server: &str, affinity: f32) -> ClaimRequest {
        ClaimRequest {
            request_id: id.into(),
            server_id: server.into(),
            affinity,
        }
    }

    fn claim_resp(id: &str, server: &str) -> ClaimResponse {
        ClaimResponse {
            request_id: id.into(),
            server_id: server.into(),
        }
    }

    fn resp(id: &str, server: &str, sent_at: i64, raw: &str) -> Response {
        Response {
            request_id: id.into(),
            server_id: server.into(),
            sent_at,
            raw_response: hex(raw),
            ..Default::default()
        }
    }

    fn cases() -> Vec<(&'static str, Envelope, Vec<u8>)> {
        vec![
            (
                "B",
                Envelope::Request(req(
                    "REQ_8fJd2LqP0sVb",
                    "CLI_k3Zp9QwR2mTx",
                    T0,
                    T0 + 10 * S,
                    false,
                    A,
                )),
                hex(B),
            ),
            (
                "C",
                Envelope::ClaimRequest(claim("REQ_8fJd2LqP0sVb", "SRV_Ye4Nc7Hu1GaK", 0.5)),
                hex(C),
            ),
            (
                "D",
                Envelope::ClaimResponse(claim_resp("REQ_8fJd2LqP0sVb", "SRV_Ye4Nc7Hu1GaK")),
                hex(D),
            ),
            (
                "F",
                Envelope::Request(req(
                    "REQ_u1Cm4Nx7Rk2Q",
                    "CLI_r7Ts3Dq6Wp0L",
                    T0 + 520 * MS,
                    T0 + 10 * S,
                    false,
                    E,
                )),
                hex(F),
            ),
            (
                "G",
                Envelope::ClaimRequest(claim("REQ_u1Cm4Nx7Rk2Q", "SRV_Pa6Gi0Xe8Bw1", 1.0)),
                hex(G),
            ),
            (
                "H",
                Envelope::ClaimResponse(claim_resp("REQ_u1Cm4Nx7Rk2Q", "SRV_Pa6Gi0Xe8Bw1")),
                hex(H),
            ),
            (
                "I",
                Envelope::Response(resp(
                    "REQ_u1Cm4Nx7Rk2Q",
                    "SRV_Pa6Gi0Xe8Bw1",
                    T0 + 535 * MS,
                    "",
                )),
                hex(I),
            ),
            (
                "J",
                Envelope::Response(resp(
                    "REQ_8fJd2LqP0sVb",
                    "SRV_Ye4Nc7Hu1GaK",
                    T0 + 900 * MS,
                    E,
                )),
                hex(J),
            ),
            (
                "K",
                Envelope::Response(Response {
                    request_id: "REQ_8fJd2LqP0sVb".into(),
                    server_id: "SRV_Ye4Nc7Hu1GaK".into(),
                    sent_at: T0 + 520 * MS,
                    error: "not enough CPU".into(),
                    code: "unavailable".into(),
                    ..Default::default()
                }),
                hex(K),
            ),
            (
                "L",
                Envelope::Request(req(
                    "REQ_Zt9Wa3Ey6Ho5",
                    "CLI_Hn5Vb8Mc1Xz4",
                    T0 + 60 * S,
                    T0 + 63 * S,
                    false,
                    "0a0f45475f785334614239634432654636",
                )),
                hex(L),
            ),
            (
                "M",
                Envelope::ClaimRequest(claim("REQ_Zt9Wa3Ey6Ho5", "SRV_Jo2Fk9Sd5Ly3", 1.0)),
                hex(M),
            ),
            (
                "N",
                Envelope::ClaimResponse(claim_resp("REQ_Zt9Wa3Ey6Ho5", "SRV_Jo2Fk9Sd5Ly3")),
                hex(N),
            ),
            (
                "P",
                Envelope::Response(resp(
                    "REQ_Zt9Wa3Ey6Ho5",
                    "SRV_Jo2Fk9Sd5Ly3",
                    T0 + 60 * S + 20 * MS,
                    O,
                )),
                hex(P),
            ),
            (
                "Q",
                Envelope::Request(req(
                    "REQ_Lm3Kn8Pq1Rs6",
                    "CLI_k3Zp9QwR2mTx",
                    T0,
                    T0 + 3 * S,
                    true,
                    "",
                )),
                hex(Q),
            ),
        ]
    }

    fn encode(e: &Envelope) -> Vec<u8> {
        match e {
            Envelope::Request(m) => encode_request(m),
            Envelope::Response(m) => encode_response(m),
            Envelope::ClaimRequest(m) => encode_claim_request(m),
            Envelope::ClaimResponse(m) => encode_claim_response(m),
            Envelope::Unknown => unreachable!(),
        }
    }

    #[test]
    fn golden_envelopes_encode_byte_identical() {
        for (name, envelope, bytes) in cases() {
            assert_eq!(encode(&envelope), bytes, "vector {name}");
        }
    }

    #[test]
    fn golden_envelopes_decode() {
        for (name, envelope, bytes) in cases() {
            assert_eq!(Envelope::decode(&bytes), envelope, "vector {name}");
        }
        // Absent raw_response decodes as an empty message.
        let Envelope::Response(i) = Envelope::decode(&hex(I)) else {
            panic!()
        };
        assert!(i.raw_response.is_empty() && i.error.is_empty());
    }

    #[test]
    fn golden_lock_keys() {
        assert_eq!(
            lock_key(&hex(F)),
            "/zJ60uaNugA9UlZ6jaCDq9szmR37pxBR2FZ+6AFRLFc="
        );
        assert_eq!(
            lock_key(&hex(L)),
            "5PK4MJyuOj8lyflrajYXH/zlODZMKArxaAPFnXvj9GI="
        );
        assert_eq!(
            lock_key(&hex(B)),
            "VV+w46nCmcC88y3OeSA295tYRWs2odASGwfSUhe4egY="
        );
    }

    #[test]
    fn golden_payloads_decode_as_livekit_types() {
        let a = StartEgressRequest::decode(hex(A).as_slice()).unwrap();
        assert_eq!(a.egress_id, "EG_xS4aB9cD2eF6");
        assert_eq!(a.room_id, "RM_Qw8Er5Ty2Ui7");
        let Some(start_egress_request::Request::RoomComposite(rc)) = a.request else {
            panic!()
        };
        assert_eq!(
            (rc.room_name.as_str(), rc.layout.as_str()),
            ("demo-room", "grid")
        );
        assert_eq!(rc.file_outputs[0].filepath, "out/demo.mp4");

        let a2 = StartEgressRequest::decode(hex(A2).as_slice()).unwrap();
        let Some(start_egress_request::Request::Egress(v2)) = a2.request else {
            panic!()
        };
        assert_eq!(v2.room_name, "demo-room");
        assert_eq!(v2.outputs.len(), 1);

        let e = livekit::EgressInfo::decode(hex(E).as_slice()).unwrap();
        assert_eq!(e.egress_id, "EG_xS4aB9cD2eF6");
        assert_eq!(e.status, livekit::EgressStatus::EgressStarting as i32);
        assert_eq!(e.started_at, T0 + 510 * MS);
        let o = livekit::EgressInfo::decode(hex(O).as_slice()).unwrap();
        assert_eq!(o.status, livekit::EgressStatus::EgressEnding as i32);
    }

    #[test]
    fn unknown_fields_and_types_are_tolerated() {
        // A Request with skip_claim (9) and field 99 set: still a Request.
        let mut inner = req("REQ_x", "CLI_y", 1, 2, false, "").encode_to_vec();
        inner.extend_from_slice(&[0x48, 0x01]); // field 9 varint = 1
        inner.extend_from_slice(&[0x98, 0x06, 0x07]); // field 99 varint = 7
        let payload = Msg {
            type_url: type_url::REQUEST.into(),
            value: inner,
            channel: String::new(),
        }
        .encode_to_vec();
        let Envelope::Request(r) = Envelope::decode(&payload) else {
            panic!("not a request")
        };
        assert_eq!(r.request_id, "REQ_x");
        // A type we do not know is ignored, not an error.
        let other = Msg {
            type_url: "type.googleapis.com/internal.Stream".into(),
            ..Default::default()
        };
        assert_eq!(Envelope::decode(&other.encode_to_vec()), Envelope::Unknown);
        assert_eq!(Envelope::decode(b"\xff\xff\xff"), Envelope::Unknown);
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = Envelope::decode(&bytes);
            let _ = StartEgressRequest::decode(bytes.as_slice());
        }

        #[test]
        fn decode_never_panics_on_mutated_golden(idx in 0usize..172, byte in proptest::num::u8::ANY) {
            let mut b = hex(B);
            b[idx] = byte;
            if let Envelope::Request(r) = Envelope::decode(&b) {
                let _ = StartEgressRequest::decode(r.raw_request.as_slice());
            }
        }
    }
}
