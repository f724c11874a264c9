//! The object storage sinks (`s3`, `azure`, `gcs`), compiled in, against real emulators
//! (`egress_e2e::storage`): the conformance kit on each (s3 on moto and on s3s-fs, azure on
//! Azurite, gcs on the GCS XML facade; s3 and azure also built as cdylibs and loaded through
//! the host's dylib loader, `egress_e2e::plugin_build`), a 1 GiB object streamed with bounded memory, uploads
//! that survive a restart of the endpoint, an endpoint down for good, and wrong credentials.
//!
//! Every check reads the destination back through the emulator (size and SHA-256 of what a
//! user would download), never through the sink.
//!
//! The kit drives the sinks from a plain thread with `blocking::block_on`, as the dylib loader
//! does, so the sinks' own runtimes are exercised outside any tokio context; the other tests
//! drive them from tokio, as the compiled-in host does.
//!
//! The tests in this file run one at a time ([`serial`]): the memory checks sample the whole
//! process's resident set, and the machine has two cores.
//!
//! Run: `cargo test -p egress-e2e --test storage_sinks`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use egress_e2e::plugin_build::storage_plugin_dylib;
use egress_e2e::storage::{
    AZURITE_ACCOUNT, AZURITE_ACCOUNT_KEY, MOTO_ACCESS_KEY, MOTO_SECRET_KEY, S3_REGION,
    S3S_ACCESS_KEY, S3S_SECRET_KEY,
};
use egress_e2e::{Azurite, GcsFacade, Moto, S3sFs};
use egress_host::config::EmptyEnv;
use egress_host::plugins::{PluginRegistry, Source};
use egress_plugin_api::blocking::block_on;
use egress_plugin_api::conformance::{
    Expect, FailureCase, Inspector, Kit, Options, Pattern, PeakRss, Report, Stored, exclusive,
};
use egress_plugin_api::{
    BuiltinSink, Bytes, LoadedPlugin, ObjectSpec, Receipt, SinkError, SinkFactory, SinkPlugin,
    Value, async_trait, json,
};
use egress_plugin_azure::AzureSink;
use egress_plugin_gcs::GcsSink;
use egress_plugin_s3::S3Sink;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential};
use object_store::client::{HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

const BUCKET: &str = "recordings";
const MIB: u64 = 1 << 20;

/// One test of this file at a time (see the module docs). A tokio mutex does not poison, so a
/// failed test does not fail the next ones.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

fn plugin<P: SinkPlugin>() -> Arc<dyn LoadedPlugin> {
    Arc::new(BuiltinSink::of::<P>())
}

fn factory<P: SinkPlugin>(config: &Value) -> Box<dyn SinkFactory> {
    plugin::<P>()
        .create(config)
        .unwrap_or_else(|e| panic!("create({config}): {e}"))
}

/// Run the kit on a plain thread (no tokio context), as the dylib loader would drive a sink.
async fn run_kit(kit: Kit) -> Report {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("conformance".into())
        .spawn(move || {
            let _ = tx.send(block_on(kit.run()));
        })
        .expect("cannot start the conformance thread");
    rx.await.expect("the conformance thread panicked")
}

// ---------------------------------------------------------------------------------------------
// Reading the destination back
// ---------------------------------------------------------------------------------------------

/// Size and SHA-256 of the object at `key` as the store serves it, streamed (never held whole),
/// or `None` when there is none.
async fn read_back(store: &dyn ObjectStore, key: &str) -> Result<Option<Stored>, String> {
    let result = match store.get(&ObjectPath::from(key)).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(format!("GET {key}: {e}")),
    };
    let mut stream = result.into_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("reading {key}: {e}"))?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok(Some(Stored {
        size,
        sha256: hasher.finalize().into(),
    }))
}

async fn list(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<String>, String> {
    let prefix = ObjectPath::from(prefix);
    let mut keys = Vec::new();
    let mut stream = store.list(Some(&prefix));
    while let Some(meta) = stream.next().await {
        keys.push(
            meta.map_err(|e| format!("listing {prefix}: {e}"))?
                .location
                .to_string(),
        );
    }
    Ok(keys)
}

/// Unfinished uploads under a prefix, as the emulator shows them.
type InProgress =
    Box<dyn Fn(String) -> BoxFuture<'static, Result<Vec<String>, String>> + Send + Sync>;

/// Looks at a bucket through object_store (on the test's runtime: the kit polls it from a
/// plain thread). A finished object's receipt must carry the expected location; a leftover is
/// an unfinished upload, or a visible object that no receipt vouched for.
struct StoreInspector {
    store: Arc<dyn ObjectStore>,
    runtime: Handle,
    location: Box<dyn Fn(&str) -> String + Send + Sync>,
    in_progress: InProgress,
    finished: Mutex<HashSet<String>>,
}

impl StoreInspector {
    fn new(
        store: Arc<dyn ObjectStore>,
        location: impl Fn(&str) -> String + Send + Sync + 'static,
        in_progress: InProgress,
    ) -> Self {
        StoreInspector {
            store,
            runtime: Handle::current(),
            location: Box::new(location),
            in_progress,
            finished: Mutex::new(HashSet::new()),
        }
    }
}

#[async_trait]
impl Inspector for StoreInspector {
    async fn stored(&self, key: &str, receipt: Option<&Receipt>) -> Result<Option<Stored>, String> {
        if let Some(receipt) = receipt {
            let want = (self.location)(key);
            if receipt.location != want {
                return Err(format!(
                    "{key}: receipt location {:?}, expected {want:?}",
                    receipt.location
                ));
            }
        }
        let store = self.store.clone();
        let owned = key.to_string();
        let stored = self
            .runtime
            .spawn(async move { read_back(&*store, &owned).await })
            .await
            .map_err(|e| e.to_string())??;
        if receipt.is_some() && stored.is_some() {
            self.finished
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.to_string());
        }
        Ok(stored)
    }

    async fn leftovers(&self, prefix: &str) -> Result<Vec<String>, String> {
        let store = self.store.clone();
        let owned = prefix.to_string();
        let visible = self
            .runtime
            .spawn(async move { list(&*store, &owned).await })
            .await
            .map_err(|e| e.to_string())??;
        let finished = self
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut left: Vec<String> = visible
            .into_iter()
            .filter(|k| !finished.contains(k))
            .map(|k| format!("{k} (an object no receipt vouched for)"))
            .collect();
        let unfinished = self
            .runtime
            .spawn((self.in_progress)(prefix.to_string()))
            .await
            .map_err(|e| e.to_string())??;
        left.extend(unfinished);
        Ok(left)
    }
}

