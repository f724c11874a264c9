//! Storage emulators for sink tests, each on free 127.0.0.1 ports in its own temp dir, killed on
//! drop (versions, flags and caveats: `../shared/reference/test-services.md` §1–3, §8):
//!
//! * [`Moto`]: moto's S3 server. Accepts any credentials; state in memory ([`Moto::reset`]).
//! * [`S3sFs`]: s3s-fs, an S3 server that checks SigV4 ([`S3S_ACCESS_KEY`]/[`S3S_SECRET_KEY`]);
//!   a bucket is a directory, an object a file. `stop()`/`restart()` keep the port and the data.
//! * [`Azurite`]: Azurite's blob server, with the well-known `devstoreaccount1` account.
//!   `stop()`/`restart()` keep the port and the data.
//! * [`GcsFacade`]: object_store's GCS backend speaks GCS's XML API, which no offline emulator
//!   implements; it is S3-compatible, so an nginx in front of an anonymous s3s-fs translates the
//!   three headers that differ. Not real GCS: no generations, no `x-goog-*` metadata.
//!
//! Each server has an object_store builder configured the way a sink configures it (endpoint,
//! path-style URLs, credentials, plain http) plus `read`/`list` helpers built on it, so that a
//! test checks what a user would see in the bucket.
//!
//! The programs come from `scripts/setup`, under `$EGRESS_CACHE` (default `/var/cache/egress-rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::azure::{
    AzureAccessKey, AzureAuthorizer, AzureCredential, MicrosoftAzure, MicrosoftAzureBuilder,
};
use object_store::client::{HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector};
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt};

use crate::process::{Proc, command};
use crate::tools::TestDir;
use crate::{START_TIMEOUT, free_port, http_get};

/// Where `scripts/setup` installs the emulators unless `EGRESS_CACHE` says otherwise.
const DEFAULT_CACHE: &str = "/var/cache/egress-rs";
/// How long `stop()` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The region every S3 store here signs for (moto and s3s-fs accept any).
pub const S3_REGION: &str = "us-east-1";
/// Credentials [`Moto`] is used with. moto does not check them; any value works.
pub const MOTO_ACCESS_KEY: &str = "test";
pub const MOTO_SECRET_KEY: &str = "test";
/// The only credentials [`S3sFs`] accepts (it checks SigV4 signatures).
pub const S3S_ACCESS_KEY: &str = "test";
pub const S3S_SECRET_KEY: &str = "testtesttest";
/// Azurite's development account: public, documented by Microsoft, and object_store's own
/// `EMULATOR_ACCOUNT_KEY`.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

// ---------------------------------------------------------------------------------------------
// Finding the programs
// ---------------------------------------------------------------------------------------------

fn cache_dir() -> PathBuf {
    std::env::var_os("EGRESS_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `$EGRESS_CACHE/<relative>`, panicking with a hint to run `scripts/setup` when it is missing.
fn cached_program(relative: &str, what: &str) -> PathBuf {
    let path = cache_dir().join(relative);
    if !is_executable(&path) {
        panic!(
            "{what} is not installed: {} is missing. Run scripts/setup (it installs the storage \
             emulators under $EGRESS_CACHE, default {DEFAULT_CACHE})",
            path.display()
        );
    }
    path
}

fn moto_server_bin() -> PathBuf {
    cached_program("venv/bin/moto_server", "moto (PyPI moto[server])")
}

fn s3s_fs_bin() -> PathBuf {
    cached_program("cargo-bin/bin/s3s-fs", "s3s-fs (crates.io)")
}

fn azurite_blob_bin() -> PathBuf {
    cached_program(
        "npm/node_modules/.bin/azurite-blob",
        "Azurite (npm azurite)",
    )
}

/// nginx from Debian's `nginx-light`: on PATH, or in /usr/sbin (not on a non-root PATH).
fn nginx_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/sbin"));
    dirs.into_iter()
        .map(|d| d.join("nginx"))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| {
            panic!(
                "nginx was found neither on PATH nor in /usr/sbin: run scripts/setup (it installs \
                 the Debian package nginx-light)"
            )
        })
}

// ---------------------------------------------------------------------------------------------
// One server process on a fixed port, restartable
// ---------------------------------------------------------------------------------------------

