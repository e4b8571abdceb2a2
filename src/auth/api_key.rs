//! API keys: `llm_sk_` followed by 40 random base62 characters. Only the
//! SHA-256 of a key is stored, plus a short prefix to recognise it by.
//! Keys, and the master key, are read from requests here and compared in
//! constant time.

use axum::http::HeaderMap;
use rand::{rngs::OsRng, Rng};
use sha2::{Digest, Sha256};

/// Every key starts with this.
pub const KEY_PREFIX: &str = "llm_sk_";
const RANDOM_LEN: usize = 40;
const DISPLAY_RANDOM_CHARS: usize = 6;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly generated key: the secret, to show once, and what gets stored.
pub struct GeneratedKey {
    pub secret: String,
    pub hash: String,
    pub display_prefix: String,
}

/// Generates a key from the operating system's CSPRNG.
pub fn generate() -> GeneratedKey {
    let mut rng = OsRng;
    let mut secret = String::with_capacity(KEY_PREFIX.len() + RANDOM_LEN);
    secret.push_str(KEY_PREFIX);
    for _ in 0..RANDOM_LEN {
        secret.push(BASE62[rng.gen_range(0..BASE62.len())] as char);
    }
    GeneratedKey {
        hash: hash(&secret),
        display_prefix: display_prefix(&secret),
        secret,
    }
}

/// The hex SHA-256 of a key, as stored.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The part of a key that may be shown and logged, e.g. `llm_sk_Ab3xQ9`.
pub fn display_prefix(secret: &str) -> String {
    secret
        .chars()
        .take(KEY_PREFIX.len() + DISPLAY_RANDOM_CHARS)
        .collect()
}

/// Whether a string has the shape of one of our keys (cheap check before hashing).
pub fn looks_like_key(candidate: &str) -> bool {
    candidate.len() == KEY_PREFIX.len() + RANDOM_LEN
        && candidate.starts_with(KEY_PREFIX)
        && candidate[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

/// The key from `Authorization: Bearer`, `X-AnyLLM-Key: Bearer`,
/// `Otari-Key` (otari, any-llm-gateway's new name; with or without
/// `Bearer`) or `x-api-key`: the first of these with a token.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let bearer = |name: &str| value(name).and_then(strip_bearer);
    [
        bearer("authorization"),
        bearer("x-anyllm-key"),
        value("otari-key").map(|v| strip_bearer(v).unwrap_or(v)),
        value("x-api-key"),
    ]
    .into_iter()
    .flatten()
    .find(|k| !k.is_empty())
}

/// The token after `Bearer` (in any case), if `value` is a bearer credential.
fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_at_checked(6)?;
    let bearer = scheme.eq_ignore_ascii_case("bearer")
        && (token.is_empty() || token.starts_with(char::is_whitespace));
    bearer.then(|| token.trim())
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `headers` present the master key (none is configured: never).
pub fn presents_master_key(headers: &HeaderMap, master: Option<&str>) -> bool {
    matches!((master, presented_key(headers)), (Some(m), Some(p)) if constant_time_eq(m.as_bytes(), p.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn keys_come_from_any_accepted_header() {
        for (name, value) in [
            ("authorization", "Bearer llm_sk_a"),
            ("x-anyllm-key", "Bearer llm_sk_a"),
            ("otari-key", "Bearer llm_sk_a"),
            ("otari-key", "llm_sk_a"),
            ("otari-key", " bearer  llm_sk_a "),
            ("x-api-key", "llm_sk_a"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static(value));
            assert_eq!(presented_key(&headers), Some("llm_sk_a"), "{name}");
        }
        assert_eq!(presented_key(&HeaderMap::new()), None);
    }

    #[test]
    fn only_otari_key_takes_a_bare_token_besides_x_api_key() {
        let mut headers = HeaderMap::new();
        headers.insert("x-anyllm-key", HeaderValue::from_static("llm_sk_a"));
        assert_eq!(presented_key(&headers), None, "X-AnyLLM-Key needs Bearer");
        headers.insert("otari-key", HeaderValue::from_static("Bearer "));
        assert_eq!(presented_key(&headers), None, "an empty token is none");
        headers.insert("authorization", HeaderValue::from_static("Bearer llm_sk_b"));
        assert_eq!(presented_key(&headers), Some("llm_sk_b"));
        assert!(presents_master_key(&headers, Some("llm_sk_b")));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"master-key", b"master-key"));
        assert!(!constant_time_eq(b"master-key", b"master-kez"));
        assert!(!constant_time_eq(b"master", b"master-key"));
    }

    #[test]
    fn keys_have_the_documented_shape() {
        let key = generate();
        assert!(key.secret.starts_with("llm_sk_"));
        assert_eq!(key.secret.len(), 7 + 40);
        assert!(looks_like_key(&key.secret));
        assert_eq!(key.hash, hash(&key.secret));
        assert_eq!(key.hash.len(), 64);
        assert!(key.secret.starts_with(&key.display_prefix));
        assert_eq!(key.display_prefix.len(), 13);
    }

    #[test]
    fn keys_are_unique() {
        let a = generate();
        let b = generate();
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn rejects_malformed_keys() {
        assert!(!looks_like_key("llm_sk_short"));
        assert!(!looks_like_key(&format!("sk-{}", "a".repeat(44))));
        assert!(!looks_like_key(&format!("llm_sk_{}!", "a".repeat(39))));
    }
}
