//! Nothing: this crate exists for its tests, which build the crate's compile-time cases as
//! edition 2024 (where a body that never returns no longer falls back to `()`).
