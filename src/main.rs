use std::process::ExitCode;

use clap::Parser;
use tenantry::{
    cli::{self, Cli, Command},
    config::Config,
    observability,
};

/// Small allocations and frees are most of what answering JSON does to the heap; mimalloc
/// serves them from per-thread pages instead of glibc's locked arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `--help` and `--version` are not failures; they print to stdout.
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(cli::EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            // EX_CONFIG: the environment's configuration is wrong.
            return ExitCode::from(78);
        }
    };
    // A health probe runs every few seconds: it logs and traces nothing of its own, and
    // exits as HEALTHCHECK expects (1 for unhealthy), not with a sysexits status.
    let probe = matches!(cli.command, Command::Healthcheck);
    let exporter = if probe {
        None
    } else {
        observability::init_tracing(config.log_format, config.export_traces)
    };
    let code = match cli::run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if probe => {
            eprintln!("not ready: {error}");
            ExitCode::FAILURE
        }
        Err(error) => cli::report(&error),
    };
    if let Some(exporter) = exporter {
        // Sends the spans still buffered: a blocking wait, off the runtime's threads.
        let _ = tokio::task::spawn_blocking(|| exporter.shutdown()).await;
    }
    code
}
