//! A minimal host built against the frozen plugbay-api 1.0.0 (by
//! `integration_tests::compat::v1_0`): what a plugin built against a newer 1.x
//! meets in a host released with 1.0.0.
//!
//! `host-1-0 LIBRARY [METHOD ARGS_JSON]...` opens LIBRARY with abi_stable's
//! version and layout checks, prints `loaded NAME built against VERSION` on
//! stdout, initializes the plugin, then runs each call and prints one line per
//! call: `ok JSON` or `err KIND: MESSAGE`. A refused library prints
//! `refused: REASON` on stderr and exits with 2.

use std::process::ExitCode;

use plugbay_api::abi_stable::library::lib_header_from_path;
use plugbay_api::abi_stable::std_types::{ROption, RResult, RStr, RString};
use plugbay_api::{HostApi, HostContext, LogLevel, PluginError, PluginModRef};

/// The 1.0.0 host callbacks: logs go to stderr, no other plugins exist.
#[derive(Clone)]
struct OldHost;

impl HostApi for OldHost {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        eprintln!("{level:?}: {message}");
    }
    fn host_name(&self) -> RString {
        "host-1-0".into()
    }
    fn host_version(&self) -> RString {
        "1.0.0".into()
    }
    fn config(&self) -> RString {
        "null".into()
    }
    fn plugin_status(&self, _name: RStr<'_>) -> ROption<RString> {
        ROption::RNone
    }
    fn call_plugin(
        &self,
        name: RStr<'_>,
        _method: RStr<'_>,
        _args: RStr<'_>,
    ) -> RResult<RString, PluginError> {
        RResult::RErr(PluginError::failed(format!("no plugin `{name}`")))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: host-1-0 LIBRARY [METHOD ARGS_JSON]...");
        return ExitCode::from(2);
    };
    let module = match lib_header_from_path(std::path::Path::new(path))
        .and_then(|header| header.init_root_module::<PluginModRef>())
    {
        Ok(module) => module,
        Err(e) => {
            let text = e.to_string();
            let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("refused: {}", line.chars().take(300).collect::<String>());
            return ExitCode::from(2);
        }
    };
    let metadata = match (module.metadata())().into_result() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("refused: metadata failed: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "loaded {} built against {}",
        metadata.name, metadata.interface_version
    );
    let mut instance = match (module.new_instance())().into_result() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("refused: new_instance failed: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = instance
        .initialize(HostContext::from_api(OldHost))
        .into_result()
    {
        println!("initialize err {:?}: {}", e.kind, e.message());
        return ExitCode::from(1);
    }
    for pair in args[1..].chunks(2) {
        let method = pair[0].as_str();
        let call_args = pair.get(1).map_or("null", String::as_str);
        match instance
            .call(method.into(), call_args.into())
            .into_result()
        {
            Ok(out) => println!("ok {out}"),
            Err(e) => println!("err {:?}: {}", e.kind, e.message()),
        }
    }
    if let Err(e) = instance.shutdown().into_result() {
        println!("shutdown err {:?}: {}", e.kind, e.message());
    }
    ExitCode::SUCCESS
}
