//! Ids herald makes: receipt ids (sent to the platform as the message
//! nonce), progress post keys, and replica ids.

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

/// Make a replica id, new at every start and readable in `/v1/replicas`:
/// the host name, the process id, and 24 random bits (a reused pid never
/// collides).
pub fn new_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald".to_owned());
    let bits: u32 = rand::rng().random::<u32>() >> 8;
    format!("{host}-{}-{bits:06x}", std::process::id())
}
