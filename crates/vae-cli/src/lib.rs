//! The library side of the `vae` command: its run config ([`config::RunConfig`]).
#![doc = include_str!("../README.md")]

pub mod config;
