//! Authentication: passwords, dashboard sessions, API keys (reading, comparing
//! and issuing them) and sign-in throttling.

pub mod api_key;
pub mod key_cache;
pub mod keys;
pub mod origin;
pub mod password;
pub mod policy;
pub mod session;
pub mod throttle;
