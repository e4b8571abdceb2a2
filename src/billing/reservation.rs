//! The reservation policy: before a request is forwarded, the most it can
//! cost (its estimate) is held of each budget it falls under and then of
//! the balance, so that requests in flight together never hold more than
//! there is. A call that costs more than its estimate is still charged in
//! full when it settles (see `batch`).

use super::budget::{window_at, BudgetLimit};
use super::meter::Meter;
use super::money::format_usd;
use super::recorder::UsageRecorder;
use crate::db::{budgets, Db};
use crate::error::AppError;

/// A reservation outlives any request; past this it is released by the sweeper.
pub const RESERVATION_TTL_MS: i64 = 60 * 60 * 1000;

/// Holds the most the request can cost, from its budgets and then from the
/// balance: 402 `budget_exceeded` or `insufficient_credits` when either
/// cannot cover it. Free requests hold nothing.
pub async fn reserve(
    recorder: &UsageRecorder,
    budgets: &[BudgetLimit],
    meter: &mut Meter,
    prompt_tokens: i64,
    max_output: i64,
) -> Result<(), AppError> {
    let estimate = meter.estimate(prompt_tokens, max_output);
    if estimate == 0 {
        return Ok(());
    }
    let now = recorder.clock().now_ms();
    if !budgets.is_empty() {
        let held = recorder
            .reserve_budgets(
                meter.request_id(),
                meter.user_id(),
                budgets,
                estimate,
                RESERVATION_TTL_MS,
            )
            .await?;
        let Some(held) = held else {
            return Err(budget_exceeded(recorder.db(), budgets, estimate, now).await);
        };
        meter.hold_budgets(estimate, held.into());
    }
    if let Some(held_by) = recorder
        .reserve(
            meter.request_id(),
            meter.user_id(),
            estimate,
            RESERVATION_TTL_MS,
        )
        .await?
    {
        meter.hold(estimate, held_by);
        return Ok(());
    }
    let (_, available) = recorder.balance(meter.user_id()).await?;
    Err(AppError::PaymentRequired {
        message: format!(
            "Insufficient credits: this request may cost up to ${}, and the available balance is ${}. Add credits to continue.",
            format_usd(estimate),
            format_usd(available)
        ),
        code: "insufficient_credits".into(),
    })
}

/// The 402 for a refused budget, naming the tightest one.
async fn budget_exceeded(db: &Db, limits: &[BudgetLimit], estimate: i64, now: i64) -> AppError {
    let mut tightest: Option<(&BudgetLimit, i64)> = None;
    for limit in limits {
        let spent = match budgets::window(db, &limit.scope).await {
            Ok(Some((start, spent))) => window_at(limit.period, start, spent, now).0,
            _ => 0,
        };
        let left = limit.max - spent;
        if tightest.is_none_or(|(_, l)| left < l) {
            tightest = Some((limit, left));
        }
    }
    let (limit, left) = tightest.map_or((String::from("the budget"), 0), |(l, left)| {
        (l.describe(&format_usd(l.max)), left)
    });
    AppError::PaymentRequired {
        message: format!(
            "Budget exceeded: this request may cost up to ${}, more than {limit} has free now (${} unspent, less what requests in flight hold).",
            format_usd(estimate),
            format_usd(left.max(0)),
        ),
        code: "budget_exceeded".into(),
    }
}
