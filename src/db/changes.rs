//! Changes every replica must see at once: PostgreSQL's `NOTIFY`, sent in
//! the transaction that makes the change, and a `LISTEN`ing task per
//! replica. SQLite has one process, which sees its own changes; there
//! both ends do nothing.

use futures::future::BoxFuture;
use sqlx::postgres::PgListener;

use super::Db;

/// The channel the gateway's replicas talk on.
const CHANNEL: &str = "llm_gateway_changes";

/// A change that caches elsewhere must drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The price catalog changed.
    Prices,
    /// A user's keys or standing changed: a key revoked or edited, the
    /// user blocked or deleted.
    User(String),
    /// Something many keys depend on changed (a budget).
    AllKeys,
    /// A replica was refused a lease on this user's credit: every replica
    /// gives back the free part of its own.
    LeaseRecall(String),
    /// A replica was refused a lease on this budget scope: every replica
    /// gives back the free part of its own.
    BudgetLeaseRecall(String),
    /// Notifications may have been missed (the listener reconnected):
    /// drop everything.
    Everything,
}

impl Change {
    fn payload(&self) -> String {
        match self {
            Self::Prices => "prices".into(),
            Self::User(id) => format!("user:{id}"),
            Self::LeaseRecall(id) => format!("lease:{id}"),
            Self::BudgetLeaseRecall(scope) => format!("budget-lease:{scope}"),
            Self::AllKeys | Self::Everything => "keys".into(),
        }
    }

    fn parse(payload: &str) -> Self {
        match payload {
            "prices" => Self::Prices,
            "keys" => Self::AllKeys,
            other => {
                if let Some(id) = other.strip_prefix("user:") {
                    Self::User(id.to_string())
                } else if let Some(id) = other.strip_prefix("lease:") {
                    Self::LeaseRecall(id.to_string())
                } else if let Some(scope) = other.strip_prefix("budget-lease:") {
                    Self::BudgetLeaseRecall(scope.to_string())
                } else {
                    Self::Everything
                }
            }
        }
    }
}

/// Announces `change` to every replica when `tx` commits (PostgreSQL).
pub async fn notify<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    change: Change,
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    if DB::NAME != "PostgreSQL" {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(change.payload())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Announces `change` to every replica at once, after the change was
/// committed. Best effort: a failure is logged, and other replicas see the
/// change when their caches expire.
pub async fn announce(db: &Db, change: Change) {
    if let Db::Postgres(pool) = db {
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(change.payload())
            .execute(pool)
            .await;
        if let Err(err) = sent {
            tracing::warn!(%err, ?change, "announcing a change failed; replicas see it when their caches expire");
        }
    }
}

/// What a replica does with a change announced by any replica (itself too).
pub type OnChange = Box<dyn Fn(Change) -> BoxFuture<'static, ()> + Send + Sync>;

/// Listens for changes on PostgreSQL and hands each to `on_change`; after a
/// lost connection, which may have missed some, it hands it
/// [`Change::Everything`]. Does nothing on SQLite.
pub fn listen(db: &Db, on_change: OnChange) {
    let Db::Postgres(pool) = db else {
        return;
    };
    let pool = pool.clone();
    tokio::spawn(async move {
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(%err, "cannot listen for changes; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(err) = listener.listen(CHANNEL).await {
                tracing::warn!(%err, "cannot listen for changes; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            // Whatever changed before this point went unheard.
            on_change(Change::Everything).await;
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        on_change(Change::parse(notification.payload())).await;
                    }
                    // The connection dropped: listen afresh, and only then
                    // drop what may have changed unheard.
                    Ok(None) => break,
                    Err(err) => {
                        tracing::warn!(%err, "listening for changes failed; reconnecting");
                        break;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        for change in [
            Change::Prices,
            Change::User("usr_1".into()),
            Change::LeaseRecall("usr_1".into()),
            Change::BudgetLeaseRecall("key:key_1".into()),
            Change::AllKeys,
        ] {
            assert_eq!(Change::parse(&change.payload()), change);
        }
        assert_eq!(Change::parse("something new"), Change::Everything);
    }
}
