//! mediamtx, the live-stream server the stream tests push to (LiveKit's own test server):
//! RTMP, RTMPS, SRT and its HTTP API on free 127.0.0.1 ports, recording every publish to
//! fragmented MP4 in the test's temp dir. Research and measurements:
//! `../shared/reference/streaming.md` §4.1; config keys from mediamtx v1.20.1's `mediamtx.yml`,
//! API from its `api/openapi.yaml`.
//!
//! * A path is what follows the port in an RTMP URL (`rtmp://…/live/key` publishes to
//!   `live/key`), or the SRT `streamid=publish:<path>`.
//! * Every publish becomes its own recording, `recordings/<path>/<start time>.mp4` with the
//!   start as `%Y-%m-%d_%H-%M-%S-%f` (local time, microseconds), so sorting the names sorts them
//!   by start. Recording is fMP4 because mediamtx's MPEG-TS recorder writes no file at all for a
//!   video-only publish. A file is complete once its publisher has gone
//!   ([`MediaMtx::wait_for_recordings`]).
//! * RTMPS uses a server certificate (`localhost`, `127.0.0.1`) signed by a test CA made at
//!   start: give a client [`MediaMtx::ca_pem`] to trust it; a client with only the system's
//!   roots, or trusting [`MediaMtx::untrusted_ca_pem`], must reject it.
//! * SRT paths can require a publish passphrase ([`MediaMtxOptions::srt_publish_passphrase`]);
//!   a wrong or missing one is refused at the handshake ("invalid passphrase" in the log).
//! * By default a second publisher on a live path replaces the first (mediamtx's
//!   `overridePublisher: yes`); [`MediaMtxOptions::override_publisher`]`(false)` refuses it.
//!
//! * An RTMP connection counts as publishing (the path goes online, [`MediaMtx::publishers`]
//!   lists it, its recording starts) only once mediamtx has read **2 s of its stream** by
//!   timestamp (gortmplib's `analyzePeriod`: it ignores `onMetaData` and probes the tracks);
//!   the recording still holds those 2 s. A push of less than 2 s of media is never recorded,
//!   and one that ends soon after them loses its tail (2 s pushes recorded 0.97–1.34 s: the
//!   path closes before the recorder has written the replayed start), so push ≥ 4 s;
//!   and "first packet at the server" is better read from [`MediaMtx::rtmp_conns`]
//!   (`bytes_received` counts from the first byte) than from the path. SRT publishes at once.
//!
//! Quirks seen with v1.20.1: an SRT sender that closes without lingering loses its last
//! ≈0.1–0.6 s (a 4 s push recorded 3.82 s); a kicked RTMP publisher sees "connection closed
//! remotely" at once, a kicked GStreamer `srtsink` reconnects by itself within about a second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::json_api::{Method, request, request_ok};
use crate::process::{Proc, command};
use crate::tools::TestDir;
use crate::{START_TIMEOUT, find_binary, free_port};

/// How long `stop()` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// SRT (libsrt and mediamtx's gosrt) accepts passphrases of 10 to 79 characters.
const SRT_PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 10..=79;

/// How a [`MediaMtx`] is configured beyond its defaults.
#[derive(Debug, Clone)]
pub struct MediaMtxOptions {
    srt_publish_passphrases: BTreeMap<String, String>,
    override_publisher: bool,
    read_timeout: Duration,
}

impl Default for MediaMtxOptions {
    fn default() -> Self {
        MediaMtxOptions {
            srt_publish_passphrases: BTreeMap::new(),
            override_publisher: true,
            read_timeout: Duration::from_secs(10),
        }
    }
}

impl MediaMtxOptions {
    /// SRT publishers to `path` must use this passphrase (10–79 characters, SRT's rule).
    /// Other paths take publishers without one.
    pub fn srt_publish_passphrase(mut self, path: &str, passphrase: &str) -> Self {
        assert!(
            SRT_PASSPHRASE_LEN.contains(&passphrase.len()),
            "an SRT passphrase has 10 to 79 characters, {passphrase:?} has {}",
            passphrase.len()
        );
        self.srt_publish_passphrases
            .insert(path.to_string(), passphrase.to_string());
        self
    }

