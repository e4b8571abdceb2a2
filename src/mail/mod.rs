//! Mail: what the gateway tells its users (links to verify an address or
//! reset a password, receipts, low-balance and budget alerts).
//!
//! Nothing is sent on a request's path: a request queues its mail in the
//! outbox table ([`MailQueue::enqueue`]), and the background sender
//! (`sender`) claims and sends it, retrying with backoff, on whichever
//! replica gets to it first. The alert scans run in the same loop.

pub mod alerts;
pub mod links;
pub mod sender;
pub mod templates;

use std::sync::Arc;
use tokio::sync::Notify;

use crate::config::{Config, EmailMode};
use crate::db::outbox::{self, NewMail};
use crate::db::Db;
use crate::error::AppError;

/// One plain-text mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

impl Mail {
    /// The mail as the outbox stores it.
    pub fn as_new(&self) -> NewMail<'_> {
        NewMail {
            to: &self.to,
            subject: &self.subject,
            body: &self.text,
        }
    }
}

/// The handle requests queue mail through (in `AppState`); cheap to clone.
#[derive(Clone, Debug)]
pub struct MailQueue {
    db: Db,
    wake: Arc<Notify>,
    enabled: bool,
    base_url: Arc<str>,
}

impl MailQueue {
    /// A queue into `db`'s outbox; with `email.mode: disabled`, one that
    /// drops what it is given.
    pub fn new(db: Db, config: &Config) -> Self {
        Self {
            db,
            wake: Arc::default(),
            enabled: config.email.mode != EmailMode::Disabled,
            base_url: base_url(config).into(),
        }
    }

    /// Whether mail is sent at all (`email.mode` is not `disabled`).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Queues `mail` for the sender and wakes it; returns at once.
    pub async fn enqueue(&self, mail: &Mail, now: i64) -> Result<(), AppError> {
        if !self.enabled {
            tracing::debug!(subject = %mail.subject, "email is disabled; mail dropped");
            return Ok(());
        }
        outbox::insert(&self.db, mail.as_new(), now).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// An absolute link to `path` (which starts with `/`) on this site.
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The database the outbox is in.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Resolves when mail has been queued by this process since the last call.
    async fn queued(&self) {
        self.wake.notified().await
    }
}

/// Where links point: `public_url`, else `http://{host}:{port}`.
pub fn base_url(config: &Config) -> String {
    match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None if config.host.contains(':') => format!("http://[{}]:{}", config.host, config.port),
        None => format!("http://{}:{}", config.host, config.port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_use_the_public_url_or_the_listening_address() {
        let mut config = Config {
            host: "127.0.0.1".into(),
            port: 3000,
            ..Config::default()
        };
        assert_eq!(base_url(&config), "http://127.0.0.1:3000");
        config.public_url = Some("https://gw.example.com/".into());
        assert_eq!(base_url(&config), "https://gw.example.com");
    }
}
