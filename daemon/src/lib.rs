//! `ncd-daemon`: the library behind `ncdd`.
//!
//! - [`policy`] compiles a config into the rules a query is checked against.
//! - [`dns`] serves DNS: the resolver chain, cache, upstreams and listeners.
//! - [`daemon`] wires them together: state dir, reloads, signals, shutdown.

pub mod control;
pub mod daemon;
pub mod dns;
pub mod fetch;
pub mod period;
pub mod policy;
pub mod requests;
pub mod stats;
pub mod system;
