//! The dynamic-library loader.
//!
//! A plugin is a shared library exporting `egress_plugin_entry_v1`, which returns a static
//! descriptor: ABI (major, minor), its own size, the sink function table, (since 1.1, when
//! the size covers it) the renderer table and (since 1.2) the live destination table (see
//! `plugin-api/include/egress_plugin.h`). The
//! loader refuses another major or a newer minor, refuses tables smaller than their version or
//! with a null function, a descriptor with neither table, and never unloads a library: a
//! plugin may have started threads or registered destructors that must outlive any use.
//!
//! Dylibs are trusted code: they run in the host process with its privileges. What the loader
//! guarantees is a clean contract: versioning, ownership of every buffer, panics stopped at the
//! boundary (by the plugin side of `export_sink!`), and blocking calls kept off the async
//! executor (each object runs on its own thread, see `session.rs`; each render on a thread of
//! its own, see `render.rs`; each live session on its own thread, see `live_session.rs`).
//! Every `unsafe` block is here, in `ffi.rs`, `renderer_ffi.rs` or `live_ffi.rs`.

mod ffi;
mod live_ffi;
mod live_session;
mod render;
mod renderer_ffi;
mod session;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use egress_plugin_api::abi::{
    self, DESCRIPTOR_V1_0_SIZE, DESCRIPTOR_V1_1_SIZE, EgressLiveApi, EgressPluginDescriptor,
    EgressRendererApi, EgressSinkApi, EntryFn,
};
use egress_plugin_api::{
    ApiVersion, Descriptor, LayoutRenderer, LiveDescriptor, LiveFactory, LoadedLive, LoadedPlugin,
    LoadedRenderer, SinkError, SinkFactory, Value,
};
use libloading::Library;

use ffi::SinkApi;
use live_ffi::LiveApi;
use renderer_ffi::RendererApi;

/// Why a shared library is not a usable plugin.
#[derive(Debug, thiserror::Error)]
pub enum DylibError {
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("cannot load {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: libloading::Error,
    },
    #[error(
        "{} does not export egress_plugin_entry_v1 (is it an egress plugin built with its `dylib` feature?)",
        .0.display()
    )]
    NoEntry(PathBuf),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
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
}

/// Libraries stay loaded until the process exits, whatever happens to the plugins.
static LOADED: Mutex<Vec<Arc<Library>>> = Mutex::new(Vec::new());

/// What one library offers: a sink, a renderer, a live destination, or several.
pub struct DylibLibrary {
    pub sink: Option<DylibPlugin>,
    pub renderer: Option<DylibRenderer>,
    pub live: Option<DylibLive>,
}

/// A loaded dylib live destination plugin (API 1.2).
pub struct DylibLive {
    api: LiveApi,
    descriptor: LiveDescriptor,
}

/// A loaded dylib sink plugin.
pub struct DylibPlugin {
    api: SinkApi,
    descriptor: Descriptor,
    path: PathBuf,
}

/// A loaded dylib renderer plugin.
pub struct DylibRenderer {
    api: RendererApi,
    descriptor: Descriptor,
}

