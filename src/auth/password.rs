//! Password hashing with argon2id. Hashing is CPU-bound, so it runs on the
//! blocking pool and never stalls the async workers.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use crate::error::AppError;

/// Hashes a password into a PHC string (`$argon2id$…`).
pub async fn hash(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
    })
    .await
    .map_err(|_| AppError::Internal)?
    .map_err(|err| {
        tracing::error!(%err, "password hashing failed");
        AppError::Internal
    })
}

/// Checks a password against a stored hash. With no stored hash, verifies
/// against a dummy so unknown accounts take as long as known ones.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_string());
        PasswordHash::new(&stored)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
            && stored != DUMMY_HASH
    })
    .await
    .unwrap_or(false)
}

/// An argon2id hash (default parameters) of a random password nobody knows.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vw2Qp0C3SRrY8yOGUb0bZ7Z8nD2yW5nS5n0cQx2Y2ZA";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_with_argon2id_and_verifies() {
        let stored = hash("correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse".into(), Some(stored.clone())).await);
        assert!(!verify("wrong horse".into(), Some(stored)).await);
    }

    #[tokio::test]
    async fn unknown_account_never_verifies() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify("anything".into(), None).await);
    }
}
