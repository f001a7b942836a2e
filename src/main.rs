//! The `hallway-webhooks` command: `serve`, `verify`, `listen`.

use clap::Parser;
use hallway_webhooks::cli::{run, Cli};
use std::process::ExitCode;

fn main() -> ExitCode {
    hallway_runtime::tune_process_allocator();
    let cli = Cli::parse();
    run(cli)
}
