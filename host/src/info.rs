//! Host-side plugin metadata: plain Rust types parsed from the FFI metadata.

use std::fmt;
use std::path::PathBuf;

use plugbay_api::PluginMetadata;
use semver::{Version, VersionReq};
use serde::Serialize;

use crate::error::Error;

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
    /// A required dependency on `name`; fails with [`Error::Config`] naming the
    /// dependency when `requirement` is not a semver requirement.
    pub fn required(name: &str, requirement: &str) -> Result<Self, Error> {
        let requirement = VersionReq::parse(requirement).map_err(|e| {
            Error::Config(format!(
                "dependency `{name}` has an invalid requirement {requirement:?}: {e}"
            ))
        })?;
        Ok(Self {
            name: name.to_owned(),
            requirement,
            optional: false,
        })
    }

    /// An optional dependency on `name` (see [`DependencySpec::required`]).
    pub fn optional(name: &str, requirement: &str) -> Result<Self, Error> {
        Ok(Self {
            optional: true,
            ..Self::required(name, requirement)?
        })
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

/// How [`PluginSource::InProcess`] displays.
pub(crate) const IN_PROCESS_SOURCE: &str = "<in-process>";

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::Library(path) => write!(f, "{}", path.display()),
            PluginSource::InProcess => f.write_str(IN_PROCESS_SOURCE),
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
    /// Metadata for an in-process plugin; fails with [`Error::Config`] naming
    /// the plugin when `version` is not a semver version.
    pub fn in_process(name: &str, version: &str) -> Result<Self, Error> {
        let version = Version::parse(version).map_err(|e| {
            Error::Config(format!(
                "plugin `{name}` has an invalid version {version:?}: {e}"
            ))
        })?;
        Ok(Self::in_process_at(name, version))
    }

    /// Metadata for an in-process plugin at an already parsed `version`.
    pub fn in_process_at(name: &str, version: Version) -> Self {
        Self {
            name: name.to_owned(),
            version,
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
        check_plugin_name(&name)?;
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

/// Whether `name` may name a library's plugin: not empty or blank, and not
/// starting with `@` (reserved for the host). `Err` says why, in words.
pub(crate) fn check_plugin_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the plugin name is empty".to_owned());
    }
    if name.starts_with('@') {
        return Err(format!(
            "the plugin name {name:?} starts with `@`, which is reserved for the host ({})",
            plugbay_api::services::HOST
        ));
    }
    Ok(())
}

pub(crate) fn display<T: fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_versions_are_errors_naming_the_plugin() {
        let err = PluginInfo::in_process("x", "one").unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.starts_with("plugin `x` has an invalid version \"one\"")),
            "{err:?}"
        );
        let err = DependencySpec::required("y", ">>1").unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.starts_with("dependency `y` has an invalid requirement \">>1\"")),
            "{err:?}"
        );
        assert!(DependencySpec::optional("y", "~1").unwrap().optional);
        assert_eq!(
            PluginInfo::in_process("x", "1.2.3").unwrap().version,
            Version::new(1, 2, 3)
        );
    }
}
