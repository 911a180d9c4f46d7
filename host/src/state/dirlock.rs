//! The advisory lock that keeps two hosts out of one state directory.
//!
//! `flock(2)` (through `fs4`) on `<dir>/.lock`, which holds the holder's pid.
//! flock locks belong to the open file description: a second `open` of the
//! directory, in another process or in this one, is refused while the first
//! [`DirLock`] is alive, and the kernel releases the lock when the holder's
//! file is closed, including when the process is killed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use fs4::fs_std::FileExt;

use super::atomic::io_error;
use crate::error::{Error, Result};

/// The lock file's name inside the state directory (hidden: never a state file).
pub const LOCK_FILE_NAME: &str = ".lock";

/// How long [`DirLock::acquire`] waits for a lock recorded under this process's
/// own pid (see there) before reporting it held.
const SAME_PID_WAIT: Duration = Duration::from_millis(500);
const SAME_PID_POLL: Duration = Duration::from_millis(10);

/// An exclusive lock on a state directory, released on drop.
#[derive(Debug)]
pub struct DirLock {
    /// Kept open: closing it releases the lock.
    _file: File,
}

impl DirLock {
    /// Takes the lock on `dir` (which must exist) and records this process's pid
    /// in it. Blocking (a lock recorded under this process's own pid is retried
    /// for up to half a second first). A held lock is [`Error::StateDirLocked`] naming the
    /// holder's pid.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, "open lock file", &e))?;
        let mut waited = Duration::ZERO;
        loop {
            let locked =
                FileExt::try_lock_exclusive(&file).map_err(|e| io_error(&path, "lock", &e))?;
            if locked {
                break;
            }
            let holder = read_holder(&mut file);
            // Held under this very process's pid: either a second manager of this
            // process holds it (an error, after the wait), or the holder was
            // just dropped while a child process, forked by another thread in
            // the instant before its `exec`, still shares the lock's open file
            // description (the lock goes with the `exec`). Wait out the latter.
            if holder != std::process::id().to_string() || waited >= SAME_PID_WAIT {
                return Err(Error::StateDirLocked {
                    path: dir.to_path_buf(),
                    holder,
                });
            }
            std::thread::sleep(SAME_PID_POLL);
            waited += SAME_PID_POLL;
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .map_err(|e| io_error(&path, "write pid to lock file", &e))?;
        Ok(Self { _file: file })
    }
}

/// The pid in a held lock file. The holder writes it right after locking, so an
/// empty file is retried briefly before giving up with "unknown".
fn read_holder(file: &mut File) -> String {
    for _ in 0..50 {
        let mut text = String::new();
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text));
        let pid = text.trim();
        if read.is_ok() && !pid.is_empty() {
            return pid.to_owned();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    "unknown".to_owned()
}
