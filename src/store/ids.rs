//! Idempotency keys herald makes: receipt ids (sent to the platform as the
//! message nonce) and progress post keys.

use rand::Rng;

/// Make a receipt id: `hr` + 20 hex digits (80 random bits), 22 characters,
/// within Discord's 25-character nonce limit.
pub fn new_receipt_id() -> String {
    let bits: u128 = rand::rng().random::<u128>() >> 48;
    format!("hr{bits:020x}")
}

/// Make the idempotency key of a progress message's first post: `hp` + 20
/// hex digits, distinct from receipt ids.
pub fn new_progress_key() -> String {
    let bits: u128 = rand::rng().random::<u128>() >> 48;
    format!("hp{bits:020x}")
}
