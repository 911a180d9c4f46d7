//! `plugin-host run --profile`: where startup time goes, per plugin and per
//! phase, and the startup's critical path.
//!
//! The host marks each phase of a plugin's way to Active with a `tracing` span
//! at DEBUG level named after the phase ([`PHASES`]), with the plugin's name
//! (`plugin`) or its library file (`file`) as a field, or the directory (`dir`)
//! for discovery. A [`Recorder`]'s layer, installed only with `--profile`,
//! notes when each such span is created and closed; nothing else listens to
//! them, so without `--profile` they cost a disabled-callsite check.
//!
//! Reading the numbers:
//! - a phase's time is its span's lifetime minus the phases nested in it (the
//!   disk copy of a small file hashes while it copies: its `hash` spans are
//!   inside `copy`); a large file is hashed on a helper thread beside the copy,
//!   and that `hash` span (marked `overlapped`) is not taken off the copy's time;
//! - `probe` runs from the moment the file is handed to the probe worker until
//!   its verdict arrives, so it includes waiting behind other files;
//! - `discover` lists a whole directory: every plugin of that directory shows
//!   the same time, marked shared, and it is not part of a plugin's total;
//! - a plugin's total is the time during which at least one of its own phases
//!   was under way (overlaps counted once), so it never exceeds the wall time;
//! - phases of different plugins run in parallel (copying the next file while
//!   the probe checks the last, initializing independent plugins together), so
//!   the per-phase table gives both the sum over plugins and the wall time
//!   during which the phase was under way for any plugin.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use plugbay_host::{DirectoryReport, PluginSummary};
use serde::Serialize;
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The phases of a plugin's way to Active, in order: the span names the host uses.
pub const PHASES: [&str; 10] = [
    "discover",
    "permission_check",
    "copy",
    "hash",
    "probe",
    "open",
    "register",
    "resolve",
    "restore_state",
    "initialize",
];

/// Phases that work for several plugins at once (shown for each, counted in none).
const SHARED: [&str; 1] = ["discover"];

/// Whether `meta` is one of the host's phase spans.
fn is_phase(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.target().starts_with("plugbay_host") && PHASES.contains(&meta.name())
}

/// A closed phase span.
#[derive(Debug, Clone)]
struct Record {
    phase: &'static str,
    /// The `plugin`, `file` or `dir` field.
    plugin: Option<String>,
    file: Option<String>,
    dir: Option<String>,
    start: Instant,
    end: Instant,
    /// Time spent in phase spans nested inside this one.
    nested: Duration,
    /// Whether it was nested in another phase span.
    has_parent: bool,
    /// Ran beside its parent (on another thread) rather than inside it: its
    /// time is not taken off the parent's.
    overlapped: bool,
}

impl Record {
    fn own(&self) -> Duration {
        (self.end - self.start).saturating_sub(self.nested)
    }
}

/// A phase span still open (kept in the span's extensions).
struct Open {
    record: Record,
}

/// Collects the phase spans; clone it to share.
#[derive(Clone, Default)]
pub struct Recorder {
    /// Guards: the closed phase spans. A `parking_lot` mutex locked only to push
    /// one record (in `on_close`) and to take them all (in [`Recorder::profile`]);
    /// never held across `.await` or while another lock is taken.
    closed: Arc<Mutex<Vec<Record>>>,
}

/// The field values a phase span carries.
#[derive(Default)]
struct Fields {
    plugin: Option<String>,
    file: Option<String>,
    dir: Option<String>,
    overlapped: bool,
}

