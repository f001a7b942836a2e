//! The `hallway-webhooks` command: `serve`, `verify`, `listen`.

use clap::Parser;
use hallway_webhooks::cli::{run, Cli};
use std::process::ExitCode;

/// The engine's allocator, as in production (see `hallway_runtime::alloc`).
#[global_allocator]
static ALLOCATOR: hallway_runtime::alloc::Allocator = hallway_runtime::alloc::Allocator;

fn main() -> ExitCode {
    hallway_runtime::alloc::tune();
    let cli = Cli::parse();
    run(cli)
}
