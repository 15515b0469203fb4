//! flowvae's shared file I/O, without libtorch.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod atomic;
pub mod error;
pub mod fixture;
pub mod grid;
pub mod idx;
pub mod lock;
pub mod plot;
pub mod png;
pub mod regular;
pub mod results;
pub mod run_dir;
pub mod strict_json;

pub use atomic::{write_atomic, write_json};
pub use error::{Error, Result};
pub use grid::{image_grid, GreyImage};
pub use lock::RunLock;
pub use regular::{read_settings_text, require_regular_file};
pub use run_dir::RunDir;
