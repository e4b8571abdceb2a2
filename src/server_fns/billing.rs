//! Balance, ledger, top-ups and usage, for the signed-in user. Amounts are
//! nano-USD integers; the client formats them with `billing::money`.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// The overview's figures, in nano-USD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AccountFigures {
    /// Below zero when the user owes.
    pub balance: i64,
    pub available: i64,
    /// What the user owes (usage that cost more than the balance held),
    /// and since when; zero and `None` when the balance is not negative.
    pub debt: i64,
    pub in_debt_since: Option<i64>,
    pub spend_today: i64,
    pub spend_month: i64,
    pub requests_month: i64,
    pub tokens_month: i64,
    /// Whether users may add credit themselves (`payments: {mode: test}`).
    pub self_top_up: bool,
    /// How users add credit here, with the bounds and fee.
    pub top_up: TopUpTerms,
}

/// How users add credit: `test` (credited at once), `stripe` (through
/// Stripe Checkout) or `disabled`, with the bounds (in cents of
/// `currency`) and the processing fee (basis points) shown before paying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TopUpTerms {
    pub mode: String,
    pub currency: String,
    pub min_cents: i64,
    pub max_cents: i64,
    pub fee_bp: i64,
}

/// What starting a top-up did: credited at once (test mode), or a
/// Checkout page to send the user to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TopUpStart {
    /// Test mode: the new balance, in nano-USD.
    Credited { balance: i64 },
    /// Stripe: the Checkout page's URL and the payment's id. Credit
    /// follows when Stripe reports the payment.
    Checkout { url: String, payment_id: String },
}

/// One payment as the balance page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PaymentLine {
    pub id: String,
    pub created_at: i64,
    pub paid_at: Option<i64>,
    /// `open`, `paid`, `failed`, `expired`, `refunded`,
    /// `partially_refunded`, `disputed` or `amount_mismatch`.
    pub status: String,
    /// The credit bought and the fee, in nano-USD.
    pub credit: i64,
    pub fee: i64,
    /// What the card was charged, in cents of `currency`.
    pub charged_cents: i64,
    pub currency: String,
    /// What refunds and disputes took back, in nano-USD.
    pub taken_back: i64,
    /// Stripe's receipt, once Stripe has sent it.
    pub receipt_url: Option<String>,
    /// The user's email (admin lists only).
    pub email: Option<String>,
}

/// One ledger entry as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerLine {
    pub id: String,
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub request_id: Option<String>,
    pub note: Option<String>,
    pub created_at: i64,
}

/// A page of something, with whether more follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub has_more: bool,
}

/// Daily spend by model over the last 30 days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendSeries {
    /// Start of today (UTC), epoch milliseconds.
    pub today: i64,
    pub points: Vec<SpendPoint>,
}

/// Spend of one model on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendPoint {
    /// Start of the day, epoch milliseconds.
    pub day: i64,
    pub model: String,
    pub cost: i64,
}

/// One request in the usage table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UsageLine {
    pub id: String,
    pub created_at: i64,
    pub key_prefix: Option<String>,
    /// `chat.completions`, `embeddings` or `playground`.
    pub endpoint: String,
    pub model: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Prompt tokens read from the cache, and written to it for 5 minutes
    /// and for an hour (parts of `prompt_tokens`).
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cache_write_1h_tokens: i64,
    /// How the tokens were known: `upstream`, `local_count`,
    /// `client_aborted`, `upstream_cut` or `shutdown`.
    pub tokens_source: String,
    pub cost: i64,
    pub latency_ms: i64,
    pub status: i32,
}

impl UsageLine {
    /// Where the request came from: the key's prefix, the playground, or the master key.
    pub fn source(&self) -> String {
        match (&self.key_prefix, self.endpoint.as_str()) {
            (Some(prefix), _) => format!("{prefix}…"),
            (None, "playground") => "playground".into(),
            (None, _) => "master key".into(),
        }
    }
}

/// The usage page: rows plus what the filters can offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UsageView {
    pub rows: Page<UsageLine>,
    /// (key id, display prefix, name)
    pub keys: Vec<(String, String, String)>,
    pub models: Vec<String>,
}

