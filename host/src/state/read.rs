//! Reading one state file: size limit before parsing, envelope check, and
//! quarantine of anything unreadable.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::atomic::io_error;
use super::envelope::{decode, SavedState, MAX_STATE_FILE_BYTES};
use super::quarantine::quarantine;
use crate::error::Result;

/// What reading a plugin's state file found.
#[derive(Debug)]
pub enum ReadOutcome {
    /// There is no state file.
    Missing,
    /// A valid envelope.
    Found(SavedState),
    /// The file was corrupt and has been moved aside.
    Corrupt {
        /// Where it was.
        path: PathBuf,
        /// Where its bytes are now.
        moved_to: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

/// Reads `dir/file_name` for `plugin`; a corrupt file is quarantined. Blocking;
/// callers hold the plugin's state lock.
///
/// Corrupt means: not a regular file (a symlink is never followed), larger than
/// [`MAX_STATE_FILE_BYTES`] (checked before reading), invalid JSON, nested past
/// serde_json's recursion limit, or not a format-1 envelope for `plugin`. An
/// I/O error while reading is not corruption: it is returned and the file stays.
pub fn read_or_quarantine(dir: &Path, file_name: &str, plugin: &str) -> Result<ReadOutcome> {
    let path = dir.join(file_name);
    let meta = match path.symlink_metadata() {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReadOutcome::Missing),
        Err(e) => return Err(io_error(&path, "inspect", &e)),
    };
    let reason = if meta.file_type().is_symlink() {
        "it is a symbolic link, not a regular file".to_owned()
    } else if !meta.is_file() {
        "it is not a regular file".to_owned()
    } else if meta.len() > MAX_STATE_FILE_BYTES {
        format!(
            "the file is {} bytes; the limit is {MAX_STATE_FILE_BYTES}",
            meta.len()
        )
    } else {
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        std::fs::File::open(&path)
            // One byte over the limit is enough to tell a file that grew.
            .and_then(|f| f.take(MAX_STATE_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| io_error(&path, "read", &e))?;
        match decode(plugin, &bytes) {
            Ok(saved) => return Ok(ReadOutcome::Found(saved)),
            Err(reason) => reason,
        }
    };
    let moved_to = quarantine(dir, file_name)?;
    Ok(ReadOutcome::Corrupt {
        path,
        moved_to,
        reason,
    })
}
