//! Server functions of the admin pages: users, credit, blocking, pricing,
//! providers and the global usage overview. Every one needs an admin (the
//! `admin` role, or an email in `admin_emails`); anyone else gets 403.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::billing::{Page, SpendSeries};
use super::KeyView;
use crate::error::AppError;

/// Users per page of the admin users table.
pub const USERS_PER_PAGE: u32 = 25;

/// The whole gateway at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayOverview {
    pub users: i64,
    /// What every balance adds up to, in nano-USD (debts included).
    pub balances: i64,
    /// How many users owe, and what they owe in all.
    pub debtors: i64,
    pub debts: i64,
    pub spend_today: i64,
    pub spend_month: i64,
    pub requests_month: i64,
    pub tokens_month: i64,
    pub series: SpendSeries,
}

/// A user in the admin users table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminUserLine {
    pub id: String,
    pub email: Option<String>,
    pub alias: Option<String>,
    pub role: String,
    pub balance: i64,
    pub blocked: bool,
    pub created_at: i64,
    pub keys: Vec<KeyView>,
}

/// A catalog price, with the margin and what users pay; nano-USD per 1M tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminPrice {
    pub model_key: String,
    pub input: i64,
    pub output: i64,
    /// Cache reads, and cache writes for 5 minutes and for an hour; `None`
    /// bills them at the input price (a 1-hour write at the 5-minute one).
    pub cached_input: Option<i64>,
    pub cache_write: Option<i64>,
    pub cache_write_1h: Option<i64>,
    /// This model's own margin, in basis points.
    pub margin_bp: Option<i64>,
    pub user_input: i64,
    pub user_output: i64,
}

/// The catalog and the global margin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceCatalog {
    pub default_margin_bp: i64,
    pub prices: Vec<AdminPrice>,
}

/// A configured provider and its latest upstream failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStatus {
    pub name: String,
    pub kind: String,
    pub api_base: String,
    pub priced_models: usize,
    pub last_error: Option<ProviderError>,
}

/// An upstream failure, as the providers page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderError {
    /// Epoch milliseconds.
    pub at: i64,
    pub kind: String,
    pub message: String,
}

#[cfg(feature = "ssr")]
mod server {
    use crate::db::users::UserRow;
    use crate::error::AppError;
    use crate::state::AppState;

    /// The signed-in admin; 403 for anyone else signed in.
    pub async fn require_admin() -> Result<(AppState, UserRow), AppError> {
        let (state, user) = crate::server_fns::context::require_user().await?;
        if state.config.is_admin(&user.role, user.email.as_deref()) {
            Ok((state, user))
        } else {
            Err(AppError::Forbidden("This page is for admins only.".into()))
        }
    }
}

#[cfg(feature = "ssr")]
pub use server::require_admin;

/// Totals and the 30-day chart over every user.
#[server(prefix = "/rpc", endpoint = "admin_overview")]
pub async fn admin_overview() -> Result<GatewayOverview, AppError> {
    use super::billing::SpendPoint;
    use crate::billing::budget::day_and_month_starts;
    use crate::db::{usage, users};
    use crate::server_fns::context::finish;
    finish(
        async {
            let (state, _) = require_admin().await?;
            let (day, month) = day_and_month_starts(state.clock.now_ms());
            let today = usage::all_totals(&state.db, day).await?;
            let this_month = usage::all_totals(&state.db, month).await?;
            let (users, balances) = users::census(&state.db).await?;
            let (debtors, debts) = crate::db::ledger::debt_total(&state.db).await?;
            let since = day - 29 * 86_400_000;
            let points = usage::all_daily_spend(&state.db, since)
                .await?
                .into_iter()
                .map(|(day, model, cost)| SpendPoint { day, model, cost })
                .collect();
            Ok(GatewayOverview {
                users,
                balances,
                debtors,
                debts,
                spend_today: today.cost,
                spend_month: this_month.cost,
                requests_month: this_month.requests,
                tokens_month: this_month.prompt_tokens + this_month.completion_tokens,
                series: SpendSeries { today: day, points },
            })
        }
        .await,
    )
}

