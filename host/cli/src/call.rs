//! `plugin-host call`: admit the directories, start one plugin (and what it
//! depends on), call one method, print its JSON result, shut down.
//!
//! stdout carries the result and nothing else; every error is one line on
//! stderr. Exit 0 on success, 1 when a plugin fails (unknown plugin or method,
//! it did not start, it returned an error or panicked), 2 on usage and setup
//! errors (malformed JSON, unreadable directories, bad safety options).
//!
//! With `--json`, stdout carries one document instead (see "JSON output" in the
//! README): the result *or* the error, and how long each step took. The exit
//! codes are the same.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use plugbay_host::{default_state_dir, Error, PluginManager};
use serde::Serialize;
use serde_json::Value;

use crate::isolate_args::IsolateArgs;
use crate::run::{open_manager, stop_all};
use crate::safety_args::SafetyArgs;

/// Options of `call`.
pub struct CallArgs {
    /// `DIR... PLUGIN METHOD [ARGS]`, as given.
    pub operands: Vec<OsString>,
    /// The plugin's configuration as JSON text.
    pub config: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub safety: SafetyArgs,
    pub isolation: IsolateArgs,
    /// Print the JSON document instead of the bare result.
    pub json: bool,
}

/// `call --help`: its exit codes.
pub const EXIT_CODES: &str = "Exit status:
  0  the call succeeded (its result is on stdout)
  1  the plugin failed: unknown plugin or method, it did not start, it returned an error or
     panicked
  2  usage or setup error: malformed JSON, unreadable directories, bad safety options";

/// `call --json`'s `data`.
#[derive(Serialize, Default)]
struct CallData {
    /// The plugin called (null if the operands could not be read).
    plugin: Option<String>,
    /// The method called.
    method: Option<String>,
    /// Whether the call succeeded.
    ok: bool,
    /// The plugin's result when it succeeded.
    result: Option<Value>,
    /// What failed, when it did not.
    error: Option<CallError>,
    /// How long each step took, in milliseconds.
    timings_ms: Timings,
}

/// A failed `call`, in `call --json`.
#[derive(Serialize)]
struct CallError {
    /// The one-line message (also on stderr).
    message: String,
    /// The process's exit code: 1 the plugin failed, 2 usage or setup.
    exit_code: u8,
}

/// Where a `call` spent its time (milliseconds; 0 for a step not reached).
#[derive(Serialize, Default)]
struct Timings {
    /// Admitting the directories (checks, probe, opening libraries).
    admit: f64,
    /// Starting the plugin and its dependencies.
    start: f64,
    /// The call itself.
    call: f64,
    /// Stopping everything and saving state.
    stop: f64,
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// What the operands say.
#[derive(Debug, PartialEq)]
struct Operands {
    dirs: Vec<PathBuf>,
    plugin: String,
    method: String,
    /// The JSON text (or `-`), when given.
    args: Option<String>,
}

/// A failure: the exit code and the one-line message.
struct Failure(u8, String);

fn usage(message: String) -> Failure {
    Failure(2, message)
}

fn plugin_error(message: String) -> Failure {
    Failure(1, message)
}

pub async fn call(args: CallArgs) -> ExitCode {
    let json = args.json;
    let mut data = CallData::default();
    let outcome = call_inner(args, &mut data).await;
    let code = match outcome {
        Ok(result) if json => {
            data.ok = true;
            data.result = Some(result);
            0
        }
        Ok(result) => {
            println!("{result}");
            return ExitCode::SUCCESS;
        }
        Err(Failure(code, message)) => {
            eprintln!("plugin-host: {message}");
            data.error = Some(CallError {
                message,
                exit_code: code,
            });
            code
        }
    };
    if json {
        if let Err(code) = crate::json::print("call", &data) {
            return code;
        }
    }
    ExitCode::from(code)
}

async fn call_inner(args: CallArgs, data: &mut CallData) -> Result<Value, Failure> {
    let operands = split_operands(args.operands).map_err(usage)?;
    data.plugin = Some(operands.plugin.clone());
    data.method = Some(operands.method.clone());
    let call_args = match operands.args.as_deref() {
        None => Value::Object(Default::default()),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| usage(format!("cannot read ARGS from stdin: {e}")))?;
            parse_json("ARGS (from stdin)", &text)?
        }
        Some(text) => parse_json("ARGS", text)?,
    };
    let config = match &args.config {
        Some(text) => Some(parse_json("--config", text)?),
        None => None,
    };
    let state_dir = args.state_dir.unwrap_or_else(default_state_dir);
    let admit = Instant::now();
    let manager = open_manager(&operands.dirs, &state_dir, &args.safety, &args.isolation)
        .await
        .map_err(usage)?;
    let report = manager
        .load_plugin_dirs_with_progress(crate::progress::observer())
        .await;
    for (path, err) in &report.failed {
        if matches!(err, Error::DirUnreadable { .. }) {
            return Err(usage(err.to_string()));
        }
        // Another file in the directories is unusable: worth a warning, not a failure.
        eprintln!("plugin-host: skipped {}: {err}", path.display());
    }
    args.isolation.warn_unknown(&manager);
    data.timings_ms.admit = ms_since(admit);
    let outcome =
        start_and_call(&manager, &operands, call_args, config, &mut data.timings_ms).await;
    // Shut down whatever started, saving state, whatever the call did.
    let stop = Instant::now();
    stop_all(&manager).await;
    data.timings_ms.stop = ms_since(stop);
    outcome
}