    /// Whether a new publisher on a live path replaces the old one (mediamtx's default, yes)
    /// or is refused (no).
    pub fn override_publisher(mut self, yes: bool) -> Self {
        self.override_publisher = yes;
        self
    }

    /// How long mediamtx waits for data from a publisher before closing its connection
    /// (`readTimeout`, default 10 s): how soon a stalled push ends server-side.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }
}

/// The protocol of a connection mediamtx lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Rtmp,
    Rtmps,
    Srt,
}

impl Protocol {
    /// The API's collection name (`/v3/<name>/list`, `/v3/<name>/kick/<id>`).
    fn api_name(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmpconns",
            Protocol::Rtmps => "rtmpsconns",
            Protocol::Srt => "srtconns",
        }
    }
}

/// One RTMP, RTMPS or SRT connection, as `/v3/{rtmp,rtmps,srt}conns/list` gives it.
#[derive(Debug, Clone)]
pub struct Conn {
    pub id: String,
    pub protocol: Protocol,
    /// The path it publishes to or reads from (empty before the handshake is done).
    pub path: String,
    /// `idle`, `publish` or `read`.
    pub state: String,
    pub remote_addr: String,
    /// Bytes mediamtx received on this connection.
    pub bytes_received: u64,
    /// When it connected (RFC 3339).
    pub created: String,
}

impl Conn {
    pub fn is_publishing(&self) -> bool {
        self.state == "publish"
    }

    fn from_api(protocol: Protocol, item: &Value) -> Conn {
        let text = |k: &str| item[k].as_str().unwrap_or_default().to_string();
        // RTMP connections count `inboundBytes` (their `bytesReceived` is deprecated); SRT
        // connections have only `bytesReceived` (all bytes, SRT headers included).
        let bytes_received = item["inboundBytes"]
            .as_u64()
            .or_else(|| item["bytesReceived"].as_u64())
            .unwrap_or(0);
        Conn {
            id: text("id"),
            protocol,
            path: text("path"),
            state: text("state"),
            remote_addr: text("remoteAddr"),
            bytes_received,
            created: text("created"),
        }
    }
}

/// One path, as `/v3/paths/list` gives it.
#[derive(Debug, Clone)]
pub struct PathInfo {
    pub name: String,
    /// A publisher is connected and its tracks are known.
    pub online: bool,
    /// The publisher's connection type (`rtmpConn`, `rtmpsConn`, `srtConn`, …) and id.
    pub source: Option<(String, String)>,
    /// Bytes received from publishers of this path since mediamtx started.
    pub bytes_received: u64,
    /// Codec names of the published tracks (`H264`, `MPEG-4 Audio`, …).
    pub tracks: Vec<String>,
    pub readers: usize,
}

impl PathInfo {
    fn from_api(item: &Value) -> PathInfo {
        let source = item["source"].as_object().map(|s| {
            let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
            (text("type").to_string(), text("id").to_string())
        });
        let tracks = match item["tracks2"].as_array() {
            Some(t) if !t.is_empty() => t
                .iter()
                .filter_map(|t| t["codec"].as_str().map(str::to_string))
                .collect(),
            _ => item["tracks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
        };
        PathInfo {
            name: item["name"].as_str().unwrap_or_default().to_string(),
            online: item["online"]
                .as_bool()
                .or_else(|| item["ready"].as_bool())
                .unwrap_or(false),
            source,
            bytes_received: item["inboundBytes"]
                .as_u64()
                .or_else(|| item["bytesReceived"].as_u64())
                .unwrap_or(0),
            tracks,
            readers: item["readers"].as_array().map_or(0, Vec::len),
        }
    }
}

/// Ports chosen once, so that `restart()` comes back on the same URLs.
#[derive(Debug, Clone, Copy)]
struct Ports {
    rtmp: u16,
    rtmps: u16,
    srt: u16,
    api: u16,
}

/// The test PKI: a CA, a server certificate it signed, and a second CA that signed nothing.
struct Tls {
    ca_pem: PathBuf,
    cert_pem: PathBuf,
    key_pem: PathBuf,
    untrusted_ca_pem: PathBuf,
}

/// A running mediamtx (see the module docs). Killed on drop.
pub struct MediaMtx {
    proc: Option<Proc>,
    ports: Ports,
    tls: Tls,
    starts: u32,
    dir: TestDir,
}

impl MediaMtx {
    /// Starts mediamtx with the default options and waits until its API answers.
    pub async fn start() -> MediaMtx {
        MediaMtx::start_with(MediaMtxOptions::default()).await
    }

