//! `require_verified_email`: accounts whose address is not verified may
//! not create keys or pay.

use crate::config::Config;
use crate::db::users::UserRow;
use crate::error::AppError;

/// Refuses (403) a user whose address is unverified when the config
/// requires verified addresses; lets everyone through otherwise.
pub fn ensure_verified(config: &Config, user: &UserRow) -> Result<(), AppError> {
    if !config.require_verified_email || user.email_verified_at.is_some() {
        return Ok(());
    }
    Err(AppError::denied(
        "email_not_verified",
        "Verify your email address first: follow the link we mailed you \
         (the account page can send it again).",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(verified_at: Option<i64>) -> UserRow {
        UserRow {
            id: "usr_1".into(),
            email: Some("ada@example.com".into()),
            password_hash: None,
            role: "user".into(),
            balance: 0,
            blocked_at: None,
            created_at: 0,
            email_verified_at: verified_at,
            session_epoch: 0,
        }
    }

    #[test]
    fn only_unverified_users_are_refused_and_only_when_required() {
        let mut config = Config::default();
        assert!(ensure_verified(&config, &user(None)).is_ok());
        config.require_verified_email = true;
        let err = ensure_verified(&config, &user(None)).unwrap_err();
        assert_eq!(err.status(), 403);
        assert_eq!(err.code(), "email_not_verified");
        assert!(ensure_verified(&config, &user(Some(1))).is_ok());
    }
}
