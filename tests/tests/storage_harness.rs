//! The storage emulators work with object_store the way the sinks use it: each test starts its
//! own server, writes a small object and a multipart object (3 parts of 5 MiB and a tail), and
//! reads them back through the harness, comparing sha256. s3s-fs must refuse a wrong secret;
//! s3s-fs, Azurite and the GCS facade must refuse writes while stopped and accept them again
//! after `restart()`, with the data written before still there. Every server process must be
//! gone once its harness value is dropped.

use std::path::Path as FsPath;
use std::time::Duration;

use egress_e2e::storage::{AZURITE_ACCOUNT_KEY, Azurite, GcsFacade, Moto, S3S_ACCESS_KEY, S3sFs};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, RetryConfig};
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;
/// S3's smallest part (but the last).
const PART: usize = 5 * MIB;
const TAIL: usize = 4321;

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic bytes that do not compress or repeat (xorshift64*), so a part written at the
/// wrong offset or twice changes the hash.
fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// No retries: a request to a stopped server fails at once instead of after minutes of backoff.
fn no_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        retry_timeout: Duration::from_secs(2),
        ..RetryConfig::default()
    }
}

/// What [`write_objects`] wrote.
struct Written {
    small: Vec<u8>,
    multipart: Vec<u8>,
}

const SMALL_KEY: &str = "rec/room-a/small.json";
const MULTIPART_KEY: &str = "rec/room-a/multipart.mp4";

/// Puts a small object and a 4-part multipart object (3 × 5 MiB + a tail) with `store`.
/// Returns the data and the multipart's ETag.
async fn write_objects(store: &dyn ObjectStore) -> (Written, Option<String>) {
    let small = test_bytes(1000, 1);
    store
        .put(&Path::from(SMALL_KEY), PutPayload::from(small.clone()))
        .await
        .expect("put small object");

    let multipart = test_bytes(3 * PART + TAIL, 2);
    let mut upload = store
        .put_multipart(&Path::from(MULTIPART_KEY))
        .await
        .expect("create multipart upload");
    for chunk in multipart.chunks(PART) {
        upload
            .put_part(PutPayload::from(chunk.to_vec()))
            .await
            .expect("upload part");
    }
    let result = upload.complete().await.expect("complete multipart upload");
    (Written { small, multipart }, result.e_tag)
}

/// Reads both objects back through `read` and compares sha256; checks `list` and a missing key.
macro_rules! check_read_back {
    ($server:expr, $bucket:expr, $written:expr) => {{
        let small = $server
            .read($bucket, SMALL_KEY)
            .await
            .expect("small object is there");
        assert_eq!(
            sha256(&small),
            sha256(&$written.small),
            "small object read back"
        );
        let multipart = $server
            .read($bucket, MULTIPART_KEY)
            .await
            .expect("multipart object is there");
        assert_eq!(multipart.len(), $written.multipart.len(), "multipart size");
        assert_eq!(
            sha256(&multipart),
            sha256(&$written.multipart),
            "multipart read back"
        );
        assert_eq!(
            $server.list($bucket, "rec/room-a").await,
            vec![MULTIPART_KEY.to_string(), SMALL_KEY.to_string()]
        );
        assert_eq!(
            $server.list($bucket, "rec/room-b").await,
            Vec::<String>::new()
        );
        assert_eq!($server.read($bucket, "rec/room-a/absent").await, None);
    }};
}

/// An S3 multipart ETag ends with `-<number of parts>`.
fn assert_four_parts(e_tag: Option<String>) {
    let e_tag = e_tag.expect("multipart ETag");
    assert!(
        e_tag.trim_matches('"').ends_with("-4"),
        "ETag of a 4-part upload: {e_tag}"
    );
}

fn assert_file_sha(path: &FsPath, expected: &[u8]) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(sha256(&data), sha256(expected), "{}", path.display());
}

/// The process is gone: not running, not a zombie (the harness reaps what it kills).
fn assert_gone(pids: &[u32]) {
    for pid in pids {
        assert!(
            !FsPath::new(&format!("/proc/{pid}")).exists(),
            "process {pid} outlived its harness value"
        );
    }
}

/// Writes `key` with a no-retry client while the server is stopped: it must fail.
async fn assert_write_fails(store: &dyn ObjectStore, key: &str) {
    let result = store
        .put(&Path::from(key), PutPayload::from_static(b"while stopped"))
        .await;
    assert!(
        result.is_err(),
        "a write to a stopped server succeeded: {result:?}"
    );
}

/// A multipart upload with one part written before the server stops and the rest after it
/// restarts: what a sink does when its endpoint goes away mid-recording.
struct UploadAcrossRestart {
    upload: Box<dyn object_store::MultipartUpload>,
    data: Vec<u8>,
}

impl UploadAcrossRestart {
    const KEY: &str = "rec/mid-upload.mp4";