/// The usage page's filters and page number: the page's query, and
/// `GET /api/usage`'s query string. Empty filters match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "ssr", into_params(parameter_in = Query))]
#[serde(default)]
pub struct UsageQuery {
    /// The first day, `YYYY-MM-DD` (UTC).
    pub from: String,
    /// The last day, `YYYY-MM-DD` (UTC), included.
    pub to: String,
    /// A key's id.
    pub key: String,
    /// A model, `provider:model`.
    pub model: String,
    /// The page, from 0; 50 rows a page.
    pub page: u32,
}

/// Rows per page in the dashboard's tables.
pub const PAGE_SIZE: u32 = 50;
/// The largest self-service top-up, in USD.
pub const MAX_TOP_UP_USD: i64 = 1000;

#[cfg(feature = "ssr")]
mod server {
    use super::*;
    use crate::db::{keys, usage};

    /// Parses `YYYY-MM-DD` as midnight UTC in epoch milliseconds.
    pub fn parse_day(field: &str, value: &str) -> Result<Option<i64>, AppError> {
        if value.trim().is_empty() {
            return Ok(None);
        }
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let date = time::Date::parse(value.trim(), &format)
            .map_err(|_| AppError::invalid(field, "Use a date like 2026-11-23."))?;
        Ok(Some(date.midnight().assume_utc().unix_timestamp() * 1000))
    }

    /// Builds a usage filter from the page's query values.
    pub fn filter(from: &str, to: &str, key: &str, model: &str) -> Result<usage::Filter, AppError> {
        let day = 86_400_000;
        Ok(usage::Filter {
            from_ms: parse_day("from", from)?,
            to_ms: parse_day("to", to)?.map(|t| t + day),
            key_id: Some(key.to_string()).filter(|k| !k.is_empty()),
            model: Some(model.to_string()).filter(|m| !m.is_empty()),
        })
    }

    /// Rows for a filter, with key prefixes resolved.
    pub async fn usage_lines(
        db: &crate::db::Db,
        user_id: &str,
        filter: &usage::Filter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<UsageLine>, Vec<keys::KeyRow>), AppError> {
        let records = usage::list_for_user(db, user_id, filter, limit, offset).await?;
        let keys = keys::list_for_user(db, user_id).await?;
        let prefix = |id: &Option<String>| {
            id.as_ref()
                .and_then(|id| keys.iter().find(|k| &k.id == id))
                .map(|k| k.key_prefix.clone())
        };
        let lines = records
            .into_iter()
            .map(|r| UsageLine {
                key_prefix: prefix(&r.key_id),
                id: r.id,
                endpoint: r.endpoint,
                created_at: r.created_at,
                model: r.model,
                prompt_tokens: r.prompt_tokens,
                completion_tokens: r.completion_tokens,
                cache_read_tokens: r.cached_tokens,
                cache_write_tokens: r.cache_write_tokens,
                cache_write_1h_tokens: r.cache_write_1h_tokens,
                tokens_source: r.tokens_source,
                cost: r.cost,
                latency_ms: r.latency_ms,
                status: r.status,
            })
            .collect();
        Ok((lines, keys))
    }
}

#[cfg(feature = "ssr")]
pub use server::{filter as usage_filter, usage_lines};

/// The signed-in user's balance and this month's figures.
#[server(prefix = "/rpc", endpoint = "account_summary")]
pub async fn account_summary() -> Result<AccountFigures, AppError> {
    use crate::server_fns::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            figures_for(&state, &user.id).await
        }
        .await,
    )
}

