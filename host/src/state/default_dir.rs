//! The state directory used when none is given (`plugin-host run` without
//! `--state-dir`).

use std::ffi::OsString;
use std::path::PathBuf;

/// The default state directory: `$XDG_STATE_HOME/plugin-host/state`, else
/// `$HOME/.local/state/plugin-host/state`, else `./plugin-host-state` (relative
/// to the working directory). Empty or relative variables are ignored, as the
/// XDG base-directory spec says.
pub fn default_state_dir() -> PathBuf {
    default_state_dir_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

fn default_state_dir_from(xdg_state_home: Option<OsString>, home: Option<OsString>) -> PathBuf {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(base) = absolute(xdg_state_home) {
        return base.join("plugin-host").join("state");
    }
    if let Some(home) = absolute(home) {
        return home
            .join(".local")
            .join("state")
            .join("plugin-host")
            .join("state");
    }
    PathBuf::from("plugin-host-state")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_xdg_then_home_then_the_working_dir() {
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(
            default_state_dir_from(some("/x/state"), some("/home/u")),
            PathBuf::from("/x/state/plugin-host/state")
        );
        assert_eq!(
            default_state_dir_from(some("relative"), some("/home/u")),
            PathBuf::from("/home/u/.local/state/plugin-host/state")
        );
        assert_eq!(
            default_state_dir_from(None, None),
            PathBuf::from("plugin-host-state")
        );
    }
}
