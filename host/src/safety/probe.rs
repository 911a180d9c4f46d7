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
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::protocol::{new_nonce, read_frame, write_frame, FrameError, FromChild, Nonce, ToChild};
use super::verdict::Verdict;
use crate::error::Error;
use crate::loader;
use crate::platform::{self, ExitReason, ProbeChannel};

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

/// One file's outcome as the worker hands it back: its key, what the probe
/// found, and how long the probe child worked on it (see [`ProbeWorker::recv_timed`]).
pub type TimedOutcome = (usize, ProbeOutcome, Duration);

/// A thread that feeds files to probe children and hands back outcomes.
pub struct ProbeWorker {
    requests: Option<mpsc::Sender<(usize, PathBuf)>>,
    results: mpsc::Receiver<TimedOutcome>,
    thread: Option<JoinHandle<u64>>,
}

impl ProbeWorker {
    /// Starts the worker thread. No process is started until the first request.
    /// Errors when the thread cannot be started.
    pub fn start(program: PathBuf, args: Vec<OsString>, timeout: Duration) -> Result<Self, Error> {
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
                    last_answer: None,
                };
                driver.run(req_rx, res_tx);
                driver.started
            })
            .map_err(|e| Error::Config(format!("cannot start the probe worker thread: {e}")))?;
        Ok(Self {
            requests: Some(req_tx),
            results: res_rx,
            thread: Some(thread),
        })
    }

    /// Queues `path` (absolute) for probing; its outcome comes back tagged `key`.
    pub fn submit(&self, key: usize, path: PathBuf) {
        if let Some(tx) = &self.requests {
            // A send error means the worker ended; `finish` reports it.
            let _ = tx.send((key, path));
        }
    }

    /// An outcome that is ready now, if any, with the time the probe spent on it.
    pub fn try_next_timed(&self) -> Option<TimedOutcome> {
        self.results.try_recv().ok()
    }

    /// Stops accepting files and waits for the next outcome; `None` once every
    /// queued file has one. The duration is how long the probe child worked on
    /// that file: from when the child could start on it (request sent and the
    /// previous answer received) to its answer, including a retry in a fresh
    /// child and, for a hang, the whole timeout.
    pub fn recv_timed(&mut self) -> Option<TimedOutcome> {
        self.requests = None;
        self.results.recv().ok()
    }

    /// Waits for every queued file, returns the remaining outcomes and how many
    /// probe processes this worker started.
    pub fn finish(mut self) -> (Vec<(usize, ProbeOutcome)>, u64) {
        self.requests = None;
        let rest: Vec<_> = self
            .results
            .iter()
            .map(|(key, outcome, _)| (key, outcome))
            .collect();
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
    /// When it was first sent to a child (kept across a retry).
    sent_at: Option<Instant>,
}

/// A running probe child and its end of the channel.
struct ProbeProcess {
    child: Child,
    channel: ProbeChannel,
    nonce: Nonce,
    /// Libraries it has answered for.
    completed: usize,
}

/// Why the child failed to answer for the oldest request in flight.
enum Failure {
    /// It answered with something other than that request's verdict.
    Unexpected(String),
    /// It did not answer within the timeout.
    TimedOut,
    /// Its frame was malformed.
    Garbage(String),
    /// It closed the channel: it died.
    Died,
}

/// The files waiting for the probe: queued, and sent but not answered yet (in
/// request order, each with its request id).
#[derive(Default)]
struct Queues {
    queue: VecDeque<Pending>,
    inflight: VecDeque<(u64, Pending)>,
}

impl Queues {
    fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.inflight.is_empty()
    }

    fn push(&mut self, (key, path): (usize, PathBuf)) {
        self.queue.push_back(Pending {
            key,
            path,
            suspect: false,
            sent_at: None,
        });
    }

    /// Puts everything still in flight back at the front of the queue, in order.
    fn requeue(&mut self) {
        while let Some((_, pending)) = self.inflight.pop_back() {
            self.queue.push_front(pending);
        }
    }
}

struct Driver {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
    process: Option<ProbeProcess>,
    started: u64,
    next_id: u64,
    /// When the child last answered (a child works on one library at a time).
    last_answer: Option<Instant>,
}

impl Driver {
    /// How long the child worked on a file first sent at `sent_at`: since it was
    /// sent or since the previous answer, whichever came later.
    fn took(&mut self, sent_at: Option<Instant>) -> Duration {
        let now = Instant::now();
        let from = match (sent_at, self.last_answer) {
            (Some(sent), Some(last)) => sent.max(last),
            (Some(sent), None) => sent,
            (None, _) => now,
        };
        self.last_answer = Some(now);
        now.saturating_duration_since(from)
    }