/// `user_id`'s balance, debt and spend: the overview and `GET /api/balance`
/// both call this.
#[cfg(feature = "ssr")]
pub async fn figures_for(
    state: &crate::state::AppState,
    user_id: &str,
) -> Result<AccountFigures, AppError> {
    use crate::billing::budget::day_and_month_starts;
    use crate::db::usage;

    let (day, month) = day_and_month_starts(state.clock.now_ms());
    let today = usage::user_totals(&state.db, user_id, day).await?;
    let this_month = usage::user_totals(&state.db, user_id, month).await?;
    let (balance, available) = state.recorder.balance(user_id).await?;
    let debt = crate::db::ledger::debt(&state.db, user_id).await?;
    Ok(AccountFigures {
        balance,
        available,
        debt: balance.min(0).abs(),
        in_debt_since: debt.map(|d| d.since),
        spend_today: today.cost,
        spend_month: this_month.cost,
        requests_month: this_month.requests,
        tokens_month: this_month.prompt_tokens + this_month.completion_tokens,
        self_top_up: state.config.payments.mode == crate::config::PaymentMode::Test,
        top_up: terms(&state.config.payments),
    })
}

/// The top-up terms of `payments`.
#[cfg(feature = "ssr")]
fn terms(payments: &crate::config::PaymentsConfig) -> TopUpTerms {
    use crate::config::PaymentMode;
    let (mode, min_cents, max_cents) = match payments.mode {
        PaymentMode::Test => ("test", 1, MAX_TOP_UP_USD * 100),
        PaymentMode::Stripe => (
            "stripe",
            (payments.min_usd * 100.0).round() as i64,
            (payments.max_usd * 100.0).round() as i64,
        ),
        PaymentMode::Disabled => ("disabled", 0, 0),
    };
    TopUpTerms {
        mode: mode.into(),
        currency: payments.currency.clone(),
        min_cents,
        max_cents,
        fee_bp: match payments.mode {
            PaymentMode::Stripe => crate::billing::percent_to_bp(payments.fee_percent),
            _ => 0,
        },
    }
}

/// Daily spend by model over the last 30 days.
#[server(prefix = "/rpc", endpoint = "daily_spend")]
pub async fn daily_spend() -> Result<SpendSeries, AppError> {
    use crate::server_fns::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            let day = 86_400_000;
            let today = state.clock.now_ms() / day * day;
            let since = today - 29 * day;
            let rows = crate::db::usage::daily_spend(&state.db, &user.id, since).await?;
            Ok(SpendSeries {
                today,
                points: rows
                    .into_iter()
                    .map(|(day, model, cost)| SpendPoint { day, model, cost })
                    .collect(),
            })
        }
        .await,
    )
}

/// A page of the signed-in user's ledger, newest first.
#[server(prefix = "/rpc", endpoint = "ledger_page")]
pub async fn ledger_page(page: u32) -> Result<Page<LedgerLine>, AppError> {
    use crate::server_fns::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            let offset = i64::from(page) * i64::from(PAGE_SIZE);
            let mut entries =
                crate::db::ledger::entries(&state.db, &user.id, i64::from(PAGE_SIZE) + 1, offset)
                    .await?;
            let has_more = entries.len() > PAGE_SIZE as usize;
            entries.truncate(PAGE_SIZE as usize);
            Ok(Page {
                items: entries
                    .into_iter()
                    .map(|e| LedgerLine {
                        id: e.id,
                        kind: e.kind,
                        amount: e.amount,
                        balance_after: e.balance_after,
                        request_id: e.request_id,
                        note: e.note,
                        created_at: e.created_at,
                    })
                    .collect(),
                page,
                has_more,
            })
        }
        .await,
    )
}

/// Starts adding `amount` USD of credit: at once in test mode, through a
/// Stripe Checkout page in stripe mode.
#[server(prefix = "/rpc", endpoint = "start_top_up")]
pub async fn start_top_up(amount: String) -> Result<TopUpStart, AppError> {
    use crate::server_fns::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            let headers = use_context::<http::request::Parts>().map(|parts| parts.headers);
            let origin = site_origin(&state.config, headers.as_ref());
            let started = begin_top_up(&state, &user, &amount, &origin).await?;
            // A form posted without JavaScript goes to Checkout at once.
            let form_post = headers
                .as_ref()
                .and_then(|h| h.get(http::header::ACCEPT))
                .and_then(|v| v.to_str().ok())
                .is_some_and(|accept| accept.contains("text/html"));
            if let (true, TopUpStart::Checkout { url, .. }) = (form_post, &started) {
                leptos_axum::redirect(url);
            }
            Ok(started)
        }
        .await,
    )
}

