//! Parent side of the preflight probe: one child process checks many libraries
//! in a row (GStreamer's scanner model) and is restarted only after it dies.
//!
//! A [`ProbeWorker`] runs on its own thread so the host can hash and copy the
//! next files (and open already-probed ones) while the child works. Requests
//! are pipelined (a small window in flight); answers come back in order, so the
//! library being opened when the child dies, hangs or sends garbage is always
//! the oldest unanswered request.
//!
//! Blame after a crash: a library's constructor could start a thread that
//! crashes later, while the child is already opening the next library. So when
//! a child that had already answered for other libraries dies, the library in
//! flight is probed once more, alone, in a fresh child, and quarantined only if
//! that one dies too. (A timeout is not retried: it would double the wait.)

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::probe_child::CHANNEL_FD;
use super::protocol::{
    new_nonce, read_frame, write_frame, FrameError, FromChild, Nonce, ToChild, Verdict,
};
use crate::error::Error;
use crate::loader;

/// Requests in flight at once: enough to hide the round trip, small enough that
/// neither socket buffer can ever fill up.
const WINDOW: usize = 4;
/// How long a child that closed its channel may take to exit before it is killed.
const REAP_GRACE: Duration = Duration::from_millis(500);

/// What probing one file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The child answered.
    Verdict(Verdict),
    /// The child died, hung or sent garbage while opening this file.
    Quarantined {
        /// What happened, in words.
        reason: String,
    },
    /// No probe could run (binary missing, wrong build): a configuration error.
    Unavailable(Error),
}

/// A thread that feeds files to probe children and hands back outcomes.
pub struct ProbeWorker {
    requests: Option<mpsc::Sender<(usize, PathBuf)>>,
    results: mpsc::Receiver<(usize, ProbeOutcome)>,
    thread: Option<JoinHandle<u64>>,
}

