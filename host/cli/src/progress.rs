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
    let mut line = ProgressLine::new(std::io::stderr(), std::io::stderr().is_terminal());
    let report = scan_dirs_with_progress(dirs, config, &mut |p| line.update(p));
    line.clear();
    report
}

/// An observer for [`plugbay_host::PluginManager::load_plugin_dirs_with_progress`]:
/// the same line on a terminal (nothing otherwise), erased as each directory's
/// admission completes.
pub fn observer() -> impl FnMut(Progress) + Send + 'static {
    let mut line = ProgressLine::new(std::io::stderr(), std::io::stderr().is_terminal());
    move |p| line.update_and_finish(p)
}

/// The text of the line.
fn text(p: Progress) -> String {
    format!("checking plugin libraries: {} of {}", p.done, p.total)
}

/// The line's state, drawn on `out`.
struct ProgressLine<W: Write> {
    out: W,
    enabled: bool,
    /// Characters drawn so far on the line (what `clear` has to blank out).
    width: usize,
    last_draw: Option<Instant>,
}

impl<W: Write> ProgressLine<W> {
    fn new(out: W, enabled: bool) -> Self {
        Self {
            out,
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
        let _ = write!(self.out, "\r{text:<width$}", width = self.width);
        let _ = self.out.flush();
        self.last_draw = Some(Instant::now());
    }

    /// [`ProgressLine::update`], then [`ProgressLine::clear`] once every file
    /// has its verdict.
    fn update_and_finish(&mut self, p: Progress) {
        self.update(p);
        if p.total > 0 && p.done >= p.total {
            self.clear();
        }
    }

    fn clear(&mut self) {
        if self.enabled && self.width > 0 {
            let _ = write!(self.out, "\r{:width$}\r", "", width = self.width);
            let _ = self.out.flush();
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
    fn an_observer_line_erases_itself_when_the_directory_is_done() {
        let mut line = ProgressLine::new(Vec::new(), true);
        line.update_and_finish(Progress { done: 0, total: 2 });
        line.update_and_finish(Progress { done: 2, total: 2 });
        let blank = " ".repeat("checking plugin libraries: 2 of 2".len());
        assert_eq!(
            String::from_utf8(line.out).unwrap(),
            format!(
                "\rchecking plugin libraries: 0 of 2\rchecking plugin libraries: 2 of 2\r{blank}\r"
            )
        );
    }

    #[test]
    fn a_disabled_line_draws_nothing() {
        let mut line = ProgressLine::new(Vec::new(), false);
        line.update(Progress { done: 1, total: 2 });
        line.clear();
        assert!(line.out.is_empty());
    }

    #[test]
    fn an_enabled_line_redraws_in_place_always_shows_the_end_and_erases_itself() {
        let mut line = ProgressLine::new(Vec::new(), true);
        line.update(Progress { done: 1, total: 10 });
        // As if it had just drawn (a clock that never moves): an intermediate
        // state is skipped, the last one is not.
        line.last_draw = Some(Instant::now() + Duration::from_secs(3600));
        line.update(Progress { done: 2, total: 10 });
        line.update(Progress {
            done: 10,
            total: 10,
        });
        line.clear();
        let out = String::from_utf8(line.out).unwrap();
        let blank = " ".repeat("checking plugin libraries: 10 of 10".len());
        assert_eq!(
            out,
            format!(
                "\rchecking plugin libraries: 1 of 10\rchecking plugin libraries: 10 of 10\r{blank}\r"
            )
        );
    }
}
