//! A second RTMP implementation: nginx with Debian's RTMP module (`libnginx-mod-rtmp`,
//! nginx-rtmp 1.2.2), on free 127.0.0.1 ports, recording each publish to an FLV file in the
//! test's temp dir. Recipe: `../shared/reference/test-services.md` §4a.
//!
//! * One RTMP application, [`APP`] (`live`): publish to `rtmp://127.0.0.1:PORT/live/<key>`
//!   ([`NginxRtmp::rtmp_url`]); anything else is refused.
//! * Each publish is recorded to `recordings/<key>-<unix seconds>.flv` (`record_unique on`):
//!   two publishes to one key within the same second would share a file, the second truncating
//!   the first.
//! * Its HTTP side serves `/stat` (nginx-rtmp's XML statistics: publishers, bytes in) and
//!   `/control` (drop a publisher), behind [`NginxRtmp::publishers`] and [`NginxRtmp::kick`].
//! * No RTMPS (that would take nginx's stream module as a TLS proxy; mediamtx covers RTMPS).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::json_api::{Method, request};
use crate::process::{Proc, command};
use crate::tools::TestDir;
use crate::{START_TIMEOUT, free_port};

/// The one RTMP application configured.
pub const APP: &str = "live";
const STOP_GRACE: Duration = Duration::from_secs(10);
const MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// A stream with a publisher, as nginx-rtmp's `/stat` reports it.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// The stream key.
    pub key: String,
    /// Bytes received on this stream so far.
    pub bytes_in: u64,
    /// Milliseconds since the publish began.
    pub time_ms: u64,
}

/// A running nginx with the RTMP module (see the module docs). Killed on drop.
pub struct NginxRtmp {
    proc: Option<Proc>,
    rtmp_port: u16,
    http_port: u16,
    starts: u32,
    dir: TestDir,
}

