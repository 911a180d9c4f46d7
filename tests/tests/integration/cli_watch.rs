//! `plugin-host run --watch`: the binary follows its plugin directory while it
//! runs. Each test starts the host, changes files the way a user or a build
//! tool would, and reads the status lines it prints (polling the output, with a
//! generous bound: no timing is asserted).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use integration_tests::{built_libraries, library_file_name, plugin_host_bin, PluginDir};

/// How long a test waits for an expected line before failing (a loaded machine
/// builds and probes slowly; the host normally answers within about a second).
const PATIENCE: Duration = Duration::from_secs(60);

/// Every line the host printed so far, `out: ` / `err: ` prefixed, in arrival order.
#[derive(Default)]
struct Output {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// A running `plugin-host run --watch` over a plugin directory.
struct WatchedHost {
    child: Child,
    output: Arc<Output>,
    state: tempfile::TempDir,
    _work: tempfile::TempDir,
}

impl WatchedHost {
    /// Starts the host on `dir` with `extra` flags and waits until it watches.
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let state = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut child = Command::new(plugin_host_bin())
            .arg("run")
            .arg("--watch")
            .args(extra)
            .arg("--state-dir")
            .arg(state.path())
            .arg("--work-dir")
            .arg(work.path())
            .arg(dir)
            // Only the host's own status lines (tracing goes to stderr too).
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start plugin-host");
        let output = Arc::new(Output::default());
        for (prefix, stream) in [
            (
                "out",
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            ),
            ("err", Box::new(child.stderr.take().unwrap())),
        ] {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    output
                        .lines
                        .lock()
                        .unwrap()
                        .push(format!("{prefix}: {line}"));
                    output.grew.notify_all();
                }
            });
        }
        let host = Self {
            child,
            output,
            state,
            _work: work,
        };
        host.wait_for("the watch to start", |l| {
            l.starts_with("out: watch: watching ")
        });
        host
    }

    /// Everything printed so far.
    fn text(&self) -> String {
        self.output.lines.lock().unwrap().join("\n")
    }

    /// Waits until a line matches `pred`; returns it. Fails with the whole output.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_for_after(0, what, pred)
    }

    /// [`WatchedHost::wait_for`] among the lines after the first `skip`.
    fn wait_for_after(&self, skip: usize, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut lines = self.output.lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().skip(skip).find(|l| pred(l)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "waited {PATIENCE:?} for {what}; the host printed:\n{}",
                lines.join("\n")
            );
            lines = self.output.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// The lines matching `pred` so far.
    fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.output
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| pred(l))
            .count()
    }

    /// Stops the host with SIGTERM; returns everything it printed after checking
    /// it exited normally.
    fn stop(self) -> String {
        self.stop_keeping_state().0
    }

    /// [`WatchedHost::stop`], also handing over the state directory.
    fn stop_keeping_state(mut self) -> (String, tempfile::TempDir) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to plugin-host");
        let status = self.child.wait().expect("wait for plugin-host");
        // The reader threads finish when the pipes close.
        self.wait_for("the final status", |l| l == "out: stopped:");
        let text = self.text();
        assert!(
            status.success(),
            "plugin-host exited with {status}:\n{text}"
        );
        let state = std::mem::replace(&mut self.state, tempfile::tempdir().unwrap());
        (text, state)
    }
}