/// Where the site is reached: `public_url`, else the request's `Host`.
#[cfg(feature = "ssr")]
pub fn site_origin(config: &crate::config::Config, headers: Option<&http::HeaderMap>) -> String {
    if let Some(url) = &config.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .and_then(|h| h.get(http::header::HOST))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}:{}", config.host, config.port));
    format!("http://{host}")
}

/// Starts a top-up of `amount` USD for `user`: the balance page and
/// `POST /api/balance/charge` both call this. `origin` is where Checkout
/// sends the user back to.
#[cfg(feature = "ssr")]
pub async fn begin_top_up(
    state: &crate::state::AppState,
    user: &crate::db::users::UserRow,
    amount: &str,
    origin: &str,
) -> Result<TopUpStart, AppError> {
    use crate::config::PaymentMode;
    crate::auth::verified::ensure_verified(&state.config, user)?;
    match state.config.payments.mode {
        PaymentMode::Stripe => checkout(state, user, amount, origin).await,
        _ => Ok(TopUpStart::Credited {
            balance: top_up(state, &user.id, amount).await?,
        }),
    }
}

/// Opens a payment and its Checkout Session.
#[cfg(feature = "ssr")]
async fn checkout(
    state: &crate::state::AppState,
    user: &crate::db::users::UserRow,
    amount: &str,
    origin: &str,
) -> Result<TopUpStart, AppError> {
    use crate::billing::payments::quote;
    use crate::billing::stripe_api::CheckoutRequest;
    use crate::db::payments::{self, NewPayment};

    let payments_config = &state.config.payments;
    let quote = quote(payments_config, amount)?;
    let stripe = state.stripe.as_ref().ok_or(AppError::Internal)?;
    let now = state.clock.now_ms();
    let payment_id = format!("pay_{}", uuid::Uuid::now_v7().simple());
    payments::create(
        &state.db,
        &NewPayment {
            id: &payment_id,
            user_id: &user.id,
            credit: quote.credit(),
            fee: quote.fee(),
            charged_cents: quote.charged_cents(),
            currency: &payments_config.currency,
            now,
        },
    )
    .await?;
    let request = CheckoutRequest {
        payment_id: payment_id.clone(),
        user_id: user.id.clone(),
        email: user.email.clone(),
        currency: payments_config.currency.clone(),
        credit_cents: quote.credit_cents,
        fee_cents: quote.fee_cents,
        success_url: format!("{origin}/dashboard/balance?checkout=success"),
        cancel_url: format!("{origin}/dashboard/balance?checkout=cancelled"),
    };
    match stripe.create_checkout_session(&request).await {
        Ok(session) => {
            payments::attach_session(&state.db, &payment_id, &session.id, now).await?;
            tracing::info!(%payment_id, user_id = %user.id, session_id = %session.id, "checkout started");
            Ok(TopUpStart::Checkout {
                url: session.url,
                payment_id,
            })
        }
        Err(err) => {
            tracing::error!(%err, %payment_id, "creating a Checkout Session failed");
            payments::mark_failed(&state.db, &payment_id, now).await?;
            Err(AppError::BadGateway(
                "The payment page could not be opened; try again in a moment.".into(),
            ))
        }
    }
}

/// A page of the signed-in user's payments, newest first.
#[server(prefix = "/rpc", endpoint = "payments_page")]
pub async fn payments_page(page: u32) -> Result<Page<PaymentLine>, AppError> {
    use crate::server_fns::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            let offset = i64::from(page) * i64::from(PAGE_SIZE);
            let mut rows = crate::db::payments::list_for_user(
                &state.db,
                &user.id,
                i64::from(PAGE_SIZE) + 1,
                offset,
            )
            .await?;
            let has_more = rows.len() > PAGE_SIZE as usize;
            rows.truncate(PAGE_SIZE as usize);
            Ok(Page {
                items: rows
                    .into_iter()
                    .map(|row| payment_line(row, None))
                    .collect(),
                page,
                has_more,
            })
        }
        .await,
    )
}

