//! One tokio runtime for every check that needs one, made on first use.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// The shared current-thread runtime: whoever calls `block_on` drives it (and the
/// tasks spawned on it), so a fuzz target stays on one core.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the tokio runtime")
    })
}
