//! The manager as seen by plugin code: [`HostServices`] behind every
//! [`crate::PluginContext`].

use std::sync::Weak;

use async_trait::async_trait;
use serde_json::Value;

use super::Inner;
use crate::context::{CallChain, HostServices};
use crate::error::{Error, Result};

/// Implements [`HostServices`] for one manager, through a weak reference so a
/// plugin holding a context never keeps the manager alive.
pub(crate) struct ManagerServices {
    inner: Weak<Inner>,
}

impl ManagerServices {
    pub(crate) fn new(inner: Weak<Inner>) -> Self {
        Self { inner }
    }

    fn inner(&self) -> Option<std::sync::Arc<Inner>> {
        self.inner.upgrade()
    }
}

#[async_trait]
impl HostServices for ManagerServices {
    fn host_name(&self) -> String {
        self.inner()
            .map(|i| i.config.host_name().to_owned())
            .unwrap_or_default()
    }

    fn host_version(&self) -> String {
        self.inner()
            .map(|i| i.config.host_version().to_owned())
            .unwrap_or_default()
    }

    fn config_for(&self, plugin: &str) -> Value {
        self.inner()
            .map(|i| i.plugin_config(plugin))
            .unwrap_or(Value::Null)
    }

    fn status_of(&self, plugin: &str) -> Option<String> {
        let slot = self.inner()?.registry.get_by_name(plugin)?;
        Some(slot.state().name().to_owned())
    }

    fn data_dir_for(&self, plugin: &str) -> Result<std::path::PathBuf> {
        let root = self.inner().and_then(|i| i.config.data_root());
        crate::data_dir::ensure(root.as_deref(), plugin)
    }

    async fn call_from(
        &self,
        chain: CallChain,
        target: &str,
        method: &str,
        args: Value,
    ) -> Result<Value> {
        let inner = self.inner().ok_or_else(|| Error::NotActive {
            plugin: target.to_owned(),
            state: "unreachable: the manager was dropped".to_owned(),
        })?;
        let slot = inner
            .registry
            .get_by_name(target)
            .ok_or_else(|| Error::NotFoundByName(target.to_owned()))?;
        inner.call_slot(&slot, chain, method, args).await
    }
}
