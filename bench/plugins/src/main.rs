//! `bench-plugins`: stream bytes through a sink via each loader (compiled in, dylib, WASM) and
//! print throughput, CPU per GiB and resident-set growth side by side. Nothing is asserted.
//!
//! ```text
//! cargo run -p egress-bench-plugins --release --bin bench-plugins -- [--size-mib 1024]
//!     [--chunk-kib 1024] [--sinks null,sha256,file,http-put] [--loaders builtin,dylib,wasm]
//! ```
//!
//! Sinks: `null` (the testbed, discarding without hashing: pure boundary cost), `sha256` (the
//! testbed hashing), `file` (the file sink, fsync off, on /dev/shm when there is one) and
//! `http-put` (the example, to a PUT server in this process). The dylib and WASM artifacts are
//! built with `cargo build --release` into `<target>/bench-artifacts` first.
//!
//! CPU is this process's user + system time (every thread: plugin workers, WASM, the HTTP
//! server for `http-put`) divided by GiB streamed. Memory is the peak resident-set growth over
//! the value before the object was opened.

mod artifacts;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egress_host::config::{self, EmptyEnv};
use egress_host::plugins::PluginRegistry;
use egress_http_put_test_server::TestServer;
use egress_plugin_api::conformance::{Pattern, PeakRss};
use egress_plugin_api::{ObjectSpec, SinkFactory};

// The compiled-in rows need these crates linked; naming them keeps the linker from dropping
// their `inventory` registrations.
use egress_plugin_http_put as _;
use egress_plugin_testbed as _;

struct Args {
    size: u64,
    chunk: usize,
    sinks: Vec<String>,
    loaders: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        size: 1 << 30,
        chunk: 1 << 20,
        sinks: ["null", "sha256", "file", "http-put"]
            .map(String::from)
            .to_vec(),
        loaders: ["builtin", "dylib", "wasm"].map(String::from).to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--size-mib" => args.size = value()?.parse::<u64>().map_err(|e| e.to_string())? << 20,
            "--chunk-kib" => {
                args.chunk = value()?.parse::<usize>().map_err(|e| e.to_string())? << 10
            }
            "--sinks" => args.sinks = value()?.split(',').map(String::from).collect(),
            "--loaders" => args.loaders = value()?.split(',').map(String::from).collect(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.chunk == 0 || args.size == 0 {
        return Err("sizes must be positive".into());
    }
    Ok(args)
}

/// Process CPU time (user + system, all threads).
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer, RUSAGE_SELF is a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

struct Sample {
    mib_s: f64,
    cpu_per_gib: f64,
    rss_mib: Option<f64>,
}

fn measure(
    rt: &tokio::runtime::Runtime,
    sink: &dyn SinkFactory,
    size: u64,
    chunk: usize,
) -> Result<Sample, String> {
    // One chunk reused: generating data is not what is measured. Cloning `Bytes` is a
    // reference count, so compiled-in sinks see no copy; the dylib and WASM boundaries copy.
    let data = Pattern::new(1).chunk(0, chunk);
    let peak = PeakRss::start();
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    rt.block_on(async {
        let mut object = sink
            .open(ObjectSpec::new("bench/object.bin").with_expected_size(size))
            .await
            .map_err(|e| e.to_string())?;
        let mut sent = 0u64;
        while sent < size {
            let n = chunk.min((size - sent) as usize);
            object
                .write(data.slice(..n))
                .await
                .map_err(|e| e.to_string())?;
            sent += n as u64;
        }
        object.finish().await.map_err(|e| e.to_string())
    })?;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    let growth = peak.stop();
    let gib = size as f64 / (1u64 << 30) as f64;
    Ok(Sample {
        mib_s: (size >> 20) as f64 / elapsed,
        cpu_per_gib: cpu / gib,
        rss_mib: growth.map(|g| g as f64 / (1u64 << 20) as f64),
    })
}

fn plugins_yaml(
    sink: &str,
    loader: &str,
    a: &artifacts::Artifacts,
    dir: &Path,
    server: &TestServer,
) -> String {
    let (plugin, config) = match sink {
        "null" => ("testbed", "{ hash: false }".to_string()),
        "sha256" => ("testbed", "{ hash: true }".to_string()),
        "file" => (
            "file",
            format!(
                "{{ directory: {:?}, fsync: false }}",
                dir.display().to_string()
            ),
        ),
        _ => ("http-put", format!("{{ url: {:?} }}", server.url())),
    };
    let path = |so: &Path, wasm: &Path| {
        if loader == "dylib" {
            so.display().to_string()
        } else {
            wasm.display().to_string()
        }
    };
    let file = match plugin {
        "testbed" => path(&a.testbed_so, &a.testbed_wasm),
        "file" => path(&a.file_so, &a.file_wasm),
        _ => path(&a.http_put_so, &a.http_put_wasm),
    };
    let source = match loader {
        "builtin" => format!("builtin: {plugin}"),
        "dylib" => format!("dylib: {file:?}"),
        _ => format!(
            "wasm: {file:?}\n    max_memory_mb: 256\n    allowed_hosts: [127.0.0.1]\n    allowed_dirs: [{:?}]",
            dir.display().to_string()
        ),
    };
    format!(
        "api_key: k\napi_secret: s\nws_url: ws://localhost\nredis: {{ address: localhost:6379 }}\nplugins:\n  - {source}\n    name: bench\n    config: {config}\n"
    )
}

fn load(yaml: &str) -> Result<Arc<dyn SinkFactory>, String> {
    let loaded = config::parse(yaml, &EmptyEnv).map_err(|e| e.to_string())?;
    let registry =
        PluginRegistry::load(loaded.config.plugins.as_deref()).map_err(|e| e.to_string())?;
    registry.sink("bench").map_err(|e| e.to_string())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-plugins: {e}");
            std::process::exit(2);
        }
    };
    let needs_artifacts = args.loaders.iter().any(|l| l != "builtin");
    let artifacts = if needs_artifacts {
        eprintln!("bench-plugins: building the dylib and WASM artifacts (release)…");
        match artifacts::build() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("bench-plugins: {e}");
                std::process::exit(1);
            }
        }
    } else {
        artifacts::Artifacts::none()
    };
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    let dir = match dir {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench-plugins: no temp dir: {e}");
            std::process::exit(1);
        }
    };
    let server = TestServer::start();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-plugins: no runtime: {e}");
            std::process::exit(1);
        }
    };

    println!(
        "{} MiB per run in {} KiB chunks; file sink on {}",
        args.size >> 20,
        args.chunk >> 10,
        dir.path().display()
    );
    println!(
        "{:<9} {:<8} {:>9} {:>11} {:>14}",
        "sink", "loader", "MiB/s", "CPU s/GiB", "peak RSS +MiB"
    );
    for sink in &args.sinks {
        for loader in &args.loaders {
            let yaml = plugins_yaml(sink, loader, &artifacts, dir.path(), &server);
            let row = load(&yaml).and_then(|s| measure(&rt, &*s, args.size, args.chunk));
            match row {
                Ok(s) => println!(
                    "{sink:<9} {loader:<8} {:>9.0} {:>11.2} {:>14}",
                    s.mib_s,
                    s.cpu_per_gib,
                    s.rss_mib.map_or("n/a".into(), |m| format!("{m:.1}"))
                ),
                Err(e) => println!("{sink:<9} {loader:<8} failed: {e}"),
            }
            // Let the file sink's and the server's memory settle between rows.
            let _ = std::fs::remove_file(dir.path().join("bench/object.bin"));
        }
    }
}
