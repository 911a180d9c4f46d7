//! `plugin-host list`: what every library file in the given directories is.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use host::{discovery, load_library, DependencySpec};
use serde::Serialize;

/// One row of `list`: a library file and what loading it showed.
#[derive(Serialize)]
struct Entry {
    path: PathBuf,
    name: Option<String>,
    version: Option<String>,
    description: Option<String>,
    interface_version: Option<String>,
    dependencies: Vec<DependencySpec>,
    /// `loadable` or `error`.
    status: &'static str,
    error: Option<String>,
}

pub async fn run(dirs: &[PathBuf], json: bool) -> ExitCode {
    let mut files = Vec::new();
    let mut dir_errors = Vec::new();
    for dir in dirs {
        match discovery::discover(dir) {
            Ok(found) => files.extend(found),
            Err(e) => dir_errors.push(e.to_string()),
        }
    }
    let entries = futures::future::join_all(files.into_iter().map(entry_for)).await;
    if json {
        match serde_json::to_string_pretty(&entries) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("plugin-host: cannot encode the listing: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print_table(&entries);
    }
    for e in &dir_errors {
        eprintln!("plugin-host: {e}");
    }
    if dir_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn entry_for(path: PathBuf) -> Entry {
    match load_library(path.clone()).await {
        Ok(lib) => Entry {
            path,
            name: Some(lib.info.name.clone()),
            version: Some(lib.info.version.to_string()),
            description: Some(lib.info.description.clone()),
            interface_version: Some(lib.info.interface_version.clone()),
            dependencies: lib.info.dependencies.clone(),
            status: "loadable",
            error: None,
        },
        Err(e) => Entry {
            path,
            name: None,
            version: None,
            description: None,
            interface_version: None,
            dependencies: Vec::new(),
            status: "error",
            error: Some(e.to_string()),
        },
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn print_table(entries: &[Entry]) {
    println!(
        "{:<28} {:<16} {:<10} {:<10} DETAIL",
        "FILE", "NAME", "VERSION", "STATUS"
    );
    for e in entries {
        let deps = e
            .dependencies
            .iter()
            .map(|d| {
                let opt = if d.optional { "?" } else { "" };
                format!("{}{opt} {}", d.name, d.requirement)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let detail = match &e.error {
            Some(err) => err.clone(),
            None if deps.is_empty() => e.description.clone().unwrap_or_default(),
            None => format!("needs {deps}"),
        };
        println!(
            "{:<28} {:<16} {:<10} {:<10} {detail}",
            file_name(&e.path),
            e.name.as_deref().unwrap_or("-"),
            e.version.as_deref().unwrap_or("-"),
            e.status,
        );
    }
}
