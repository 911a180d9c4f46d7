//! Colours of the human-readable output, in one place.
//!
//! Text with styles is printed through `anstream` (`anstream::println!`), which
//! writes the escape codes only when stdout is a terminal and `NO_COLOR` is not
//! set (it also honours `CLICOLOR`, `CLICOLOR_FORCE` and `TERM=dumb`, and
//! translates the codes for old Windows consoles); anywhere else it strips them.
//! So these helpers always add codes and the stream decides; log lines go
//! through the same kind of stream ([`log_writer`]). JSON output never goes
//! through them.

use anstyle::{AnsiColor, Style};

const HEADER: Style = Style::new().bold();
const GOOD: Style = AnsiColor::Green.on_default();
const BAD: Style = AnsiColor::Red.on_default().bold();
const WARNING: Style = AnsiColor::Yellow.on_default();
const LABEL: Style = Style::new().bold();

fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// A table header or a title.
pub fn header(text: &str) -> String {
    paint(HEADER, text)
}

/// A status word: green when all is well, red otherwise.
pub fn status(text: &str, ok: bool) -> String {
    paint(if ok { GOOD } else { BAD }, text)
}

/// Something that needs attention but is not an error.
pub fn warning(text: &str) -> String {
    paint(WARNING, text)
}

/// Where log lines go: stderr through `anstream`, so their colours follow the
/// same rules (none off a terminal or with `NO_COLOR`).
pub fn log_writer() -> anstream::Stderr {
    anstream::stderr()
}

/// A field label (`inspect`).
pub fn label(text: &str) -> String {
    paint(LABEL, text)
}
