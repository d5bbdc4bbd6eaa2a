use std::process::ExitCode;

use clap::Parser;
use tenantry::{cli::Cli, config::Config, observability};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            // EX_CONFIG: the environment's configuration is wrong.
            return ExitCode::from(78);
        }
    };
    observability::init_tracing(config.log_format);
    match tenantry::cli::run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => tenantry::cli::report(&error),
    }
}
