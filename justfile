# Everyday commands; each mirrors a plain cargo command from the README.

# Run the server on its embedded default data dir.
run:
    cargo run --release -- serve

# Run every test (what CI runs).
test:
    cargo test --workspace

# Run the benchmark harness (JSON lines with --json); the api scenario runs the server binary,
# so it is built first.
bench *ARGS:
    cargo build --release -p hallway-webhooks
    cargo run --release -p hallway-bench -- {{ARGS}}

# The server and the bench with full debug info, for perf and other profilers.
profiling:
    cargo build --profile profiling -p hallway-webhooks -p hallway-bench

# The deterministic simulation (crates/sim): N seeds of the whole engine under network faults,
# crashes and simulated hours. A failing seed prints the command that replays it with a trace.
sim n="1000":
    cargo run --release -p hallway-sim -- --seeds {{n}}

# Format check and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The crash soak at a bigger size than the one `cargo test` runs (6 kills over ~15 s):
# SIGKILL at random moments while clients publish, then check nothing acknowledged was lost.
# `just soak 100 300 400` = 100 kills over 300 s at 400 publishes/s; SOAK_SEED=<n> replays a run.
soak kills="40" secs="120" rate="200":
    SOAK_KILLS={{kills}} SOAK_SECS={{secs}} SOAK_RATE={{rate}} cargo test --release --test soak -- --nocapture

# Regenerate docs/openapi.json from the code (the OpenAPI test then checks it stays so).
openapi:
    UPDATE_OPENAPI=1 cargo test --test openapi
