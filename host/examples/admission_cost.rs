//! Ad-hoc cost measurement of the safe admission path (the formal benchmark
//! lives with `cargo xtask bench`). Run each mode in a fresh process, release:
//!
//! ```text
//! cargo build --release -p plugbay-sample-hello -p plugbay-host --features bench-internals \
//!     --bin plugin-probe --example admission_cost
//! admission_cost prepare LIB DIR N   # N distinct copies of LIB (unique trailing bytes)
//! admission_cost raw DIR             # libloading::Library::new + one symbol, per file
//! admission_cost scan DIR WORK       # probe only (nothing opened in this process)
//! admission_cost admit DIR WORK      # whole path; cold if WORK is empty, else warm
//! admission_cost probe DIR           # one probe child opening every file of DIR
//! admission_cost hash FILE           # SHA-256, BLAKE3 and copy+hash throughput
//! ```

use std::path::PathBuf;
use std::time::Instant;

use plugbay_host::internals::{
    discover, hash_file, sha256_file, FileIdentity, ProbeWorker, ShadowDir,
};
use plugbay_host::{admit_dirs, scan_dirs, SafetyConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .expect("missing argument (see the file's docs)")
    };
    match arg(0).as_str() {
        "prepare" => {
            let bytes = std::fs::read(arg(1)).unwrap();
            let dir = PathBuf::from(arg(2));
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..arg(3).parse::<usize>().unwrap() {
                let mut b = bytes.clone();
                b.extend_from_slice(format!("copy-{i:06}").as_bytes());
                std::fs::write(dir.join(format!("p{i:04}.so")), b).unwrap();
            }
        }
        "raw" => {
            let files = discover(&PathBuf::from(arg(1))).unwrap();
            let start = Instant::now();
            for f in &files {
                // SAFETY: measurement of trusted sample copies; leaked like abi_stable does.
                unsafe {
                    let lib = libloading::Library::new(f).unwrap();
                    let sym: libloading::Symbol<*const u8> = lib
                        .get(
                            plugbay_api::abi_stable::library::ROOT_MODULE_LOADER_NAME_WITH_NUL
                                .as_bytes(),
                        )
                        .unwrap();
                    std::hint::black_box(*sym);
                    std::mem::forget(lib);
                }
            }
            report("raw dlopen+symbol", start, files.len());
        }
        "scan" | "admit" => {
            let dir = PathBuf::from(arg(1));
            let config = SafetyConfig::builder().work_dir(arg(2)).build().unwrap();
            let start = Instant::now();
            let (n, ok, probes) = if arg(0) == "scan" {
                let r = scan_dirs(&[dir], &config).unwrap();
                (
                    r.files.len(),
                    r.files.iter().filter(|f| f.is_ok()).count(),
                    r.probe_processes_started,
                )
            } else {
                let a = admit_dirs(&[dir], &config).unwrap();
                (
                    a.report.files.len(),
                    a.libraries.len(),
                    a.report.probe_processes_started,
                )
            };
            report(
                &format!("{} ({ok} ok, {probes} probe processes)", arg(0)),
                start,
                n,
            );
        }
        "probe" => {
            // One probe child for every file of DIR; nothing else.
            let files = discover(&PathBuf::from(arg(1))).unwrap();
            let config = SafetyConfig::builder().build().unwrap();
            let (program, args) = config.probe_command().unwrap();
            let start = Instant::now();
            let worker = ProbeWorker::start(program, args, config.probe_timeout()).unwrap();
            for (i, f) in files.iter().enumerate() {
                worker.submit(i, f.clone());
            }
            let (outcomes, started) = worker.finish();
            report(
                &format!(
                    "probe only ({} answers, {started} processes)",
                    outcomes.len()
                ),
                start,
                files.len(),
            );
        }
        "hash" => {
            let file = PathBuf::from(arg(1));
            let mb = std::fs::metadata(&file).unwrap().len() as f64 / 1e6;
            let start = Instant::now();
            sha256_file(&file).unwrap();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "sha256: {:.2} ms per MB ({:.0} MB/s)",
                secs * 1e3 / mb,
                mb / secs
            );
            let work = std::env::temp_dir().join(format!("hash-bench-{}", std::process::id()));
            let shadow = ShadowDir::open(&work).unwrap();
            let meta = std::fs::metadata(&file).unwrap();
            let id = FileIdentity::new(file.clone(), &meta).unwrap();
            let start = Instant::now();
            hash_file(&file, false).unwrap();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "blake3: {:.2} ms per MB ({:.0} MB/s)",
                secs * 1e3 / mb,
                mb / secs
            );
            for (what, sha) in [("copy+blake3", false), ("copy+blake3+sha256", true)] {
                let start = Instant::now();
                shadow.copy_in(&file, &id, sha).unwrap();
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "{what}: {:.2} ms per MB ({:.0} MB/s)",
                    secs * 1e3 / mb,
                    mb / secs
                );
            }
            let _ = std::fs::remove_dir_all(work);
        }
        other => panic!("unknown mode {other}"),
    }
}

fn report(what: &str, start: Instant, n: usize) {
    let total = start.elapsed();
    println!(
        "{what}: {n} files in {:.1} ms = {:.1} µs per file",
        total.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e6 / n as f64
    );
}