impl Drop for WatchedHost {
    fn drop(&mut self) {
        // A failed test leaves no host behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `bytes` to `path` the way a slow copy does: in `chunks` pieces with
/// `pause` between them, each flushed to the file.
fn write_slowly(path: &Path, bytes: &[u8], chunks: usize, pause: Duration) {
    let mut file = std::fs::File::create(path).unwrap();
    for chunk in bytes.chunks(bytes.len().div_ceil(chunks)) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        std::thread::sleep(pause);
    }
}

#[test]
fn a_library_written_slowly_is_loaded_once_and_complete() {
    let dir = PluginDir::with(&["hello"]);
    // A settle interval ten times the writer's pauses, so a busy machine
    // delaying the writer does not make a pause look like the end.
    let host = WatchedHost::start(dir.path(), &["--settle-ms", "1500"]);
    let counter = std::fs::read(&built_libraries(&["counter"])[0]).unwrap();
    let target = dir.library("counter");
    // 20 chunks, 150 ms apart: three seconds of a half-written file.
    write_slowly(&target, &counter, 20, Duration::from_millis(150));
    let added = host.wait_for("counter to be added", |l| {
        l.starts_with("out: watch: added counter ")
    });
    assert!(
        added.ends_with(": active") && added.contains(&library_file_name("counter")),
        "{added}"
    );
    let text = host.stop();
    assert_eq!(
        text.matches("watch: added counter").count(),
        1,
        "loaded more than once:\n{text}"
    );
    assert!(
        !text.contains("refused") && !text.contains("did not start"),
        "a half-written file was tried:\n{text}"
    );
    // The complete library ran: it was active until the end.
    assert!(
        text.lines()
            .any(|l| l.contains("counter") && l.contains("unloaded") && l.contains("counts")),
        "{text}"
    );
}

#[test]
fn a_deleted_library_is_unloaded_and_one_with_running_dependents_is_kept() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let host = WatchedHost::start(dir.path(), &[]);
    std::fs::remove_file(dir.library("counter")).unwrap();
    let removed = host.wait_for("counter to be removed", |l| {
        l.starts_with("out: watch: removed counter ")
    });
    assert!(removed.contains("was deleted"), "{removed}");
    std::fs::remove_file(dir.library("hello")).unwrap();
    let kept = host.wait_for("the refusal to unload hello", |l| {
        l.starts_with("err: plugin-host: watch: kept hello ")
    });
    assert!(
        kept.contains("greeter depends on it") && kept.contains("--cascade"),
        "{kept}"
    );
    let text = host.stop();
    assert_eq!(
        host_status(&text, "stopped:"),
        ["greeter unloaded", "hello unloaded"],
        "counter is gone, hello kept running until the end:\n{text}"
    );
}

#[test]
fn with_cascade_a_deleted_dependency_takes_its_dependents_down_until_it_is_back() {
    let dir = PluginDir::with(&["hello", "greeter"]);
    let host = WatchedHost::start(dir.path(), &["--cascade"]);
    std::fs::remove_file(dir.library("hello")).unwrap();
    host.wait_for("hello to be removed", |l| {
        l.starts_with("out: watch: removed hello ")
    });
    host.wait_for("greeter to be stopped with it", |l| {
        l == "out: watch: stopped greeter (it depends on hello)"
    });
    // Without hello, greeter stays stopped; with hello back, it starts again.
    std::fs::copy(&built_libraries(&["hello"])[0], dir.library("hello")).unwrap();
    host.wait_for("hello to be added", |l| {
        l.starts_with("out: watch: added hello ") && l.ends_with(": active")
    });
    host.wait_for("greeter to start again", |l| {
        l == "out: watch: restarted greeter 1.2.0: active"
    });
    let text = host.stop();
    assert_eq!(
        host_status(&text, "stopped:"),
        ["greeter unloaded", "hello unloaded"],
        "{text}"
    );
}

#[test]
fn a_vanished_directory_is_reported_and_picked_up_again_when_it_comes_back() {
    let parent = tempfile::tempdir().unwrap();
    let plugins = parent.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(
        &built_libraries(&["hello"])[0],
        plugins.join(library_file_name("hello")),
    )
    .unwrap();
    let host = WatchedHost::start(&plugins, &[]);
    let aside = parent.path().join("aside");
    std::fs::rename(&plugins, &aside).unwrap();
    let gone = host.wait_for("the directory to be missed", |l| l.contains("disappeared"));
    assert!(
        gone.contains(plugins.to_str().unwrap()) && gone.contains("keep running"),
        "{gone}"
    );
    // It comes back with one more library.
    std::fs::copy(
        &built_libraries(&["counter"])[0],
        aside.join(library_file_name("counter")),
    )
    .unwrap();
    std::fs::rename(&aside, &plugins).unwrap();
    host.wait_for("the directory to be back", |l| {
        l.starts_with("out: watch: ") && l.ends_with("is there; watching it")
    });
    host.wait_for("counter to be added", |l| {
        l.starts_with("out: watch: added counter ")
    });
    // hello never stopped.
    assert_eq!(
        host.count(|l| l.contains("removed hello")),
        0,
        "{}",
        host.text()
    );
    let text = host.stop();
    assert_eq!(
        host_status(&text, "stopped:"),
        ["counter unloaded", "hello unloaded"],
        "{text}"
    );
}

