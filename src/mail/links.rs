//! The mails that carry a single-use link: each issues its token
//! (`auth::email_token`) and queues its mail; with email disabled, they
//! do nothing.

use super::{templates, MailQueue};
use crate::auth::email_token::{self, Purpose};
use crate::error::AppError;

/// Sends `email` the link that verifies it as `user_id`'s address.
pub async fn send_verification(
    queue: &MailQueue,
    user_id: &str,
    email: &str,
    now: i64,
) -> Result<(), AppError> {
    if !queue.is_enabled() {
        return Ok(());
    }
    let link = issue_link(queue, user_id, Purpose::Verify, email, now).await?;
    queue
        .enqueue(&templates::verification(email, &link), now)
        .await
}

/// Sends `email` the link that sets a new password for `user_id`.
pub async fn send_password_reset(
    queue: &MailQueue,
    user_id: &str,
    email: &str,
    now: i64,
) -> Result<(), AppError> {
    if !queue.is_enabled() {
        return Ok(());
    }
    let link = issue_link(queue, user_id, Purpose::Reset, email, now).await?;
    queue
        .enqueue(&templates::password_reset(email, &link), now)
        .await
}

/// Sends `new_email` the link that makes it `user_id`'s address.
pub async fn send_email_change(
    queue: &MailQueue,
    user_id: &str,
    new_email: &str,
    now: i64,
) -> Result<(), AppError> {
    if !queue.is_enabled() {
        return Ok(());
    }
    let link = issue_link(queue, user_id, Purpose::ChangeEmail, new_email, now).await?;
    queue
        .enqueue(&templates::email_change(new_email, &link), now)
        .await
}

/// Issues a token and returns its link: the reset page for a reset, the
/// verification page for the others.
async fn issue_link(
    queue: &MailQueue,
    user_id: &str,
    purpose: Purpose,
    address: &str,
    now: i64,
) -> Result<String, AppError> {
    let token = email_token::issue(queue.db(), user_id, purpose, address, now).await?;
    let page = match purpose {
        Purpose::Reset => "/reset-password",
        Purpose::Verify | Purpose::ChangeEmail => "/verify-email",
    };
    Ok(queue.link(&format!("{page}?token={token}")))
}
