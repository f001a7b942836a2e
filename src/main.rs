//! The `hallway-webhooks` command: `serve`, `verify`, `listen`. The HTTP API and the command
//! line live here, in the binary, not in the library embedders link.

mod alert_sink;
mod api;
mod check;
mod cli;
mod fds;
mod listen;
mod log_writer;
mod portal;
mod server;
mod verify;
mod views;

use clap::Parser;
use cli::{run, Cli};
use std::process::ExitCode;

/// The engine's allocator, as in production (see `hallway_runtime::alloc`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: hallway_runtime::alloc::Allocator = hallway_runtime::alloc::Allocator;

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    hallway_runtime::alloc::tune();
    let cli = Cli::parse();
    run(cli)
}
