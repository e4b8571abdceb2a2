//! `/dashboard/balance`: the balance, adding credit, and the ledger.

use super::resource;
use leptos::prelude::*;
use leptos_meta::Title;

use super::alerts::LowBalanceAlert;
use super::dashboard::DebtNotice;
use super::payments::{CheckoutNotice, PaymentsTable, TopUpForm};
use crate::billing::money::format_usd;
use crate::format;
use crate::server_fns::billing::{account_summary, ledger_page, payments_page, LedgerLine};

/// The balance page.
#[component]
pub fn BalancePage() -> impl IntoView {
    let (credited, set_credited) = signal(0u32);
    let page = super::page_in_query();
    let figures = resource(move || credited.get(), |_| account_summary());
    let ledger = resource(
        move || (credited.get(), page.get()),
        |(_, page)| ledger_page(page),
    );
    let payments = resource(move || credited.get(), |_| payments_page(0));
    view! {
        <Title text="Balance" />
        <h1>"Balance"</h1>
        <CheckoutNotice />
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let figures = match figures.await {
                    Ok(f) => f,
                    Err(err) => return view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any(),
                };
                view! {
                    <section class="card">
                        <DebtNotice debt=figures.debt since=figures.in_debt_since />
                        <p class="big-figure">
                            <span class="label">"Balance"</span>
                            <strong data-testid="balance">{format::dollars(figures.balance)}</strong>
                        </p>
                        <p class="muted">
                            "Available now: $" {format_usd(figures.available)}
                            " (the rest is held for requests in flight)."
                        </p>
                        <TopUpForm terms=figures.top_up done=set_credited />
                    </section>
                }.into_any()
            })}
        </Suspense>
        <section class="card">
            <h2>"Payments"</h2>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match payments.await {
                        Ok(page) => view! { <PaymentsTable payments=page.items /> }.into_any(),
                        Err(err) => view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <section class="card">
            <h2>"History"</h2>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match ledger.await {
                        Ok(page) => view! { <LedgerTable lines=page.items page=page.page has_more=page.has_more /> }.into_any(),
                        Err(err) => view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <LowBalanceAlert />
    }
}

#[component]
fn LedgerTable(lines: Vec<LedgerLine>, page: u32, has_more: bool) -> impl IntoView {
    if lines.is_empty() && page == 0 {
        return view! { <p class="muted">"No balance changes yet."</p> }.into_any();
    }
    let rows: Vec<_> = lines
        .into_iter()
        .map(|line| {
            let sign = if line.amount < 0 { "-" } else { "+" };
            let detail = line
                .note
                .clone()
                .or(line.request_id.clone())
                .unwrap_or_default();
            view! {
                <tr>
                    <td>{format::datetime(line.created_at)}</td>
                    <td>{kind_label(&line.kind)}</td>
                    <td class="num">{format!("{sign}${}", format_usd(line.amount.abs()))}</td>
                    <td class="num">{format::dollars(line.balance_after)}</td>
                    <td class="muted">{detail}</td>
                </tr>
            }
        })
        .collect();
    view! {
        <table class="table" data-testid="ledger-table">
            <thead>
                <tr><th>"Time"</th><th>"Kind"</th><th class="num">"Amount"</th><th class="num">"Balance after"</th><th>"Detail"</th></tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
        <nav class="pager" aria-label="Pages">
            {(page > 0).then(|| view! { <a href=format!("?page={}", page - 1)>"← Newer"</a> })}
            {has_more.then(|| view! { <a href=format!("?page={}", page + 1)>"Older →"</a> })}
        </nav>
    }
    .into_any()
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "topup" => "Top-up",
        "usage" => "Usage",
        "refund" => "Refund",
        "adjustment" => "Adjustment",
        "signup_grant" => "Sign-up credit",
        "chargeback" => "Dispute",
        _ => "Other",
    }
}
