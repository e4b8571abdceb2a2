//! Sign-in throttling: too many recent failures for one account, or from one
//! IP address, block further attempts for a while. Kept in the database so it
//! holds across replicas.

use crate::db::{login_failures, Db};
use crate::error::AppError;

/// Failures counted over this window.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Failures allowed per account within the window.
pub const MAX_PER_ACCOUNT: i64 = 5;
/// Failures allowed per IP address within the window.
pub const MAX_PER_IP: i64 = 20;

/// The throttling subjects of one sign-in attempt.
pub struct Attempt {
    account: String,
    ip: Option<String>,
}

impl Attempt {
    /// An attempt on `email` (normalised) from `ip`.
    pub fn new(email: &str, ip: Option<std::net::IpAddr>) -> Self {
        Self {
            account: format!("email:{email}"),
            ip: ip.map(|ip| format!("ip:{ip}")),
        }
    }

    /// Refuses the attempt if either subject is over its limit.
    pub async fn check(&self, db: &Db, now: i64) -> Result<(), AppError> {
        let since = now - WINDOW_MS;
        let mut limits = vec![(self.account.as_str(), MAX_PER_ACCOUNT)];
        if let Some(ip) = &self.ip {
            limits.push((ip.as_str(), MAX_PER_IP));
        }
        for (subject, max) in limits {
            let (count, oldest) = login_failures::recent(db, subject, since).await?;
            if count >= max {
                let retry_after_ms = oldest.unwrap_or(now) + WINDOW_MS - now;
                let retry_after_secs = (retry_after_ms.max(1000) as u64).div_ceil(1000);
                return Err(AppError::TooManyRequests {
                    message: format!(
                        "Too many failed sign-in attempts. Try again in {} minute(s).",
                        retry_after_secs.div_ceil(60)
                    ),
                    retry_after_secs,
                });
            }
        }
        Ok(())
    }

    /// Counts a failed attempt against both subjects.
    pub async fn record_failure(&self, db: &Db, now: i64) -> Result<(), AppError> {
        let mut subjects = vec![self.account.as_str()];
        if let Some(ip) = &self.ip {
            subjects.push(ip.as_str());
        }
        login_failures::record(db, &subjects, now).await?;
        Ok(())
    }

    /// Clears the account's failures after a successful sign-in.
    pub async fn record_success(&self, db: &Db) -> Result<(), AppError> {
        login_failures::clear(db, &self.account).await?;
        Ok(())
    }
}

/// Counts one request against each `(subject, max)` over [`WINDOW_MS`],
/// refusing it (429) when any subject is already at its max. For actions
/// that send mail (a password reset, a verification link): every request
/// counts, whether or not it sends anything, so the answer reveals nothing.
pub async fn count_request(db: &Db, limits: &[(&str, i64)], now: i64) -> Result<(), AppError> {
    for (subject, max) in limits {
        let (count, oldest) = login_failures::recent(db, subject, now - WINDOW_MS).await?;
        if count >= *max {
            let retry_after_ms = oldest.unwrap_or(now) + WINDOW_MS - now;
            let retry_after_secs = (retry_after_ms.max(1000) as u64).div_ceil(1000);
            return Err(AppError::TooManyRequests {
                message: format!(
                    "Too many requests. Try again in {} minute(s).",
                    retry_after_secs.div_ceil(60)
                ),
                retry_after_secs,
            });
        }
    }
    let subjects: Vec<&str> = limits.iter().map(|(subject, _)| *subject).collect();
    login_failures::record(db, &subjects, now).await?;
    Ok(())
}
