//! Bridges from subscriptions to UI frameworks' signals. Each adapter only moves values from a
//! subscription's futures-signals signal into the framework's own signal type.

#[cfg(feature = "dioxus")]
mod dioxus;
#[cfg(feature = "leptos")]
mod leptos;
#[cfg(feature = "reactive-graph")]
mod reactive_graph;

#[cfg(feature = "dioxus")]
pub use self::dioxus::use_subscription;
