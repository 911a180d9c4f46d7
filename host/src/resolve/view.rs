//! The resolver's borrowed view of one plugin: what it reads of a [`Node`](super::Node) or of
//! a registered plugin's [`PluginInfo`], without copying it.

use std::borrow::Cow;

use semver::Version;
use uuid::Uuid;

use super::ResolveNode;
use crate::{DependencySpec, PluginInfo, PluginSource};

/// One plugin as the resolver reads it: a [`Node`](super::Node)'s fields, borrowed.
#[derive(Debug)]
pub(crate) struct NodeView<'a> {
    id: Uuid,
    name: &'a str,
    version: &'a Version,
    dependencies: &'a [DependencySpec],
    /// [`crate::PluginSource`]'s display text: borrowed unless a library path
    /// is not valid UTF-8.
    source: Cow<'a, str>,
}

impl<'a> NodeView<'a> {
    /// The view of a registered plugin's metadata (what [`Node::from_info`](super::Node::from_info)
    /// would copy).
    pub(crate) fn of_info(id: Uuid, info: &'a PluginInfo) -> Self {
        let source = match &info.source {
            // `Path::display` and `to_string_lossy` replace the same bytes.
            PluginSource::Library(path) => path.to_string_lossy(),
            PluginSource::InProcess => Cow::Borrowed(crate::info::IN_PROCESS_SOURCE),
        };
        Self {
            id,
            name: &info.name,
            version: &info.version,
            dependencies: &info.dependencies,
            source,
        }
    }
}

impl ResolveNode for NodeView<'_> {
    fn id(&self) -> Uuid {
        self.id
    }
    fn name(&self) -> &str {
        self.name
    }
    fn version(&self) -> &Version {
        self.version
    }
    fn dependencies(&self) -> &[DependencySpec] {
        self.dependencies
    }
    fn source(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use uuid::Uuid;

    use super::NodeView;
    use crate::resolve::{resolve, resolve_views, Node};
    use crate::{DependencySpec, Error, PluginInfo, PluginSource};

    fn req(name: &str, requirement: &str) -> DependencySpec {
        DependencySpec::required(name, requirement).unwrap()
    }

    fn opt(name: &str, requirement: &str) -> DependencySpec {
        DependencySpec::optional(name, requirement).unwrap()
    }

    /// The manager resolves borrowed views of its plugins' metadata
    /// ([`NodeView::of_info`]); that must plan exactly what [`resolve`] plans for
    /// copies of the same metadata ([`Node::from_info`](super::Node::from_info)), sources included: they break
    /// ties between duplicates and name the files in errors.
    #[test]
    fn views_of_plugin_metadata_plan_like_copies_of_it() {
        let library = |name: &str, version: &str, path: PathBuf| {
            let mut info = PluginInfo::in_process(name, version).unwrap();
            info.source = PluginSource::Library(path);
            info
        };
        #[cfg(unix)]
        let odd_path = {
            use std::os::unix::ffi::OsStrExt;
            PathBuf::from(std::ffi::OsStr::from_bytes(b"/plugins/lib\xffdup.so"))
        };
        #[cfg(not(unix))]
        let odd_path = PathBuf::from("C:\\plugins\\dup.dll");
        let infos: Vec<(Uuid, PluginInfo)> = vec![
            library("base", "1.2.0", "/plugins/libbase.so".into()),
            library("app", "1.0.0", "/plugins/libapp.so".into())
                .with_dependency(req("base", "^1"))
                .with_dependency(opt("extra", "^2")),
            PluginInfo::in_process("extra", "2.1.0").unwrap(),
            library("picky", "0.1.0", "/plugins/libpicky.so".into())
                .with_dependency(req("base", "^2")),
            // Three claims of one name at one version: the sources order them in errors.
            library("dup", "1.0.0", "/plugins/libdup.so".into()),
            library("dup", "1.0.0", odd_path),
            PluginInfo::in_process("dup", "1.0.0").unwrap(),
            library("ring", "1.0.0", "/plugins/libring.so".into())
                .with_dependency(req("ring", "*")),
        ]
        .into_iter()
        .map(|info| (Uuid::new_v4(), info))
        .collect();

        let copies: Vec<Node> = infos
            .iter()
            .map(|(id, info)| Node::from_info(*id, info))
            .collect();
        let views = infos
            .iter()
            .map(|(id, info)| NodeView::of_info(*id, info))
            .collect();
        let (from_copies, from_views) = (resolve(&copies), resolve_views(views));
        assert_eq!(from_views, from_copies);
        // Not a vacuous comparison: the plan has waves, blocks and the three duplicates.
        assert_eq!(
            from_copies.waves.iter().flatten().count(),
            3,
            "{from_copies:?}"
        );
        let duplicates = from_copies
            .blocked
            .values()
            .filter(|e| matches!(e, Error::DuplicateName { .. }))
            .count();
        assert_eq!(duplicates, 3, "{:?}", from_copies.blocked);
    }
}
