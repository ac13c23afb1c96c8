//! The command line's two actions, for `main.rs`.

use std::path::Path;
use std::process::ExitCode;

/// `edgeward check`: validate the file like `nginx -t`; exit 0, or 1 with
/// every error as `file:line:col: scope: message`.
pub fn check(path: &Path) -> ExitCode {
    match crate::sites::load(path) {
        Ok(c) => {
            println!(
                "{}: configuration is valid ({} site(s) in {} account(s))",
                path.display(),
                c.sites.len(),
                c.accounts()
            );
            let names = c.acme_names();
            if let Some(acme) = &c.tls.acme
                && !names.is_empty()
            {
                println!(
                    "ACME: certificates will be ordered from {} for {} name(s): {} (storage: {})",
                    acme.directory,
                    names.len(),
                    crate::tls::acme::describe(&names),
                    crate::tls::acme::storage_place(acme)
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: {} error(s); configuration is invalid",
                path.display(),
                errors.0.len()
            );
            ExitCode::FAILURE
        }
    }
}

/// `edgeward run`: serve in the foreground until a stop signal.
pub fn run(path: &Path) -> ExitCode {
    let config = match crate::sites::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("edgeward: not started: the configuration is invalid");
            return ExitCode::FAILURE;
        }
    };
    match crate::server::run(path.to_path_buf(), config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgeward: {e}");
            ExitCode::FAILURE
        }
    }
}
