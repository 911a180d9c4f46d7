//! Plugin metadata: what the host learns about a library without initializing it.

use abi_stable::{
    std_types::{RString, RVec},
    StableAbi,
};

/// One dependency of a plugin on another plugin, by name and semver requirement.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The name of the plugin depended on.
    pub name: RString,
    /// A semver requirement such as `^1.2` or `>=0.3, <0.5`.
    pub requirement: RString,
    /// When `true`, the plugin still starts if the dependency is absent;
    /// when present it is started first.
    pub optional: bool,
}

/// What a plugin says about itself. Read by the host before any plugin code runs
/// beyond the root module constructor.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginMetadata {
    /// Unique plugin name: lower-case ASCII letters, digits, `-`, `_` and `.` are safest,
    /// because the name is also used to name the plugin's state file.
    pub name: RString,
    /// The plugin's own semver version, e.g. `1.4.2`.
    pub version: RString,
    /// One line describing what the plugin does.
    pub description: RString,
    /// Other plugins this one needs.
    pub dependencies: RVec<Dependency>,
    /// The `plugbay-api` version the plugin was compiled against (filled in automatically).
    pub interface_version: RString,
}

impl PluginMetadata {
    /// Metadata with a name and version, no description and no dependencies.
    ///
    /// `interface_version` is set to the `plugbay-api` version this code is compiled with.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: RString::new(),
            dependencies: RVec::new(),
            interface_version: crate::INTERFACE_VERSION.into(),
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.into();
        self
    }

    /// Adds a required dependency on `name` matching the semver `requirement`.
    pub fn depends_on(mut self, name: &str, requirement: &str) -> Self {
        self.dependencies.push(Dependency {
            name: name.into(),
            requirement: requirement.into(),
            optional: false,
        });
        self
    }

    /// Adds an optional dependency: started first when present, ignored when absent.
    pub fn optionally_depends_on(mut self, name: &str, requirement: &str) -> Self {
        self.dependencies.push(Dependency {
            name: name.into(),
            requirement: requirement.into(),
            optional: true,
        });
        self
    }
}