    /// Serves requests until the request channel is closed and every file has
    /// an outcome. Each round: take new requests, fill the window, wait for the
    /// oldest answer.
    fn run(
        &mut self,
        requests: mpsc::Receiver<(usize, PathBuf)>,
        results: mpsc::Sender<TimedOutcome>,
    ) {
        let emit = |key: usize, outcome: ProbeOutcome, took: Duration| {
            let _ = results.send((key, outcome, took));
        };
        let mut queues = Queues::default();
        let mut inputs_open = true;
        loop {
            if queues.is_empty() {
                // Idle: block for the next request, or end.
                match requests.recv() {
                    Ok(request) if inputs_open => queues.push(request),
                    _ => break,
                }
            }
            while inputs_open {
                match requests.try_recv() {
                    Ok(request) => queues.push(request),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => inputs_open = false,
                }
            }
            self.fill_window(&mut queues, &emit);
            let Some(&(head_id, _)) = queues.inflight.front() else {
                continue;
            };
            match self.await_answer(head_id) {
                Ok(verdict) => {
                    if let Some(process) = self.process.as_mut() {
                        process.completed += 1;
                    }
                    if let Some((_, head)) = queues.inflight.pop_front() {
                        let took = self.took(head.sent_at);
                        emit(head.key, ProbeOutcome::Verdict(verdict), took);
                    }
                }
                Err(failure) => self.on_failure(failure, &mut queues, &emit),
            }
        }
        self.stop_process();
    }

    /// Sends queued files while the window allows. A suspect is sent only
    /// alone, to a fresh child; a child that cannot start makes every queued
    /// file `Unavailable`.
    fn fill_window(&mut self, queues: &mut Queues, emit: &impl Fn(usize, ProbeOutcome, Duration)) {
        while queues.inflight.len() < WINDOW
            && !queues.inflight.front().is_some_and(|(_, p)| p.suspect)
        {
            let Some(front) = queues.queue.front() else {
                break;
            };
            if front.suspect {
                if !queues.inflight.is_empty() {
                    break;
                }
                if self.process.as_ref().is_some_and(|p| p.completed > 0) {
                    self.stop_process();
                }
            }
            let process = match self.process.take() {
                Some(process) => process,
                None => match self.spawn() {
                    Ok(process) => process,
                    Err(e) => {
                        for p in queues.queue.drain(..) {
                            emit(p.key, ProbeOutcome::Unavailable(e.clone()), Duration::ZERO);
                        }
                        break;
                    }
                },
            };
            let process = self.process.insert(process);
            let Some(mut pending) = queues.queue.pop_front() else {
                break;
            };
            pending.sent_at.get_or_insert_with(Instant::now);
            let id = self.next_id;
            self.next_id += 1;
            let request = ToChild::Probe {
                id,
                path: pending.path.clone(),
            };
            let sent = write_frame(&mut process.channel.writer(), &process.nonce, &request);
            queues.inflight.push_back((id, pending));
            if sent.is_err() {
                // The child is gone; waiting for the answer finds out why.
                break;
            }
        }
    }

    /// Waits (up to the timeout) for the answer to request `head_id`.
    fn await_answer(&mut self, head_id: u64) -> Result<Verdict, Failure> {
        let Some(process) = self.process.as_mut() else {
            return Err(Failure::Died);
        };
        let deadline = Instant::now() + self.timeout;
        match read_frame::<FromChild>(&mut process.channel.reader(deadline), Some(&process.nonce)) {
            Ok((FromChild::Verdict { id, verdict }, _)) if id == head_id => Ok(verdict),
            Ok((other, _)) => Err(Failure::Unexpected(short_debug(&other))),
            Err(FrameError::Io(e)) if is_timeout(&e) => Err(Failure::TimedOut),
            Err(FrameError::Garbage(why)) => Err(Failure::Garbage(why)),
            Err(FrameError::Closed | FrameError::Io(_)) => Err(Failure::Died),
        }
    }

