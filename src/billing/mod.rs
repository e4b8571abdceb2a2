//! Reseller billing: prices with margin, reservations before forwarding, and
//! an exact ledger settled after each response. `money` is shared with the
//! WASM client, which formats amounts.

#[cfg(feature = "ssr")]
pub mod accounts;
#[cfg(feature = "ssr")]
pub mod budget;
pub mod money;
#[cfg(feature = "ssr")]
mod price_book;
#[cfg(feature = "ssr")]
pub mod pricing;

#[cfg(feature = "ssr")]
pub use price_book::{percent_to_bp, PriceBook};
