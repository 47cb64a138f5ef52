//! The `latentd` binary: parse the command line and config, start logging, run the
//! [service](latentd::service). Bad input at start is one line on stderr and exit status 2.

use std::process::ExitCode;

use latentd::logging;
use latentd::service::{self, EXIT_STARTUP, ServiceError};
use latentd::settings::{Invocation, parse_args};

/// Allocation in the realtime callback aborts debug builds (`assert_no_alloc`).
#[cfg(debug_assertions)]
#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    let settings = match parse_args(args.iter().cloned()) {
        Ok(Invocation::Run(settings)) => settings,
        Ok(Invocation::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::CheckConfig(settings)) => {
            // The start's own checks that need no audio server (files, engine, loop).
            if let Err(e) = latentd::preflight::check(&settings) {
                return fail(EXIT_STARTUP, &e);
            }
            print!("{}", settings.to_toml());
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(EXIT_STARTUP, &e),
    };
    if let Err(e) = logging::init(settings.log_level.filter(), settings.log_target) {
        return fail(EXIT_STARTUP, &format!("logging: {e}"));
    }
    match service::run(&settings, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ServiceError::Stopped(_)) => {
            log::info!("{e}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.exit_code(), &e),
    }
}

fn fail(code: u8, message: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("latentd: error: {message}");
    ExitCode::from(code)
}
