//! Random-enough numbers for namespace names and tokens, without a dependency: std's randomly
//! keyed hasher over the clock.

use std::hash::{BuildHasher, Hasher};

/// A number no earlier call is likely to have returned; `salt` tells calls of one instant apart.
pub(crate) fn random_u64(salt: u8) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(salt);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
