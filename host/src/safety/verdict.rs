//! What admission found out about one library file, in the form that crosses
//! the probe channel and sits in the scan cache: [`Verdict`], [`Rejection`]
//! (a typed loader error without its path) and [`MetadataRecord`] (plugin
//! metadata as plain strings).
//!
//! Conversions happen once, at the boundaries: the loader produces a
//! [`Rejection`] (never an [`Error`] turned back into one); the pipeline turns
//! a rejection into the host's [`Error`] for the user's file
//! ([`Rejection::into_error`]) and a record into the host's one metadata type,
//! [`PluginInfo`] ([`MetadataRecord::to_info`]). [`Rejection::readdressed`] is
//! the one place that rewrites a shadow copy's path into the original's.

use std::path::Path;

use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::info::{check_plugin_name, DependencySpec, PluginInfo, PluginSource};

/// What a probe (or an in-process check) found out about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The library opened, passed the ABI checks and gave valid metadata.
    Compatible {
        /// Its metadata.
        plugin: MetadataRecord,
    },
    /// The loader refused it with a regular error.
    Rejected {
        /// Why.
        rejection: Rejection,
    },
}

/// Plugin metadata as plain strings: the wire and cache form of [`PluginInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataRecord {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Description.
    pub description: String,
    /// plugbay-api version it was built against.
    pub interface_version: String,
    /// Declared dependencies.
    pub dependencies: Vec<DependencyRecord>,
}

/// One declared dependency, as strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyRecord {
    /// Name of the plugin depended on.
    pub name: String,
    /// Semver requirement.
    pub requirement: String,
    /// Whether it is optional.
    pub optional: bool,
}

impl MetadataRecord {
    /// The record of parsed metadata.
    pub fn from_info(info: &PluginInfo) -> Self {
        Self {
            name: info.name.clone(),
            version: info.version.to_string(),
            description: info.description.clone(),
            interface_version: info.interface_version.clone(),
            dependencies: info
                .dependencies
                .iter()
                .map(|d| DependencyRecord {
                    name: d.name.clone(),
                    requirement: d.requirement.to_string(),
                    optional: d.optional,
                })
                .collect(),
        }
    }

