//! `amal`: the Dr Amal Clinical OS binary.

mod backup_commands;
mod cli;
mod commands;
mod database;
mod db_encrypt;
mod demo;
mod import;
mod smoke;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("amal: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("amal: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
