//! `bench-storage`: what the live upload buys, measured against a real S3 server (s3s-fs, SigV4)
//! through the compiled-in `s3` sink and the host's own upload code (`egress_host::storage`).
//!
//! 1. StopEgress → stored, for synthetic recordings of 1 and 30 minutes at 3 Mbit/s (a 720p30
//!    composite's bitrate), written faster than real time: the file grows while the upload
//!    follows it (as the egress does), then "stop" marks it complete and the clock runs until
//!    the object is verified. Beside it, the Go egress's way: the whole file uploaded after stop.
//! 2. Upload throughput and CPU per GiB for a 1 GiB file (client process CPU; the server's CPU
//!    is printed separately).
//!
//! Usage: `cargo run --release -p egress-bench-storage [-- --long-minutes 30 --speedup 40]`.
//! Figures are printed, never asserted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egress_e2e::storage::{
    MOTO_ACCESS_KEY, MOTO_SECRET_KEY, S3_REGION, S3S_ACCESS_KEY, S3S_SECRET_KEY,
};
use egress_e2e::{Moto, S3sFs};
use egress_host::storage::{Destination, Destinations, LiveUpload, upload_file};
use egress_plugin_api::{BuiltinSink, LoadedPlugin};
use egress_plugin_s3::S3Sink;
use serde_json::json;

const BUCKET: &str = "bench";
/// A 720p30 composite's video + audio bitrate.
const BITRATE_BPS: u64 = 3_000_000;
/// The muxer writes a fragment a second.
const FRAGMENT: Duration = Duration::from_secs(1);