/// A server process bound to a port chosen once, so that `restart()` comes back on it. Each
/// start logs to its own file in `log_dir` (`<name>-<n>.log`), so a restart keeps earlier logs.
struct Server {
    proc: Option<Proc>,
    name: &'static str,
    port: u16,
    starts: u32,
    log_dir: PathBuf,
}

impl Server {
    fn new(name: &'static str, log_dir: &Path) -> Server {
        Server {
            proc: None,
            name,
            port: free_port(),
            starts: 0,
            log_dir: log_dir.to_path_buf(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Spawns `cmd` and waits until the port answers HTTP (any status: the S3 servers answer
    /// an unsigned `GET /` with 403, Azurite with 400). Panics with the log tail if the server
    /// exits first or does not answer within [`START_TIMEOUT`].
    async fn launch(&mut self, cmd: Command) {
        self.starts += 1;
        let log = self
            .log_dir
            .join(format!("{}-{}.log", self.name, self.starts));
        let proc = self.proc.insert(Proc::spawn(
            &format!("{} :{}", self.name, self.port),
            cmd,
            &log,
            &log,
        ));
        let url = format!("http://127.0.0.1:{}/", self.port);
        proc.wait_ready(&format!("it answered HTTP on {url}"), START_TIMEOUT, || {
            let url = url.clone();
            async move { http_get(&url).await.is_ok() }
        })
        .await;
    }

    /// SIGTERM (SIGKILL after [`STOP_GRACE`]) and reap. The port stays reserved.
    async fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.terminate(STOP_GRACE).await;
        }
    }

    fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.try_wait().is_none())
    }

    fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Everything every start of this server logged.
    fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let path = self.log_dir.join(format!("{}-{n}.log", self.name));
                std::fs::read_to_string(&path).unwrap_or_default()
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Reading back, and the few admin requests object_store cannot make
// ---------------------------------------------------------------------------------------------

/// The object at `key`, or `None` if there is none. Panics on any other error.
async fn read_object(store: &dyn ObjectStore, what: &str, key: &str) -> Option<Vec<u8>> {
    match store.get(&ObjectPath::from(key)).await {
        Ok(result) => Some(
            result
                .bytes()
                .await
                .unwrap_or_else(|e| panic!("{what}: reading {key}: {e}"))
                .to_vec(),
        ),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("{what}: GET {key}: {e}"),
    }
}

/// Every key under `prefix` (all of them for ""), sorted. Panics on error.
async fn list_keys(store: &dyn ObjectStore, what: &str, prefix: &str) -> Vec<String> {
    let prefix = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
    let mut keys: Vec<String> = store
        .list(prefix.as_ref())
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{what}: listing {prefix:?}: {e}"));
    keys.sort();
    keys
}

/// How an admin request is signed.
enum Signer<'a> {
    Anonymous,
    /// SigV4 for S3.
    S3 {
        key_id: &'a str,
        secret: &'a str,
    },
    /// SharedKey for Azure Blob.
    Azure {
        account: &'a str,
        key: &'a str,
    },
}

