//! The front doors' wire formats other than OpenAI's chat: each translated
//! to the gateway's chat shape on the way in and back on the way out, so
//! that every door shares one routing, metering and billing path.

pub mod anthropic;
pub mod responses;