    async fn begin(store: &dyn ObjectStore) -> UploadAcrossRestart {
        let data = test_bytes(PART + TAIL, 3);
        let mut upload = store
            .put_multipart(&Path::from(Self::KEY))
            .await
            .expect("create multipart upload");
        upload
            .put_part(PutPayload::from(data[..PART].to_vec()))
            .await
            .expect("first part");
        UploadAcrossRestart { upload, data }
    }

    /// Writes the last part and completes; returns all the data.
    async fn finish(mut self) -> Vec<u8> {
        self.upload
            .put_part(PutPayload::from(self.data[PART..].to_vec()))
            .await
            .expect("last part, after restart()");
        self.upload
            .complete()
            .await
            .expect("complete, after restart()");
        self.data
    }
}

#[tokio::test]
async fn moto_round_trip_multipart_and_reset() {
    let moto = Moto::start().await;
    moto.create_bucket("recordings").await;
    let store = moto.store("recordings");

    let (written, e_tag) = write_objects(&store).await;
    assert_four_parts(e_tag);
    check_read_back!(moto, "recordings", written);

    moto.reset().await;
    moto.create_bucket("recordings").await;
    assert_eq!(moto.list("recordings", "").await, Vec::<String>::new());

    let pids: Vec<u32> = moto.pid().into_iter().collect();
    drop(moto);
    assert_gone(&pids);
}

#[tokio::test]
async fn s3s_fs_round_trip_multipart_files_on_disk() {
    let s3s = S3sFs::start().await;
    s3s.create_bucket("recordings").await;
    let store = s3s.store("recordings");

    let (written, e_tag) = write_objects(&store).await;
    assert_four_parts(e_tag);
    check_read_back!(s3s, "recordings", written);
    assert_file_sha(&s3s.object_path("recordings", SMALL_KEY), &written.small);
    assert_file_sha(
        &s3s.object_path("recordings", MULTIPART_KEY),
        &written.multipart,
    );

    let pids: Vec<u32> = s3s.pid().into_iter().collect();
    drop(s3s);
    assert_gone(&pids);
}

#[tokio::test]
async fn s3s_fs_rejects_a_wrong_secret() {
    let s3s = S3sFs::start().await;
    s3s.create_bucket("recordings").await;
    let wrong = s3s
        .builder_with_keys("recordings", S3S_ACCESS_KEY, "not-the-secret")
        .with_retry(no_retry())
        .build()
        .unwrap();

    let err = wrong
        .put(&Path::from("rec/x.bin"), PutPayload::from_static(b"x"))
        .await
        .expect_err("a put signed with a wrong secret was accepted");
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. })
            && err.to_string().contains("SignatureDoesNotMatch"),
        "unexpected error: {err:?}"
    );
    assert!(!s3s.object_path("recordings", "rec/x.bin").exists());
    assert_eq!(s3s.read("recordings", "rec/x.bin").await, None);
}

#[tokio::test]
async fn s3s_fs_stop_fails_writes_restart_keeps_data() {
    let mut s3s = S3sFs::start().await;
    let port = s3s.port();
    s3s.create_bucket("recordings").await;
    let store = s3s.store("recordings");
    store
        .put(
            &Path::from("rec/before"),
            PutPayload::from_static(b"before"),
        )
        .await
        .unwrap();
    let upload = UploadAcrossRestart::begin(&store).await;

    s3s.stop().await;
    assert!(!s3s.is_running());
    let no_retry_store = s3s
        .builder("recordings")
        .with_retry(no_retry())
        .build()
        .unwrap();
    assert_write_fails(&no_retry_store, "rec/during").await;

    s3s.restart().await;
    assert_eq!(s3s.port(), port);
    store
        .put(&Path::from("rec/after"), PutPayload::from_static(b"after"))
        .await
        .expect("a write after restart()");
    let multipart = upload.finish().await;
    assert_eq!(
        s3s.read("recordings", "rec/before").await.as_deref(),
        Some(&b"before"[..])
    );
    assert_eq!(
        s3s.read("recordings", "rec/after").await.as_deref(),
        Some(&b"after"[..])
    );
    assert_eq!(
        s3s.read("recordings", UploadAcrossRestart::KEY)
            .await
            .map(|d| sha256(&d)),
        Some(sha256(&multipart))
    );
    assert_eq!(
        s3s.list("recordings", "rec").await,
        vec!["rec/after", "rec/before", UploadAcrossRestart::KEY]
    );

    let pids: Vec<u32> = s3s.pid().into_iter().collect();
    drop(s3s);
    assert_gone(&pids);
}

