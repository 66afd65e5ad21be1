//! `orrery`: see `orrery --help`.

use std::process::ExitCode;

use clap::Parser;
use server::cli::{self, Cli, Command};
use server::{roles, telemetry, up};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One readable line (with its causes), no backtrace.
            eprintln!("orrery: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Up(role) => {
            let config = cli::load_config(&cli, role)?;
            telemetry::init(config.log.format, &config.log.filter);
            // Not inside a runtime: `up` starts PostgreSQL from this (main) thread first.
            up::run(config)
        }
        Command::Config(role) => {
            print!("{}", cli::load_config(&cli, role)?.redacted_toml());
            Ok(())
        }
        Command::Server { role, migrate } => {
            let config = cli::load_config(&cli, role)?;
            telemetry::init(config.log.format, &config.log.filter);
            runtime()?.block_on(roles::run_server(config, *migrate))
        }
        Command::Scheduler(role) => {
            let config = cli::load_config(&cli, role)?;
            telemetry::init(config.log.format, &config.log.filter);
            runtime()?.block_on(roles::run_scheduler(config))
        }
        Command::Worker(args) => {
            let config = cli::load_config(&cli, &cli::RoleArgs::default())?;
            telemetry::init(config.log.format, &config.log.filter);
            let cfg = roles::worker_config(args)?;
            runtime()?.block_on(roles::run_worker(cfg))
        }
        Command::Migrate(role) => {
            let config = cli::load_config(&cli, role)?;
            telemetry::init(config.log.format, &config.log.filter);
            runtime()?.block_on(roles::run_migrate(config))
        }
        other => {
            let handled = runtime()?.block_on(cli::run_client(other))?;
            anyhow::ensure!(handled, "unknown command");
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
