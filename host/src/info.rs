//! Host-side plugin metadata: plain Rust types parsed from the FFI metadata.

use std::fmt;
use std::path::PathBuf;

use plugbay_api::PluginMetadata;
use semver::{Version, VersionReq};
use serde::Serialize;

/// One declared dependency, with its requirement parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencySpec {
    /// Name of the plugin depended on.
    pub name: String,
    /// The semver requirement it must satisfy.
    #[serde(serialize_with = "crate::info::display")]
    pub requirement: VersionReq,
    /// Whether the dependent can start without it.
    pub optional: bool,
}

impl DependencySpec {
    /// A required dependency (panics on an invalid requirement: for tests and literals).
    pub fn required(name: &str, requirement: &str) -> Self {
        Self {
            name: name.to_owned(),
            requirement: VersionReq::parse(requirement).expect("valid semver requirement"),
            optional: false,
        }
    }

    /// An optional dependency (panics on an invalid requirement: for tests and literals).
    pub fn optional(name: &str, requirement: &str) -> Self {
        Self {
            optional: true,
            ..Self::required(name, requirement)
        }
    }
}

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginSource {
    /// A native library file (its absolute path).
    Library(PathBuf),
    /// Rust code compiled into the host application.
    InProcess,
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::Library(path) => write!(f, "{}", path.display()),
            PluginSource::InProcess => f.write_str("<in-process>"),
        }
    }
}

/// What the host knows about a plugin before it runs any of its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginInfo {
    /// Unique plugin name.
    pub name: String,
    /// The plugin's version.
    #[serde(serialize_with = "crate::info::display")]
    pub version: Version,
    /// One line of description.
    pub description: String,
    /// Declared dependencies.
    pub dependencies: Vec<DependencySpec>,
    /// The plugbay-api version the plugin was built against (the host's own for in-process plugins).
    pub interface_version: String,
    /// Where it comes from.
    pub source: PluginSource,
}

impl PluginInfo {
    /// Metadata for an in-process plugin (panics on an invalid version: for literals).
    pub fn in_process(name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: Version::parse(version).expect("valid semver version"),
            description: String::new(),
            dependencies: Vec::new(),
            interface_version: plugbay_api::INTERFACE_VERSION.to_owned(),
            source: PluginSource::InProcess,
        }
    }

    /// Adds a dependency (builder style).
    pub fn with_dependency(mut self, dependency: DependencySpec) -> Self {
        self.dependencies.push(dependency);
        self
    }

    /// Sets the description (builder style).
    pub fn with_description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Parses FFI metadata read from the library at `path`.
    pub fn from_ffi(meta: &PluginMetadata, path: PathBuf) -> Result<Self, String> {
        let name = meta.name.as_str().to_owned();
        if name.trim().is_empty() {
            return Err("the plugin name is empty".to_owned());
        }
        if name.starts_with('@') {
            return Err(format!(
                "the plugin name {name:?} starts with `@`, which is reserved for the host ({})",
                plugbay_api::services::HOST
            ));
        }
        let version = Version::parse(meta.version.as_str())
            .map_err(|e| format!("version {:?} is not semver: {e}", meta.version.as_str()))?;
        let mut dependencies = Vec::with_capacity(meta.dependencies.len());
        for dep in meta.dependencies.iter() {
            let requirement = VersionReq::parse(dep.requirement.as_str()).map_err(|e| {
                format!(
                    "dependency `{}` has an invalid requirement {:?}: {e}",
                    dep.name,
                    dep.requirement.as_str()
                )
            })?;
            dependencies.push(DependencySpec {
                name: dep.name.as_str().to_owned(),
                requirement,
                optional: dep.optional,
            });
        }
        Ok(Self {
            name,
            version,
            description: meta.description.as_str().to_owned(),
            dependencies,
            interface_version: meta.interface_version.as_str().to_owned(),
            source: PluginSource::Library(path),
        })
    }
}

pub(crate) fn display<T: fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}
