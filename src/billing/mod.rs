//! Reseller billing, the whole money path: prices with margin (`pricing`,
//! `price_book`), the reservation policy (`estimate`, `reservation`,
//! `budget`), the meter that makes one usage record per request (`meter`),
//! the in-memory accounts (`accounts`) and credit leases (`leases`), the writer that batches records and
//! settles them (`recorder`, `batch`), the audit of it all (`audit`), and
//! payments through Stripe: prices and events (`payments`), its API
//! (`stripe_api`) and its webhook signatures (`stripe_signature`).
//! `money` and `audit`'s report are shared with the WASM client.

#[cfg(feature = "ssr")]
pub mod accounts;
pub mod audit;
#[cfg(feature = "ssr")]
pub mod batch;
#[cfg(feature = "ssr")]
pub mod budget;
#[cfg(feature = "ssr")]
pub mod estimate;
#[cfg(feature = "ssr")]
pub mod lanes;
#[cfg(feature = "ssr")]
pub mod leases;
#[cfg(feature = "ssr")]
pub mod meter;
pub mod money;
#[cfg(feature = "ssr")]
pub mod payments;
#[cfg(feature = "ssr")]
mod price_book;
#[cfg(feature = "ssr")]
pub mod pricing;
#[cfg(feature = "ssr")]
pub mod recorder;
#[cfg(feature = "ssr")]
pub mod reservation;
#[cfg(feature = "ssr")]
pub mod stripe_api;
#[cfg(feature = "ssr")]
pub mod stripe_signature;

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
