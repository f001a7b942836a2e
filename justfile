# Everyday commands; each mirrors a plain cargo command from the README.

# Run the server on its embedded default data dir.
run:
    cargo run --release -- serve

# Run every test (what CI runs).
test:
    cargo test --workspace

# Run the benchmark harness (JSON lines with --json).
bench *ARGS:
    cargo run --release -p hallway-bench -- {{ARGS}}

# Format check and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