async fn start_and_call(
    manager: &PluginManager,
    operands: &Operands,
    args: Value,
    config: Option<Value>,
    timings: &mut Timings,
) -> Result<Value, Failure> {
    let plugin = operands.plugin.as_str();
    let Some(id) = manager.id_of(plugin) else {
        let mut found: Vec<String> = manager.plugins().into_iter().map(|p| p.info.name).collect();
        found.sort();
        let found = if found.is_empty() {
            "none".to_owned()
        } else {
            found.join(", ")
        };
        return Err(plugin_error(format!(
            "no plugin named `{plugin}` in {} (found: {found})",
            display_dirs(&operands.dirs)
        )));
    };
    if let Some(config) = config {
        manager.set_plugin_config(plugin, config);
    }
    let start = Instant::now();
    let started = manager.load_plugin(id).await;
    timings.start = ms_since(start);
    started.map_err(|e| plugin_error(format!("`{plugin}` did not start: {e}")))?;
    let call = Instant::now();
    let result = manager.call(plugin, &operands.method, args).await;
    timings.call = ms_since(call);
    result.map_err(|e| plugin_error(e.to_string()))
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_json(what: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| usage(format!("{what} is not valid JSON: {e}")))
}

/// Splits `DIR... PLUGIN METHOD [ARGS]`. The last operand is ARGS when it is
/// `-` or starts like a JSON value (`{`, `[`, `"`, a digit, `-`, `true`,
/// `false`, `null`); otherwise the operands end with METHOD.
fn split_operands(operands: Vec<OsString>) -> Result<Operands, String> {
    let mut operands = operands;
    let text = |o: OsString, what: &str| {
        o.into_string()
            .map_err(|o| format!("{what} {o:?} is not valid UTF-8"))
    };
    let looks_like_args = operands.last().and_then(|o| o.to_str()).is_some_and(|s| {
        let s = s.trim_start();
        s == "-"
            || s.starts_with(['{', '[', '"', '-'])
            || s.starts_with(|c: char| c.is_ascii_digit())
            || ["true", "false", "null"].contains(&s.trim_end())
    });
    let args = if looks_like_args {
        operands.pop().map(|o| text(o, "ARGS")).transpose()?
    } else {
        None
    };
    if operands.len() < 3 {
        return Err(
            "expected DIR... PLUGIN METHOD [ARGS]: at least one plugin directory, \
             a plugin name and a method"
                .to_owned(),
        );
    }
    let method = text(operands.pop().unwrap_or_default(), "METHOD")?;
    let plugin = text(operands.pop().unwrap_or_default(), "PLUGIN")?;
    Ok(Operands {
        dirs: operands.into_iter().map(PathBuf::from).collect(),
        plugin,
        method,
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(ops: &[&str]) -> Result<Operands, String> {
        split_operands(ops.iter().map(OsString::from).collect())
    }

    #[test]
    fn operands_split_into_dirs_plugin_method_and_optional_args() {
        let o = split(&["a", "b", "hello", "greet"]).unwrap();
        assert_eq!(o.dirs, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!((o.plugin.as_str(), o.method.as_str()), ("hello", "greet"));
        assert_eq!(o.args, None);
        let o = split(&["a", "hello", "greet", r#"{"name":"x"}"#]).unwrap();
        assert_eq!(o.dirs, [PathBuf::from("a")]);
        assert_eq!(o.args.as_deref(), Some(r#"{"name":"x"}"#));
        assert_eq!(
            split(&["a", "p", "m", "-"]).unwrap().args.as_deref(),
            Some("-")
        );
        assert_eq!(
            split(&["a", "p", "m", "42"]).unwrap().args.as_deref(),
            Some("42")
        );
        assert!(split(&["p", "m"]).is_err());
        assert!(split(&["p", "m", "{}"]).is_err());
    }
}
