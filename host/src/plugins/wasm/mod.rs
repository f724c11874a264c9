//! The WASM loader: components targeting `egress:plugin/sink-plugin@1.x` or (since 1.1)
//! `egress:plugin/renderer-plugin@1.x` (`renderer.rs`), run by wasmtime.
//!
//! Isolation, per the config's sandbox:
//! * **memory**: each instance's linear memory is capped (`max_memory_mb`); an instance per
//!   open object, so one object's data never sits next to another's;
//! * **time**: each call may compute for `max_call_time` (time spent in host HTTP excluded),
//!   enforced by epoch interruption;
//! * **authority**: WASI with nothing inherited: no environment, arguments, stdin or sockets;
//!   no directories but `allowed_dirs`; network only through `egress:plugin/http`, limited to
//!   `allowed_hosts`.
//!
//! A trap (panic, out of memory, time limit) fails the call with a permanent error and
//! discards the instance; the host process is unaffected.

mod bindings;
mod engine;
mod http;
mod renderer;
mod session;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use egress_plugin_api::{
    ApiVersion, Capabilities, Descriptor, LoadedPlugin, SinkError, SinkFactory, Value,
};
use wasmtime::component::{HasSelf, Linker};

use crate::config::WasmSandbox;
use bindings::renderer::RendererPluginPre;
use bindings::{SinkPlugin, SinkPluginPre};
use http::{HostPattern, HttpGate};
pub use renderer::WasmRenderer;
use session::{WasmFactory, from_wit};
use store::{Sandbox, StoreState, new_store, timed};

/// Why a file is not a usable WASM plugin.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("{0}")]
    Engine(String),
    #[error("cannot compile {}: {message}", path.display())]
    Compile { path: PathBuf, message: String },
    #[error(
        "{} is not an egress plugin component (world egress:plugin/sink-plugin@{}.x or egress:plugin/renderer-plugin@{}.x): {message}",
        path.display(),
        ApiVersion::CURRENT.major,
        ApiVersion::CURRENT.major
    )]
    NotAPlugin { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Version {
        path: PathBuf,
        #[source]
        source: egress_plugin_api::VersionMismatch,
    },
    #[error("{}: describe failed: {source}", path.display())]
    Describe {
        path: PathBuf,
        #[source]
        source: SinkError,
    },
    #[error("{}: allowed_hosts entry {0:?} is not a host pattern", path.display())]
    BadHost { path: PathBuf, pattern: String },
}

/// The sandbox a `wasm:` entry gets when the config says nothing (the config layer fills in
/// the same defaults).
pub fn default_sandbox() -> WasmSandbox {
    use crate::config::defaults::{DEFAULT_WASM_MAX_CALL_TIME, DEFAULT_WASM_MAX_MEMORY_MB};
    WasmSandbox {
        max_memory_mb: DEFAULT_WASM_MAX_MEMORY_MB,
        max_call_time: DEFAULT_WASM_MAX_CALL_TIME,
        allowed_hosts: Vec::new(),
        allowed_dirs: Vec::new(),
    }
}

/// A compiled component, linked and ready to instantiate, with its sandbox.
pub struct Component {
    engine: &'static wasmtime::Engine,
    pre: SinkPluginPre<StoreState>,
    sandbox: Sandbox,
}

/// A loaded WASM plugin.
pub struct WasmPlugin {
    component: Arc<Component>,
    descriptor: Descriptor,
}

/// What one component offers: a sink, a renderer, or (a component exporting both worlds'
/// interfaces) both.
pub struct WasmLibrary {
    pub sink: Option<WasmPlugin>,
    pub renderer: Option<WasmRenderer>,
}

