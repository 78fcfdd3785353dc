//! Integration tests of the public API, one module per area.

mod authorization;
#[cfg(feature = "server")]
mod churn;
mod derived;
mod errors;
#[cfg(feature = "server")]
mod fuzz;
mod gc;
mod lifecycle;
mod oracle;
mod propagation;
mod reactions;
#[cfg(feature = "server")]
mod rest;
mod seed;
#[cfg(feature = "server")]
mod server;
mod session;
mod sharing;
#[cfg(feature = "sqlite")]
mod sqlite;
mod support;
#[cfg(all(feature = "dioxus", feature = "server"))]
mod web;
mod windows;
