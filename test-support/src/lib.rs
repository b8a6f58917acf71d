//! Helpers the integration tests of every crate share (issue #12.3 moves the rest here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;

pub use proxy::{FaultProxy, url_addr};
