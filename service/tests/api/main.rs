//! The API's integration tests, one binary (issue #12.3: six binaries linked the service six
//! times). `cargo test -p service --test api stack::` runs one module.

mod attachments;
mod cli;
mod common;
mod contract;
mod events;
mod limits;
mod openapi;
mod stack;
