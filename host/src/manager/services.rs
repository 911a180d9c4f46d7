//! The manager as seen by plugin code: [`HostServices`] behind every
//! [`crate::PluginContext`].

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use serde_json::Value;

use super::Inner;
use crate::context::{CallChain, HostServices};
use crate::error::{Error, Result};
use crate::events::{DeliverFn, Event, DEFAULT_SUBSCRIBER_CAPACITY};
use plugbay_api::services;

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

    /// The manager, if `plugin` may use events now: initializing or active.
    fn running(&self, plugin: &str) -> Result<Arc<Inner>> {
        let inner = self.inner().ok_or_else(|| Error::EventsRefused {
            plugin: plugin.to_owned(),
            state: "detached (the manager was dropped)".to_owned(),
        })?;
        let state = inner
            .registry
            .get_by_name(plugin)
            .map(|slot| slot.state().name())
            .unwrap_or("not registered");
        if state != "active" && state != "initializing" {
            return Err(Error::EventsRefused {
                plugin: plugin.to_owned(),
                state: state.replace('_', " "),
            });
        }
        Ok(inner)
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

    fn publish_from(&self, plugin: &str, name: &str, payload_json: &str) -> Result<()> {
        let inner = self.running(plugin)?;
        inner.bus.publish_json(plugin, name, payload_json).map(drop)
    }

    fn subscribe_for(&self, plugin: &str, pattern: &str) -> Result<()> {
        let inner = self.running(plugin)?;
        let weak = self.inner.clone();
        let target = plugin.to_owned();
        let deliver: DeliverFn = Arc::new(move |event: Event| {
            let weak = weak.clone();
            let target = target.clone();
            Box::pin(async move {
                let inner = weak
                    .upgrade()
                    .ok_or((false, "the manager was dropped".to_owned()))?;
                let slot = inner
                    .registry
                    .get_by_name(&target)
                    .ok_or((false, format!("plugin `{target}` is gone")))?;
                let args = serde_json::to_value(&event).unwrap_or(Value::Null);
                // A fresh chain: the publisher never waits for this, and the
                // subscriber is the only plugin on it.
                match inner
                    .call_slot(&slot, CallChain::default(), services::EVENT_METHOD, args)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e @ Error::PluginPanicked { .. }) => Err((true, e.to_string())),
                    Err(e) => Err((false, e.to_string())),
                }
            })
        });
        inner
            .bus
            .subscribe_plugin(plugin, pattern, DEFAULT_SUBSCRIBER_CAPACITY, deliver)
            .map(drop)
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