impl ProbeWorker {
    /// Starts the worker thread. No process is started until the first request.
    pub fn start(program: PathBuf, args: Vec<OsString>, timeout: Duration) -> Self {
        let (req_tx, req_rx) = mpsc::channel();
        let (res_tx, res_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("plugin-probe-worker".into())
            .spawn(move || {
                let mut driver = Driver {
                    program,
                    args,
                    timeout,
                    process: None,
                    started: 0,
                    next_id: 0,
                };
                driver.run(req_rx, res_tx);
                driver.started
            })
            .expect("spawn the probe worker thread");
        Self {
            requests: Some(req_tx),
            results: res_rx,
            thread: Some(thread),
        }
    }

    /// Queues `path` (absolute) for probing; its outcome comes back tagged `key`.
    pub fn submit(&self, key: usize, path: PathBuf) {
        if let Some(tx) = &self.requests {
            // A send error means the worker ended; `finish` reports it.
            let _ = tx.send((key, path));
        }
    }

    /// An outcome that is ready now, if any.
    pub fn try_next(&self) -> Option<(usize, ProbeOutcome)> {
        self.results.try_recv().ok()
    }

    /// Waits for every queued file, returns the remaining outcomes and how many
    /// probe processes this worker started.
    pub fn finish(mut self) -> (Vec<(usize, ProbeOutcome)>, u64) {
        self.requests = None;
        let rest: Vec<_> = self.results.iter().collect();
        let started = self
            .thread
            .take()
            .map(|t| t.join().unwrap_or(0))
            .unwrap_or(0);
        (rest, started)
    }
}

impl Drop for ProbeWorker {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One queued file.
struct Pending {
    key: usize,
    path: PathBuf,
    /// Its previous probe died after other libraries: probe it alone this time.
    suspect: bool,
}

/// A running probe child and its end of the channel.
struct ProbeProcess {
    child: Child,
    channel: UnixStream,
    nonce: Nonce,
    /// Libraries it has answered for.
    completed: usize,
}

struct Driver {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
    process: Option<ProbeProcess>,
    started: u64,
    next_id: u64,
}

impl Driver {
    fn run(
        &mut self,
        requests: mpsc::Receiver<(usize, PathBuf)>,
        results: mpsc::Sender<(usize, ProbeOutcome)>,
    ) {
        let mut queue: VecDeque<Pending> = VecDeque::new();
        let mut inflight: VecDeque<(u64, Pending)> = VecDeque::new();
        let mut inputs_open = true;
        let emit = |key: usize, outcome: ProbeOutcome| {
            let _ = results.send((key, outcome));
        };
        loop {
            if inflight.is_empty() && queue.is_empty() {
                if !inputs_open {
                    break;
                }
                match requests.recv() {
                    Ok((key, path)) => queue.push_back(Pending {
                        key,
                        path,
                        suspect: false,
                    }),
                    Err(_) => inputs_open = false,
                }
                continue;
            }
            while inputs_open {
                match requests.try_recv() {
                    Ok((key, path)) => queue.push_back(Pending {
                        key,
                        path,
                        suspect: false,
                    }),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => inputs_open = false,
                }
            }
            // Send what the window allows.
            while inflight.len() < WINDOW && !inflight.front().is_some_and(|(_, p)| p.suspect) {
                let Some(front) = queue.front() else { break };
                if front.suspect {
                    if !inflight.is_empty() {
                        break;
                    }
                    if self.process.as_ref().is_some_and(|p| p.completed > 0) {
                        self.stop_process();
                    }
                }
                if self.process.is_none() {
                    if let Err(e) = self.spawn() {
                        for p in queue.drain(..) {
                            emit(p.key, ProbeOutcome::Unavailable(e.clone()));
                        }
                        break;
                    }
                }
                let pending = queue.pop_front().expect("front exists");
                let id = self.next_id;
                self.next_id += 1;
                let process = self.process.as_mut().expect("spawned above");
                let request = ToChild::Probe {
                    id,
                    path: pending.path.clone(),
                };
                let sent = write_frame(&mut NoSigPipe(&process.channel), &process.nonce, &request);
                inflight.push_back((id, pending));
                if sent.is_err() {
                    // The child is gone; reading below finds out why.
                    break;
                }
            }
            let Some((head_id, _)) = inflight.front() else {
                continue;
            };
            let head_id = *head_id;
            let process = self
                .process
                .as_mut()
                .expect("requests in flight have a process");
            let deadline = Instant::now() + self.timeout;
            let answer = read_frame::<FromChild>(
                &mut DeadlineReader {
                    stream: &process.channel,
                    deadline,
                },
                Some(&process.nonce),
            );
            match answer {
                Ok((FromChild::Verdict { id, verdict }, _)) if id == head_id => {
                    process.completed += 1;
                    let (_, pending) = inflight.pop_front().expect("head exists");
                    emit(pending.key, ProbeOutcome::Verdict(verdict));
                }
                Ok((other, _)) => {
                    let (_, head) = inflight.pop_front().expect("head exists");
                    self.stop_process();
                    emit(
                        head.key,
                        ProbeOutcome::Quarantined {
                            reason: format!(
                                "the probe sent an unexpected message while opening the library ({})",
                                short_debug(&other)
                            ),
                        },
                    );
                    requeue(&mut queue, &mut inflight);
                }
                Err(FrameError::Io(e)) if is_timeout(&e) => {
                    let (_, head) = inflight.pop_front().expect("head exists");
                    self.stop_process();
                    emit(
                        head.key,
                        ProbeOutcome::Quarantined {
                            reason: format!(
                                "opening the library did not finish within {:?} (a constructor that \
                                 never returns?); the probe process was killed",
                                self.timeout
                            ),
                        },
                    );
                    requeue(&mut queue, &mut inflight);
                }
                Err(FrameError::Garbage(why)) => {
                    let (_, head) = inflight.pop_front().expect("head exists");
                    self.stop_process();
                    emit(
                        head.key,
                        ProbeOutcome::Quarantined {
                            reason: format!(
                                "the probe's report was garbage while opening the library ({why}); \
                                 does the library write to file descriptor {CHANNEL_FD}?"
                            ),
                        },
                    );
                    requeue(&mut queue, &mut inflight);
                }
                Err(FrameError::Closed | FrameError::Io(_)) => {
                    let completed = process.completed;
                    let status = self.reap_process();
                    let (_, mut head) = inflight.pop_front().expect("head exists");
                    if completed > 0 && !head.suspect {
                        head.suspect = true;
                        inflight.push_front((0, head));
                        requeue(&mut queue, &mut inflight);
                    } else {
                        emit(
                            head.key,
                            ProbeOutcome::Quarantined {
                                reason: death_reason(status),
                            },
                        );
                        requeue(&mut queue, &mut inflight);
                    }
                }
            }
        }
        self.stop_process();
    }