    /// Starts mediamtx configured by `options` and waits until its API answers.
    pub async fn start_with(options: MediaMtxOptions) -> MediaMtx {
        let dir = TestDir::new("mediamtx");
        let tls = make_test_pki(&dir.join("tls"));
        let ports = Ports {
            rtmp: free_port(),
            rtmps: free_port(),
            srt: free_port(),
            api: free_port(),
        };
        let recordings = dir.join("recordings");
        std::fs::create_dir_all(&recordings)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", recordings.display()));
        dir.write("mediamtx.yml", &config(&ports, &tls, &recordings, &options));
        let mut mediamtx = MediaMtx {
            proc: None,
            ports,
            tls,
            starts: 0,
            dir,
        };
        mediamtx.spawn().await;
        mediamtx
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let log = self.dir.join(&format!("mediamtx-{}.log", self.starts));
        let mut cmd = command(&find_binary("mediamtx"), self.dir.path());
        cmd.arg(self.dir.join("mediamtx.yml"));
        // The API is the last listener mediamtx opens, so when it answers, RTMP(S) and SRT
        // listen too.
        let url = format!("{}/v3/paths/list", self.api_url());
        let proc = self.proc.insert(Proc::spawn(
            &format!("mediamtx :{}", self.ports.rtmp),
            cmd,
            &log,
            &log,
        ));
        proc.wait_ready(&format!("its API answered {url}"), START_TIMEOUT, || {
            let url = url.clone();
            async move { matches!(request(Method::Get, &url, None).await, Ok((200, _))) }
        })
        .await;
    }

    /// `http://127.0.0.1:PORT`, the HTTP API.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.api)
    }

    pub fn rtmp_port(&self) -> u16 {
        self.ports.rtmp
    }

    pub fn rtmps_port(&self) -> u16 {
        self.ports.rtmps
    }

    /// The SRT listener's port (UDP).
    pub fn srt_port(&self) -> u16 {
        self.ports.srt
    }