/// Load `path`, check its ABI version and tables, and ask each table to describe itself.
pub fn load(path: &Path) -> Result<DylibLibrary, DylibError> {
    let invalid = |message: &str| DylibError::Invalid {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    if !path.is_file() {
        return Err(DylibError::Missing(path.to_path_buf()));
    }
    // SAFETY: loading a library runs its initialisers. Dylib plugins are trusted code by
    // contract (see the module docs); the operator chose this path.
    let lib = unsafe { Library::new(path) }.map_err(|source| DylibError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let lib = Arc::new(lib);
    LOADED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(lib.clone());

    // SAFETY: the symbol's type is fixed by the header; a library exporting the name with
    // another type breaks the contract it claims by the name.
    let entry: EntryFn = unsafe {
        *lib.get::<EntryFn>(abi::ENTRY_SYMBOL)
            .map_err(|_| DylibError::NoEntry(path.to_path_buf()))?
    };
    // SAFETY: calling the entry point as the header specifies.
    let descriptor_ptr = unsafe { entry() };
    if descriptor_ptr.is_null() {
        return Err(invalid("egress_plugin_entry_v1 returned null"));
    }
    // SAFETY: non-null, and the library promises a static descriptor. Fields are read one by
    // one through the pointer (no reference to the whole struct, which a 1.0 plugin's 16 bytes
    // do not fill): `struct_size` first, as every version has it, then only what it covers.
    let struct_size = unsafe { (*descriptor_ptr).struct_size } as usize;
    if struct_size < DESCRIPTOR_V1_0_SIZE {
        return Err(invalid(&format!(
            "descriptor is {struct_size} bytes, smaller than v1.0's {DESCRIPTOR_V1_0_SIZE}"
        )));
    }
    // SAFETY: the size covers the v1.0 fields.
    let (major, minor, sink_ptr) = unsafe {
        (
            (*descriptor_ptr).abi_major,
            (*descriptor_ptr).abi_minor,
            (*descriptor_ptr).sink,
        )
    };
    let plugin_api = ApiVersion::new(major, minor);
    ApiVersion::check_plugin(ApiVersion::CURRENT, plugin_api).map_err(|source| {
        DylibError::Version {
            path: path.to_path_buf(),
            source,
        }
    })?;
    // A 1.0 plugin has no `renderer` field: what lies beyond its 16 bytes is not ours to read.
    let renderer_ptr: *const EgressRendererApi =
        if minor >= 1 && struct_size >= DESCRIPTOR_V1_1_SIZE {
            // SAFETY: the size covers the v1.1 field.
            unsafe { (*descriptor_ptr).renderer }
        } else {
            std::ptr::null()
        };
    // Nor has a 1.1 plugin a `live` field.
    let live_ptr: *const EgressLiveApi =
        if minor >= 2 && struct_size >= std::mem::size_of::<EgressPluginDescriptor>() {
            // SAFETY: the size covers the v1.2 field.
            unsafe { (*descriptor_ptr).live }
        } else {
            std::ptr::null()
        };
    if sink_ptr.is_null() && renderer_ptr.is_null() && live_ptr.is_null() {
        return Err(invalid(
            "the descriptor has no sink, renderer or live destination table",
        ));
    }
    let describe_error = |source| DylibError::Describe {
        path: path.to_path_buf(),
        source,
    };
    let sink = if sink_ptr.is_null() {
        None
    } else {
        // SAFETY: non-null and static, as the descriptor.
        let table: &'static EgressSinkApi = unsafe { &*sink_ptr };
        let api = SinkApi::from_table(table, lib.clone()).map_err(|m| invalid(&m))?;
        api.init();
        let descriptor = api.describe().map_err(describe_error)?.with_api(plugin_api);
        tracing::debug!(path = %path.display(), plugin = %descriptor.name, api = %plugin_api, "Loaded dylib sink plugin.");
        Some(DylibPlugin {
            api,
            descriptor,
            path: path.to_path_buf(),
        })
    };
    let renderer = if renderer_ptr.is_null() {
        None
    } else {
        // SAFETY: non-null and static, as the descriptor.
        let table: &'static EgressRendererApi = unsafe { &*renderer_ptr };
        let api = RendererApi::from_table(table, lib.clone()).map_err(|m| invalid(&m))?;
        api.init();
        let descriptor = api.describe().map_err(describe_error)?.with_api(plugin_api);
        tracing::debug!(path = %path.display(), plugin = %descriptor.name, api = %plugin_api, "Loaded dylib renderer plugin.");
        Some(DylibRenderer { api, descriptor })
    };
    let live = if live_ptr.is_null() {
        None
    } else {
        // SAFETY: non-null and static, as the descriptor.
        let table: &'static EgressLiveApi = unsafe { &*live_ptr };
        let api = LiveApi::from_table(table, lib).map_err(|m| invalid(&m))?;
        api.init();
        let descriptor = api.describe().map_err(describe_error)?.with_api(plugin_api);
        tracing::debug!(path = %path.display(), plugin = %descriptor.name, api = %plugin_api, schemes = ?descriptor.schemes, "Loaded dylib live destination plugin.");
        Some(DylibLive { api, descriptor })
    };
    Ok(DylibLibrary {
        sink,
        renderer,
        live,
    })
}

impl LoadedLive for DylibLive {
    fn descriptor(&self) -> LiveDescriptor {
        self.descriptor.clone()
    }

    fn validate(&self, config: &Value) -> Result<(), SinkError> {
        self.api.validate(config)
    }

    fn create(&self, config: &Value) -> Result<Box<dyn LiveFactory>, SinkError> {
        let handle = self.api.create(config)?;
        Ok(Box::new(live_session::DylibLiveFactory::new(handle)))
    }
}

impl DylibPlugin {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl LoadedRenderer for DylibRenderer {
    fn descriptor(&self) -> Descriptor {
        self.descriptor.clone()
    }

    fn validate(&self, config: &Value) -> Result<(), SinkError> {
        self.api.validate(config)
    }

    fn create(&self, config: &Value) -> Result<Box<dyn LayoutRenderer>, SinkError> {
        let handle = self.api.create(config)?;
        let layouts = handle.layouts()?;
        Ok(Box::new(render::DylibLayoutRenderer::new(handle, layouts)))
    }
}

impl LoadedPlugin for DylibPlugin {
    fn descriptor(&self) -> Descriptor {
        self.descriptor.clone()
    }

    fn validate(&self, config: &Value) -> Result<(), SinkError> {
        self.api.validate(config)
    }

    fn create(&self, config: &Value) -> Result<Box<dyn SinkFactory>, SinkError> {
        let handle = self.api.create(config)?;
        Ok(Box::new(session::DylibFactory::new(handle)))
    }
}
