//! Free ports on 127.0.0.1.

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{TcpListener, UdpSocket};
use std::sync::Mutex;

/// Ports already handed out by this process: never handed out twice, even once freed, so two
/// services started by parallel tests cannot be given the same one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

const LOWEST: u16 = 10_000;

/// The first port the kernel uses for outgoing connections and `bind(0)`: ports are picked
/// below it so that a client socket cannot grab one between `free_port()` and the service's bind.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .filter(|&p| p > LOWEST + 1000)
        .unwrap_or(32_768)
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A port on 127.0.0.1 that is free for both TCP and UDP right now and that this process has
/// not handed out before.
pub fn free_port() -> u16 {
    let high = ephemeral_start();
    let span = u64::from(high - LOWEST);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..10_000 {
        let port = LOWEST + (random_u64() % span) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("free_port: no free port found between {LOWEST} and {high}");
}