/// A page of users matching `search` (id, email or alias), with their keys.
#[server(prefix = "/rpc", endpoint = "admin_users")]
pub async fn admin_users(search: String, page: u32) -> Result<Page<AdminUserLine>, AppError> {
    use crate::db::{keys, users};
    use crate::server_fns::context::finish;
    finish(
        async {
            let (state, _) = require_admin().await?;
            let search = search.trim();
            let limit = USERS_PER_PAGE as i64;
            let rows = users::list_admin(
                &state.db,
                (!search.is_empty()).then_some(search),
                page as i64 * limit,
                limit + 1,
            )
            .await?;
            let has_more = rows.len() as i64 > limit;
            let mut items = Vec::with_capacity(rows.len());
            for row in rows.into_iter().take(limit as usize) {
                let keys = keys::list_for_user(&state.db, &row.id).await?;
                items.push(AdminUserLine {
                    keys: keys
                        .into_iter()
                        .map(|key| KeyView::at(key, state.clock.now_ms()))
                        .collect(),
                    id: row.id,
                    email: row.email,
                    alias: row.alias,
                    role: row.role,
                    balance: row.balance,
                    blocked: row.blocked_at.is_some(),
                    created_at: row.created_at,
                });
            }
            Ok(Page {
                items,
                page,
                has_more,
            })
        }
        .await,
    )
}

/// Adds (or, negative, removes) credit: a ledger adjustment with a note.
/// Returns the new balance.
#[server(prefix = "/rpc", endpoint = "admin_credit")]
pub async fn admin_credit(user_id: String, amount: String, note: String) -> Result<i64, AppError> {
    use crate::billing::money::parse_usd;
    use crate::server_fns::context::finish;
    finish(
        async {
            let (state, admin) = require_admin().await?;
            let nanos = parse_usd(&amount).filter(|n| *n != 0).ok_or_else(|| {
                AppError::invalid(
                    "amount",
                    "Enter a non-zero amount in USD, such as 10 or -2.50.",
                )
            })?;
            let note = note.trim();
            if note.chars().count() > 500 {
                return Err(AppError::invalid(
                    "note",
                    "Keep the note under 500 characters.",
                ));
            }
            let note = if note.is_empty() {
                format!(
                    "Adjusted by {}",
                    admin.email.as_deref().unwrap_or(&admin.id)
                )
            } else {
                note.to_string()
            };
            crate::operator_api::users::adjust_credit(&state, &user_id, nanos, Some(&note)).await
        }
        .await,
    )
}

/// Blocks or unblocks a user, from their next request.
#[server(prefix = "/rpc", endpoint = "admin_block")]
pub async fn admin_block(user_id: String, blocked: bool) -> Result<(), AppError> {
    use crate::server_fns::context::finish;
    finish(
        async {
            let (state, admin) = require_admin().await?;
            if blocked && admin.id == user_id {
                return Err(AppError::invalid("user_id", "You cannot block yourself."));
            }
            crate::operator_api::users::set_blocked(&state, &user_id, blocked).await?;
            Ok(())
        }
        .await,
    )
}

/// The catalog with margins and user prices.
#[server(prefix = "/rpc", endpoint = "admin_prices")]
pub async fn admin_prices() -> Result<PriceCatalog, AppError> {
    use crate::server_fns::context::finish;
    finish(
        async {
            let (state, _) = require_admin().await?;
            let rows = crate::db::prices::all(&state.db).await?;
            let prices = rows
                .into_iter()
                .map(|row| {
                    let user = state.prices.user_price(&row.model_key);
                    AdminPrice {
                        user_input: user.map_or(0, |p| p.input),
                        user_output: user.map_or(0, |p| p.output),
                        model_key: row.model_key,
                        input: row.input_per_million,
                        output: row.output_per_million,
                        cached_input: row.cached_input_per_million,
                        cache_write: row.cache_write_per_million,
                        cache_write_1h: row.cache_write_1h_per_million,
                        margin_bp: row.margin_bp,
                    }
                })
                .collect();
            Ok(PriceCatalog {
                default_margin_bp: state.prices.default_margin_bp(),
                prices,
            })
        }
        .await,
    )
}

/// Sets a model's provider cost (USD per 1M tokens), its optional cache
/// prices (empty: unset) and optional margin (%).
#[server(prefix = "/rpc", endpoint = "admin_set_price")]
pub async fn admin_set_price(
    model_key: String,
    input: String,
    output: String,
    #[server(default)] cache_read: String,
    #[server(default)] cache_write: String,
    #[server(default)] cache_write_1h: String,
    margin_percent: String,
) -> Result<(), AppError> {
    use crate::operator_api::pricing::{checked_model_key, margin_bp, price_field, set_price};
    use crate::server_fns::context::finish;
    use serde_json::Value;
    finish(
        async {
            let (state, _) = require_admin().await?;
            let model_key = checked_model_key(&model_key)?;
            let text = |s: &str| Value::String(s.trim().to_string());
            let optional = |field: &str, s: &str| {
                (!s.trim().is_empty())
                    .then(|| price_field(field, &text(s)))
                    .transpose()
            };
            let margin = margin_percent.trim();
            let price = crate::billing::pricing::Price {
                input: price_field("input", &text(&input))?,
                output: price_field("output", &text(&output))?,
                cached_input: optional("cache_read", &cache_read)?,
                cache_write: optional("cache_write", &cache_write)?,
                cache_write_1h: optional("cache_write_1h", &cache_write_1h)?,
                margin_bp: (!margin.is_empty())
                    .then(|| margin_bp(&text(margin)))
                    .transpose()?,
            };
            set_price(&state, &model_key, &price).await
        }
        .await,
    )
}

