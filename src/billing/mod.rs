//! Reseller billing: prices with margin, reservations before forwarding, and
//! an exact ledger settled after each response. `money` is shared with the
//! WASM client, which formats amounts.

#[cfg(feature = "ssr")]
pub mod accounts;
pub mod audit;
#[cfg(feature = "ssr")]
pub mod budget;
#[cfg(feature = "ssr")]
pub mod estimate;
pub mod money;
#[cfg(feature = "ssr")]
mod price_book;
#[cfg(feature = "ssr")]
pub mod pricing;

#[cfg(feature = "ssr")]
pub use price_book::{percent_to_bp, PriceBook};

/// How a usage record's tokens were known (its `tokens_source` column).
#[cfg(feature = "ssr")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokensSource {
    /// The provider reported them.
    Upstream,
    /// The provider answered without usage, or the request never reached
    /// one: the gateway counted (the prompt estimate, ≈4 generated
    /// characters a token; nothing for a refused request).
    LocalCount,
    /// The client left before the provider reported usage: counted locally.
    ClientAborted,
    /// The provider's answer broke off before it reported usage: counted locally.
    UpstreamCut,
    /// The gateway's shutdown cut the stream: counted locally.
    Shutdown,
}

#[cfg(feature = "ssr")]
impl TokensSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::LocalCount => "local_count",
            Self::ClientAborted => "client_aborted",
            Self::UpstreamCut => "upstream_cut",
            Self::Shutdown => "shutdown",
        }
    }
}
