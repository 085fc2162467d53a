//! Prints the production-readiness audit of a battlement config file and exits non-zero when
//! an item fails (or the file does not parse), for CI.
//!
//! ```sh
//! cargo run --example audit -- battlement.toml          # text
//! cargo run --example audit -- --json battlement.toml   # JSON
//! ```
//!
//! `BATTLEMENT__SECTION__KEY` environment variables override the file, as at startup; secrets
//! referenced as `{ env = "VAR" }` or `{ file = "/path" }` are read to check them (never
//! printed).

use std::process::ExitCode;

use battlement::stack::ServerConfig;

fn main() -> ExitCode {
    let mut json = false;
    let mut file = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "-h" | "--help" => {
                println!("usage: audit [--json] FILE");
                return ExitCode::SUCCESS;
            }
            _ if file.is_none() => file = Some(arg),
            _ => {
                eprintln!("usage: audit [--json] FILE");
                return ExitCode::from(2);
            }
        }
    }
    let Some(file) = file else {
        eprintln!("usage: audit [--json] FILE");
        return ExitCode::from(2);
    };
    let config = match ServerConfig::from_toml_file(&file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = config.audit();
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    if report.has_failures() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