    /// `rtmp://127.0.0.1:PORT/<path>`; a path `live/key` is app `live`, stream key `key`.
    pub fn rtmp_url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{path}", self.ports.rtmp)
    }

    /// `rtmps://127.0.0.1:PORT/<path>` (the certificate names `127.0.0.1` and `localhost`).
    pub fn rtmps_url(&self, path: &str) -> String {
        format!("rtmps://127.0.0.1:{}/{path}", self.ports.rtmps)
    }

    /// `srt://127.0.0.1:PORT?streamid=publish:<path>`, with `&passphrase=…&pbkeylen=16` when a
    /// passphrase is given (AES-128, what a caller gets when it does not choose).
    pub fn srt_url(&self, path: &str, passphrase: Option<&str>) -> String {
        let mut url = format!("srt://127.0.0.1:{}?streamid=publish:{path}", self.ports.srt);
        if let Some(p) = passphrase {
            url.push_str(&format!("&passphrase={p}&pbkeylen=16"));
        }
        url
    }

    /// The test CA that signed the RTMPS certificate (PEM): what a client must trust.
    pub fn ca_pem(&self) -> &Path {
        &self.tls.ca_pem
    }

    /// The RTMPS server certificate (PEM, signed by [`Self::ca_pem`]).
    pub fn cert_pem(&self) -> &Path {
        &self.tls.cert_pem
    }

    /// The RTMPS server certificate's private key (PEM).
    pub fn key_pem(&self) -> &Path {
        &self.tls.key_pem
    }

    /// A CA that signed nothing here (PEM): a client trusting only it must reject the server.
    pub fn untrusted_ca_pem(&self) -> &Path {
        &self.tls.untrusted_ca_pem
    }

    /// The directory the recordings of `path` go to (it may not exist yet).
    pub fn recordings_dir(&self, path: &str) -> PathBuf {
        self.dir.join("recordings").join(path)
    }

    /// The recordings of `path` so far, oldest first (one per publish). The newest may still
    /// be being written while its publisher is connected.
    pub fn recordings(&self, path: &str) -> Vec<PathBuf> {
        let dir = self.recordings_dir(path);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "mp4"))
                .collect(),
            Err(_) => Vec::new(),
        };
        // The names are start times in a lexically sortable format.
        files.sort();
        files
    }

    /// Waits until `path` has at least `count` recordings and no publisher (so the last one
    /// is complete), and returns them oldest first. Panics with mediamtx's log on timeout.
    pub async fn wait_for_recordings(
        &self,
        path: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<PathBuf> {
        let deadline = Instant::now() + timeout;
        loop {
            let files = self.recordings(path);
            if files.len() >= count && self.publisher(path).await.is_none() {
                // The recorder closes the file as the path goes offline: give it a moment to
                // write the last fragment.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return self.recordings(path);
            }
            if Instant::now() >= deadline {
                panic!(
                    "mediamtx: after {timeout:?}, {path} has {} recording(s) ({files:?}), {} wanted, \
                     and publisher {:?}\n{}",
                    files.len(),
                    count,
                    self.publisher(path).await,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every path mediamtx knows (configured or published to).
    pub async fn paths(&self) -> Vec<PathInfo> {
        let list = request_ok(
            Method::Get,
            &format!("{}/v3/paths/list?itemsPerPage=1000", self.api_url()),
            None,
        )
        .await;
        items(&list).iter().map(PathInfo::from_api).collect()
    }

    /// The path `path`, if mediamtx knows it.
    pub async fn path(&self, path: &str) -> Option<PathInfo> {
        self.paths().await.into_iter().find(|p| p.name == path)
    }

    /// Bytes received from publishers of `path` since mediamtx (re)started; 0 for an unknown path.
    pub async fn bytes_received(&self, path: &str) -> u64 {
        self.path(path).await.map_or(0, |p| p.bytes_received)
    }

    async fn conns(&self, protocol: Protocol) -> Vec<Conn> {
        let list = request_ok(
            Method::Get,
            &format!(
                "{}/v3/{}/list?itemsPerPage=1000",
                self.api_url(),
                protocol.api_name()
            ),
            None,
        )
        .await;
        items(&list)
            .iter()
            .map(|item| Conn::from_api(protocol, item))
            .collect()
    }

    /// RTMP and RTMPS connections (see [`Conn::protocol`]).
    pub async fn rtmp_conns(&self) -> Vec<Conn> {
        let mut conns = self.conns(Protocol::Rtmp).await;
        conns.extend(self.conns(Protocol::Rtmps).await);
        conns
    }

    pub async fn srt_conns(&self) -> Vec<Conn> {
        self.conns(Protocol::Srt).await
    }

    /// Every connection publishing right now, over any protocol.
    pub async fn publishers(&self) -> Vec<Conn> {
        let mut conns = self.rtmp_conns().await;
        conns.extend(self.srt_conns().await);
        conns.retain(Conn::is_publishing);
        conns
    }

    /// The connection publishing to `path`, if any.
    pub async fn publisher(&self, path: &str) -> Option<Conn> {
        self.publishers().await.into_iter().find(|c| c.path == path)
    }

    /// Waits until a connection publishes to `path` and the path is online (tracks known), and
    /// returns it. Panics with mediamtx's log on timeout.
    pub async fn wait_for_publisher(&mut self, path: &str, timeout: Duration) -> Conn {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(conn) = self.publisher(path).await
                && self.path(path).await.is_some_and(|p| p.online)
            {
                return conn;
            }
            if let Some(status) = self.proc.as_mut().and_then(Proc::try_wait) {
                panic!("mediamtx exited with {status}\n{}", self.log_tail());
            }
            if Instant::now() >= deadline {
                panic!(
                    "mediamtx: nobody published to {path} within {timeout:?}\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kick(&self, protocol: Protocol, id: &str) {
        request_ok(
            Method::Post,
            &format!("{}/v3/{}/kick/{id}", self.api_url(), protocol.api_name()),
            None,
        )
        .await;
    }

    /// Closes the RTMP or RTMPS connection `id` (`POST /v3/rtmp[s]conns/kick/<id>`). Panics if
    /// there is no such connection.
    pub async fn kick_rtmp(&self, id: &str) {
        let conn = self
            .rtmp_conns()
            .await
            .into_iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("mediamtx: no RTMP or RTMPS connection {id} to kick"));
        self.kick(conn.protocol, id).await;
    }

    /// Closes the SRT connection `id` (`POST /v3/srtconns/kick/<id>`).
    pub async fn kick_srt(&self, id: &str) {
        self.kick(Protocol::Srt, id).await;
    }

    /// Closes whatever connection publishes to `path` and returns it. Panics if none does.
    pub async fn kick_publisher(&self, path: &str) -> Conn {
        let conn = self
            .publisher(path)
            .await
            .unwrap_or_else(|| panic!("mediamtx: nobody publishes to {path}, nothing to kick"));
        self.kick(conn.protocol, &conn.id).await;
        conn
    }

    /// Stops mediamtx (SIGTERM, SIGKILL after 10 s). Ports, config and recordings stay for
    /// `restart()`.
    pub async fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.terminate(STOP_GRACE).await;
        }
    }

    /// Starts it again (stopping it first if needed) on the same ports and recordings dir.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.try_wait().is_none())
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// The test's temp dir (config, logs, `recordings/`, `tls/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything every start of mediamtx logged.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.join(&format!("mediamtx-{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    fn log_tail(&self) -> String {
        self.proc
            .as_ref()
            .map(Proc::log_tail)
            .unwrap_or_else(|| "(mediamtx is not running)".to_string())
    }
}

/// The `items` of one of the API's list answers.
fn items(list: &Value) -> &[Value] {
    list["items"].as_array().map_or(&[], Vec::as_slice)
}

/// A YAML string (JSON's quoting is valid YAML).
fn yaml_str(s: &str) -> String {
    Value::from(s).to_string()
}

/// mediamtx.yml: only RTMP(S), SRT and the API, all on 127.0.0.1; everything recorded.
fn config(ports: &Ports, tls: &Tls, recordings: &Path, options: &MediaMtxOptions) -> String {
    let record_path = recordings.join("%path/%Y-%m-%d_%H-%M-%S-%f");
    let mut paths = String::new();
    for (path, passphrase) in &options.srt_publish_passphrases {
        paths.push_str(&format!(
            "  {}:\n    srtPublishPassphrase: {}\n",
            yaml_str(path),
            yaml_str(passphrase)
        ));
    }
    format!(
        r#"# Written by the egress e2e harness (tests/src/mediamtx.rs).
logLevel: info
logDestinations: [stdout]
readTimeout: {read_timeout}ms
writeTimeout: 10s
api: yes
apiAddress: 127.0.0.1:{api}
metrics: no
pprof: no
playback: no
rtsp: no
hls: no
webrtc: no
moq: no
rtmp: yes
# "optional": plain RTMP on rtmpAddress and RTMPS on rtmpsAddress.
rtmpEncryption: optional
rtmpAddress: 127.0.0.1:{rtmp}
rtmpsAddress: 127.0.0.1:{rtmps}
rtmpServerKey: {key}
rtmpServerCert: {cert}
srt: yes
srtAddress: 127.0.0.1:{srt}
pathDefaults:
  record: yes
  recordPath: {record_path}
  # fMP4: the MPEG-TS recorder writes no file for a video-only publish.
  recordFormat: fmp4
  recordPartDuration: 200ms
  recordSegmentDuration: 1h
  recordDeleteAfter: 0s
  overridePublisher: {override_publisher}
paths:
{paths}  all_others:
"#,
        read_timeout = options.read_timeout.as_millis(),
        api = ports.api,
        rtmp = ports.rtmp,
        rtmps = ports.rtmps,
        srt = ports.srt,
        key = yaml_str(&tls.key_pem.to_string_lossy()),
        cert = yaml_str(&tls.cert_pem.to_string_lossy()),
        record_path = yaml_str(&record_path.to_string_lossy()),
        override_publisher = if options.override_publisher {
            "yes"
        } else {
            "no"
        },
    )
}

/// Runs `openssl` with `args` in `dir`, panicking with its output if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (Debian package openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for `localhost`/`127.0.0.1` it signs, and an unrelated CA, all
/// P-256 (quick to make) and valid for two days, made with the openssl CLI (OpenSSL 3's
/// `req -CA` signs in one step).
fn make_test_pki(dir: &Path) -> Tls {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let new_ca = |name: &str, cn: &str| {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    };
    new_ca("ca", "egress-e2e test CA");
    new_ca("untrusted-ca", "egress-e2e untrusted CA");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
            "server.key",
            "-out",
            "server.pem",
        ],
    );
    Tls {
        ca_pem: dir.join("ca.pem"),
        cert_pem: dir.join("server.pem"),
        key_pem: dir.join("server.key"),
        untrusted_ca_pem: dir.join("untrusted-ca.pem"),
    }
}

