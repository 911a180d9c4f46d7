//! Shared setup for the safety tests: configs and the hostile plugin directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{abi_mismatch_library, c_library, probe_binary, PluginDir};
use plugbay_host::SafetyConfig;

/// Probe timeout in tests: short, but far above what opening a debug plugin
/// takes on a loaded 2-core machine.
pub const TEST_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A config using `work` for cache and shadows and the freshly built probe.
pub fn config(work: &Path) -> SafetyConfig {
    SafetyConfig::builder()
        .work_dir(work)
        .probe_program(probe_binary(), Vec::new())
        .probe_timeout(TEST_PROBE_TIMEOUT)
        .build()
        .expect("valid test config")
}

/// The good samples every hostile dir holds.
pub const GOOD: &[&str] = &["hello", "counter", "greeter"];

/// A plugin dir with the good samples next to every kind of bad file, plus a
/// separate work dir and a dir outside the plugin dir (symlink target).
pub struct HostileDir {
    /// The plugin directory.
    pub plugins: PluginDir,
    /// Cache and shadow copies.
    pub work: tempfile::TempDir,
    /// Where the escaping symlink points.
    pub outside: tempfile::TempDir,
}

impl Default for HostileDir {
    fn default() -> Self {
        Self::new()
    }
}

impl HostileDir {
    /// Lays it out.
    pub fn new() -> Self {
        let plugins = PluginDir::with(GOOD);
        let outside = tempfile::tempdir().expect("outside dir");
        let work = tempfile::tempdir().expect("work dir");
        let hello = std::fs::read(plugins.library("hello")).expect("read hello");

        plugins.write("x.so", b"this is a text file, not a library\n");
        plugins.write("empty.so", b"");
        plugins.write("truncated.so", &hello[..4096]);
        for (file, c) in [
            ("segv.so", "ctor_segv"),
            ("abort.so", "ctor_abort"),
            ("hang.so", "ctor_hang"),
            ("noroot.so", "no_root"),
            ("noisy.so", "ctor_noisy"),
            ("fd3.so", "ctor_fd3"),
        ] {
            copy(&c_library(c), &plugins.path().join(file));
        }
        copy(
            &abi_mismatch_library(),
            &plugins.path().join("abi-mismatch.so"),
        );
        let ww = plugins.write("world-writable.so", &hello);
        std::fs::set_permissions(&ww, std::fs::Permissions::from_mode(0o666)).expect("chmod 666");
        let target = outside.path().join("libcounter.so");
        copy(&plugins.library("counter"), &target);
        std::os::unix::fs::symlink(&target, plugins.path().join("outside.so")).expect("symlink");
        std::fs::create_dir(plugins.path().join("dir.so")).expect("mkdir dir.so");
        Self {
            plugins,
            work,
            outside,
        }
    }

    /// `name` inside the plugin dir.
    pub fn file(&self, name: &str) -> PathBuf {
        self.plugins.path().join(name)
    }

    /// The plugin dir as a one-element list.
    pub fn dirs(&self) -> Vec<PathBuf> {
        vec![self.plugins.path().to_path_buf()]
    }

    /// The config for this layout.
    pub fn config(&self) -> SafetyConfig {
        config(self.work.path())
    }
}

/// Copies `from` to `to`, panicking with both paths.
pub fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
}