impl NginxRtmp {
    /// Starts nginx and waits until its HTTP side answers (the RTMP listener opens first).
    pub async fn start() -> NginxRtmp {
        assert!(
            Path::new(MODULE).is_file(),
            "{MODULE} is missing: run scripts/setup (it installs the Debian package libnginx-mod-rtmp)"
        );
        let dir = TestDir::new("nginx-rtmp");
        for sub in ["recordings", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))
                .unwrap_or_else(|e| panic!("cannot create {sub} in {}: {e}", dir.path().display()));
        }
        let mut nginx = NginxRtmp {
            proc: None,
            rtmp_port: free_port(),
            http_port: free_port(),
            starts: 0,
            dir,
        };
        let conf = config(nginx.dir.path(), nginx.rtmp_port, nginx.http_port);
        nginx.dir.write("nginx.conf", &conf);
        nginx.spawn().await;
        nginx
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let log = self.dir.join(&format!("nginx-{}.log", self.starts));
        let mut cmd = command(&nginx_bin(), self.dir.path());
        // `-e stderr`: even errors before the config is read go to this start's log.
        cmd.arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .args(["-e", "stderr"]);
        let url = format!("{}/stat", self.http_url());
        let proc = self.proc.insert(Proc::spawn(
            &format!("nginx-rtmp :{}", self.rtmp_port),
            cmd,
            &log,
            &log,
        ));
        proc.wait_ready(&format!("it answered {url}"), START_TIMEOUT, || {
            let url = url.clone();
            async move { matches!(request(Method::Get, &url, None).await, Ok((200, _))) }
        })
        .await;
    }

    /// `http://127.0.0.1:PORT` (`/stat`, `/control`).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn rtmp_port(&self) -> u16 {
        self.rtmp_port
    }

    /// `rtmp://127.0.0.1:PORT/live/<key>`.
    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{APP}/{key}", self.rtmp_port)
    }

    /// The recordings of `key` so far, oldest first. The newest may still be being written
    /// while its publisher is connected.
    pub fn recordings(&self, key: &str) -> Vec<PathBuf> {
        let prefix = format!("{key}-");
        let mut files: Vec<(u64, std::time::SystemTime, PathBuf)> =
            match std::fs::read_dir(self.dir.join("recordings")) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter_map(|p| {
                        let stem = p.file_stem()?.to_str()?;
                        let secs = stem.strip_prefix(&prefix)?.parse::<u64>().ok()?;
                        let modified = std::fs::metadata(&p).and_then(|m| m.modified()).ok()?;
                        (p.extension()? == "flv").then_some((secs, modified, p))
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
        files.sort();
        files.into_iter().map(|(_, _, p)| p).collect()
    }

    /// Waits until `key` has at least `count` recordings and no publisher (so the last one is
    /// complete), and returns them oldest first. Panics with nginx's log on timeout.
    pub async fn wait_for_recordings(
        &self,
        key: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<PathBuf> {
        let deadline = Instant::now() + timeout;
        loop {
            let files = self.recordings(key);
            if files.len() >= count && self.publisher(key).await.is_none() {
                return files;
            }
            if Instant::now() >= deadline {
                panic!(
                    "nginx-rtmp: after {timeout:?}, {key} has {} recording(s) ({files:?}), {count} wanted\n{}",
                    files.len(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The streams being published right now (from `/stat`).
    pub async fn publishers(&self) -> Vec<Publisher> {
        let url = format!("{}/stat", self.http_url());
        let (status, xml) = request(Method::Get, &url, None)
            .await
            .unwrap_or_else(|e| panic!("nginx-rtmp: {e}"));
        assert_eq!(status, 200, "GET {url}: {xml}");
        parse_publishers(&xml)
            .unwrap_or_else(|e| panic!("nginx-rtmp: cannot read {url} ({e}): {xml}"))
    }

    /// The publisher of `key`, if any.
    pub async fn publisher(&self, key: &str) -> Option<Publisher> {
        self.publishers().await.into_iter().find(|p| p.key == key)
    }

    /// Bytes received on `key` by its current publisher; 0 when nobody publishes.
    pub async fn bytes_received(&self, key: &str) -> u64 {
        self.publisher(key).await.map_or(0, |p| p.bytes_in)
    }

    /// Waits until someone publishes to `key`. Panics with nginx's log on timeout.
    pub async fn wait_for_publisher(&self, key: &str, timeout: Duration) -> Publisher {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.publisher(key).await {
                return p;
            }
            if Instant::now() >= deadline {
                panic!(
                    "nginx-rtmp: nobody published to {key} within {timeout:?}\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Drops the publisher of `key` (`/control/drop/publisher`). Panics if there was none.
    pub async fn kick(&self, key: &str) {
        let url = format!(
            "{}/control/drop/publisher?app={APP}&name={key}",
            self.http_url()
        );
        let (status, body) = request(Method::Get, &url, None)
            .await
            .unwrap_or_else(|e| panic!("nginx-rtmp: {e}"));
        // It answers the number of clients dropped.
        assert!(
            status == 200 && body.trim() != "0",
            "nginx-rtmp: GET {url} dropped nobody: HTTP {status}: {body:?}"
        );
    }

    /// Stops nginx (SIGTERM, SIGKILL after 10 s). Ports and recordings stay for `restart()`.
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

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything every start of nginx logged.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.join(&format!("nginx-{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    fn log_tail(&self) -> String {
        self.proc
            .as_ref()
            .map(Proc::log_tail)
            .unwrap_or_else(|| "(nginx is not running)".to_string())
    }
}

/// nginx from Debian (`nginx-light` depends on it): on PATH, or in /usr/sbin.
fn nginx_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/sbin"));
    dirs.into_iter()
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("nginx was found neither on PATH nor in /usr/sbin: run scripts/setup")
        })
}

/// The config. Everything nginx writes stays in `dir`. As root, the workers (which write the
/// recordings) would run as `nobody` and could not enter the 0700 temp dir, so they stay root.
fn config(dir: &Path, rtmp_port: u16, http_port: u16) -> String {
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    let dir = dir.display();
    format!(
        r#"# Written by the egress e2e harness (tests/src/nginx_rtmp.rs).
load_module {MODULE};
daemon off;
master_process on;
worker_processes 1;
{user}pid "{dir}/nginx.pid";
error_log stderr info;
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
        application {APP} {{
            live on;
            record all;
            record_path "{dir}/recordings";
            record_unique on;
        }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path "{dir}/tmp/body";
    proxy_temp_path "{dir}/tmp/proxy";
    fastcgi_temp_path "{dir}/tmp/fastcgi";
    uwsgi_temp_path "{dir}/tmp/uwsgi";
    scgi_temp_path "{dir}/tmp/scgi";
    server {{
        listen 127.0.0.1:{http_port};
        location /stat {{ rtmp_stat all; }}
        location /control {{ rtmp_control all; }}
    }}
}}
"#
    )
}

// nginx-rtmp's /stat XML, only the parts read here (serde ignores the rest).
#[derive(Deserialize)]
struct Stat {
    #[serde(default)]
    server: Vec<StatServer>,
}

#[derive(Deserialize)]
struct StatServer {
    #[serde(default)]
    application: Vec<StatApplication>,
}

#[derive(Deserialize)]
struct StatApplication {
    live: Option<StatLive>,
}

#[derive(Deserialize)]
struct StatLive {
    #[serde(default)]
    stream: Vec<StatStream>,
}

#[derive(Deserialize)]
struct StatStream {
    name: String,
    #[serde(default)]
    time: u64,
    #[serde(default)]
    bytes_in: u64,
    /// `<publishing/>` is there while someone publishes.
    publishing: Option<Flag>,
}

#[derive(Deserialize)]
struct Flag {}

fn parse_publishers(xml: &str) -> Result<Vec<Publisher>, quick_xml::DeError> {
    let stat: Stat = quick_xml::de::from_str(xml)?;
    Ok(stat
        .server
        .into_iter()
        .flat_map(|s| s.application)
        .filter_map(|a| a.live)
        .flat_map(|l| l.stream)
        .filter(|s| s.publishing.is_some())
        .map(|s| Publisher {
            key: s.name,
            bytes_in: s.bytes_in,
            time_ms: s.time,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_publishers_from_stat() {
        let xml = r#"<?xml version="1.0" encoding="utf-8" ?>
<rtmp><nginx_version>1.22.1</nginx_version><naccepted>2</naccepted><bytes_in>81485</bytes_in>
<server><application><name>live</name><live>
<stream><name>key1</name><time>1714</time><bw_in>0</bw_in><bytes_in>74136</bytes_in>
<client><id>1</id><address>127.0.0.1</address><publishing/><active/></client>
<meta><video><width>320</width></video></meta><nclients>1</nclients><publishing/><active/></stream>
<stream><name>idle</name><time>5</time><bytes_in>0</bytes_in><nclients>0</nclients></stream>
<nclients>1</nclients></live></application></server></rtmp>"#;
        let publishers = parse_publishers(xml).unwrap();
        assert_eq!(publishers.len(), 1, "{publishers:?}");
        assert_eq!(publishers[0].key, "key1");
        assert_eq!(publishers[0].bytes_in, 74136);
        assert_eq!(publishers[0].time_ms, 1714);
        assert!(parse_publishers("<rtmp><server><application><name>live</name><live></live></application></server></rtmp>").unwrap().is_empty());
    }
}
