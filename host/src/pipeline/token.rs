//! The recorder's join token (`egress.BuildEgressToken` in LiveKit's protocol): an HS256 JWT
//! signed with the service's API key pair. Identity = egress ID, kind EGRESS, hidden recorder
//! that may join and subscribe but not publish, valid for 24 hours.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

const VALID_FOR_SECS: u64 = 24 * 60 * 60;

/// Builds the token. `now_secs` is the Unix time it is issued at.
pub fn egress_token(
    egress_id: &str,
    api_key: &str,
    api_secret: &str,
    room_name: &str,
    now_secs: u64,
) -> String {
    let header = json!({ "alg": "HS256", "typ": "JWT" });
    let claims = json!({
        "iss": api_key,
        "sub": egress_id,
        "nbf": now_secs,
        "exp": now_secs + VALID_FOR_SECS,
        "kind": "egress",
        "video": {
            "roomJoin": true,
            "room": room_name,
            "canSubscribe": true,
            "canPublish": false,
            "canPublishData": false,
            "hidden": true,
            "recorder": true,
        },
    });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(api_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = b64.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_a_verifiable_hs256_jwt_with_recorder_grants() {
        let t = egress_token("EG_1", "devkey", "secret", "room", 1_700_000_000);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "EG_1");
        assert_eq!(claims["iss"], "devkey");
        assert_eq!(claims["exp"], 1_700_000_000u64 + 86_400);
        assert_eq!(claims["video"]["room"], "room");
        assert_eq!(claims["video"]["recorder"], true);
        assert_eq!(claims["video"]["hidden"], true);
        assert_eq!(claims["video"]["canPublish"], false);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&b64.decode(parts[2]).unwrap())
            .expect("signature verifies");
    }
}
