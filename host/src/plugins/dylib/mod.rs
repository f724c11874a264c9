//! The dynamic-library loader.
//!
//! A plugin is a shared library exporting `egress_plugin_entry_v1`, which returns a static
//! descriptor: ABI (major, minor), its own size, and the sink function table (see
//! `plugin-api/include/egress_plugin.h`). The loader refuses another major or a newer minor,
//! refuses tables smaller than v1.0 or with a null v1.0 function, and never unloads a library:
//! a plugin may have started threads or registered destructors that must outlive any use.
//!
//! Dylibs are trusted code: they run in the host process with its privileges. What the loader
//! guarantees is a clean contract: versioning, ownership of every buffer, panics stopped at the
//! boundary (by the plugin side of `export_sink!`), and blocking calls kept off the async
//! executor (each object runs on its own thread, see `session.rs`).

mod ffi;
mod session;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use egress_plugin_api::abi::{self, EgressPluginDescriptor, EgressSinkApi, EntryFn};
use egress_plugin_api::{ApiVersion, Descriptor, LoadedPlugin, SinkError, SinkFactory, Value};
use libloading::Library;

use ffi::SinkApi;

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
        "{} does not export egress_plugin_entry_v1 (is it an egress sink plugin built with its `dylib` feature?)",
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

/// A loaded dylib plugin.
pub struct DylibPlugin {
    api: SinkApi,
    descriptor: Descriptor,
    path: PathBuf,
}

impl DylibPlugin {
    /// Load `path`, check its ABI version and table, and ask it to describe itself.
    pub fn load(path: &Path) -> Result<Self, DylibError> {
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
        // SAFETY: non-null, and the library promises a static descriptor. We read only the
        // fields that `struct_size` says it has (checked next).
        let descriptor: &'static EgressPluginDescriptor = unsafe { &*descriptor_ptr };
        if (descriptor.struct_size as usize) < std::mem::size_of::<EgressPluginDescriptor>() {
            return Err(invalid(&format!(
                "descriptor is {} bytes, smaller than v1.0's {}",
                descriptor.struct_size,
                std::mem::size_of::<EgressPluginDescriptor>()
            )));
        }
        let plugin_api = ApiVersion::new(descriptor.abi_major, descriptor.abi_minor);
        ApiVersion::check_plugin(ApiVersion::CURRENT, plugin_api).map_err(|source| {
            DylibError::Version {
                path: path.to_path_buf(),
                source,
            }
        })?;
        if descriptor.sink.is_null() {
            return Err(invalid("the descriptor has no sink table"));
        }
        // SAFETY: non-null and static, as the descriptor.
        let table: &'static EgressSinkApi = unsafe { &*descriptor.sink };
        let api = SinkApi::from_table(table, lib).map_err(|m| invalid(&m))?;
        api.init();

        let descriptor = api
            .describe()
            .map_err(|source| DylibError::Describe {
                path: path.to_path_buf(),
                source,
            })?
            .with_api(plugin_api);
        tracing::debug!(path = %path.display(), plugin = %descriptor.name, api = %plugin_api, "Loaded dylib plugin.");
        Ok(DylibPlugin {
            api,
            descriptor,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