/// s3s-fs keeps an unfinished multipart upload as `.upload-<id>.json` and
/// `.upload_id-<id>.part-<n>` files at the root of its data dir (it has no
/// ListMultipartUploads). Each test has its own server, so any such file is ours.
fn s3s_uploads(data_dir: std::path::PathBuf) -> InProgress {
    Box::new(move |_prefix| {
        let dir = data_dir.clone();
        Box::pin(async move {
            let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            Ok(entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(".upload"))
                .map(|name| format!("{name} (unfinished multipart upload)"))
                .collect())
        })
    })
}

/// One signed request with an empty body; returns status and body.
async fn signed_get(
    url: &str,
    sign: impl FnOnce(&mut HttpRequest),
) -> Result<(u16, String), String> {
    let mut request: HttpRequest = http::Request::builder()
        .method(http::Method::GET)
        .uri(url)
        .body(HttpRequestBody::empty())
        .map_err(|e| format!("{url}: {e}"))?;
    sign(&mut request);
    let client = ReqwestConnector::default()
        .connect(&ClientOptions::new().with_allow_http(true))
        .map_err(|e| e.to_string())?;
    let response = client
        .execute(request)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .bytes()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The text of every `<tag>…</tag>` in an XML listing.
fn xml_values(body: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    body.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}

/// moto has ListMultipartUploads.
fn moto_uploads(endpoint: String) -> InProgress {
    Box::new(move |prefix| {
        let url = format!("{endpoint}/{BUCKET}?uploads&prefix={prefix}");
        Box::pin(async move {
            let credential = AwsCredential {
                key_id: MOTO_ACCESS_KEY.into(),
                secret_key: MOTO_SECRET_KEY.into(),
                token: None,
            };
            let (status, body) = signed_get(&url, |request| {
                AwsAuthorizer::new(&credential, "s3", S3_REGION)
                    .try_authorize(request, None)
                    .expect("signing");
            })
            .await?;
            if status != 200 {
                return Err(format!("ListMultipartUploads: HTTP {status}: {body}"));
            }
            Ok(xml_values(&body, "Key")
                .into_iter()
                .map(|k| format!("{k} (unfinished multipart upload)"))
                .collect())
        })
    })
}

/// Azure has no call that discards uncommitted blocks (the service drops them after a week),
/// but List Blobs with `include=uncommittedblobs` shows blobs that have only uncommitted
/// blocks: those the plain listing does not show are unfinished uploads.
fn azurite_uncommitted(endpoint: String, store: Arc<dyn ObjectStore>) -> InProgress {
    Box::new(move |prefix| {
        let url = format!(
            "{endpoint}/{BUCKET}?restype=container&comp=list&include=uncommittedblobs&prefix={prefix}"
        );
        let store = store.clone();
        Box::pin(async move {
            let key = AzureAccessKey::try_new(AZURITE_ACCOUNT_KEY).map_err(|e| e.to_string())?;
            let credential = AzureCredential::AccessKey(key);
            let (status, body) = signed_get(&url, |request| {
                AzureAuthorizer::new(&credential, AZURITE_ACCOUNT)
                    .try_authorize(request)
                    .expect("signing");
            })
            .await?;
            if status != 200 {
                return Err(format!("List Blobs: HTTP {status}: {body}"));
            }
            let committed: HashSet<String> = list(&*store, &prefix).await?.into_iter().collect();
            Ok(xml_values(&body, "Name")
                .into_iter()
                .filter(|name| !committed.contains(name))
                .map(|name| format!("{name} (uncommitted blocks)"))
                .collect())
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------------

fn s3_config(endpoint: &str, key: &str, secret: &str) -> Value {
    json!({
        "access_key": key,
        "secret": secret,
        "region": S3_REGION,
        "endpoint": endpoint,
        "bucket": BUCKET,
        "force_path_style": true,
    })
}

fn with(mut config: Value, extra: Value) -> Value {
    if let (Some(map), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            map.insert(k.clone(), v.clone());
        }
    }
    config
}

fn azure_config(azurite: &Azurite, key: &str) -> Value {
    json!({
        "account_name": AZURITE_ACCOUNT,
        "account_key": key,
        "container_name": BUCKET,
        "endpoint": azurite.endpoint(),
    })
}

fn gcs_config(gcs: &GcsFacade) -> Value {
    json!({ "bucket": BUCKET, "endpoint": gcs.base_url(), "anonymous": true })
}

/// Configs every s3 kit must reject, with the field it must name.
fn s3_invalid_configs(kit: Kit) -> Kit {
    kit.invalid_config(json!({"bucket": 3}), Some("bucket"))
        .invalid_config(json!({"bukcet": "x"}), Some("bukcet"))
        .invalid_config(json!({"access_key": "AK"}), Some("secret"))
        // A role is assumed with static keys, which a role alone does not give.
        .invalid_config(
            json!({"assume_role_arn": "arn:aws:iam::1:role/r"}),
            Some("access_key"),
        )
        .invalid_config(json!({"endpoint": "ftp://x"}), Some("endpoint"))
        .invalid_config(json!({"checksum": "md5"}), Some("checksum"))
        .invalid_config(json!({"tagging": "=v"}), Some("tagging"))
}

/// The failure cases every s3 kit runs. (A missing bucket only on moto: s3s-fs, a file
/// system, creates the bucket's directory on the first PUT.)
fn s3_failures(kit: Kit, config: &Value) -> Kit {
    kit.failure(FailureCase::new(
        "no bucket configured",
        json!({}),
        "failures/a.bin",
        Expect::Config,
    ))
    .failure(FailureCase::new(
        "invalid key",
        config.clone(),
        "failures//c.bin",
        Expect::Permanent,
    ))
}

fn path_style_location(base: String) -> impl Fn(&str) -> String + Send + Sync + 'static {
    move |key| format!("{base}/{BUCKET}/{key}")
}

// ---------------------------------------------------------------------------------------------
// The conformance kit on each sink
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_moto_passes_the_kit() {
    let _serial = serial().await;
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let config = s3_config(&moto.endpoint(), MOTO_ACCESS_KEY, MOTO_SECRET_KEY);
    let inspector = StoreInspector::new(
        Arc::new(moto.store(BUCKET)),
        path_style_location(moto.endpoint()),
        moto_uploads(moto.endpoint()),
    );
    let kit = Kit::new(plugin::<S3Sink>(), config.clone(), Arc::new(inspector)).options(Options {
        large_size: 128 * MIB,
        ..Options::default()
    });
    let kit = s3_failures(s3_invalid_configs(kit), &config)
        .failure(FailureCase::new(
            "bucket does not exist",
            with(config.clone(), json!({"bucket": "no-such-bucket"})),
            "failures/b.bin",
            Expect::Permanent,
        ))
        .failure(
            FailureCase::new(
                "bucket does not exist, multipart",
                with(config.clone(), json!({"bucket": "no-such-bucket"})),
                "failures/b2.bin",
                Expect::Permanent,
            )
            .write_bytes(12 * MIB),
        );
    let report = run_kit(kit).await;
    if !report.failures().is_empty() {
        eprintln!("moto log:\n{}", moto.log());
    }
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_s3s_fs_passes_the_kit() {
    let _serial = serial().await;
    s3_kit_on_s3s_fs(plugin::<S3Sink>()).await;
}

/// The same kit on the s3 plugin built as a cdylib and loaded from `plugins: - dylib:` by the
/// host's dylib loader: every call crosses the C ABI, each object on its own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_as_a_dylib_on_s3s_fs_passes_the_kit() {
    let _serial = serial().await;
    s3_kit_on_s3s_fs(dylib_plugin("egress-plugin-s3", "s3").await).await;
}

/// The plugin `name` loaded as the service loads it from `plugins: - dylib: <path>`.
async fn dylib_plugin(krate: &'static str, name: &str) -> Arc<dyn LoadedPlugin> {
    let path = tokio::task::spawn_blocking(move || storage_plugin_dylib(krate))
        .await
        .expect("building the dylib");
    let yaml = format!(
        "api_key: k\napi_secret: s\nws_url: ws://localhost:7880\nredis:\n  address: localhost:6379\nplugins:\n  - dylib: {:?}\n",
        path.display().to_string()
    );
    let loaded = egress_host::config::parse(&yaml, &EmptyEnv)
        .unwrap_or_else(|e| panic!("config rejected: {e}"));
    let registry = PluginRegistry::load(loaded.config.plugins.as_deref())
        .unwrap_or_else(|e| panic!("{} did not load: {e}", path.display()));
    let active = registry
        .get(name)
        .unwrap_or_else(|| panic!("no active plugin named {name}: {:?}", registry.active()));
    assert_eq!(
        active.source,
        Source::Dylib(path),
        "served by the dylib loader"
    );
    active.plugin()
}

async fn s3_kit_on_s3s_fs(plugin: Arc<dyn LoadedPlugin>) {
    let s3s = S3sFs::start().await;
    s3s.create_bucket(BUCKET).await;
    let config = s3_config(&s3s.endpoint(), S3S_ACCESS_KEY, S3S_SECRET_KEY);
    let inspector = StoreInspector::new(
        Arc::new(s3s.store(BUCKET)),
        path_style_location(s3s.endpoint()),
        s3s_uploads(s3s.data_dir().to_path_buf()),
    );
    let kit = Kit::new(plugin, config.clone(), Arc::new(inspector));
    let kit = s3_failures(s3_invalid_configs(kit), &config).failure(FailureCase::new(
        "wrong secret",
        with(config.clone(), json!({"secret": "not-the-secret"})),
        "failures/d.bin",
        Expect::Auth,
    ));
    let report = run_kit(kit).await;
    if !report.failures().is_empty() {
        eprintln!("s3s-fs log:\n{}", s3s.log());
    }
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_on_azurite_passes_the_kit() {
    let _serial = serial().await;
    azure_kit_on_azurite(plugin::<AzureSink>()).await;
}

/// The azure plugin as a cdylib through the dylib loader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_as_a_dylib_on_azurite_passes_the_kit() {
    let _serial = serial().await;
    azure_kit_on_azurite(dylib_plugin("egress-plugin-azure", "azure").await).await;
}

async fn azure_kit_on_azurite(plugin: Arc<dyn LoadedPlugin>) {
    let azurite = Azurite::start().await;
    azurite.create_container(BUCKET).await;
    let config = azure_config(&azurite, AZURITE_ACCOUNT_KEY);
    let store: Arc<dyn ObjectStore> = Arc::new(azurite.store(BUCKET));
    let inspector = StoreInspector::new(
        store.clone(),
        path_style_location(azurite.endpoint()),
        azurite_uncommitted(azurite.endpoint(), store),
    );
    let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==";
    let kit = Kit::new(plugin, config.clone(), Arc::new(inspector))
        .options(Options {
            large_size: 128 * MIB,
            ..Options::default()
        })
        .invalid_config(json!({"container_name": 3}), Some("container_name"))
        .invalid_config(json!({"account_key": "not base64!"}), Some("account_key"))
        .invalid_config(json!({"container": "x"}), Some("container"))
        .invalid_config(json!({"endpoint": "ftp://x"}), Some("endpoint"))
        .failure(FailureCase::new(
            "no container configured",
            json!({}),
            "failures/a.bin",
            Expect::Config,
        ))
        .failure(FailureCase::new(
            "container does not exist",
            with(config.clone(), json!({"container_name": "nosuchcontainer"})),
            "failures/b.bin",
            Expect::Permanent,
        ))
        .failure(FailureCase::new(
            "wrong account key",
            with(config.clone(), json!({"account_key": wrong_key})),
            "failures/c.bin",
            Expect::Auth,
        ));
    let report = run_kit(kit).await;
    if !report.failures().is_empty() {
        eprintln!("azurite log:\n{}", azurite.log());
    }
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_on_the_facade_passes_the_kit() {
    let _serial = serial().await;
    let gcs = GcsFacade::start().await;
    gcs.create_bucket(BUCKET).await;
    let config = gcs_config(&gcs);
    let inspector = StoreInspector::new(
        Arc::new(gcs.store(BUCKET)),
        path_style_location(gcs.base_url()),
        s3s_uploads(gcs.data_dir().to_path_buf()),
    );
    let kit = Kit::new(plugin::<GcsSink>(), config.clone(), Arc::new(inspector))
        .options(Options {
            large_size: 128 * MIB,
            ..Options::default()
        })
        .invalid_config(json!({"bucket": 3}), Some("bucket"))
        .invalid_config(json!({"credentials_json": "{"}), Some("credentials_json"))
        .invalid_config(json!({"anonymus": true}), Some("anonymus"))
        .failure(FailureCase::new(
            "no bucket configured",
            json!({}),
            "failures/a.bin",
            Expect::Config,
        ))
        // No missing-bucket case: the facade's s3s-fs creates the directory on the first PUT.
        .failure(FailureCase::new(
            "invalid key",
            config.clone(),
            "failures/./b.bin",
            Expect::Permanent,
        ));
    let report = run_kit(kit).await;
    if !report.failures().is_empty() {
        eprintln!("gcs facade log:\n{}", gcs.log());
    }
    report.assert_passed();
}

// ---------------------------------------------------------------------------------------------
// Streaming, restarts, outages, credentials
// ---------------------------------------------------------------------------------------------

/// Write `size` bytes of `pattern` in 1 MiB chunks; returns their SHA-256.
async fn write_pattern(
    object: &mut Box<dyn egress_plugin_api::SinkObject>,
    pattern: &Pattern,
    from: u64,
    to: u64,
    hasher: &mut Sha256,
) -> Result<(), SinkError> {
    let mut offset = from;
    while offset < to {
        let n = MIB.min(to - offset) as usize;
        let chunk = pattern.chunk(offset, n);
        hasher.update(&chunk);
        object.write(chunk).await?;
        offset += n as u64;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_streams_1_gib_with_bounded_memory() {
    let _serial = serial().await;
    let s3s = S3sFs::start().await;
    s3s.create_bucket(BUCKET).await;
    let sink = factory::<S3Sink>(&s3_config(&s3s.endpoint(), S3S_ACCESS_KEY, S3S_SECRET_KEY));
    let size = 1024 * MIB;
    s3s.require_free_space(2 * size + 256 * MIB);
    let key = "big/1gib.bin";
    let pattern = Pattern::new(42);
    let mut hasher = Sha256::new();

    let _exclusive = exclusive();
    let peak = PeakRss::start();
    // No expected size: the default 8 MiB parts, the largest memory bound.
    let mut object = sink.open(ObjectSpec::new(key)).await.expect("open");
    write_pattern(&mut object, &pattern, 0, size, &mut hasher)
        .await
        .expect("write");
    let receipt = object.finish().await.expect("finish");
    let growth = peak.stop();

    let sha256: [u8; 32] = hasher.finalize().into();
    assert_eq!(receipt.size, size);
    assert_eq!(receipt.sha256, sha256, "receipt SHA-256");
    assert_eq!(
        receipt.location,
        format!("{}/{BUCKET}/{key}", s3s.endpoint())
    );
    let stored = read_back(&s3s.store(BUCKET), key)
        .await
        .expect("read back")
        .expect("the object exists");
    assert_eq!(stored.size, size, "stored size");
    assert_eq!(
        stored.sha256, sha256,
        "stored bytes differ from the bytes written"
    );
    match growth {
        Some(growth) => {
            eprintln!(
                "s3: 1 GiB streamed, resident set +{:.1} MiB",
                growth as f64 / MIB as f64
            );
            assert!(
                growth < 96 * MIB,
                "resident set grew by {} MiB while streaming 1 GiB: the sink buffers",
                growth / MIB
            );
        }
        None => eprintln!("s3: resident set not measurable on this OS"),
    }
}

/// An emulator that can be stopped and started again on the same port, keeping its data.
trait Restartable: Send + 'static {
    fn stop(&mut self) -> BoxFuture<'_, ()>;
    fn restart(&mut self) -> BoxFuture<'_, ()>;
}

impl Restartable for S3sFs {
    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(S3sFs::stop(self))
    }
    fn restart(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(S3sFs::restart(self))
    }
}

impl Restartable for Azurite {
    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(Azurite::stop(self))
    }
    fn restart(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(Azurite::restart(self))
    }
}

/// Stop the server after a third of the object, write the rest while it is down, and start it
/// again two seconds later on the same port: the parts retry until it is back. Returns the
/// server and the SHA-256 of what was written.
async fn survives_a_restart<S: Restartable>(
    sink: Box<dyn SinkFactory>,
    mut server: S,
    key: &str,
) -> (S, [u8; 32]) {
    let size = 48 * MIB;
    let pattern = Pattern::new(7);
    let mut hasher = Sha256::new();
    let mut object = sink
        .open(ObjectSpec::new(key).with_expected_size(size))
        .await
        .expect("open");
    write_pattern(&mut object, &pattern, 0, size / 3, &mut hasher)
        .await
        .expect("write before the outage");
    server.stop().await;
    let restarted = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.restart().await;
        (server, Instant::now())
    });
    write_pattern(&mut object, &pattern, size / 3, size, &mut hasher)
        .await
        .expect("write during the outage");
    let receipt = object.finish().await.expect("finish after the restart");
    let finished = Instant::now();
    let (server, restarted_at) = restarted.await.expect("restart task");
    // Ordering, not timing: the remaining parts cannot have been stored while it was down.
    assert!(
        finished > restarted_at,
        "the upload finished before the endpoint came back: the outage was not exercised"
    );
    let sha256: [u8; 32] = hasher.finalize().into();
    assert_eq!((receipt.size, receipt.sha256), (size, sha256), "receipt");
    (server, sha256)
}

/// Enough retries, spaced enough, to outlast a few seconds of outage.
fn patient() -> Value {
    json!({"max_retries": 30, "min_retry_delay_ms": 500, "max_retry_delay_ms": 2000})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_upload_survives_an_endpoint_restart() {
    let _serial = serial().await;
    let s3s = S3sFs::start().await;
    s3s.create_bucket(BUCKET).await;
    let config = with(
        s3_config(&s3s.endpoint(), S3S_ACCESS_KEY, S3S_SECRET_KEY),
        patient(),
    );
    let key = "restart/s3.bin";
    let (s3s, sha256) = survives_a_restart(factory::<S3Sink>(&config), s3s, key).await;
    let stored = read_back(&s3s.store(BUCKET), key)
        .await
        .expect("read back")
        .expect("the object exists");
    assert_eq!(
        (stored.size, stored.sha256),
        (48 * MIB, sha256),
        "stored object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_upload_survives_an_endpoint_restart() {
    let _serial = serial().await;
    let azurite = Azurite::start().await;
    azurite.create_container(BUCKET).await;
    let config = with(azure_config(&azurite, AZURITE_ACCOUNT_KEY), patient());
    let key = "restart/azure.bin";
    let (azurite, sha256) = survives_a_restart(factory::<AzureSink>(&config), azurite, key).await;
    let stored = read_back(&azurite.store(BUCKET), key)
        .await
        .expect("read back")
        .expect("the object exists");
    assert_eq!(
        (stored.size, stored.sha256),
        (48 * MIB, sha256),
        "stored object"
    );
}

/// A guard against hangs (not a performance assertion): the bounded retries end long before.
const NO_HANG: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_endpoint_down_for_good_is_retryable_after_bounded_retries() {
    let _serial = serial().await;
    let mut s3s = S3sFs::start().await;
    s3s.create_bucket(BUCKET).await;
    let config = with(
        s3_config(&s3s.endpoint(), S3S_ACCESS_KEY, S3S_SECRET_KEY),
        json!({"max_retries": 3, "min_retry_delay_ms": 50, "max_retry_delay_ms": 200}),
    );
    let sink = factory::<S3Sink>(&config);
    s3s.stop().await;

    // Small object: the single PUT at finish fails.
    let small = tokio::time::timeout(NO_HANG, async {
        let mut object = sink.open(ObjectSpec::new("down/small.bin")).await?;
        object.write(Bytes::from(vec![1u8; 1000])).await?;
        object.finish().await
    })
    .await
    .expect("the sink hung instead of giving up");
    let e = small.expect_err("the upload succeeded with the endpoint down");
    assert!(e.is_retryable(), "expected a retryable error, got {e}");
    assert!(e.message().contains("retries"), "not retried: {e}");

    // Large object: starting the multipart upload fails during write.
    let large = tokio::time::timeout(NO_HANG, async {
        let mut object = sink.open(ObjectSpec::new("down/large.bin")).await?;
        let pattern = Pattern::new(3);
        let mut hasher = Sha256::new();
        let result = write_pattern(&mut object, &pattern, 0, 24 * MIB, &mut hasher).await;
        if result.is_err() {
            object.abort().await;
            return result;
        }
        object.finish().await.map(drop)
    })
    .await
    .expect("the sink hung instead of giving up");
    let e = large.expect_err("the upload succeeded with the endpoint down");
    assert!(e.is_retryable(), "expected a retryable error, got {e}");

    let e = tokio::time::timeout(NO_HANG, sink.health_check())
        .await
        .expect("health check hung")
        .expect_err("health check passed with the endpoint down");
    assert!(e.is_retryable(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_credentials_are_auth_errors_and_not_retried() {
    let _serial = serial().await;
    let s3s = S3sFs::start().await;
    s3s.create_bucket(BUCKET).await;
    let config = with(
        s3_config(&s3s.endpoint(), S3S_ACCESS_KEY, "not-the-secret"),
        json!({"max_retries": 5}),
    );
    let sink = factory::<S3Sink>(&config);

    let e = sink.health_check().await.expect_err("health check passed");
    assert!(e.is_auth(), "health check: expected an auth error, got {e}");

    let mut object = sink
        .open(ObjectSpec::new("auth/small.bin"))
        .await
        .expect("open");
    object
        .write(Bytes::from(vec![1u8; 1000]))
        .await
        .expect("buffered write");
    let e = object
        .finish()
        .await
        .expect_err("stored with a wrong secret");
    assert!(e.is_auth(), "expected an auth error, got {e}");
    // object_store says "after N retries" when it retried; an auth failure must not be.
    assert!(
        !e.message().contains("retries"),
        "auth error was retried: {e}"
    );

    let mut object = sink
        .open(ObjectSpec::new("auth/large.bin"))
        .await
        .expect("open");
    let mut hasher = Sha256::new();
    let e = write_pattern(&mut object, &Pattern::new(4), 0, 16 * MIB, &mut hasher)
        .await
        .expect_err("multipart upload started with a wrong secret");
    object.abort().await;
    assert!(e.is_auth(), "expected an auth error, got {e}");
    assert!(
        !e.message().contains("retries"),
        "auth error was retried: {e}"
    );

    assert_eq!(s3s.list(BUCKET, "auth").await, Vec::<String>::new());
}

/// The kit's abort and drop checks stop before the first part is sent; these send parts first,
/// so that there is a multipart upload to abort. Nothing may stay visible or unfinished.
async fn abort_and_drop_after_parts(
    sink: Box<dyn SinkFactory>,
    store: &dyn ObjectStore,
    in_progress: &InProgress,
) {
    for (key, drop_it) in [("parts/aborted.bin", false), ("parts/dropped.bin", true)] {
        let mut object = sink
            .open(ObjectSpec::new(key).with_expected_size(64 * MIB))
            .await
            .expect("open");
        let mut hasher = Sha256::new();
        write_pattern(&mut object, &Pattern::new(11), 0, 12 * MIB, &mut hasher)
            .await
            .expect("write");
        let uploads = in_progress("parts".into()).await.expect("list uploads");
        assert!(
            !uploads.is_empty(),
            "{key}: no multipart upload in progress after 12 MiB in 5 MiB parts"
        );
        if drop_it {
            drop(object);
        } else {
            object.abort().await;
        }
        // Dropping cleans up in the background: allow it a few seconds.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = in_progress("parts".into()).await.expect("list uploads");
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{key}: left behind: {left:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            read_back(store, key).await.expect("read back").is_none(),
            "{key} is visible"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_abort_and_drop_after_parts_leave_nothing() {
    let _serial = serial().await;
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let sink = factory::<S3Sink>(&s3_config(
        &moto.endpoint(),
        MOTO_ACCESS_KEY,
        MOTO_SECRET_KEY,
    ));
    abort_and_drop_after_parts(sink, &moto.store(BUCKET), &moto_uploads(moto.endpoint())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_abort_and_drop_after_parts_leave_nothing() {
    let _serial = serial().await;
    let gcs = GcsFacade::start().await;
    gcs.create_bucket(BUCKET).await;
    let sink = factory::<GcsSink>(&gcs_config(&gcs));
    let uploads = s3s_uploads(gcs.data_dir().to_path_buf());
    abort_and_drop_after_parts(sink, &gcs.store(BUCKET), &uploads).await;
}

/// Content type, `Content-Disposition`, user metadata and tags, on a single `PUT` and on a
/// multipart upload, as a user reads them back from the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_carry_type_disposition_metadata_and_tags() {
    use object_store::{Attribute, GetOptions};
    let _serial = serial().await;
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let config = with(
        s3_config(&moto.endpoint(), MOTO_ACCESS_KEY, MOTO_SECRET_KEY),
        json!({
            "metadata": {"room": "demo", "egress-id": "EG_1"},
            "tagging": "team=media&kind=recording%20file",
        }),
    );
    let sink = factory::<S3Sink>(&config);
    let store = moto.store(BUCKET);
    for (key, size) in [("attrs/small.mp4", MIB), ("attrs/large.mp4", 12 * MIB)] {
        let mut object = sink
            .open(ObjectSpec::new(key).with_content_type("video/mp4"))
            .await
            .expect("open");
        let mut hasher = Sha256::new();
        write_pattern(&mut object, &Pattern::new(5), 0, size, &mut hasher)
            .await
            .expect("write");
        object.finish().await.expect("finish");

        let got = store
            .get_opts(&ObjectPath::from(key), GetOptions::default())
            .await
            .expect("GET");
        let attribute = |a: &Attribute| got.attributes.get(a).map(|v| v.to_string());
        assert_eq!(
            attribute(&Attribute::ContentType).as_deref(),
            Some("video/mp4"),
            "{key}"
        );
        assert_eq!(
            attribute(&Attribute::ContentDisposition).as_deref(),
            Some("inline"),
            "{key}"
        );
        assert_eq!(
            attribute(&Attribute::Metadata("room".into())).as_deref(),
            Some("demo"),
            "{key}"
        );
        assert_eq!(
            attribute(&Attribute::Metadata("egress-id".into())).as_deref(),
            Some("EG_1"),
            "{key}"
        );

        let credential = AwsCredential {
            key_id: MOTO_ACCESS_KEY.into(),
            secret_key: MOTO_SECRET_KEY.into(),
            token: None,
        };
        let url = format!("{}/{BUCKET}/{key}?tagging", moto.endpoint());
        let (status, body) = signed_get(&url, |request| {
            AwsAuthorizer::new(&credential, "s3", S3_REGION)
                .try_authorize(request, None)
                .expect("signing");
        })
        .await
        .expect("GetObjectTagging");
        assert_eq!(status, 200, "{body}");
        let mut tags: Vec<(String, String)> = xml_values(&body, "Tag")
            .iter()
            .map(|tag| {
                let one = |t: &str| xml_values(tag, t).pop().unwrap_or_default();
                (one("Key"), one("Value"))
            })
            .collect();
        tags.sort();
        assert_eq!(
            tags,
            [
                ("kind".to_string(), "recording file".to_string()),
                ("team".to_string(), "media".to_string())
            ],
            "{key}: {body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// AssumeRole (STS on moto, with moto's IAM authorization switched on)
// ---------------------------------------------------------------------------------------------

/// moto's default account.
const MOTO_ACCOUNT: &str = "123456789012";
const UPLOADER_ROLE: &str = "uploader";

/// `application/x-www-form-urlencoded` (every byte but the unreserved ones escaped).
fn form(params: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One `POST` with `body`; returns status and body.
async fn post(
    url: &str,
    content_type: &str,
    body: String,
    sign: impl FnOnce(&mut HttpRequest),
) -> Result<(u16, String), String> {
    let mut request: HttpRequest = http::Request::builder()
        .method(http::Method::POST)
        .uri(url)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(HttpRequestBody::from(body))
        .map_err(|e| format!("{url}: {e}"))?;
    sign(&mut request);
    let client = ReqwestConnector::default()
        .connect(&ClientOptions::new().with_allow_http(true))
        .map_err(|e| e.to_string())?;
    let response = client
        .execute(request)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .bytes()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// An IAM Query API call on moto, signed for service `iam` (which is how moto routes it);
/// panics unless it succeeds.
async fn moto_iam(moto: &Moto, params: &[(&str, &str)]) -> String {
    let credential = AwsCredential {
        key_id: MOTO_ACCESS_KEY.into(),
        secret_key: MOTO_SECRET_KEY.into(),
        token: None,
    };
    let mut all = vec![("Version", "2010-05-08")];
    all.extend_from_slice(params);
    let (status, body) = post(
        &format!("{}/", moto.endpoint()),
        "application/x-www-form-urlencoded; charset=utf-8",
        form(&all),
        |request| {
            AwsAuthorizer::new(&credential, "iam", S3_REGION)
                .try_authorize(request, None)
                .expect("signing");
        },
    )
    .await
    .expect("IAM call");
    assert_eq!(status, 200, "{params:?}: {body}");
    body
}

/// Switch moto's IAM authentication and authorization on (`true`: every later request must
/// be signed by a key moto's IAM issued, and allowed by that identity's policies) or off.
async fn moto_auth(moto: &Moto, on: bool) {
    let count = if on { "0" } else { "inf" };
    let (status, body) = post(
        &format!("{}/moto-api/reset-auth", moto.endpoint()),
        "text/plain",
        count.to_string(),
        |_| {},
    )
    .await
    .expect("reset-auth");
    assert_eq!(status, 200, "reset-auth: {body}");
}

/// An IAM user that may only call `sts:AssumeRole`, and a role that may do anything on S3.
/// Returns the user's access key and secret, and the role's ARN.
async fn moto_user_and_role(moto: &Moto) -> (String, String, String) {
    let allow = |action: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"{action}","Resource":"*"}}]}}"#
        )
    };
    moto_iam(moto, &[("Action", "CreateUser"), ("UserName", "recorder")]).await;
    let key = moto_iam(
        moto,
        &[("Action", "CreateAccessKey"), ("UserName", "recorder")],
    )
    .await;
    let key_id = xml_values(&key, "AccessKeyId").pop().expect("AccessKeyId");
    let secret = xml_values(&key, "SecretAccessKey")
        .pop()
        .expect("SecretAccessKey");
    moto_iam(
        moto,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", "recorder"),
            ("PolicyName", "assume"),
            ("PolicyDocument", &allow("sts:AssumeRole")),
        ],
    )
    .await;
    // moto matches the principal literally (the account root would not cover the user).
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{MOTO_ACCOUNT}:user/recorder"}},"Action":"sts:AssumeRole"}}]}}"#
    );
    moto_iam(
        moto,
        &[
            ("Action", "CreateRole"),
            ("RoleName", UPLOADER_ROLE),
            ("AssumeRolePolicyDocument", &trust),
        ],
    )
    .await;
    moto_iam(
        moto,
        &[
            ("Action", "PutRolePolicy"),
            ("RoleName", UPLOADER_ROLE),
            ("PolicyName", "s3"),
            ("PolicyDocument", &allow("s3:*")),
        ],
    )
    .await;
    let arn = format!("arn:aws:iam::{MOTO_ACCOUNT}:role/{UPLOADER_ROLE}");
    (key_id, secret, arn)
}

/// With moto checking signatures and policies, the user's own keys may not write to the
/// bucket; with `assume_role_arn` the sink gets the role's credentials from STS (signed with
/// the user's keys) and uploads with them, a single `PUT` and a multipart upload alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_assume_role_uploads_with_the_roles_credentials() {
    let _serial = serial().await;
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let (key_id, secret, role_arn) = moto_user_and_role(&moto).await;
    moto_auth(&moto, true).await;

    // The control: the user itself may not write.
    let own_keys = s3_config(&moto.endpoint(), &key_id, &secret);
    let e = factory::<S3Sink>(&own_keys)
        .health_check()
        .await
        .expect_err("the user's own keys may write: moto is not checking policies");
    assert!(e.is_auth(), "expected an auth error, got {e}");

    let config = with(
        own_keys,
        json!({"assume_role_arn": role_arn, "sts_endpoint": moto.endpoint()}),
    );
    let sink = factory::<S3Sink>(&config);
    sink.health_check()
        .await
        .expect("health check with the role");
    let mut written = Vec::new();
    for (key, size, seed) in [
        ("role/small.mp4", MIB, 21),
        ("role/large.mp4", 12 * MIB, 22),
    ] {
        let mut object = sink
            .open(ObjectSpec::new(key).with_content_type("video/mp4"))
            .await
            .expect("open");
        let mut hasher = Sha256::new();
        write_pattern(&mut object, &Pattern::new(seed), 0, size, &mut hasher)
            .await
            .expect("write");
        let receipt = object.finish().await.expect("finish");
        assert_eq!(receipt.size, size, "{key}");
        written.push((key, size, <[u8; 32]>::from(hasher.finalize())));
    }

    // Read back as a user would, with moto's checks off again (the test's own keys are not
    // moto IAM keys).
    moto_auth(&moto, false).await;
    let store = moto.store(BUCKET);
    for (key, size, sha256) in written {
        let stored = read_back(&store, key)
            .await
            .expect("read back")
            .unwrap_or_else(|| panic!("{key} is missing"));
        assert_eq!((stored.size, stored.sha256), (size, sha256), "{key}");
    }
}

/// STS refuses: keys moto's IAM never issued (`InvalidClientTokenId`), the right key with a
/// wrong secret (`SignatureDoesNotMatch`), and a user whose policies do not allow
/// `sts:AssumeRole` (`AccessDenied`). Each is an auth error, from `health_check` and from an
/// upload, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_assume_role_refused_by_sts_is_an_auth_error() {
    let _serial = serial().await;
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let (key_id, secret, role_arn) = moto_user_and_role(&moto).await;
    moto_iam(&moto, &[("Action", "CreateUser"), ("UserName", "nobody")]).await;
    let other = moto_iam(
        &moto,
        &[("Action", "CreateAccessKey"), ("UserName", "nobody")],
    )
    .await;
    let other_key = xml_values(&other, "AccessKeyId")
        .pop()
        .expect("AccessKeyId");
    let other_secret = xml_values(&other, "SecretAccessKey")
        .pop()
        .expect("SecretAccessKey");
    moto_auth(&moto, true).await;

    let cases = [
        (
            "unknown key",
            "AKIAUNKNOWN000000000".to_string(),
            "x".to_string(),
            "InvalidClientTokenId",
        ),
        (
            "wrong secret",
            key_id.clone(),
            format!("{secret}x"),
            "SignatureDoesNotMatch",
        ),
        ("no sts:AssumeRole", other_key, other_secret, "AccessDenied"),
    ];
    for (case, key, secret, code) in cases {
        let config = with(
            s3_config(&moto.endpoint(), &key, &secret),
            json!({"assume_role_arn": role_arn, "sts_endpoint": moto.endpoint(),
                   "max_retries": 5}),
        );
        let sink = factory::<S3Sink>(&config);
        let e = sink.health_check().await.expect_err(case);
        assert!(e.is_auth(), "{case}: expected an auth error, got {e}");
        assert!(e.message().contains(code), "{case}: {e}");

        let key = format!("refused/{}.bin", case.replace(' ', "-").replace(':', ""));
        let mut object = sink.open(ObjectSpec::new(&key)).await.expect("open");
        object
            .write(Bytes::from(vec![7u8; 1000]))
            .await
            .expect("buffered write");
        let e = object.finish().await.expect_err(case);
        assert!(e.is_auth(), "{case}: expected an auth error, got {e}");
    }

    moto_auth(&moto, false).await;
    assert_eq!(moto.list(BUCKET, "refused").await, Vec::<String>::new());
}
