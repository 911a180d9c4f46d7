//! `--json` output: every subcommand prints one JSON document of the same shape,
//! `{"schema_version": N, "command": "<subcommand>", "data": ...}`, where `data`
//! is the subcommand's own payload (documented in the README's host CLI section).
//! `schema_version` changes only when a field is removed or changes meaning.

use std::process::ExitCode;

use serde::Serialize;

/// The version of the JSON documents the CLI prints.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct Document<'a, T: Serialize> {
    schema_version: u32,
    command: &'a str,
    data: &'a T,
}

/// Prints `data` as `command`'s JSON document on stdout. Fails (exit 2, message
/// on stderr) only if `data` cannot be encoded.
pub fn print<T: Serialize>(command: &str, data: &T) -> Result<(), ExitCode> {
    let document = Document {
        schema_version: SCHEMA_VERSION,
        command,
        data,
    };
    match serde_json::to_string_pretty(&document) {
        Ok(text) => {
            println!("{text}");
            Ok(())
        }
        Err(e) => {
            eprintln!("plugin-host: cannot encode the {command} output as JSON: {e}");
            Err(ExitCode::from(2))
        }
    }
}