struct Args {
    long_minutes: u64,
    speedup: u64,
    gib: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        long_minutes: 30,
        speedup: 40,
        gib: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match flag.as_str() {
            "--long-minutes" => a.long_minutes = value("--long-minutes")?,
            "--speedup" => a.speedup = value("--speedup")?.max(1),
            "--gib" => a.gib = value("--gib")?.max(1),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn cpu_seconds_self() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn cpu_seconds_of(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// An S3 server to measure against.
struct Server {
    name: &'static str,
    endpoint: String,
    access_key: &'static str,
    secret: &'static str,
}

fn destination(s3: &Server, key: &str) -> Destinations {
    let plugin = BuiltinSink::of::<S3Sink>();
    let config = json!({
        "access_key": s3.access_key, "secret": s3.secret, "region": S3_REGION,
        "endpoint": s3.endpoint, "bucket": BUCKET, "force_path_style": true
    });
    let factory = plugin
        .create(&config)
        .unwrap_or_else(|e| panic!("s3 sink config: {e}"));
    Destinations {
        primary: Destination {
            label: "S3",
            factory: Arc::from(factory),
            key: key.into(),
            prefix: String::new(),
            custom_endpoint: true,
            is_backup: false,
        },
        backup: None,
    }
}

/// Appends `minutes` of a 3 Mbit/s recording to `path`, one fragment per (sped-up) second.
async fn write_recording(path: &Path, minutes: u64, speedup: u64) {
    let per_fragment = (BITRATE_BPS / 8) as usize;
    let mut block = vec![0u8; per_fragment];
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("recording file");
    let tick = FRAGMENT / speedup as u32;
    let mut next = tokio::time::Instant::now();
    for i in 0..minutes * 60 {
        // Different bytes per fragment, so a wrong offset could not go unnoticed.
        block[..8].copy_from_slice(&i.to_le_bytes());
        f.write_all(&block).expect("write fragment");
        next += tick;
        tokio::time::sleep_until(next).await;
    }
    f.sync_all().expect("fsync");
}

struct StopFigures {
    live_stop_to_stored: Duration,
    after_stop_upload: Duration,
    size: u64,
}

async fn stop_to_stored(s3: &Server, dir: &Path, minutes: u64, speedup: u64) -> StopFigures {
    let live_path = dir.join(format!("live-{minutes}.mp4"));
    let upload = LiveUpload::start(
        destination(s3, &format!("live/{minutes}.mp4")),
        live_path.clone(),
        "video/mp4".into(),
    );
    write_recording(&live_path, minutes, speedup).await;
    let stop = Instant::now();
    let stored = upload
        .finish()
        .await
        .unwrap_or_else(|e| panic!("live upload: {e}"));
    let live_stop_to_stored = stop.elapsed();

    // The Go egress's way: nothing moves until the recording has stopped.
    let stop = Instant::now();
    upload_file(
        &destination(s3, &format!("after/{minutes}.mp4")),
        &live_path,
        "video/mp4",
    )
    .await
    .unwrap_or_else(|e| panic!("upload after stop: {e}"));
    let after_stop_upload = stop.elapsed();
    let _ = std::fs::remove_file(&live_path);
    StopFigures {
        live_stop_to_stored,
        after_stop_upload,
        size: stored.size,
    }
}

fn make_file(path: &PathBuf, bytes: u64) {
    let mut f = std::fs::File::create(path).expect("create");
    let block: Vec<u8> = (0..(1 << 20)).map(|i| (i * 31 % 251) as u8).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).expect("write");
        left -= n as u64;
    }
    f.sync_all().expect("fsync");
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-storage: {e}");
            std::process::exit(2);
        }
    };
    let s3fs = S3sFs::start().await;
    s3fs.create_bucket(BUCKET).await;
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let s3 = Server {
        name: "s3s-fs",
        endpoint: s3fs.endpoint(),
        access_key: S3S_ACCESS_KEY,
        secret: S3S_SECRET_KEY,
    };
    let servers = [
        Server {
            name: "s3s-fs",
            endpoint: s3fs.endpoint(),
            access_key: S3S_ACCESS_KEY,
            secret: S3S_SECRET_KEY,
        },
        Server {
            name: "moto",
            endpoint: moto.endpoint(),
            access_key: MOTO_ACCESS_KEY,
            secret: MOTO_SECRET_KEY,
        },
    ];
    let dir = tempfile::tempdir().expect("temp dir");

    println!(
        "StopEgress → object stored and verified (s3 sink, 3 Mbit/s recordings written {}x real time)",
        args.speedup
    );
    println!(
        "{:>8} {:>10} {:>10} {:>22} {:>24}",
        "server", "recording", "size", "live upload (ours)", "upload after stop (Go)"
    );
    for server in &servers {
        for minutes in [1, args.long_minutes] {
            let f = stop_to_stored(server, dir.path(), minutes, args.speedup).await;
            println!(
                "{:>8} {:>8} m {:>7} MiB {:>20.2} s {:>22.2} s",
                server.name,
                minutes,
                f.size >> 20,
                f.live_stop_to_stored.as_secs_f64(),
                f.after_stop_upload.as_secs_f64()
            );
        }
    }
    // The rest runs on s3s-fs only (moto keeps objects in memory).
    drop(moto);

    let bytes = args.gib << 30;
    let path = dir.path().join("big.bin");
    make_file(&path, bytes);
    let server_pid = s3fs.pid().unwrap_or(0);
    let (cpu0, srv0, t0) = (
        cpu_seconds_self(),
        cpu_seconds_of(server_pid),
        Instant::now(),
    );
    upload_file(
        &destination(&s3, "big.bin"),
        &path,
        "application/octet-stream",
    )
    .await
    .unwrap_or_else(|e| panic!("1 GiB upload: {e}"));
    let wall = t0.elapsed().as_secs_f64();
    let (cpu, srv) = (cpu_seconds_self() - cpu0, cpu_seconds_of(server_pid) - srv0);
    let gib = bytes as f64 / (1u64 << 30) as f64;
    println!();
    println!(
        "Upload of {} GiB through the s3 sink (multipart, SigV4, SHA-256 checksums):",
        args.gib
    );
    println!(
        "  throughput      {:>8.1} MiB/s",
        bytes as f64 / (1 << 20) as f64 / wall
    );
    println!("  egress CPU      {:>8.2} s per GiB", cpu / gib);
    println!(
        "  s3s-fs CPU      {:>8.2} s per GiB (the server, for reference)",
        srv / gib
    );
}
