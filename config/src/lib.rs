//! `ncd-config`: the contract that `ncdd` and `ncd` both read.
//!
//! It owns the TOML schema and its validation (every error names `path:line:col`),
//! the duration and domain-name syntax, the list-file formats, the built-in service
//! catalog and the encrypted-DNS guard names. Nothing here does I/O beyond reading
//! a config file; the daemon turns a [`Config`] into a running policy.

pub mod catalog;
pub mod control;
pub mod domain;
pub mod duration;
pub mod error;
pub mod guards;
pub mod lists;
pub mod profile;
pub mod ratchet;
mod schema;
pub mod upstream;

pub use domain::{DomainName, DomainRule, RuleScope};
pub use duration::HumanDuration;
pub use error::ConfigError;
pub use profile::{Handle, Profile, ProfileSite};
pub use schema::*;
pub use upstream::{Upstream, UpstreamEntry, UpstreamProtocol};
