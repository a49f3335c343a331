//! The strace backend.
pub mod parse;