/// Sends one request with an empty body, signed by object_store's own signers (so that admin
/// calls such as CreateBucket authenticate exactly as the data calls do). Returns the status and
/// the body; panics if the server cannot be reached.
async fn admin_request(method: http::Method, url: &str, signer: Signer<'_>) -> (u16, String) {
    let what = format!("{method} {url}");
    let mut request: HttpRequest = http::Request::builder()
        .method(method)
        .uri(url)
        .body(HttpRequestBody::empty())
        .unwrap_or_else(|e| panic!("{what}: bad request: {e}"));
    match signer {
        Signer::Anonymous => {}
        Signer::S3 { key_id, secret } => {
            let credential = AwsCredential {
                key_id: key_id.to_string(),
                secret_key: secret.to_string(),
                token: None,
            };
            AwsAuthorizer::new(&credential, "s3", S3_REGION)
                .try_authorize(&mut request, None)
                .unwrap_or_else(|e| panic!("{what}: signing: {e}"));
        }
        Signer::Azure { account, key } => {
            let key = AzureAccessKey::try_new(key)
                .unwrap_or_else(|e| panic!("{what}: bad account key: {e}"));
            AzureAuthorizer::new(&AzureCredential::AccessKey(key), account)
                .try_authorize(&mut request)
                .unwrap_or_else(|e| panic!("{what}: signing: {e}"));
        }
    }
    let client = ReqwestConnector::default()
        .connect(&ClientOptions::new().with_allow_http(true))
        .unwrap_or_else(|e| panic!("{what}: cannot build an HTTP client: {e}"));
    let response = client
        .execute(request)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the response: {e}"));
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `admin_request`, panicking unless the status is 2xx.
async fn admin_ok(method: http::Method, url: &str, signer: Signer<'_>) {
    let (status, body) = admin_request(method.clone(), url, signer).await;
    if !(200..300).contains(&status) {
        panic!("{method} {url}: HTTP {status}: {body}");
    }
}

/// A bucket directory for the s3s-fs servers, which have no CreateBucket of their own.
fn create_dir_bucket(data_dir: &Path, name: &str) -> PathBuf {
    let path = data_dir.join(name);
    std::fs::create_dir_all(&path)
        .unwrap_or_else(|e| panic!("cannot create bucket dir {}: {e}", path.display()));
    path
}

// ---------------------------------------------------------------------------------------------
// moto
// ---------------------------------------------------------------------------------------------

/// moto's S3 server (in memory, no authentication).
pub struct Moto {
    server: Server,
    dir: TestDir,
}

impl Moto {
    /// Starts `moto_server` and waits until it answers HTTP.
    pub async fn start() -> Moto {
        let dir = TestDir::new("moto");
        let mut moto = Moto {
            server: Server::new("moto", dir.path()),
            dir,
        };
        let mut cmd = command(&moto_server_bin(), moto.dir.path());
        cmd.args(["-H", "127.0.0.1", "-p", &moto.server.port.to_string()]);
        moto.server.launch(cmd).await;
        moto
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    /// An object_store S3 builder for `bucket`, as a sink configures it (endpoint, region,
    /// keys, path-style URLs, plain http). Add retry or other options before `build()`.
    pub fn builder(&self, bucket: &str) -> AmazonS3Builder {
        s3_builder(&self.endpoint(), bucket, MOTO_ACCESS_KEY, MOTO_SECRET_KEY)
    }

    pub fn store(&self, bucket: &str) -> AmazonS3 {
        build("moto", self.builder(bucket).build())
    }

    /// CreateBucket (signed, as a real client would).
    pub async fn create_bucket(&self, name: &str) {
        admin_ok(
            http::Method::PUT,
            &format!("{}/{name}", self.endpoint()),
            Signer::S3 {
                key_id: MOTO_ACCESS_KEY,
                secret: MOTO_SECRET_KEY,
            },
        )
        .await;
    }

    /// Wipes every bucket and object (moto's `/moto-api/reset`), cheaper than a restart.
    pub async fn reset(&self) {
        admin_ok(
            http::Method::POST,
            &format!("{}/moto-api/reset", self.endpoint()),
            Signer::Anonymous,
        )
        .await;
    }

    /// The object's bytes, or `None` if it does not exist.
    pub async fn read(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        read_object(&self.store(bucket), "moto", key).await
    }

    /// Keys under `prefix` in `bucket`, sorted.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        list_keys(&self.store(bucket), "moto", prefix).await
    }

    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    pub fn log(&self) -> String {
        self.server.log()
    }
}

fn s3_builder(endpoint: &str, bucket: &str, key_id: &str, secret: &str) -> AmazonS3Builder {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_region(S3_REGION)
        .with_access_key_id(key_id)
        .with_secret_access_key(secret)
        // Path-style (`endpoint/bucket/key`): emulators have no per-bucket host names.
        .with_virtual_hosted_style_request(false)
        .with_allow_http(true)
}

fn build<T>(what: &str, built: object_store::Result<T>) -> T {
    built.unwrap_or_else(|e| panic!("{what}: cannot build the object_store client: {e}"))
}

// ---------------------------------------------------------------------------------------------
// s3s-fs
// ---------------------------------------------------------------------------------------------

/// s3s-fs serving a data dir, checking SigV4 with [`S3S_ACCESS_KEY`]/[`S3S_SECRET_KEY`].
pub struct S3sFs {
    server: Server,
    data: PathBuf,
    dir: TestDir,
}

impl S3sFs {
    /// Starts s3s-fs on an empty data dir and waits until it answers HTTP.
    pub async fn start() -> S3sFs {
        let dir = TestDir::new("s3s-fs");
        let data = create_dir_bucket(dir.path(), "data");
        let mut s3s = S3sFs {
            server: Server::new("s3s-fs", dir.path()),
            data,
            dir,
        };
        s3s.spawn().await;
        s3s
    }

    async fn spawn(&mut self) {
        let cmd = s3s_fs_command(
            self.dir.path(),
            self.server.port,
            &self.data,
            Some((S3S_ACCESS_KEY, S3S_SECRET_KEY)),
        );
        self.server.launch(cmd).await;
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    /// The root directory: one subdirectory per bucket, plus s3s-fs's own `.bucket-*.json`
    /// metadata and multipart files.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Fails the test with a clear message when the data dir's file system has less than
    /// `bytes` free. s3s-fs answers a full disk with a bare `500 InternalError`, which reads
    /// like a sink bug; a 1 GiB multipart upload needs twice its size (parts, then the object).
    pub fn require_free_space(&self, bytes: u64) {
        let free = free_space(&self.data);
        assert!(
            free >= bytes,
            "only {} MiB free under {}; this test needs {} MiB (the parts and the assembled object)",
            free >> 20,
            self.data.display(),
            bytes >> 20
        );
    }

    /// Creates the bucket (a directory under the data dir).
    pub async fn create_bucket(&self, name: &str) {
        create_dir_bucket(&self.data, name);
    }

    /// Where s3s-fs keeps the object `key` of `bucket` as a plain file.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.data.join(bucket).join(key)
    }

    /// An object_store S3 builder for `bucket` with the right keys (see [`Moto::builder`]).
    pub fn builder(&self, bucket: &str) -> AmazonS3Builder {
        self.builder_with_keys(bucket, S3S_ACCESS_KEY, S3S_SECRET_KEY)
    }

    /// The same with other keys, for tests of what a wrong key does.
    pub fn builder_with_keys(&self, bucket: &str, key_id: &str, secret: &str) -> AmazonS3Builder {
        s3_builder(&self.endpoint(), bucket, key_id, secret)
    }

    pub fn store(&self, bucket: &str) -> AmazonS3 {
        build("s3s-fs", self.builder(bucket).build())
    }

    /// The object's bytes, or `None` if it does not exist.
    pub async fn read(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        read_object(&self.store(bucket), "s3s-fs", key).await
    }

    /// Keys under `prefix` in `bucket`, sorted.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        list_keys(&self.store(bucket), "s3s-fs", prefix).await
    }

    /// Stops the server (SIGTERM). The port and the data stay for `restart()`.
    pub async fn stop(&mut self) {
        self.server.stop().await;
    }

    /// Starts it again (stopping it first if needed) on the same port and data dir.
    pub async fn restart(&mut self) {
        self.server.stop().await;
        self.spawn().await;
    }

    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    pub fn log(&self) -> String {
        self.server.log()
    }
}

