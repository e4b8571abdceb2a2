//! The mails that carry a single-use link: each issues its token
//! (`auth::email_token`) and queues its mail; with email disabled, they
//! do nothing.

use super::{templates, MailQueue};
use crate::auth::email_token::{self, Purpose};
use crate::error::AppError;

/// Sends `address` the link for `purpose` on `user_id`'s account: one
/// that verifies the address, sets a new password, or moves the account
/// to the address.
pub async fn send_link(
    queue: &MailQueue,
    user_id: &str,
    purpose: Purpose,
    address: &str,
    now: i64,
) -> Result<(), AppError> {
    if !queue.is_enabled() {
        return Ok(());
    }
    let link = issue_link(queue, user_id, purpose, address, now).await?;
    let mail = match purpose {
        Purpose::Verify => templates::verification(address, &link),
        Purpose::Reset => templates::password_reset(address, &link),
        Purpose::ChangeEmail => templates::email_change(address, &link),
    };
    queue.enqueue(&mail, now).await
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
