//! `ncd-proxy`: the companion HTTPS proxy that blocks one person's profile.
//!
//! The DNS side steers the hosts of sites with profile rules to this proxy's
//! loopback addresses. The proxy reads the SNI, terminates TLS with a leaf from a
//! local, name-constrained CA, judges each HTTP/1.1 or HTTP/2 request against the
//! profile rules, and forwards what passes to the real origin.
//!
//! - [`sites`]: per-site facts and the pure request matcher.
//! - [`ca`]: the name-constrained CA and the leaf cache.
//! - [`block_page`]: the calm HTML page and each site's "not found".
//! - [`learn`]: ids learned from allowed answers, kept beside the rules.
//! - [`origin`]: the pooled client to the real origins, through an injected resolver.
//! - [`server`]: listeners, TLS termination, the per-request path.

pub mod block_page;
pub mod ca;
pub mod learn;
pub mod origin;
pub mod server;
pub mod sites;

pub use block_page::PageContext;
pub use ca::{CaError, CaEvent, CertAuthority};
pub use learn::{Learned, LearnedIds};
pub use origin::{OriginOptions, OriginResolver, load_roots};
pub use server::{ProxyHooks, ProxyRules, RulesSource, ServeOptions, serve};
pub use sites::{Judgement, Kind, ProfileRules, RequestView};