    /// The host's metadata for the library file `path`. Errors (in words) when
    /// the name is not a plugin name or a version or requirement does not
    /// parse: the record came from another process or from disk, so it is
    /// checked again, as [`PluginInfo::from_ffi`] checks the library's own.
    pub fn to_info(&self, path: &Path) -> Result<PluginInfo, String> {
        check_plugin_name(&self.name)?;
        let version = Version::parse(&self.version)
            .map_err(|e| format!("version {:?} is not semver: {e}", self.version))?;
        let dependencies = self
            .dependencies
            .iter()
            .map(|d| {
                VersionReq::parse(&d.requirement)
                    .map(|requirement| DependencySpec {
                        name: d.name.clone(),
                        requirement,
                        optional: d.optional,
                    })
                    .map_err(|e| {
                        format!(
                            "dependency `{}` has an invalid requirement {:?}: {e}",
                            d.name, d.requirement
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PluginInfo {
            name: self.name.clone(),
            version,
            description: self.description.clone(),
            dependencies,
            interface_version: self.interface_version.clone(),
            source: PluginSource::Library(path.to_path_buf()),
        })
    }
}

/// Why the loader refused a library, without its path, so it can cross the
/// channel and sit in the cache. One case per loader error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum Rejection {
    /// [`Error::OpenFailed`].
    OpenFailed {
        /// The dynamic loader's reason.
        reason: String,
    },
    /// [`Error::NotAPlugin`].
    NotAPlugin,
    /// [`Error::AbiMismatch`].
    AbiMismatch {
        /// What differs.
        summary: String,
        /// The interface version of the checking build.
        host_interface: String,
    },
    /// [`Error::InterfaceVersionMismatch`].
    InterfaceVersionMismatch {
        /// The checking build's version.
        expected: String,
        /// The plugin's.
        found: String,
    },
    /// [`Error::InvalidMetadata`].
    InvalidMetadata {
        /// What is wrong.
        reason: String,
    },
    /// [`Error::Refused`] (not an absolute path, not a regular file).
    Refused {
        /// Why.
        reason: String,
    },
}

impl Rejection {
    /// The same rejection with every mention of `from` in its texts replaced by
    /// `to` (a check of a shadow copy names the copy; the user knows the original).
    pub fn readdressed(self, from: &Path, to: &Path) -> Self {
        if from == to {
            return self;
        }
        let (from, to) = (from.to_string_lossy(), to.to_string_lossy());
        let fix = |s: String| s.replace(&*from, &to);
        match self {
            Self::OpenFailed { reason } => Self::OpenFailed {
                reason: fix(reason),
            },
            Self::InvalidMetadata { reason } => Self::InvalidMetadata {
                reason: fix(reason),
            },
            Self::Refused { reason } => Self::Refused {
                reason: fix(reason),
            },
            other => other,
        }
    }

    /// The host error for the file at `path`.
    pub fn into_error(self, path: &Path) -> Error {
        let path = path.to_path_buf();
        match self {
            Self::OpenFailed { reason } => Error::OpenFailed { path, reason },
            Self::NotAPlugin => Error::NotAPlugin { path },
            Self::AbiMismatch {
                summary,
                host_interface,
            } => Error::AbiMismatch {
                path,
                summary,
                host_interface,
            },
            Self::InterfaceVersionMismatch { expected, found } => Error::InterfaceVersionMismatch {
                path,
                expected,
                found,
            },
            Self::InvalidMetadata { reason } => Error::InvalidMetadata { path, reason },
            Self::Refused { reason } => Error::Refused { path, reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_keeps_its_kind_through_the_wire() {
        let path = Path::new("/p/a.so");
        let all = [
            Rejection::OpenFailed {
                reason: "file too short".into(),
            },
            Rejection::NotAPlugin,
            Rejection::AbiMismatch {
                summary: "x".into(),
                host_interface: "1.0.0".into(),
            },
            Rejection::InterfaceVersionMismatch {
                expected: "1".into(),
                found: "2".into(),
            },
            Rejection::InvalidMetadata {
                reason: "empty name".into(),
            },
            Rejection::Refused {
                reason: "not a regular file".into(),
            },
        ];
        let errors: Vec<Error> = all
            .iter()
            .map(|r| {
                let json = serde_json::to_string(r).unwrap();
                let back: Rejection = serde_json::from_str(&json).unwrap();
                assert_eq!(&back, r);
                back.into_error(path)
            })
            .collect();
        assert!(matches!(errors[0], Error::OpenFailed { .. }));
        assert!(matches!(errors[1], Error::NotAPlugin { .. }));
        assert!(matches!(errors[2], Error::AbiMismatch { .. }));
        assert!(matches!(errors[3], Error::InterfaceVersionMismatch { .. }));
        assert!(matches!(errors[4], Error::InvalidMetadata { .. }));
        assert!(
            matches!(&errors[5], Error::Refused { reason, .. } if reason == "not a regular file")
        );
    }

    #[test]
    fn readdressing_names_the_original_file() {
        let shadow = Path::new("/shadow/abc.so");
        let original = Path::new("/plugins/a.so");
        let r = Rejection::OpenFailed {
            reason: "cannot map /shadow/abc.so".into(),
        }
        .readdressed(shadow, original);
        assert_eq!(
            r,
            Rejection::OpenFailed {
                reason: "cannot map /plugins/a.so".into()
            }
        );
    }

    #[test]
    fn a_record_converts_to_the_same_metadata() {
        let info = PluginInfo::in_process("greeter", "1.2.3")
            .unwrap()
            .with_dependency(DependencySpec::optional("hello", "^1").unwrap());
        let path = Path::new("/plugins/greeter.so");
        let back = MetadataRecord::from_info(&info).to_info(path).unwrap();
        assert_eq!(back.version, info.version);
        assert_eq!(back.dependencies, info.dependencies);
        assert_eq!(back.source, PluginSource::Library(path.to_path_buf()));
        let mut bad = MetadataRecord::from_info(&info);
        bad.version = "one".into();
        assert!(bad.to_info(path).unwrap_err().contains("not semver"));
    }
}
