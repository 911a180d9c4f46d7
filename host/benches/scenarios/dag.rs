//! `dag_load_vs_critical_path`: plugins in a random dependency DAG of depth 8,
//! each `initialize` awaiting 10 ms; the wall time of `load_all_plugins` divided
//! by the critical-path lower bound (depth x 10 ms: no schedule can do better).
//! `dag_load_vs_bare_chain`: the same wall time against the critical path run
//! with no manager at all, `depth` bare 10 ms tokio sleeps one after another on
//! the same runtime (measured in the same run): each sleep ends on the timer's
//! next millisecond tick, which the lower bound leaves out.

use std::time::{Duration, Instant};

use crate::fixtures::{time_load_all, Dag};
use crate::report::{Goal, Report};
use crate::stats::median;
use crate::Options;

const INIT: Duration = Duration::from_millis(10);
const DEPTH: usize = 8;

/// Measures and reports the metric.
pub async fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let n = if opts.quick { 64 } else { 256 };
    let rounds = if opts.quick { 1 } else { 5 };
    let dag = Dag::random(n, DEPTH, 42);
    round(&dag, n).await?; // warm-up
    let mut walls = Vec::new();
    for _ in 0..rounds {
        walls.push(round(&dag, n).await?);
    }
    let wall = median(&walls);
    let bound = (dag.depth as u32 * INIT).as_secs_f64();
    let mut chains = Vec::new();
    for _ in 0..rounds {
        chains.push(bare_chain(dag.depth).await);
    }
    let chain = median(&chains);
    report.add(
        "dag_load_vs_critical_path",
        wall / bound,
        Goal::AtMost(1.10),
        format!(
            "{n} plugins, depth {}, 10 ms initialize, median of {rounds}: {:.1} ms vs critical path {:.0} ms",
            dag.depth,
            wall * 1e3,
            bound * 1e3
        ),
    );
    report.add(
        "dag_load_vs_bare_chain",
        wall / chain,
        Goal::None,
        format!(
            "the same {:.1} ms vs {} bare 10 ms tokio sleeps in a row on the same runtime, {:.1} ms \
             (median of {rounds}); the timer's floor for dag_load_vs_critical_path is {:.3}",
            wall * 1e3,
            dag.depth,
            chain * 1e3,
            chain / bound
        ),
    );
    Ok(())
}

/// The critical path with no manager: `depth` bare `tokio::time::sleep(INIT)`
/// one after another; seconds.
async fn bare_chain(depth: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..depth {
        tokio::time::sleep(INIT).await;
    }
    start.elapsed().as_secs_f64()
}

/// One `load_all_plugins` of the DAG in a fresh manager; seconds.
async fn round(dag: &Dag, n: usize) -> Result<f64, String> {
    time_load_all(dag.plugins(INIT, 9), n).await
}