#[tokio::test]
async fn azurite_round_trip_multipart_and_key_check() {
    let azurite = Azurite::start().await;
    azurite.create_container("recordings").await;
    let store = azurite.store("recordings");

    let (written, _) = write_objects(&store).await;
    check_read_back!(azurite, "recordings", written);

    // SharedKey is checked: the emulator catches signing bugs.
    let wrong_key = base64_of(&[7u8; 64]);
    assert_ne!(wrong_key, AZURITE_ACCOUNT_KEY);
    let wrong = azurite
        .builder_with_key("recordings", &wrong_key)
        .with_retry(no_retry())
        .build()
        .unwrap();
    let err = wrong
        .put(&Path::from("rec/x.bin"), PutPayload::from_static(b"x"))
        .await
        .expect_err("a put signed with a wrong key was accepted");
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. })
            && err.to_string().contains("AuthorizationFailure"),
        "unexpected error: {err:?}"
    );
    assert_eq!(azurite.read("recordings", "rec/x.bin").await, None);

    let pids: Vec<u32> = azurite.pid().into_iter().collect();
    drop(azurite);
    assert_gone(&pids);
}

fn base64_of(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[tokio::test]
async fn azurite_stop_fails_writes_restart_keeps_data() {
    let mut azurite = Azurite::start().await;
    let port = azurite.port();
    azurite.create_container("recordings").await;
    let store = azurite.store("recordings");
    store
        .put(
            &Path::from("rec/before"),
            PutPayload::from_static(b"before"),
        )
        .await
        .unwrap();
    let upload = UploadAcrossRestart::begin(&store).await;

    azurite.stop().await;
    assert!(!azurite.is_running());
    let no_retry_store = azurite
        .builder("recordings")
        .with_retry(no_retry())
        .build()
        .unwrap();
    assert_write_fails(&no_retry_store, "rec/during").await;

    azurite.restart().await;
    assert_eq!(azurite.port(), port);
    store
        .put(&Path::from("rec/after"), PutPayload::from_static(b"after"))
        .await
        .expect("a write after restart()");
    let multipart = upload.finish().await;
    assert_eq!(
        azurite.read("recordings", "rec/before").await.as_deref(),
        Some(&b"before"[..])
    );
    assert_eq!(
        azurite.read("recordings", "rec/after").await.as_deref(),
        Some(&b"after"[..])
    );
    assert_eq!(
        azurite
            .read("recordings", UploadAcrossRestart::KEY)
            .await
            .map(|d| sha256(&d)),
        Some(sha256(&multipart))
    );
    assert_eq!(
        azurite.list("recordings", "rec").await,
        vec!["rec/after", "rec/before", UploadAcrossRestart::KEY]
    );

    let pids: Vec<u32> = azurite.pid().into_iter().collect();
    drop(azurite);
    assert_gone(&pids);
}

#[tokio::test]
async fn gcs_facade_round_trip_multipart_create_only_and_copy() {
    let gcs = GcsFacade::start().await;
    gcs.create_bucket("recordings").await;
    let store = gcs.store("recordings");

    let (written, _) = write_objects(&store).await;
    check_read_back!(gcs, "recordings", written);
    assert_file_sha(
        &gcs.object_path("recordings", MULTIPART_KEY),
        &written.multipart,
    );

    // x-goog-if-generation-match: 0 → If-None-Match: * (the facade's create-only mapping).
    let err = store
        .put_opts(
            &Path::from(SMALL_KEY),
            PutPayload::from_static(b"overwrite"),
            PutMode::Create.into(),
        )
        .await
        .expect_err("a create-only put over an existing object succeeded");
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "unexpected error: {err}"
    );
    // x-goog-copy-source → x-amz-copy-source.
    store
        .copy(&Path::from(SMALL_KEY), &Path::from("rec/copy.json"))
        .await
        .expect("copy");
    assert_eq!(
        gcs.read("recordings", "rec/copy.json").await,
        Some(written.small.clone())
    );

    let pids = gcs.pids();
    assert_eq!(pids.len(), 2);
    drop(gcs);
    assert_gone(&pids);
}

#[tokio::test]
async fn gcs_facade_stop_fails_writes_restart_keeps_data() {
    let mut gcs = GcsFacade::start().await;
    let base_url = gcs.base_url();
    gcs.create_bucket("recordings").await;
    let store = gcs.store("recordings");
    store
        .put(
            &Path::from("rec/before"),
            PutPayload::from_static(b"before"),
        )
        .await
        .unwrap();

    gcs.stop().await;
    assert!(!gcs.is_running());
    let no_retry_store = gcs
        .builder("recordings")
        .with_retry(no_retry())
        .build()
        .unwrap();
    assert_write_fails(&no_retry_store, "rec/during").await;

    gcs.restart().await;
    assert_eq!(gcs.base_url(), base_url);
    store
        .put(&Path::from("rec/after"), PutPayload::from_static(b"after"))
        .await
        .expect("a write after restart()");
    assert_eq!(
        gcs.list("recordings", "rec").await,
        vec!["rec/after", "rec/before"]
    );
}
