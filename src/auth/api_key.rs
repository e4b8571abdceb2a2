//! API keys: `llm_sk_` followed by 40 random base62 characters. Only the
//! SHA-256 of a key is stored, plus a short prefix to recognise it by.

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

#[cfg(test)]
mod tests {
    use super::*;

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
