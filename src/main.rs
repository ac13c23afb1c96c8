use clap::{Parser, Subcommand};

/// mimalloc is the allocator of the whole process: Rust's, and (its
/// `override` feature exports malloc/free) libmodsecurity's, which allocates
/// and frees a great deal per request on the WAF's engine threads, where
/// glibc's malloc cost ~30 % of the engine's time. `edgeward::alloc::Allocator` asks it
/// for plain blocks where it can (see there).
#[global_allocator]
static GLOBAL: edgeward::alloc::Allocator = edgeward::alloc::Allocator;
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
        Command::Check { config } => edgeward::cli::check(&config),
        Command::Run { config } => edgeward::cli::run(&config),
    }
}
