//! The last lines an isolated plugin's runner wrote to stderr: what explains
//! its death in the crash report.

use std::collections::VecDeque;
use std::io::Read;

use parking_lot::Mutex;

/// Stderr lines kept per runner (the newest).
pub(super) const STDERR_LINES: usize = 20;
/// Longest stderr line kept, in bytes (the rest of the line is dropped).
pub(super) const STDERR_LINE_BYTES: usize = 1024;

/// Keeps the last [`STDERR_LINES`] lines (each cut at [`STDERR_LINE_BYTES`])
/// of the runner's stderr, and logs each under the target `plugin`.
pub(super) fn keep_stderr(mut stderr: impl Read, lines: &Mutex<VecDeque<String>>, plugin: &str) {
    let mut chunk = [0u8; 4096];
    let mut line: Vec<u8> = Vec::new();
    let push = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line).trim_end().to_owned();
        line.clear();
        tracing::info!(target: "plugin", plugin, "stderr: {text}");
        let mut kept = lines.lock();
        if kept.len() == STDERR_LINES {
            kept.pop_front();
        }
        kept.push_back(text);
    };
    loop {
        let n = match stderr.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &chunk[..n] {
            if b == b'\n' {
                push(&mut line);
            } else if line.len() < STDERR_LINE_BYTES {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        push(&mut line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keeps_the_last_lines_each_cut_short() {
        let mut text = String::new();
        for i in 0..30 {
            text.push_str(&format!("line {i}\n"));
        }
        text.push_str(&"x".repeat(5000));
        let lines = Mutex::new(VecDeque::new());
        keep_stderr(text.as_bytes(), &lines, "p");
        let kept: Vec<String> = lines.lock().iter().cloned().collect();
        assert_eq!(kept.len(), STDERR_LINES);
        assert_eq!(kept[0], "line 11");
        assert_eq!(kept[STDERR_LINES - 1].len(), STDERR_LINE_BYTES);
    }
}