/// Removes a model's price: it can no longer be called.
#[server(prefix = "/rpc", endpoint = "admin_delete_price")]
pub async fn admin_delete_price(model_key: String) -> Result<(), AppError> {
    use crate::server_fns::context::finish;
    finish(
        async {
            let (state, _) = require_admin().await?;
            crate::operator_api::pricing::remove_price(&state, &model_key).await
        }
        .await,
    )
}

/// The audit of the books and the reconciliation by provider and day, over
/// the last `days` UTC days (0: all time), as `llm-gateway audit` reports it.
#[server(prefix = "/rpc", endpoint = "admin_reconciliation")]
pub async fn admin_reconciliation(
    days: u32,
) -> Result<crate::billing::audit::AuditReport, AppError> {
    use crate::server_fns::context::finish;
    finish(
        async {
            let (state, _) = require_admin().await?;
            let now = state.clock.now_ms();
            let since = crate::billing::audit::since(now, i64::from(days));
            Ok(crate::billing::audit::run(&state.db, now, since).await?)
        }
        .await,
    )
}

/// The configured providers and each one's latest upstream failure.
#[server(prefix = "/rpc", endpoint = "admin_providers")]
pub async fn admin_providers() -> Result<Vec<ProviderStatus>, AppError> {
    use crate::config::ProviderKind;
    use crate::server_fns::context::finish;
    finish(
        async {
            let (state, _) = require_admin().await?;
            let failures = state.recorder.metrics().last_upstream_errors();
            let priced = state.models.catalog_keys();
            Ok(state
                .config
                .providers
                .iter()
                .map(|(name, provider)| {
                    let kind = provider.kind.or_else(|| ProviderKind::from_name(name));
                    ProviderStatus {
                        name: name.clone(),
                        kind: kind.map_or("unknown", ProviderKind::as_str).to_string(),
                        api_base: provider
                            .api_base
                            .clone()
                            .unwrap_or_else(|| "(the provider's official API)".into()),
                        priced_models: priced
                            .iter()
                            .filter(|key| key.split_once(':').is_some_and(|(p, _)| p == name))
                            .count(),
                        last_error: failures.get(name).map(|f| ProviderError {
                            at: f.at,
                            kind: f.kind.clone(),
                            message: f.message.clone(),
                        }),
                    }
                })
                .collect())
        }
        .await,
    )
}

/// One Stripe webhook event as the admin pages list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeEventLine {
    pub id: String,
    pub kind: String,
    pub received_at: i64,
    /// `credited`, `refund`, `dispute`, `dispute_won`, `deferred`,
    /// `applied_late`, `ignored`, `amount_mismatch`, …
    pub outcome: String,
    pub payment_id: Option<String>,
    pub detail: Option<String>,
}

/// Every user's payments, newest first.
#[server(prefix = "/rpc", endpoint = "admin_payments")]
pub async fn admin_payments(
    page: u32,
) -> Result<Page<crate::server_fns::billing::PaymentLine>, AppError> {
    use crate::server_fns::billing::{payment_line, PAGE_SIZE};
    use crate::server_fns::context::finish;
    finish(
        async {
            let (state, _) = require_admin().await?;
            let offset = i64::from(page) * i64::from(PAGE_SIZE);
            let mut rows =
                crate::db::payments::list_all(&state.db, i64::from(PAGE_SIZE) + 1, offset).await?;
            let has_more = rows.len() > PAGE_SIZE as usize;
            rows.truncate(PAGE_SIZE as usize);
            Ok(Page {
                items: rows
                    .into_iter()
                    .map(|row| payment_line(row.payment, row.email))
                    .collect(),
                page,
                has_more,
            })
        }
        .await,
    )
}

/// The latest Stripe webhook events and what each did.
#[server(prefix = "/rpc", endpoint = "admin_stripe_events")]
pub async fn admin_stripe_events() -> Result<Vec<StripeEventLine>, AppError> {
    use crate::server_fns::context::finish;
    finish(
        async {
            let (state, _) = require_admin().await?;
            let events = crate::db::payments::events(&state.db, 100, 0).await?;
            Ok(events
                .into_iter()
                .map(|e| StripeEventLine {
                    id: e.id,
                    kind: e.kind,
                    received_at: e.received_at,
                    outcome: e.outcome,
                    payment_id: e.payment_id,
                    detail: e.detail,
                })
                .collect())
        }
        .await,
    )
}
