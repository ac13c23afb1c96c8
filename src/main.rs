use clap::{Parser, Subcommand};

/// mimalloc is the allocator of the whole process: Rust's, and (its
/// `override` feature exports malloc/free) libmodsecurity's, which allocates
/// and frees a great deal per request on the WAF's engine threads, where
/// glibc's malloc cost ~30 % of the engine's time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "edgeward",
    version,
    about = "Multi-tenant edge reverse proxy: per-site WAF, HTTP cache, access logs, upstream supervisor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve in the foreground.
    Run {
        /// The configuration file.
        #[arg(short, long, default_value = "conf/edgeward.yaml")]
        config: PathBuf,
    },
    /// Validate the configuration (like `nginx -t`): exit 0, or 1 with every error.
    Check {
        /// The configuration file.
        #[arg(short, long, default_value = "conf/edgeward.yaml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match cli.command {
        Command::Check { config } => match edgeward::config::load(&config) {
            Ok(c) => {
                let accounts: std::collections::BTreeSet<&str> =
                    c.sites.iter().map(|s| s.account.as_str()).collect();
                println!(
                    "{}: configuration is valid ({} site(s) in {} account(s))",
                    config.display(),
                    c.sites.len(),
                    accounts.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!(
                    "{}: {} error(s); configuration is invalid",
                    config.display(),
                    errors.0.len()
                );
                ExitCode::FAILURE
            }
        },
        Command::Run { config: path } => {
            let config = match edgeward::config::load(&path) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("edgeward: not started: the configuration is invalid");
                    return ExitCode::FAILURE;
                }
            };
            match edgeward::server::run(path, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("edgeward: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
