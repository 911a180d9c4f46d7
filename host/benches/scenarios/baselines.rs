//! Baselines the scenarios compare against. These are deliberately the designs the
//! manager avoids (ARCHITECTURE.md, "Locking"); they live only in benchmark code.

use std::collections::HashMap;
use std::sync::Arc;

use plugbay_host::{Plugin, PluginContext};
use uuid::Uuid;

/// The naive "before" manager: one registry lock and one status lock, both held
/// across the plugin's `initialize().await`, so concurrent loads serialize.
pub struct GlobalLockManager {
    plugins: tokio::sync::RwLock<HashMap<Uuid, Arc<dyn Plugin>>>,
    status: tokio::sync::RwLock<HashMap<Uuid, bool>>,
}

impl GlobalLockManager {
    /// An empty manager.
    pub fn new() -> Self {
        Self {
            plugins: tokio::sync::RwLock::new(HashMap::new()),
            status: tokio::sync::RwLock::new(HashMap::new()),
        }
    }

    /// Registers a plugin.
    pub async fn register(&self, plugin: Arc<dyn Plugin>) -> Uuid {
        let id = Uuid::new_v4();
        self.plugins.write().await.insert(id, plugin);
        id
    }

    /// The naive "before" `load_plugin`, guard for guard.
    pub async fn load_plugin(&self, id: Uuid) -> Result<(), String> {
        let plugins = self.plugins.read().await;
        let mut status = self.status.write().await;
        let Some(plugin) = plugins.get(&id) else {
            return Err(format!("no plugin {id}"));
        };
        if status.get(&id).copied().unwrap_or(false) {
            return Ok(());
        }
        let name = plugin.info().name.clone();
        // Both guards are held across this await: that is the point of the baseline.
        plugin
            .initialize(PluginContext::detached(&name))
            .await
            .map_err(|e| e.to_string())?;
        status.insert(id, true);
        Ok(())
    }

    /// Loads every plugin "concurrently"; the guards serialize them.
    pub async fn load_all_plugins(&self) -> Result<(), String> {
        let ids: Vec<Uuid> = self.plugins.read().await.keys().copied().collect();
        let results =
            futures::future::join_all(ids.into_iter().map(|id| self.load_plugin(id))).await;
        results.into_iter().collect()
    }
}

/// A registry behind `tokio::sync::RwLock`, for the lookup baseline.
pub struct TokioRwLockRegistry {
    plugins: tokio::sync::RwLock<HashMap<Uuid, Arc<dyn Plugin>>>,
}

impl TokioRwLockRegistry {
    /// A registry holding `plugins`.
    pub fn new(plugins: impl IntoIterator<Item = (Uuid, Arc<dyn Plugin>)>) -> Self {
        Self {
            plugins: tokio::sync::RwLock::new(plugins.into_iter().collect()),
        }
    }

    /// Looks a plugin up by id.
    pub async fn get(&self, id: Uuid) -> Option<Arc<dyn Plugin>> {
        self.plugins.read().await.get(&id).cloned()
    }

    /// Replaces a plugin (the churn side of the lookup benchmark).
    pub async fn replace(&self, id: Uuid, plugin: Arc<dyn Plugin>) {
        self.plugins.write().await.insert(id, plugin);
    }
}
