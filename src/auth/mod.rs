//! Authentication: passwords, dashboard sessions, API keys (reading,
//! comparing and issuing them, and counting their rate limits), sign-in
//! throttling, and the links mailed to prove an address or reset a password.

pub mod api_key;
pub mod email_token;
pub mod key_cache;
pub mod keys;
pub mod origin;
pub mod password;
pub mod policy;
pub mod rate_buckets;
pub mod session;
pub mod throttle;
pub mod verified;
