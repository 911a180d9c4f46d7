//! The results table and `target/bench/summary.json`.

use std::fmt::Write as _;
use std::path::Path;

/// What a figure should be.
#[derive(Clone, Copy)]
pub enum Goal {
    /// At least this much.
    AtLeast(f64),
    /// At most this much.
    AtMost(f64),
    /// Strictly more than this.
    Above(f64),
    /// Reported for context, no goal.
    None,
}

impl Goal {
    fn met(self, v: f64) -> Option<bool> {
        match self {
            Goal::AtLeast(g) => Some(v >= g),
            Goal::AtMost(g) => Some(v <= g),
            Goal::Above(g) => Some(v > g),
            Goal::None => None,
        }
    }

    fn text(self) -> String {
        match self {
            Goal::AtLeast(g) => format!(">= {g}"),
            Goal::AtMost(g) => format!("<= {g}"),
            Goal::Above(g) => format!("> {g}"),
            Goal::None => "-".to_owned(),
        }
    }
}

/// One reported number.
pub struct Metric {
    /// Flat key in summary.json.
    pub key: &'static str,
    /// The measured value.
    pub value: f64,
    /// Its goal.
    pub goal: Goal,
    /// How it was measured (the raw numbers behind a ratio).
    pub detail: String,
}

/// All metrics of one run.
#[derive(Default)]
pub struct Report {
    metrics: Vec<Metric>,
}

impl Report {
    /// Adds a metric and prints it at once, so a long run shows progress.
    pub fn add(&mut self, key: &'static str, value: f64, goal: Goal, detail: String) {
        eprintln!("bench: {key} = {value:.3} ({detail})");
        self.metrics.push(Metric {
            key,
            value,
            goal,
            detail,
        });
    }

    /// The table printed at the end.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<40} {:>12} {:>10} {:>6}  detail",
            "metric", "value", "goal", "met"
        );
        for m in &self.metrics {
            let met = match m.goal.met(m.value) {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            let _ = writeln!(
                out,
                "{:<40} {:>12.3} {:>10} {:>6}  {}",
                m.key,
                m.value,
                m.goal.text(),
                met,
                m.detail
            );
        }
        out
    }

    /// Writes `{key: value, ...}` to `path` (creating its directory).
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let map: serde_json::Map<String, serde_json::Value> = self
            .metrics
            .iter()
            .map(|m| (m.key.to_owned(), serde_json::json!(m.value)))
            .collect();
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(map))?;
        std::fs::write(path, text + "\n")
    }
}