impl tracing::field::Visit for Fields {
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        if field.name() == "overlapped" {
            self.overlapped = value;
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.set(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.set(field.name(), format!("{value:?}"));
    }
}

impl Fields {
    fn set(&mut self, name: &str, value: String) {
        match name {
            "plugin" => self.plugin = Some(value),
            "file" => self.file = Some(value),
            "dir" => self.dir = Some(value),
            _ => {}
        }
    }
}

/// Lets only the phase spans through to the recorder's layer.
struct PhaseFilter;

impl<S> Filter<S> for PhaseFilter {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
        is_phase(meta)
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if is_phase(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }
}

/// The recorder's layer (unfiltered; see [`Recorder::layer`]).
struct RecordingLayer {
    closed: Arc<Mutex<Vec<Record>>>,
}

impl<S> Layer<S> for RecordingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let parent = span.parent();
        if fields.plugin.is_none() && fields.file.is_none() && fields.dir.is_none() {
            // A phase nested in another (the hash inside a copy) is about the same file.
            if let Some(outer) = parent.as_ref().and_then(|p| {
                p.extensions()
                    .get::<Open>()
                    .map(|o| (o.record.plugin.clone(), o.record.file.clone()))
            }) {
                (fields.plugin, fields.file) = outer;
            }
        }
        let now = Instant::now();
        let open = Open {
            record: Record {
                phase: span.name(),
                plugin: fields.plugin,
                file: fields.file,
                dir: fields.dir,
                start: now,
                end: now,
                nested: Duration::ZERO,
                has_parent: parent.is_some(),
                overlapped: fields.overlapped,
            },
        };
        span.extensions_mut().insert(open);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let mut record = open.record;
        record.end = Instant::now();
        if let Some(parent) = span.parent().filter(|_| !record.overlapped) {
            if let Some(outer) = parent.extensions_mut().get_mut::<Open>() {
                outer.record.nested += record.end - record.start;
            }
        }
        self.closed.lock().push(record);
    }
}

/// Installs the usual log output on stderr (`RUST_LOG`, else `default`) and
/// `recorder`'s layer next to it, each with its own filter: the log filter
/// does not hide the phase spans from the recorder.
pub fn init_tracing(default: &str, recorder: &Recorder) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(crate::style::log_writer)
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(log)
        .with(recorder.layer())
        .init();
}

impl Recorder {
    /// The layer to install (it sees only the host's phase spans).
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        RecordingLayer {
            closed: Arc::clone(&self.closed),
        }
        .with_filter(PhaseFilter)
    }

    /// The profile of the startup that began at `started` and took `wall`:
    /// `loaded` maps library files to plugin names, `plugins` lists them.
    pub fn profile(
        &self,
        started: Instant,
        wall: Duration,
        loaded: &DirectoryReport,
        plugins: &[PluginSummary],
    ) -> Profile {
        let records = std::mem::take(&mut *self.closed.lock());
        // Only the startup's own phases (not a later resolve, say).
        let records = records
            .into_iter()
            .filter(|r| r.start >= started && r.end <= started + wall)
            .collect();
        build(records, started, wall, loaded, plugins)
    }
}

/// One phase of one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    pub phase: &'static str,
    /// Milliseconds (its own time: nested phases are not counted twice).
    pub ms: f64,
    /// How many times it ran (0: skipped, e.g. a scan-cache hit needs no copy,
    /// hash or probe).
    pub runs: u32,
    /// Work done for several plugins at once (the directory listing); not part
    /// of the plugin's total.
    pub shared: bool,
}

/// One plugin's startup.
#[derive(Debug, Clone, Serialize)]
pub struct PluginProfile {
    pub plugin: String,
    /// Its library file, for a plugin loaded from one.
    pub file: Option<PathBuf>,
    /// Milliseconds during which at least one of its own phases was under way.
    pub total_ms: f64,
    /// Every phase of [`PHASES`], in that order.
    pub phases: Vec<PhaseTime>,
}

/// One phase over every plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseSummary {
    pub phase: &'static str,
    /// Milliseconds during which this phase was under way for any plugin.
    pub wall_ms: f64,
    /// The sum over plugins (more than `wall_ms` when it ran in parallel).
    pub sum_ms: f64,
    pub runs: u32,
    /// The plugin (or file) for which it took longest.
    pub slowest: Option<String>,
}

