use clap::Parser;
use tenantry::{cli::Cli, config::Config, observability};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    observability::init_tracing(config.log_format);
    tenantry::cli::run(cli.command, config).await
}