/// s3s-fs on `port` serving `data`; anonymous (no signature check) when `keys` is `None`.
fn s3s_fs_command(cwd: &Path, port: u16, data: &Path, keys: Option<(&str, &str)>) -> Command {
    let mut cmd = command(&s3s_fs_bin(), cwd);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
    if let Some((key_id, secret)) = keys {
        cmd.args(["--access-key", key_id, "--secret-key", secret]);
    }
    cmd.arg(data);
    cmd
}

// ---------------------------------------------------------------------------------------------
// Azurite
// ---------------------------------------------------------------------------------------------

/// Azurite's blob server (SharedKey checked), data on disk in its temp dir.
pub struct Azurite {
    server: Server,
    data: PathBuf,
    dir: TestDir,
}

impl Azurite {
    /// Starts `azurite-blob` and waits until it answers HTTP.
    pub async fn start() -> Azurite {
        let dir = TestDir::new("azurite");
        let data = create_dir_bucket(dir.path(), "data");
        let mut azurite = Azurite {
            server: Server::new("azurite", dir.path()),
            data,
            dir,
        };
        azurite.spawn().await;
        azurite
    }

    async fn spawn(&mut self) {
        let mut cmd = command(&azurite_blob_bin(), self.dir.path());
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(self.server.port.to_string())
            .arg("--location")
            .arg(&self.data)
            // Newer Azure SDKs send API versions Azurite 3.35 does not know; telemetry would
            // try to reach the internet and fill the log with errors.
            .args(["--skipApiVersionCheck", "--disableTelemetry", "--loose"]);
        self.server.launch(cmd).await;
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The blob endpoint, `http://127.0.0.1:PORT/devstoreaccount1`: Azurite serves accounts
    /// path-style, so the account is part of the endpoint given to object_store.
    pub fn endpoint(&self) -> String {
        format!("{}/{AZURITE_ACCOUNT}", self.server.url())
    }

    /// The blob storage connection string Azure SDKs accept.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};\
             AccountKey={AZURITE_ACCOUNT_KEY};BlobEndpoint={};",
            self.endpoint()
        )
    }

    /// An object_store Azure builder for `container`: account, key and [`Self::endpoint`].
    /// (object_store's `use_emulator` mode would read the URL from the process-wide
    /// `AZURITE_BLOB_STORAGE_URL`, which parallel tests on different ports cannot share.)
    pub fn builder(&self, container: &str) -> MicrosoftAzureBuilder {
        self.builder_with_key(container, AZURITE_ACCOUNT_KEY)
    }

    /// The same with another account key, for tests of what a wrong key does.
    pub fn builder_with_key(&self, container: &str, key: &str) -> MicrosoftAzureBuilder {
        MicrosoftAzureBuilder::new()
            .with_account(AZURITE_ACCOUNT)
            .with_access_key(key)
            .with_container_name(container)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
    }

    pub fn store(&self, container: &str) -> MicrosoftAzure {
        build("azurite", self.builder(container).build())
    }

    /// Create Container (SharedKey-signed).
    pub async fn create_container(&self, name: &str) {
        admin_ok(
            http::Method::PUT,
            &format!("{}/{name}?restype=container", self.endpoint()),
            Signer::Azure {
                account: AZURITE_ACCOUNT,
                key: AZURITE_ACCOUNT_KEY,
            },
        )
        .await;
    }

    /// The blob's bytes, or `None` if it does not exist.
    pub async fn read(&self, container: &str, key: &str) -> Option<Vec<u8>> {
        read_object(&self.store(container), "azurite", key).await
    }

    /// Blob names under `prefix` in `container`, sorted.
    pub async fn list(&self, container: &str, prefix: &str) -> Vec<String> {
        list_keys(&self.store(container), "azurite", prefix).await
    }

    /// Stops the server (SIGTERM: Azurite saves its metadata). Port and data stay for `restart()`.
    pub async fn stop(&mut self) {
        self.server.stop().await;
    }

    /// Starts it again (stopping it first if needed) on the same port and data dir.
    pub async fn restart(&mut self) {
        self.server.stop().await;
        self.spawn().await;
    }

    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    pub fn log(&self) -> String {
        self.server.log()
    }
}

