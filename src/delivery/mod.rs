//! The delivery engine: one actor per channel that keeps progress messages
//! current and drives terminal receipts until the platform confirms them.
pub mod budget;
pub mod receipts;
