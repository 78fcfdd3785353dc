//! Integration tests of the public API, one module per area.

mod errors;
mod gc;
mod oracle;
mod propagation;
mod seed;
mod session;
mod support;
mod windows;
