//! Balances held in memory by a gateway that owns its SQLite database.
//!
//! One process owns a SQLite file, so it can decide reservations and
//! settlements in memory, under one lock, instead of a database round trip
//! per request. The usage writer then applies the resulting writes in order;
//! the database stays the record.
//!
//! An account is read from the database when first needed. It is read again
//! when it is idle (nothing held, nothing waiting to be written) and either
//! [`REFRESH_AFTER`] has passed or a reservation would be refused, so changes
//! made outside the process (another tool writing the file) are seen. A
//! crash loses only in-memory holds, which nothing then needs to release.
//! A settlement charges the whole cost, even past zero: the balance then
//! shows a debt, and no reservation fits until credit covers it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::{ledger, Db};

/// How long an idle account's balance is trusted before it is read again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(2);

/// The in-memory accounts of active users.
#[derive(Debug, Default)]
pub struct LocalAccounts {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<String, Account>,
    /// Bumped by every credit, so a read that raced one is not stored.
    credits: u64,
}

#[derive(Debug)]
struct Account {
    /// The balance once every queued write is applied, in nano-USD.
    balance: i64,
    /// Held for requests in flight.
    held: i64,
    /// Settlements handed to the writer and not yet committed.
    unwritten: u32,
    /// Bumped by every change, so a read that raced one is not stored.
    version: u64,
    read_at: Instant,
}

impl Account {
    fn is_idle(&self) -> bool {
        self.held == 0 && self.unwritten == 0
    }
}

/// What [`LocalAccounts::try_hold`] decided.
enum Decision {
    Held,
    Refused,
    /// Read the balance first; the tags detect a change made meanwhile.
    Read {
        credits: u64,
        version: Option<u64>,
    },
}

impl LocalAccounts {
    /// Holds `amount` of the user's available balance; `false` when it
    /// cannot cover it. Reads the balance from `db` when needed.
    pub async fn reserve(&self, db: &Db, user_id: &str, amount: i64) -> Result<bool, sqlx::Error> {
        for attempt in 0..3 {
            // A refusal is checked against the database once per request.
            let may_reread = attempt == 0;
            let (credits, version) = match self.try_hold(user_id, amount, may_reread) {
                Decision::Held => return Ok(true),
                Decision::Refused => return Ok(false),
                Decision::Read { credits, version } => (credits, version),
            };
            let balance = ledger::balance(db, user_id).await?.map_or(0, |(b, _)| b);
            self.store(user_id, balance, credits, version);
        }
        // Reads kept racing changes; refuse rather than guess.
        Ok(false)
    }

    fn try_hold(&self, user_id: &str, amount: i64, may_reread: bool) -> Decision {
        let mut state = self.lock();
        let credits = state.credits;
        let read = |account: Option<&Account>| Decision::Read {
            credits,
            version: account.map(|a| a.version),
        };
        let Some(account) = state.accounts.get_mut(user_id) else {
            return read(None);
        };
        let age = account.read_at.elapsed();
        if account.is_idle() && age > REFRESH_AFTER {
            return read(Some(account));
        }
        if account.balance - account.held >= amount {
            account.held += amount;
            account.version += 1;
            return Decision::Held;
        }
        if account.is_idle() && may_reread {
            return read(Some(account));
        }
        Decision::Refused
    }

    /// Stores a balance just read, unless the account changed meanwhile.
    fn store(&self, user_id: &str, balance: i64, credits: u64, version: Option<u64>) {
        let mut state = self.lock();
        if state.credits != credits {
            return;
        }
        let current = state.accounts.get(user_id);
        let unchanged = match (current, version) {
            (None, None) => true,
            (Some(account), Some(version)) => account.version == version && account.is_idle(),
            _ => false,
        };
        if unchanged {
            let version = current.map_or(0, |a| a.version + 1);
            state.accounts.insert(
                user_id.to_string(),
                Account {
                    balance,
                    held: 0,
                    unwritten: 0,
                    version,
                    read_at: Instant::now(),
                },
            );
        }
    }

