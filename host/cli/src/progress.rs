//! The progress line shown while libraries are checked: `checking plugin
//! libraries: 37 of 200`, redrawn in place on stderr, erased when done. Only
//! when stderr is a terminal; nothing at all otherwise (logs and pipes stay
//! clean). Plain text and carriage returns, no escape codes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use plugbay_host::{scan_dirs_with_progress, Progress, Result, SafetyConfig, ScanReport};

/// Redraws at most this often (the last state is always drawn).
const REDRAW_EVERY: Duration = Duration::from_millis(80);

/// Scans `dirs`, with a progress line on a terminal.
pub fn scan(dirs: &[PathBuf], config: &SafetyConfig) -> Result<ScanReport> {
    let mut line = ProgressLine::new(std::io::stderr().is_terminal());
    let report = scan_dirs_with_progress(dirs, config, &mut |p| line.update(p));
    line.clear();
    report
}

/// The text of the line.
fn text(p: Progress) -> String {
    format!("checking plugin libraries: {} of {}", p.done, p.total)
}

/// The line's state.
struct ProgressLine {
    enabled: bool,
    /// Characters drawn so far on the line (what `clear` has to blank out).
    width: usize,
    last_draw: Option<Instant>,
}

impl ProgressLine {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            width: 0,
            last_draw: None,
        }
    }

    fn update(&mut self, p: Progress) {
        if !self.enabled || p.total == 0 {
            return;
        }
        let recent = self.last_draw.is_some_and(|t| t.elapsed() < REDRAW_EVERY);
        if recent && p.done < p.total {
            return;
        }
        let text = text(p);
        self.width = self.width.max(text.len());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{text:<width$}", width = self.width);
        let _ = err.flush();
        self.last_draw = Some(Instant::now());
    }

    fn clear(&mut self) {
        if self.enabled && self.width > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{:width$}\r", "", width = self.width);
            let _ = err.flush();
            self.width = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_how_many_of_how_many() {
        assert_eq!(
            text(Progress {
                done: 37,
                total: 200
            }),
            "checking plugin libraries: 37 of 200"
        );
    }

    #[test]
    fn a_disabled_line_draws_nothing() {
        let mut line = ProgressLine::new(false);
        line.update(Progress { done: 1, total: 2 });
        assert_eq!((line.width, line.last_draw), (0, None));
    }
}
