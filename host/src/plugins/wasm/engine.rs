//! One wasmtime engine for the process, and the clock that interrupts runaway guests.
//!
//! Epoch interruption makes compiled guest code check a global counter at loop back-edges and
//! function entries; a thread bumps the counter every [`TICK`]. Each store's deadline callback
//! then decides whether the current call has run too long (see `store.rs`). It costs a load
//! and a compare per check, far less than fuel metering.

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{Config, Engine};

/// How often the epoch advances: the granularity of the time limit.
pub const TICK: Duration = Duration::from_millis(10);

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

/// The shared engine (created, with its ticker thread, on first use).
pub fn engine() -> Result<&'static Engine, String> {
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.wasm_component_model(true);
            config.epoch_interruption(true);
            let engine = Engine::new(&config).map_err(|e| format!("cannot start wasmtime: {e}"))?;
            let ticker = engine.clone();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(TICK);
                        ticker.increment_epoch();
                    }
                })
                .map_err(|e| format!("cannot start the WASM epoch thread: {e}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(Clone::clone)
}
