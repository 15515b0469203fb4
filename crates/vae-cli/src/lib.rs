//! The library side of the `vae` command: its run config ([`config::RunConfig`], the JSON a
//! user edits, with `--set` overrides), so that other tools (the fuzzers, scripts that prepare
//! runs) read and check configs exactly as `vae` does. Everything else of the command lives in
//! the binary.

pub mod config;