    /// Releases a request's hold and charges its whole cost, below zero if
    /// need be. `false` when the user has no account here (nothing was
    /// held): the writer then settles against the database alone.
    pub fn settle(&self, user_id: &str, held: i64, cost: i64) -> bool {
        let mut state = self.lock();
        let Some(account) = state.accounts.get_mut(user_id) else {
            return false;
        };
        account.held = (account.held - held).max(0);
        account.balance -= cost.max(0);
        account.unwritten += 1;
        account.version += 1;
        true
    }

    /// The writer has committed (or given up on) one settlement per user listed.
    pub fn written<'a>(&self, user_ids: impl IntoIterator<Item = &'a str>) {
        let mut state = self.lock();
        for user_id in user_ids {
            if let Some(account) = state.accounts.get_mut(user_id) {
                account.unwritten = account.unwritten.saturating_sub(1);
                account.version += 1;
            }
        }
    }

    /// A credit (or debit) was committed to the database outside the writer.
    pub fn credited(&self, user_id: &str, amount: i64) {
        let mut state = self.lock();
        state.credits += 1;
        if let Some(account) = state.accounts.get_mut(user_id) {
            account.balance += amount;
            account.version += 1;
        }
    }

    /// What the user's requests in flight hold.
    pub fn held(&self, user_id: &str) -> i64 {
        self.lock().accounts.get(user_id).map_or(0, |a| a.held)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_balance(user_id: &str, balance: i64) -> LocalAccounts {
        let accounts = LocalAccounts::default();
        accounts.store(user_id, balance, 0, None);
        accounts
    }

    fn hold(accounts: &LocalAccounts, user_id: &str, amount: i64) -> bool {
        match accounts.try_hold(user_id, amount, false) {
            Decision::Held => true,
            Decision::Refused => false,
            Decision::Read { .. } => panic!("unexpected read"),
        }
    }

    #[test]
    fn holds_never_exceed_the_balance() {
        let accounts = with_balance("u", 100);
        assert!(hold(&accounts, "u", 60));
        assert!(hold(&accounts, "u", 40));
        assert!(!hold(&accounts, "u", 1), "nothing left to hold");
        assert_eq!(accounts.held("u"), 100);
    }

    #[test]
    fn settling_charges_the_cost_and_releases_the_rest() {
        let accounts = with_balance("u", 100);
        assert!(hold(&accounts, "u", 60));
        assert!(accounts.settle("u", 60, 25));
        assert_eq!(accounts.held("u"), 0);
        assert!(hold(&accounts, "u", 75));
        assert!(!hold(&accounts, "u", 1));
    }

    #[test]
    fn a_charge_is_taken_whole_and_a_debt_refuses_every_hold() {
        let accounts = with_balance("u", 10);
        assert!(hold(&accounts, "u", 10));
        assert!(accounts.settle("u", 10, 500));
        assert!(!hold(&accounts, "u", 1), "a debt of 490 holds nothing");
        accounts.credited("u", 480);
        assert!(!hold(&accounts, "u", 1), "still 10 in debt");
        accounts.credited("u", 11);
        assert!(hold(&accounts, "u", 1), "one nano above zero");
        assert!(!accounts.settle("unknown", 0, 5));
    }

    #[test]
    fn an_unknown_or_idle_stale_account_is_read_first() {
        let accounts = LocalAccounts::default();
        assert!(matches!(
            accounts.try_hold("u", 1, false),
            Decision::Read { version: None, .. }
        ));
        accounts.store("u", 5, 0, None);
        assert!(hold(&accounts, "u", 5));
        // Busy accounts are trusted; an idle refused one is read again.
        accounts.settle("u", 5, 5);
        accounts.written(["u"]);
        assert!(!hold(&accounts, "u", 1), "refused without a second look");
        assert!(matches!(
            accounts.try_hold("u", 1, true),
            Decision::Read {
                version: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_stored() {
        let accounts = LocalAccounts::default();
        let Decision::Read { credits, version } = accounts.try_hold("u", 1, true) else {
            panic!("expected a read")
        };
        accounts.credited("u", 50); // lands between the read and the store
        accounts.store("u", 0, credits, version);
        assert!(matches!(
            accounts.try_hold("u", 1, false),
            Decision::Read { .. }
        ));
    }

    #[test]
    fn credits_reach_a_loaded_account() {
        let accounts = with_balance("u", 0);
        accounts.credited("u", 30);
        assert!(hold(&accounts, "u", 30));
    }
}
