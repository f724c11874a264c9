//! The egress manifest (reference §2.8): a JSON summary written as `<egress_id>.json` beside
//! the output unless the output sets `disable_manifest`. Empty fields are left out, as Go's
//! `omitempty` does.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Manifest {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub egress_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub room_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub room_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub started_at: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub ended_at: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestFile {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filename: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub location: String,
}

/// A segments output: its playlist and every stored segment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ManifestPlaylist {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub location: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<ManifestSegment>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestSegment {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filename: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub location: String,
}

/// One stored image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestImage {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filename: String,
    /// RFC 3339 with nanoseconds, as Go's `time.Time` marshals.
    pub timestamp: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub location: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Manifest {
    /// The manifest's storage path: `<dir of the output>/<egress_id>.json`.
    pub fn storage_path(output_storage_path: &str, egress_id: &str) -> String {
        match output_storage_path.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{egress_id}.json"),
            None => format!("{egress_id}.json"),
        }
    }

    /// The JSON text, newline-terminated like Go's `json.Encoder` (which also leaves `<>&`
    /// unescaped here, as serde_json does).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_omits_empty_fields_and_sits_beside_the_file() {
        let m = Manifest {
            egress_id: "EG_1".into(),
            room_name: "r".into(),
            started_at: 5,
            files: vec![ManifestFile {
                filename: "a/b.mp4".into(),
                location: "/x/a/b.mp4".into(),
            }],
            ..Default::default()
        };
        let text = String::from_utf8(m.to_json()).unwrap();
        assert_eq!(
            text,
            "{\"egress_id\":\"EG_1\",\"room_name\":\"r\",\"started_at\":5,\"files\":[{\"filename\":\"a/b.mp4\",\"location\":\"/x/a/b.mp4\"}]}\n"
        );
        assert_eq!(Manifest::storage_path("a/b.mp4", "EG_1"), "a/EG_1.json");
        assert_eq!(Manifest::storage_path("b.mp4", "EG_1"), "EG_1.json");
    }
}