/// One of the signed-in user's payments, for its receipt page.
#[server(prefix = "/rpc", endpoint = "payment_receipt")]
pub async fn payment_receipt(id: String) -> Result<PaymentLine, AppError> {
    use crate::server_fns::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            let row = crate::db::payments::find_for_user(&state.db, &user.id, &id)
                .await?
                .ok_or_else(|| AppError::NotFound("No such payment.".into()))?;
            Ok(payment_line(row, user.email))
        }
        .await,
    )
}

/// A stored payment as listed.
#[cfg(feature = "ssr")]
pub fn payment_line(row: crate::db::payments::PaymentRow, email: Option<String>) -> PaymentLine {
    PaymentLine {
        id: row.id,
        created_at: row.created_at,
        paid_at: row.paid_at,
        status: row.status,
        credit: row.credit,
        fee: row.fee,
        charged_cents: row.charged_cents,
        currency: row.currency,
        taken_back: row.taken_back,
        receipt_url: row.receipt_url,
        email,
    }
}

/// Credits `user_id` with `amount` USD (decimal text, 0.01 to
/// [`MAX_TOP_UP_USD`]) in `payments: {mode: test}`, and refuses otherwise;
/// returns the new balance in nano-USD ([`begin_top_up`] calls this).
#[cfg(feature = "ssr")]
async fn top_up(
    state: &crate::state::AppState,
    user_id: &str,
    amount: &str,
) -> Result<i64, AppError> {
    use crate::billing::money::{parse_usd, NANOS_PER_USD};
    use crate::db::ledger::{self, EntryKind};

    if state.config.payments.mode != crate::config::PaymentMode::Test {
        return Err(AppError::Forbidden(
            "Adding credit yourself is not enabled on this gateway; ask an operator.".into(),
        ));
    }
    let nanos = parse_usd(amount)
        .filter(|n| *n >= NANOS_PER_USD / 100 && *n <= MAX_TOP_UP_USD * NANOS_PER_USD)
        .ok_or_else(|| {
            AppError::invalid(
                "amount",
                format!("Enter an amount from 0.01 to {MAX_TOP_UP_USD} USD."),
            )
        })?;
    let balance = ledger::credit(
        &state.db,
        user_id,
        EntryKind::TopUp,
        nanos,
        Some("Test-mode top-up"),
        state.clock.now_ms(),
    )
    .await
    .map_err(|err| {
        tracing::error!(%err, "top-up failed");
        AppError::Internal
    })?;
    state.recorder.credited(user_id, nanos);
    Ok(balance)
}

/// A page of the signed-in user's requests, filtered.
#[server(prefix = "/rpc", endpoint = "usage_page")]
pub async fn usage_page(
    from: String,
    to: String,
    key: String,
    model: String,
    page: u32,
) -> Result<UsageView, AppError> {
    use crate::server_fns::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            let query = UsageQuery {
                from,
                to,
                key,
                model,
                page,
            };
            usage_for(&state, &user.id, &query).await
        }
        .await,
    )
}

/// A page of `user_id`'s requests, filtered, with the keys and models the
/// filters offer: the usage page and `GET /api/usage` both call this.
#[cfg(feature = "ssr")]
pub async fn usage_for(
    state: &crate::state::AppState,
    user_id: &str,
    query: &UsageQuery,
) -> Result<UsageView, AppError> {
    let filter = server::filter(&query.from, &query.to, &query.key, &query.model)?;
    let offset = i64::from(query.page) * i64::from(PAGE_SIZE);
    let (mut rows, keys) = server::usage_lines(
        &state.db,
        user_id,
        &filter,
        i64::from(PAGE_SIZE) + 1,
        offset,
    )
    .await?;
    let has_more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    let models = crate::db::usage::models_for_user(&state.db, user_id).await?;
    Ok(UsageView {
        rows: Page {
            items: rows,
            page: query.page,
            has_more,
        },
        keys: keys
            .into_iter()
            .map(|k| (k.id, k.key_prefix, k.name))
            .collect(),
        models,
    })
}