    /// The child failed on the oldest file in flight: end the child, then
    /// quarantine that file — or, if the child died after answering for other
    /// libraries, probe the file once more alone (see the module docs). The
    /// rest in flight goes back to the queue.
    fn on_failure(
        &mut self,
        failure: Failure,
        queues: &mut Queues,
        emit: &impl Fn(usize, ProbeOutcome, Duration),
    ) {
        let completed = self.process.as_ref().map_or(0, |p| p.completed);
        let status = self.reap_process();
        let Some((_, mut head)) = queues.inflight.pop_front() else {
            return;
        };
        let reason = match failure {
            Failure::Died if completed > 0 && !head.suspect => {
                head.suspect = true;
                queues.inflight.push_front((0, head));
                queues.requeue();
                return;
            }
            Failure::Died => death_reason(status.as_ref().map(platform::exit_reason)),
            Failure::Unexpected(what) => {
                format!("the probe sent an unexpected message while opening the library ({what})")
            }
            Failure::TimedOut => format!(
                "opening the library did not finish within {:?} (a constructor that \
                 never returns?); the probe process was killed",
                self.timeout
            ),
            Failure::Garbage(why) => format!(
                "the probe's report was garbage while opening the library ({why}); \
                 does the library write to {}?",
                platform::CHANNEL_NAME
            ),
        };
        let took = self.took(head.sent_at);
        emit(head.key, ProbeOutcome::Quarantined { reason }, took);
        queues.requeue();
    }

    /// Starts a child and does the hello/ready handshake.
    fn spawn(&mut self) -> Result<ProbeProcess, Error> {
        let unavailable = |why: String| {
            Error::Config(format!(
                "the plugin probe {} cannot run: {why}",
                self.program.display()
            ))
        };
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        let (child, channel) =
            ProbeChannel::spawn(cmd, self.timeout).map_err(|e| unavailable(e.to_string()))?;
        self.started += 1;
        let nonce = new_nonce();
        let mut process = ProbeProcess {
            child,
            channel,
            nonce,
            completed: 0,
        };
        let deadline = Instant::now() + self.timeout.max(Duration::from_secs(2));
        let hello = write_frame(&mut process.channel.writer(), &nonce, &ToChild::Hello);
        let handshake = hello.map_err(|e| e.to_string()).and_then(|()| {
            read_frame::<FromChild>(&mut process.channel.reader(deadline), Some(&nonce))
                .map_err(|e| e.to_string())
        });
        let failure = match handshake {
            Ok((
                FromChild::Ready {
                    interface_build_id, ..
                },
                _,
            )) if interface_build_id == loader::interface_build_id() => {
                return Ok(process);
            }
            Ok((
                FromChild::Ready {
                    interface_build_id, ..
                },
                _,
            )) => format!(
                "it was built against another plugin interface (build id {}…, this host {}…); \
                 rebuild it together with the host",
                interface_build_id.get(..12).unwrap_or(&interface_build_id),
                loader::interface_build_id().get(..12).unwrap_or_default()
            ),
            Ok((other, _)) => format!("unexpected first message {}", short_debug(&other)),
            Err(e) => format!("no handshake ({e})"),
        };
        let _ = reap(process);
        Err(unavailable(failure))
    }

    /// Closes the channel and ends the child (killing it if it does not exit).
    fn stop_process(&mut self) {
        if self.process.is_some() {
            let _ = self.reap_process();
        }
    }

    /// Ends the current child, if any, and returns its exit status.
    fn reap_process(&mut self) -> Option<std::process::ExitStatus> {
        reap(self.process.take()?)
    }
}

/// Closes the channel, waits briefly for the child to exit, kills it if it
/// does not, and returns its exit status.
fn reap(process: ProbeProcess) -> Option<std::process::ExitStatus> {
    let ProbeProcess {
        mut child, channel, ..
    } = process;
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

/// Why the probe died, in words.
fn death_reason(reason: Option<ExitReason>) -> String {
    match reason {
        Some(reason) => format!("the probe process {reason} while opening the library"),
        None => "the probe process vanished while opening the library".to_owned(),
    }
}

fn short_debug(message: &FromChild) -> String {
    format!("{message:?}").chars().take(120).collect()
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn death_reasons_name_the_signal_or_exception() {
        let segv = ExitReason::Signal {
            number: 11,
            name: Some("SIGSEGV"),
        };
        assert_eq!(
            death_reason(Some(segv)),
            "the probe process was killed by SIGSEGV (signal 11) while opening the library"
        );
        assert!(death_reason(Some(ExitReason::Code(1))).contains("exited (status 1)"));
        assert!(death_reason(Some(ExitReason::Exception(0xC000_0005)))
            .contains("crashed with STATUS_ACCESS_VIOLATION (0xC0000005)"));
        assert!(death_reason(None).contains("vanished"));
    }

    #[test]
    fn a_missing_probe_binary_is_a_config_error_for_every_file() {
        let worker = ProbeWorker::start(
            "/definitely/not/a/probe".into(),
            vec![],
            Duration::from_secs(1),
        )
        .unwrap();
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