/// The start of a mediamtx recording as Unix time in seconds, from its file name
/// (`%Y-%m-%d_%H-%M-%S-%f`, local time); `None` for another name. mediamtx names the file
/// when it starts recording: for RTMP that is when its 2 s probe ends, about 2 s after the
/// first frame the file holds (an SRT file is named at its first frame). The shift is the same
/// for every RTMP file, so differences between files hold.
pub fn recording_start(file: &Path) -> Option<f64> {
    let stem = file.file_stem()?.to_str()?;
    let (date, time) = stem.split_once('_')?;
    let d: Vec<i32> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let t: Vec<i64> = time
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [year, month, day] = <[i32; 3]>::try_from(d).ok()?;
    let [hour, minute, second, micros] = <[i64; 4]>::try_from(t).ok()?;
    // SAFETY: `tm` is zero-initialised and fully owned; mktime only reads and normalises it.
    let secs = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = year - 1900;
        tm.tm_mon = month - 1;
        tm.tm_mday = day;
        tm.tm_hour = hour as i32;
        tm.tm_min = minute as i32;
        tm.tm_sec = second as i32;
        tm.tm_isdst = -1;
        libc::mktime(&mut tm)
    };
    (secs != -1).then(|| secs as f64 + micros as f64 / 1e6)
}

/// The pause between consecutive recordings of one path (mediamtx recordings, oldest first):
/// start of one minus (start + duration) of the one before, in seconds. After a kick this is
/// the reconnect gap a viewer sees.
pub async fn recording_gaps(files: &[PathBuf]) -> Vec<f64> {
    let mut gaps = Vec::new();
    for pair in files.windows(2) {
        let start = |f: &Path| {
            recording_start(f)
                .unwrap_or_else(|| panic!("{} is not named by its start time", f.display()))
        };
        let end_of_first = start(&pair[0]) + crate::recording::probe(&pair[0]).await.duration;
        gaps.push(start(&pair[1]) - end_of_first);
    }
    gaps
}