/// One step of the critical path.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub phase: &'static str,
    /// The plugin, file or directory it worked on (`None`: all plugins).
    pub subject: Option<String>,
    /// Milliseconds from the start of startup.
    pub start_ms: f64,
    pub ms: f64,
}

/// `run --profile`'s result (`data.profile` of `run --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Milliseconds from the first directory scan until every plugin had
    /// started or failed.
    pub wall_ms: f64,
    /// Per plugin, most costly first.
    pub plugins: Vec<PluginProfile>,
    /// Per phase, most wall time first.
    pub phases: Vec<PhaseSummary>,
    /// The chain of phases the end of startup waited for, in time order: from
    /// the phase that finished last, each time back to the phase that finished
    /// last before it began.
    pub critical_path: Vec<Step>,
    /// Milliseconds of the wall time the critical path's phases cover (the
    /// rest is the host's own work between phases).
    pub critical_path_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The total length of the union of `intervals`.
fn covered(mut intervals: Vec<(Instant, Instant)>) -> Duration {
    intervals.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (start, end) in intervals {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = current {
        total += e - s;
    }
    total
}

fn build(
    records: Vec<Record>,
    started: Instant,
    wall: Duration,
    loaded: &DirectoryReport,
    plugins: &[PluginSummary],
) -> Profile {
    let by_file: HashMap<String, &str> = loaded
        .registered
        .iter()
        .map(|r| (r.path.display().to_string(), r.name.as_str()))
        .collect();
    let files: HashMap<&str, &Path> = loaded
        .registered
        .iter()
        .map(|r| (r.name.as_str(), r.path.as_path()))
        .collect();
    // Whom each record is about: a plugin's name when it names one, else its file.
    let subject = |r: &Record| -> Option<String> {
        if let Some(p) = &r.plugin {
            return Some(p.clone());
        }
        r.file.as_ref().map(|f| {
            by_file
                .get(f)
                .map_or_else(|| f.clone(), |n| (*n).to_owned())
        })
    };

    let mut per_plugin: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in &records {
        if let Some(s) = subject(r) {
            per_plugin.entry(s).or_default().push(r);
        }
    }
    let mut rows = Vec::new();
    for p in plugins {
        let name = &p.info.name;
        let own = per_plugin.get(name.as_str()).cloned().unwrap_or_default();
        let file = files.get(name.as_str()).map(|f| f.to_path_buf());
        let dir = file
            .as_deref()
            .and_then(Path::parent)
            .map(|d| d.display().to_string());
        let phases = PHASES
            .iter()
            .map(|&phase| {
                let shared = SHARED.contains(&phase);
                let matching: Vec<&Record> = if shared {
                    records
                        .iter()
                        .filter(|r| r.phase == phase && r.dir.is_some() && r.dir == dir)
                        .collect()
                } else {
                    own.iter().copied().filter(|r| r.phase == phase).collect()
                };
                PhaseTime {
                    phase,
                    ms: ms(matching.iter().map(|r| r.own()).sum()),
                    runs: matching.len() as u32,
                    shared,
                }
            })
            .collect();
        let total = covered(
            own.iter()
                .filter(|r| !SHARED.contains(&r.phase))
                .map(|r| (r.start, r.end))
                .collect(),
        );
        rows.push(PluginProfile {
            plugin: name.clone(),
            file,
            total_ms: ms(total),
            phases,
        });
    }
    rows.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));

    let mut phases: Vec<PhaseSummary> = PHASES
        .iter()
        .map(|&phase| {
            let of_phase: Vec<&Record> = records.iter().filter(|r| r.phase == phase).collect();
            let mut by_subject: HashMap<String, Duration> = HashMap::new();
            for r in &of_phase {
                let key = subject(r)
                    .or_else(|| r.dir.clone())
                    .unwrap_or_else(|| "(all plugins)".to_owned());
                *by_subject.entry(key).or_default() += r.own();
            }
            let slowest = by_subject
                .into_iter()
                .max_by_key(|(_, d)| *d)
                .map(|(s, _)| s);
            PhaseSummary {
                phase,
                wall_ms: ms(covered(of_phase.iter().map(|r| (r.start, r.end)).collect())),
                sum_ms: ms(of_phase.iter().map(|r| r.own()).sum()),
                runs: of_phase.len() as u32,
                slowest,
            }
        })
        .collect();
    phases.sort_by(|a, b| b.wall_ms.total_cmp(&a.wall_ms));

    // The critical path over the outermost phase spans.
    let outer: Vec<&Record> = records.iter().filter(|r| !r.has_parent).collect();
    let mut path: Vec<&Record> = Vec::new();
    let mut current = outer.iter().copied().max_by_key(|r| r.end);
    while let Some(step) = current {
        path.push(step);
        current = outer
            .iter()
            .copied()
            .filter(|r| r.end <= step.start)
            .max_by_key(|r| r.end);
    }
    path.reverse();
    let critical_path_ms = ms(path.iter().map(|r| r.end - r.start).sum());
    let critical_path = path
        .into_iter()
        .map(|r| Step {
            phase: r.phase,
            subject: subject(r).or_else(|| r.dir.clone()),
            start_ms: ms(r.start.saturating_duration_since(started)),
            ms: ms(r.end - r.start),
        })
        .collect();

    Profile {
        wall_ms: ms(wall),
        plugins: rows,
        phases,
        critical_path,
        critical_path_ms,
    }
}