/// The rows of the status table under `heading` as "name state", sorted.
fn host_status(text: &str, heading: &str) -> Vec<String> {
    let mut rows: Vec<String> = text
        .lines()
        .skip_while(|l| *l != format!("out: {heading}"))
        .skip(2)
        .map_while(|l| l.strip_prefix("out:   "))
        .map(|row| {
            let mut cols = row.split_whitespace();
            let name = cols.next().unwrap_or_default().to_owned();
            let _version = cols.next();
            format!("{name} {}", cols.next().unwrap_or_default())
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_library_replaced_by_a_new_build_is_reloaded_with_its_state() {
    let dir = PluginDir::with(&["hello", "counter"]);
    let host = WatchedHost::start(dir.path(), &[]);
    // A build tool's way: write the new build under another name, rename it over.
    let next = built_libraries(&["fixture-counter-next"]).remove(0);
    let temporary = dir.path().join(".libcounter.so.partial");
    std::fs::copy(&next, &temporary).unwrap();
    let replaced_at = Instant::now();
    std::fs::rename(&temporary, dir.library("counter")).unwrap();
    let reloaded = host.wait_for("counter to be reloaded", |l| {
        l.starts_with("out: watch: reloaded counter ")
    });
    // Seen by the test, not asserted: the goal is within 2 s.
    eprintln!(
        "reload seen {} ms after the rename: {reloaded}",
        replaced_at.elapsed().as_millis()
    );
    assert!(
        reloaded.contains("1.0.0 -> 1.1.0") && reloaded.contains("1 retained image"),
        "{reloaded}"
    );
    // The same bytes again (a touch, a copy of the same build): reported, not swapped.
    std::fs::copy(&next, &temporary).unwrap();
    std::fs::rename(&temporary, dir.library("counter")).unwrap();
    host.wait_for("the identical file to be a no-op", |l| {
        l.starts_with("out: watch: unchanged counter 1.1.0 ")
    });
    let (text, state) = host.stop_keeping_state();
    assert_eq!(
        text.matches("watch: reloaded").count(),
        1,
        "reloaded more than once:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(" counter ") && l.contains("1.1.0") && l.contains("unloaded")),
        "the new version ran until the end:\n{text}"
    );
    assert!(
        text.contains("out: retained images: 1 "),
        "the status counts the image the reload kept mapped:\n{text}"
    );
    // 1.0.0 initialized once and handed its state to 1.1.0, which initialized
    // again: a fresh start would have saved 1.
    let saved = std::fs::read_to_string(state.path().join("counter.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["state"]["initializations"], 2, "{saved}");
}

#[test]
fn a_broken_replacement_is_refused_and_the_old_version_keeps_running() {
    let dir = PluginDir::with(&["hello", "counter"]);
    let host = WatchedHost::start(dir.path(), &[]);
    dir.write(&library_file_name("counter"), b"not a library\n");
    let refused = host.wait_for("the reload to be refused", |l| {
        l.starts_with("err: plugin-host: watch: ") && l.contains("libcounter.so changed")
    });
    assert!(
        refused.contains("counter 1.0.0 keeps running") && refused.contains("admit"),
        "the error names the step:\n{refused}"
    );
    // Still Active: the next good build is a reload of a running plugin (a
    // stopped one would be "replaced ..., it was unloaded").
    let next = built_libraries(&["fixture-counter-next"]).remove(0);
    let temporary = dir.path().join(".libcounter.so.partial");
    std::fs::copy(&next, &temporary).unwrap();
    std::fs::rename(&temporary, dir.library("counter")).unwrap();
    let reloaded = host.wait_for("the good build to be reloaded", |l| {
        l.starts_with("out: watch: reloaded counter 1.0.0 -> 1.1.0 ")
    });
    assert!(reloaded.contains("calls held"), "{reloaded}");
    let text = host.stop();
    assert!(!text.contains("watch: replaced"), "{text}");
}

#[test]
fn checkpoints_go_on_while_the_watch_reloads() {
    let dir = PluginDir::with(&["hello", "counter"]);
    let host = WatchedHost::start(dir.path(), &["--checkpoint-every", "100ms"]);
    let next = built_libraries(&["fixture-counter-next"]).remove(0);
    let temporary = dir.path().join(".libcounter.so.partial");
    std::fs::copy(&next, &temporary).unwrap();
    std::fs::rename(&temporary, dir.library("counter")).unwrap();
    host.wait_for("counter to be reloaded", |l| {
        l.starts_with("out: watch: reloaded counter 1.0.0 -> 1.1.0 ")
    });
    let reloaded_at = host.count(|_| true);
    host.wait_for_after(reloaded_at, "a checkpoint after the reload", |l| {
        l.contains("checkpoint") && l.contains("counter saved")
    });
    host.stop();
}
