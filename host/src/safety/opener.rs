//! Opening admitted shadow copies on a thread of their own.
//!
//! On a cold scan the admission thread is busy copying and hashing the next
//! files while the probe child checks earlier ones; opening the copies that
//! already passed (the host's own `dlopen`) on a separate thread lets the three
//! overlap instead of queueing behind each other on the admission thread. On a
//! warm scan it overlaps the `stat`s and cache lookups with the opens.
//!
//! Results come back tagged with the file's report index; the caller puts them
//! in file order. If the thread cannot be started, files are opened inline.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::info::PluginInfo;
use crate::loader::{self, LayoutVerified, LoadedLibrary};

/// One file to open: its report index, plugin path, shadow copy, the proof
/// that its layout check already passed and the metadata admission read.
struct Job {
    index: usize,
    path: PathBuf,
    shadow: PathBuf,
    proof: LayoutVerified,
    info: PluginInfo,
}

/// What opening one file gave, tagged with its report index.
pub(crate) type Opened = (usize, Result<LoadedLibrary>);

/// A thread opening verified shadow copies in the order they are handed over.
#[derive(Default)]
pub(crate) struct Opener {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<Vec<Opened>>>,
    /// Indexes handed to the thread, to report them if it dies.
    sent: Vec<(usize, PathBuf)>,
    /// Results of files opened inline (no thread).
    inline: Vec<Opened>,
}

impl Opener {
    /// An opener whose thread is started now rather than at the first file, and
    /// computes [`loader::interface_build_id`] before it waits for files: the
    /// admission thread needs that id at its first cache lookup, and computing
    /// it the first time in a process (printing every nested layout) takes
    /// about a millisecond, which then overlaps with the admission's own start
    /// (reading the scan cache, listing the directory) instead of preceding it.
    pub(crate) fn started() -> Self {
        let mut opener = Self::default();
        opener.start(true);
        opener
    }

    /// Opens `shadow` on behalf of `path` (skipping the layout check `proof`
    /// vouches for, and the metadata call: `info` is what admission read; see
    /// [`loader::open_admitted`]), on the opener thread, starting it on first use.
    pub(crate) fn open(
        &mut self,
        index: usize,
        path: PathBuf,
        shadow: PathBuf,
        proof: LayoutVerified,
        info: PluginInfo,
    ) {
        if self.jobs.is_none() && self.thread.is_none() {
            self.start(false);
        }
        let job = Job {
            index,
            path,
            shadow,
            proof,
            info,
        };
        let job = match &self.jobs {
            Some(tx) => {
                self.sent.push((job.index, job.path.clone()));
                match tx.send(job) {
                    Ok(()) => return,
                    Err(mpsc::SendError(job)) => {
                        self.sent.pop();
                        job
                    }
                }
            }
            None => job,
        };
        self.inline.push(run(job));
    }

    fn start(&mut self, warm_build_id: bool) {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("plugin-opener".into())
            .spawn(move || {
                if warm_build_id {
                    loader::interface_build_id();
                }
                crate::platform::lower_current_thread();
                rx.into_iter().map(run).collect::<Vec<_>>()
            });
        if let Ok(thread) = spawned {
            self.jobs = Some(tx);
            self.thread = Some(thread);
        }
    }

    /// Waits for every handed-over file and returns all results (any order).
    pub(crate) fn finish(mut self) -> Vec<Opened> {
        self.jobs = None;
        let mut results = std::mem::take(&mut self.inline);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(opened) => results.extend(opened),
                Err(_) => results.extend(self.sent.drain(..).map(|(index, path)| {
                    (
                        index,
                        Err(Error::OpenFailed {
                            path,
                            reason: "the thread opening plugin libraries failed".into(),
                        }),
                    )
                })),
            }
        }
        results
    }
}

fn run(job: Job) -> Opened {
    (
        job.index,
        loader::open_admitted(&job.path, &job.shadow, job.proof, job.info),
    )
}
