//! `ncd-daemon`: the library behind `ncdd`.
//!
//! - [`generation`] makes what a rebuild produces (effective config, policy, DNS
//!   chain) and swaps it in once.
//! - [`dns`] serves DNS: the resolver chain, cache, upstreams and listeners.
//! - [`network`] finds the resolvers the network hands out (`upstreams = ["system"]`).
//! - [`control`] serves the control socket; [`requests`] says what each verb does.
//! - [`daemon`] wires them together: the loops, signals, shutdown.
//!
//! The policy (`ncd-policy`) and the period (`ncd-period`) are crates of their
//! own, shared with the CLI.

pub mod control;
pub mod daemon;
pub mod dns;
pub mod fetch;
pub mod generation;
pub mod network;
pub mod proxy;
pub mod requests;
pub mod stats;
pub mod system;
mod watch;
