//! The single-use links mailed to users: a random 32-byte token, sent once
//! and stored only as its SHA-256, redeemed by looking the hash up (so no
//! comparison of secrets ever runs on attacker-chosen prefixes).

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::db::email_tokens::{self, NewToken, Redeemed};
use crate::db::Db;
use crate::error::AppError;

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Proves the address given at sign-up.
    Verify,
    /// Sets a new password.
    Reset,
    /// Moves the account to a new address (and proves it).
    ChangeEmail,
}

impl Purpose {
    /// The purpose as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Reset => "reset",
            Self::ChangeEmail => "change_email",
        }
    }

    /// How long a link stays valid, in milliseconds: an hour for a
    /// password reset, a day for the others.
    pub fn lifetime_ms(self) -> i64 {
        const HOUR_MS: i64 = 60 * 60 * 1000;
        match self {
            Self::Reset => HOUR_MS,
            Self::Verify | Self::ChangeEmail => 24 * HOUR_MS,
        }
    }
}

/// A fresh token, as sent (64 hex digits), and its hash, as stored.
pub fn generate() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let hash = hash(&token);
    (token, hash)
}

/// The SHA-256 of a token, in hex: what is stored and looked up.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Issues a link for `user_id`, proving `address`, valid for the purpose's
/// lifetime from `now`; earlier unused links of the same purpose stop
/// working. Returns the token to send.
pub async fn issue(
    db: &Db,
    user_id: &str,
    purpose: Purpose,
    address: &str,
    now: i64,
) -> Result<String, AppError> {
    let (token, token_hash) = generate();
    let stored = NewToken {
        token_hash: &token_hash,
        user_id,
        purpose: purpose.as_str(),
        new_email: Some(address),
        expires_at: now + purpose.lifetime_ms(),
    };
    email_tokens::insert(db, stored, now).await?;
    Ok(token)
}

/// Redeems a token of one of `purposes`, once; `None` if it is unknown,
/// used or expired.
pub async fn redeem(
    db: &Db,
    token: &str,
    purposes: &[Purpose],
    now: i64,
) -> Result<Option<Redeemed>, AppError> {
    let names: Vec<&str> = purposes.iter().map(|p| p.as_str()).collect();
    Ok(email_tokens::redeem(db, &hash(token), &names, now).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_only_as_their_hash() {
        let (token, stored) = generate();
        let (other, _) = generate();
        assert_eq!(token.len(), 64, "32 bytes in hex");
        assert_ne!(token, other);
        assert_eq!(stored, hash(&token));
        assert_ne!(stored, token);
        assert_eq!(stored.len(), 64, "SHA-256 in hex");
    }

    #[test]
    fn the_hash_is_sha256_of_the_token() {
        // printf 'abc' | sha256sum
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hash(" abc\n"),
            hash("abc"),
            "a pasted link's spaces are ignored"
        );
    }

    #[test]
    fn a_reset_link_lives_an_hour_and_the_others_a_day() {
        assert_eq!(Purpose::Reset.lifetime_ms(), 3_600_000);
        assert_eq!(Purpose::Verify.lifetime_ms(), 86_400_000);
        assert_eq!(Purpose::ChangeEmail.lifetime_ms(), 86_400_000);
    }
}