// ---------------------------------------------------------------------------------------------
// GCS XML facade: nginx → anonymous s3s-fs
// ---------------------------------------------------------------------------------------------

/// A stand-in for GCS's XML API (what object_store's GCS backend uses): nginx drops the
/// `Authorization: Bearer` header, maps `x-goog-copy-source` to `x-amz-copy-source` and
/// `x-goog-if-generation-match: 0` (create-only) to `If-None-Match: *`, and forwards to an
/// s3s-fs that checks no signatures. object_store reaches it through a service-account key
/// with `disable_oauth` and `gcs_base_url`, as a sink given such a key would.
pub struct GcsFacade {
    // nginx first: dropped (killed) before its backend.
    nginx: Server,
    s3s: Server,
    data: PathBuf,
    dir: TestDir,
}

impl GcsFacade {
    /// Starts s3s-fs and nginx, each on a free port, and waits until both answer HTTP.
    pub async fn start() -> GcsFacade {
        let dir = TestDir::new("gcs");
        let data = create_dir_bucket(dir.path(), "data");
        create_dir_bucket(dir.path(), "nginx-tmp");
        let mut gcs = GcsFacade {
            nginx: Server::new("nginx", dir.path()),
            s3s: Server::new("s3s-fs", dir.path()),
            data,
            dir,
        };
        let config = nginx_gcs_config(gcs.dir.path(), gcs.nginx.port, gcs.s3s.port);
        gcs.dir.write("nginx.conf", &config);
        gcs.spawn().await;
        gcs
    }

    async fn spawn(&mut self) {
        let cmd = s3s_fs_command(self.dir.path(), self.s3s.port, &self.data, None);
        self.s3s.launch(cmd).await;
        let mut cmd = command(&nginx_bin(), self.dir.path());
        // `-e stderr`: even errors before the config is read go to this start's log.
        cmd.arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .args(["-e", "stderr"]);
        self.nginx.launch(cmd).await;
    }

