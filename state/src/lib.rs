//! `ncd-state`: the files ncd keeps, and the one way they are written.
//!
//! - [`StateDir`] names every file ncdd keeps in its state dir, so no other module
//!   spells a file name.
//! - [`write_atomically`] writes a file so that a crash leaves the old or the new
//!   content, never half of either, and never leaves its temp file behind.
//! - [`dev_control_socket`] is where `ncdd --dev` answers and `ncd` looks after
//!   the system socket, so a newcomer's two commands find each other.
//! - [`checksum`] is the FNV-1a hash that notices truncation, bit rot and hand edits.
//!
//! The daemon, the CLI (install, guard) and the policy all depend on this crate;
//! it depends on nothing of ncd.

mod dir;
mod write;

pub use dir::{StateDir, dev_control_socket};
pub use write::{remove_stale_temp_files, write_atomically};

/// FNV-1a, 64 bits: notices truncation, bit rot and hand edits. Not a security
/// check (root with a calculator can always re-checksum an edit).
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn checksum_is_fnv1a_64() {
        // Reference values of FNV-1a 64.
        assert_eq!(super::checksum(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::checksum(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