/// Compile and link `path`, then instantiate it to describe what it exports.
pub fn load(path: &Path, sandbox: WasmSandbox) -> Result<WasmLibrary, WasmError> {
    if !path.is_file() {
        return Err(WasmError::Missing(path.to_path_buf()));
    }
    let engine = engine::engine().map_err(WasmError::Engine)?;
    let compiled = wasmtime::component::Component::from_file(engine, path).map_err(|e| {
        WasmError::Compile {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        }
    })?;
    let not_a_plugin = |e: String| WasmError::NotAPlugin {
        path: path.to_path_buf(),
        message: e,
    };
    // One linker with every import either world has (WASI, http, log, types): a renderer
    // imports a subset of the sink's.
    let mut linker: Linker<StoreState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(|e| WasmError::Engine(e.to_string()))?;
    SinkPlugin::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
        .map_err(|e| WasmError::Engine(e.to_string()))?;
    let instance_pre = linker
        .instantiate_pre(&compiled)
        .map_err(|e| not_a_plugin(format!("{e:#}")))?;
    let sink_pre = SinkPluginPre::new(instance_pre.clone());
    let renderer_pre = RendererPluginPre::new(instance_pre);
    let (sink_pre, renderer_pre) = match (sink_pre, renderer_pre) {
        (Err(sink), Err(renderer)) => {
            return Err(not_a_plugin(format!(
                "as a sink: {sink:#}; as a renderer: {renderer:#}"
            )));
        }
        (sink, renderer) => (sink.ok(), renderer.ok()),
    };

    let mut allowed = Vec::with_capacity(sandbox.allowed_hosts.len());
    for pattern in &sandbox.allowed_hosts {
        allowed.push(
            HostPattern::parse(pattern).ok_or_else(|| WasmError::BadHost {
                path: path.to_path_buf(),
                pattern: pattern.clone(),
            })?,
        );
    }
    let sandbox = Sandbox {
        plugin: path.display().to_string(),
        memory_bytes: (sandbox.max_memory_mb as usize).saturating_mul(1 << 20),
        max_call_time: sandbox.max_call_time,
        http: Arc::new(HttpGate::new(allowed)),
        dirs: sandbox.allowed_dirs.clone(),
    };
    let describe_error = |source| match source {
        DescribeError::Version(source) => WasmError::Version {
            path: path.to_path_buf(),
            source,
        },
        DescribeError::Call(source) => WasmError::Describe {
            path: path.to_path_buf(),
            source,
        },
    };
    let renderer = match renderer_pre {
        Some(pre) => Some(
            WasmRenderer::new(renderer::RendererComponent {
                engine,
                pre,
                sandbox: sandbox.clone(),
            })
            .map_err(describe_error)?,
        ),
        None => None,
    };
    let sink = match sink_pre {
        Some(pre) => {
            let mut component = Component {
                engine,
                pre,
                sandbox,
            };
            let descriptor = off_thread(|| describe(&component)).map_err(describe_error)?;
            // Logs and thread names say the plugin's name from now on.
            component.sandbox.plugin = descriptor.name.clone();
            tracing::debug!(path = %path.display(), plugin = %descriptor.name, api = %descriptor.api, "Loaded WASM sink plugin.");
            Some(WasmPlugin {
                component: Arc::new(component),
                descriptor,
            })
        }
        None => None,
    };
    Ok(WasmLibrary { sink, renderer })
}

pub(crate) enum DescribeError {
    Version(egress_plugin_api::VersionMismatch),
    Call(SinkError),
}

impl From<SinkError> for DescribeError {
    fn from(e: SinkError) -> Self {
        DescribeError::Call(e)
    }
}

/// Run a guest call on a thread of its own. WASI's synchronous bindings block on an internal
/// tokio runtime, which panics on a thread that is already driving one (a caller inside
/// `block_on`); objects have their own threads, one-off calls get this.
pub(crate) fn off_thread<R: Send, E: From<SinkError> + Send>(
    f: impl FnOnce() -> Result<R, E> + Send,
) -> Result<R, E> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("egress-wasm-call".into())
            .spawn_scoped(scope, f)
            .map_err(|e| {
                E::from(SinkError::retryable(format!(
                    "cannot start a plugin thread: {e}"
                )))
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(E::from(SinkError::permanent(
                    "the plugin call panicked in the host",
                )))
            })
    })
}

fn describe(component: &Component) -> Result<Descriptor, DescribeError> {
    let mut store = new_store(component.engine, &component.sandbox).map_err(DescribeError::Call)?;
    let bindings =
        timed(&mut store, |s| component.pre.instantiate(s)).map_err(DescribeError::Call)?;
    let d = timed(&mut store, |s| {
        bindings.egress_plugin_sink().call_describe(s)
    })
    .map_err(DescribeError::Call)?;
    descriptor_from_wit(d)
}

/// A described component's descriptor, once its API version is accepted.
pub(crate) fn descriptor_from_wit(
    d: bindings::egress::plugin::types::Descriptor,
) -> Result<Descriptor, DescribeError> {
    let api = ApiVersion::new(d.api_major, d.api_minor);
    ApiVersion::check_plugin(ApiVersion::CURRENT, api).map_err(DescribeError::Version)?;
    let schema: Value = serde_json::from_str(&d.config_schema).map_err(|e| {
        DescribeError::Call(SinkError::permanent(format!(
            "config schema is not JSON: {e}"
        )))
    })?;
    let mut capabilities = Capabilities::none();
    if d.capabilities.streaming {
        capabilities = capabilities.streaming();
    }
    if d.capabilities.needs_local_file {
        capabilities = capabilities.needs_local_file();
    }
    if d.capabilities.live {
        capabilities = capabilities.live();
    }
    Ok(Descriptor::new(d.name, d.version)
        .with_api(api)
        .with_capabilities(capabilities)
        .with_config_schema(schema))
}

impl LoadedPlugin for WasmPlugin {
    fn descriptor(&self) -> Descriptor {
        self.descriptor.clone()
    }

    fn validate(&self, config: &Value) -> Result<(), SinkError> {
        let json = serde_json::to_string(config)
            .map_err(|e| SinkError::config(format!("cannot encode config: {e}")))?;
        let component = &self.component;
        off_thread(|| {
            let mut store = new_store(component.engine, &component.sandbox)?;
            let bindings = timed(&mut store, |s| component.pre.instantiate(s))?;
            timed(&mut store, |s| {
                bindings.egress_plugin_sink().call_validate(s, &json)
            })?
            .map_err(from_wit)
        })
    }

    fn create(&self, config: &Value) -> Result<Box<dyn SinkFactory>, SinkError> {
        // Instances are per object; creating the factory only checks the config once.
        self.validate(config)?;
        let json = serde_json::to_string(config)
            .map_err(|e| SinkError::config(format!("cannot encode config: {e}")))?;
        Ok(Box::new(WasmFactory::new(self.component.clone(), json)))
    }
}
