//! Condensing abi_stable's layout-mismatch report (often 280+ lines) into a few lines.

/// At most this many lines in a summary.
const MAX_LINES: usize = 4;
/// Each summary line is cut to this many characters.
const MAX_LINE: usize = 160;

/// The few lines of an abi_stable layout error that say what differs.
pub fn summarize(report: &str) -> String {
    let report = report.replace('\0', "");
    let interesting = |l: &&str| {
        let l = l.to_ascii_lowercase();
        l.contains("error")
            || l.contains("expected")
            || l.contains("found")
            || l.contains("mismatch")
    };
    let mut lines: Vec<String> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(interesting)
        .take(MAX_LINES)
        .map(|l| l.chars().take(MAX_LINE).collect())
        .collect();
    if lines.is_empty() {
        lines = report
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(MAX_LINES)
            .map(|l| l.chars().take(MAX_LINE).collect())
            .collect();
    }
    lines.join("; ")
}