/// Column headers for [`PHASES`] in the per-plugin table.
const SHORT: [&str; 10] = [
    "discover", "perms", "copy", "hash", "probe", "open", "register", "resolve", "restore", "init",
];

impl Profile {
    /// Prints the tables on stdout.
    pub fn print(&self) {
        println!(
            "load profile (startup wall time {:.1} ms; times in ms, most costly first):",
            self.wall_ms
        );
        print!("  {:<20} {:>8}", "PLUGIN", "TOTAL");
        for h in SHORT {
            print!(" {h:>8}");
        }
        println!();
        for row in &self.plugins {
            print!("  {:<20} {:>8.2}", row.plugin, row.total_ms);
            for p in &row.phases {
                if p.runs == 0 {
                    print!(" {:>8}", "-");
                } else if p.shared {
                    print!(" {:>8}", format!("({:.2})", p.ms));
                } else {
                    print!(" {:>8.2}", p.ms);
                }
            }
            println!();
        }
        println!(
            "  (-: skipped, e.g. a scan-cache hit; (..): shared by the directory, not in TOTAL)"
        );
        println!(
            "  {:<18} {:>9} {:>9} {:>5}  SLOWEST",
            "PHASE", "WALL", "SUM", "RUNS"
        );
        for p in &self.phases {
            println!(
                "  {:<18} {:>9.2} {:>9.2} {:>5}  {}",
                p.phase,
                p.wall_ms,
                p.sum_ms,
                p.runs,
                p.slowest.as_deref().unwrap_or("-")
            );
        }
        println!(
            "  critical path ({:.1} of {:.1} ms in phases, the rest between them):",
            self.critical_path_ms, self.wall_ms
        );
        for step in &self.critical_path {
            println!(
                "    {:>9.2} +{:<9.2} {:<16} {}",
                step.start_ms,
                step.ms,
                step.phase,
                step.subject.as_deref().unwrap_or("(all plugins)")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_intervals_count_once() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        assert_eq!(
            covered(vec![(at(0), at(10)), (at(5), at(15)), (at(20), at(25))]),
            Duration::from_millis(20)
        );
        assert_eq!(covered(Vec::new()), Duration::ZERO);
    }
}