    /// The base URL object_store is given (`gcs_base_url`): `http://127.0.0.1:PORT` (nginx).
    pub fn base_url(&self) -> String {
        self.nginx.url()
    }

    /// The service-account key JSON (`google_service_account_key`) that points object_store
    /// at [`Self::base_url`] without OAuth. `private_key_id` must be present, even empty.
    pub fn service_account_key(&self) -> String {
        serde_json::json!({
            "gcs_base_url": self.base_url(),
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        })
        .to_string()
    }

    /// An object_store GCS builder for `bucket` with [`Self::service_account_key`].
    pub fn builder(&self, bucket: &str) -> GoogleCloudStorageBuilder {
        GoogleCloudStorageBuilder::new()
            .with_bucket_name(bucket)
            .with_service_account_key(self.service_account_key())
            .with_client_options(ClientOptions::new().with_allow_http(true))
    }

    pub fn store(&self, bucket: &str) -> GoogleCloudStorage {
        build("gcs facade", self.builder(bucket).build())
    }

    /// The backend's data dir: one subdirectory per bucket.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Creates the bucket (a directory of the backend).
    pub async fn create_bucket(&self, name: &str) {
        create_dir_bucket(&self.data, name);
    }

    /// Where the backend keeps the object `key` of `bucket` as a plain file.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.data.join(bucket).join(key)
    }

    /// The object's bytes, or `None` if it does not exist.
    pub async fn read(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        read_object(&self.store(bucket), "gcs facade", key).await
    }

    /// Keys under `prefix` in `bucket`, sorted.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        list_keys(&self.store(bucket), "gcs facade", prefix).await
    }

    /// Stops nginx and its backend. Ports and data stay for `restart()`.
    pub async fn stop(&mut self) {
        self.nginx.stop().await;
        self.s3s.stop().await;
    }

    /// Starts both again (stopping them first if needed) on the same ports and data dir.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    pub fn is_running(&mut self) -> bool {
        self.nginx.is_running() && self.s3s.is_running()
    }

    /// The pids of nginx's master and of s3s-fs, those running.
    pub fn pids(&self) -> Vec<u32> {
        self.nginx.pid().into_iter().chain(self.s3s.pid()).collect()
    }

    /// nginx's log (and access log), then s3s-fs's.
    pub fn log(&self) -> String {
        let access = std::fs::read_to_string(self.dir.join("nginx-access.log")).unwrap_or_default();
        format!(
            "----- nginx -----\n{}----- nginx access -----\n{access}----- s3s-fs -----\n{}",
            self.nginx.log(),
            self.s3s.log()
        )
    }
}

/// nginx's config for the facade. Everything it writes stays in `dir`. Buffering is off both
/// ways: recordings stream through, and the workers (`nobody` when run as root) never need the
/// temp dirs, which they could not enter inside a root-owned 0700 temp dir.
fn nginx_gcs_config(dir: &Path, port: u16, backend_port: u16) -> String {
    let dir = dir.display();
    format!(
        r#"daemon off;
master_process on;
worker_processes 1;
pid "{dir}/nginx.pid";
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log "{dir}/nginx-access.log";
    client_body_temp_path "{dir}/nginx-tmp/body";
    proxy_temp_path "{dir}/nginx-tmp/proxy";
    fastcgi_temp_path "{dir}/nginx-tmp/fastcgi";
    uwsgi_temp_path "{dir}/nginx-tmp/uwsgi";
    scgi_temp_path "{dir}/nginx-tmp/scgi";
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    # PutMode::Create sends x-goog-if-generation-match: 0; S3 says If-None-Match: *.
    map $http_x_goog_if_generation_match $s3_if_none_match {{
        "0" "*";
        default $http_if_none_match;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{backend_port};
            proxy_http_version 1.1;
            # object_store sends "Authorization: Bearer " (no token); s3s-fs is anonymous.
            proxy_set_header Authorization "";
            proxy_set_header x-amz-copy-source $http_x_goog_copy_source;
            proxy_set_header If-None-Match $s3_if_none_match;
        }}
    }}
}}
"#
    )
}

/// Bytes available to an unprivileged writer on the file system holding `path`.
fn free_space(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return u64::MAX;
    };
    // SAFETY: `statvfs` writes only into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr(), &mut stat) != 0 {
            return u64::MAX;
        }
        (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64)
    }
}
