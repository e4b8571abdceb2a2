//! Authentication: passwords, dashboard sessions, API keys and sign-in throttling.

pub mod api_key;
pub mod dashboard_pages;
pub mod key_cache;
pub mod origin;
pub mod password;
pub mod session;
pub mod throttle;
