//! The safe author-facing trait and the panic-catching adapter behind `export_plugin!`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RBox, RResult, RStr, RString},
};
use serde_json::Value;

use crate::{
    ErrorKind, HostContext, PluginError, PluginInstance, PluginInstanceBox, PluginMetadata,
    PluginMod, PluginModRef,
};

/// What a plugin author implements: plain, safe Rust. Export it with
/// [`crate::export_plugin!`].
///
/// Every method has a default except [`Plugin::metadata`]. A panic in any of
/// them is caught at the boundary and reaches the host as an error of kind
/// [`ErrorKind::Panicked`] carrying the panic message; the host keeps running.
pub trait Plugin: Default + Send + 'static {
    /// Name, version, description and dependencies. Must not have side effects:
    /// the host reads it before deciding whether to start the plugin.
    fn metadata() -> PluginMetadata;

    /// Starts the plugin. Keep a clone of `host` to call back into the host later.
    fn initialize(&mut self, host: &HostContext) -> Result<(), PluginError> {
        let _ = host;
        Ok(())
    }

    /// Stops the plugin. The host saves its state (via [`Plugin::save_state`]) afterwards.
    fn shutdown(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// The state to persist between runs. `Value::Null` means "nothing to save".
    fn save_state(&self) -> Result<Value, PluginError> {
        Ok(Value::Null)
    }

    /// Restores state returned by an earlier [`Plugin::save_state`], possibly written
    /// by another version of this plugin (`saved_by_version`).
    fn load_state(&mut self, state: Value, saved_by_version: &str) -> Result<(), PluginError> {
        let _ = (state, saved_by_version);
        Ok(())
    }

    /// Runs an operation the plugin exposes to the host and to other plugins.
    fn call(&mut self, method: &str, args: Value) -> Result<Value, PluginError> {
        let _ = args;
        Err(PluginError::unknown_method(method))
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic payload is not a string".to_owned()
    }
}

/// Runs `f`, turning a panic into a [`ErrorKind::Panicked`] error.
fn guard<T>(f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(payload) => RResult::RErr(PluginError::new(
            ErrorKind::Panicked,
            panic_message(&*payload),
        )),
    }
}

/// Adapts an author's [`Plugin`] to the FFI trait [`PluginInstance`]. The
/// `testing` module drives plugins through it too, so tests see what hosts see.
pub(crate) struct Exported<T>(pub(crate) T);

impl<T: Plugin> PluginInstance for Exported<T> {
    fn initialize(&mut self, host: HostContext) -> RResult<(), PluginError> {
        guard(|| self.0.initialize(&host))
    }

    fn shutdown(&mut self) -> RResult<(), PluginError> {
        guard(|| self.0.shutdown())
    }

    fn save_state(&self) -> RResult<RString, PluginError> {
        guard(|| Ok(RString::from(self.0.save_state()?.to_string())))
    }

    fn load_state(
        &mut self,
        state: RStr<'_>,
        saved_by_version: RStr<'_>,
    ) -> RResult<(), PluginError> {
        guard(|| {
            let state: Value = serde_json::from_str(state.as_str())?;
            self.0.load_state(state, saved_by_version.as_str())
        })
    }

    fn call(&mut self, method: RStr<'_>, args: RStr<'_>) -> RResult<RString, PluginError> {
        guard(|| {
            let args: Value = if args.as_str().trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(args.as_str())?
            };
            let out = self.0.call(method.as_str(), args)?;
            Ok(RString::from(out.to_string()))
        })
    }
}

extern "C" fn metadata_of<T: Plugin>() -> RResult<PluginMetadata, PluginError> {
    guard(|| Ok(T::metadata()))
}

extern "C" fn new_instance_of<T: Plugin>() -> RResult<PluginInstanceBox, PluginError> {
    guard(|| {
        Ok(PluginInstanceBox::from_ptr(
            RBox::new(Exported(T::default())),
            TD_Opaque,
        ))
    })
}

/// Builds the root module for `T`. Called once per process by the code that
/// [`crate::export_plugin!`] generates.
pub fn root_module<T: Plugin>() -> PluginModRef {
    PluginMod {
        metadata: metadata_of::<T>,
        new_instance: new_instance_of::<T>,
    }
    .leak_into_prefix()
}

/// Exports a type implementing [`Plugin`] as this library's plugin. Use it once,
/// at the top level of a `cdylib` crate:
///
/// ```
/// # use plugbay_api::{Plugin, PluginMetadata};
/// #[derive(Default)]
/// struct MyPlugin;
///
/// impl Plugin for MyPlugin {
///     fn metadata() -> PluginMetadata {
///         PluginMetadata::new("my-plugin", "0.1.0")
///     }
/// }
///
/// plugbay_api::export_plugin!(MyPlugin);
/// ```
///
/// It emits the same library header as abi_stable's `#[export_root_module]`
/// (with its layout check), but through this crate, so a plugin needs no direct
/// `abi_stable` dependency.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        fn __plugin_api_root_module() -> $crate::PluginModRef {
            $crate::__private::root_module::<$plugin>()
        }

        /// The library header abi_stable looks up when the host opens this library.
        #[doc(hidden)]
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static __PLUGIN_API_LIB_HEADER: $crate::__private::abi_stable::library::LibHeader = {
            extern "C" fn erased() -> $crate::__private::abi_stable::library::RootModuleResult {
                $crate::__private::abi_stable::library::__call_root_module_loader(
                    __plugin_api_root_module,
                )
            }
            // SAFETY: `erased` returns the root module of type `PluginModRef`, the
            // type named here, which is what `from_constructor` requires; the layout
            // check stays on (`CheckTypeLayout::Yes`).
            unsafe {
                $crate::__private::abi_stable::library::LibHeader::from_constructor::<
                    $crate::PluginModRef,
                >(
                    erased,
                    $crate::__private::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