    /// Starts a child and does the hello/ready handshake.
    fn spawn(&mut self) -> Result<(), Error> {
        let program = self.program.clone();
        let unavailable = move |why: String| {
            Error::Config(format!(
                "the plugin probe {} cannot run: {why}",
                program.display()
            ))
        };
        let (parent_end, child_end) = UnixStream::pair().map_err(|e| unavailable(e.to_string()))?;
        let child_fd = child_end.as_raw_fd();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (dup2, fcntl) on descriptors it owns, plus
        // setpriority, a plain system call on the child itself (no locks, no
        // allocation) that lowers its CPU priority for the background probe
        // (see `super::priority`); its failure is ignored.
        unsafe {
            cmd.pre_exec(move || {
                libc::setpriority(libc::PRIO_PROCESS, 0, super::priority::BACKGROUND_NICE);
                if child_fd == CHANNEL_FD {
                    // Already fd 3: just let it survive exec.
                    let flags = libc::fcntl(child_fd, libc::F_GETFD);
                    if flags < 0
                        || libc::fcntl(child_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(child_fd, CHANNEL_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| unavailable(e.to_string()))?;
        drop(child_end);
        self.started += 1;
        let _ = parent_end.set_write_timeout(Some(self.timeout));
        let nonce = new_nonce();
        self.process = Some(ProbeProcess {
            child,
            channel: parent_end,
            nonce,
            completed: 0,
        });
        let process = self.process.as_mut().expect("just set");
        let handshake = write_frame(&mut NoSigPipe(&process.channel), &nonce, &ToChild::Hello)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                read_frame::<FromChild>(
                    &mut DeadlineReader {
                        stream: &process.channel,
                        deadline: Instant::now() + self.timeout.max(Duration::from_secs(2)),
                    },
                    Some(&nonce),
                )
                .map_err(|e| e.to_string())
            });
        let failure = match handshake {
            Ok((
                FromChild::Ready {
                    interface_build_id, ..
                },
                _,
            )) if interface_build_id == loader::interface_build_id() => {
                return Ok(());
            }
            Ok((
                FromChild::Ready {
                    interface_build_id, ..
                },
                _,
            )) => format!(
                "it was built against another plugin interface (build id {}…, this host {}…); \
                 rebuild it together with the host",
                &interface_build_id[..interface_build_id.len().min(12)],
                &loader::interface_build_id()[..12]
            ),
            Ok((other, _)) => format!("unexpected first message {}", short_debug(&other)),
            Err(e) => format!("no handshake ({e})"),
        };
        self.stop_process();
        Err(unavailable(failure))
    }

    /// Closes the channel and ends the child (killing it if it does not exit).
    fn stop_process(&mut self) {
        if self.process.is_some() {
            let _ = self.reap_process();
        }
    }

    /// Closes the channel, waits briefly for the child to exit, kills it if it
    /// does not, and returns its exit status.
    fn reap_process(&mut self) -> Option<ExitStatus> {
        let ProbeProcess {
            mut child, channel, ..
        } = self.process.take()?;
        drop(channel);
        let until = Instant::now() + REAP_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
                _ => {
                    // Our own child, by its handle (pid): never a broad kill.
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

/// Puts everything still in flight back at the front of the queue, in order.
fn requeue(queue: &mut VecDeque<Pending>, inflight: &mut VecDeque<(u64, Pending)>) {
    while let Some((_, pending)) = inflight.pop_back() {
        queue.push_front(pending);
    }
}

/// Why the probe died, in words.
fn death_reason(status: Option<ExitStatus>) -> String {
    match status {
        Some(s) if s.signal().is_some() => {
            let sig = s.signal().unwrap_or_default();
            format!(
                "the probe process was killed by {} while opening the library",
                signal_name(sig)
            )
        }
        Some(s) => format!(
            "the probe process exited (status {}) while opening the library",
            s.code().map_or("unknown".to_owned(), |c| c.to_string())
        ),
        None => "the probe process vanished while opening the library".to_owned(),
    }
}

/// `SIGSEGV (signal 11)` and friends.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    };
    format!("{name} (signal {sig})")
}

fn short_debug(message: &FromChild) -> String {
    format!("{message:?}").chars().take(120).collect()
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Reads that fail with `TimedOut` once `deadline` has passed.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(self.deadline - now))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

/// Writes with `MSG_NOSIGNAL`, so a dead child gives an error, never a SIGPIPE
/// that would kill a host which did not ignore it.
struct NoSigPipe<'a>(&'a UnixStream);

impl Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes and the fd is owned by
            // the borrowed stream for the duration of the call.
            let n = unsafe {
                libc::send(
                    self.0.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn death_reasons_name_the_signal() {
        let segv = ExitStatus::from_raw(libc::SIGSEGV);
        assert!(death_reason(Some(segv)).contains("SIGSEGV (signal 11)"));
        let exit1 = ExitStatus::from_raw(1 << 8);
        assert!(death_reason(Some(exit1)).contains("exited (status 1)"));
    }

    #[test]
    fn a_missing_probe_binary_is_a_config_error_for_every_file() {
        let worker = ProbeWorker::start(
            "/definitely/not/a/probe".into(),
            vec![],
            Duration::from_secs(1),
        );
        worker.submit(0, "/x/a.so".into());
        worker.submit(1, "/x/b.so".into());
        let (outcomes, started) = worker.finish();
        assert_eq!(started, 0);
        assert_eq!(outcomes.len(), 2);
        for (_, o) in outcomes {
            match o {
                ProbeOutcome::Unavailable(Error::Config(why)) => {
                    assert!(why.contains("/definitely/not/a/probe"), "{why}")
                }
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
    }
}
