//! Paying: the add-credits form (test mode or Stripe Checkout, with the fee
//! shown before paying), the notice after Checkout, the payments table, and
//! the admin page of every payment and webhook event.

use super::resource;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::ErrorMessage;
use crate::billing::money::{fee_cents, format_cents, format_usd, parse_usd};
use crate::format;
use crate::server_fns::admin::{admin_payments, admin_stripe_events, StripeEventLine};
use crate::server_fns::billing::{
    payment_receipt, PaymentLine, StartTopUp, TopUpStart, TopUpTerms,
};

/// Nano-USD in a cent.
const NANOS_PER_CENT: i64 = 10_000_000;

/// The add-credits form. In test mode the credit is added at once; with
/// Stripe the user sees the fee and the total, then goes to Checkout.
/// `done` bumps when a top-up was credited, so the page refetches.
#[component]
pub fn TopUpForm(terms: TopUpTerms, done: WriteSignal<u32>) -> impl IntoView {
    if terms.mode == "disabled" {
        return view! { <p class="hint">"To add credit, ask an operator."</p> }.into_any();
    }
    let start = ServerAction::<StartTopUp>::new();
    let amount = RwSignal::new(String::new());
    Effect::new(move |_| match start.value().get() {
        Some(Ok(TopUpStart::Checkout { url, .. })) => go_to(&url),
        Some(Ok(TopUpStart::Credited { .. })) => done.update(|n| *n += 1),
        _ => {}
    });
    let error = Signal::derive(move || start.value().get().and_then(Result::err));
    let stripe = terms.mode == "stripe";
    let currency = terms.currency.to_uppercase();
    let hint = if stripe {
        format!(
            "From {} to {} {currency}. You pay on Stripe's page; the credit appears once Stripe confirms the payment.",
            format_cents(terms.min_cents),
            format_cents(terms.max_cents),
        )
    } else {
        format!(
            "Test mode: credit is added at once, up to ${}.",
            format_cents(terms.max_cents)
        )
    };
    let fee_bp = terms.fee_bp;
    let total = move || quote_line(&amount.get(), fee_bp, &currency);
    view! {
        <ActionForm action=start attr:class="form inline">
            <label for="amount">"Amount (USD)"</label>
            <input id="amount" name="amount" inputmode="decimal" placeholder="10.00" required
                on:input=move |ev| amount.set(event_target_value(&ev)) />
            <button type="submit" class="button primary" disabled=move || start.pending().get()>
                {if stripe { "Pay with Stripe" } else { "Add credits" }}
            </button>
        </ActionForm>
        {stripe.then(|| view! { <p class="hint" data-testid="top-up-total" aria-live="polite">{total}</p> })}
        <p class="hint">{hint}</p>
        <ErrorMessage error />
    }
    .into_any()
}

/// "You pay …" for the amount typed, with the fee; empty until it parses.
fn quote_line(amount: &str, fee_bp: i64, currency: &str) -> String {
    let Some(cents) = parse_usd(amount)
        .filter(|n| *n > 0 && n % NANOS_PER_CENT == 0)
        .map(|n| n / NANOS_PER_CENT)
    else {
        return String::new();
    };
    let fee = fee_cents(cents, fee_bp);
    if fee == 0 {
        return format!("You pay {} {currency}.", format_cents(cents));
    }
    format!(
        "You pay {} {currency}: {} of credit plus a {}% processing fee of {}.",
        format_cents(cents + fee),
        format_cents(cents),
        fee_bp as f64 / 100.0,
        format_cents(fee),
    )
}

/// Sends the browser to Stripe's page.
fn go_to(url: &str) {
    #[cfg(feature = "hydrate")]
    if let Err(err) = window().location().set_href(url) {
        leptos::logging::error!("cannot open the payment page: {err:?}");
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = url;
}

/// What came of Checkout, from the `checkout` query Stripe sends back.
#[component]
pub fn CheckoutNotice() -> impl IntoView {
    let query = use_query_map();
    move || {
        match query.read().get("checkout").as_deref() {
        Some("success") => Some(view! {
            <p class="notice" role="status" data-testid="checkout-notice">
                "Thank you. Stripe is confirming your payment; the credit appears below as soon as it does."
            </p>
        }.into_any()),
        Some("cancelled") => Some(view! {
            <p class="notice" role="status" data-testid="checkout-notice">
                "Payment cancelled; nothing was charged."
            </p>
        }.into_any()),
        _ => None,
    }
    }
}

/// A table of payments; with `emails`, whose each one is (admin pages).
#[component]
pub fn PaymentsTable(payments: Vec<PaymentLine>, #[prop(optional)] emails: bool) -> impl IntoView {
    if payments.is_empty() {
        return view! { <p class="muted">"No payments yet."</p> }.into_any();
    }
    let rows: Vec<_> = payments
        .into_iter()
        .map(|p| {
            let charged = format!("{} {}", format_cents(p.charged_cents), p.currency.to_uppercase());
            let taken_back = (p.taken_back != 0).then(|| format!("-${}", format_usd(p.taken_back)));
            let receipt = match p.paid_at {
                Some(_) if !emails => view! {
                    <a href=format!("/dashboard/balance/receipt/{}", p.id)>"Receipt"</a>
                }.into_any(),
                Some(_) => view! { <code>{p.id.clone()}</code> }.into_any(),
                None => view! { <span class="muted">"—"</span> }.into_any(),
            };
            view! {
                <tr>
                    <td>{format::datetime(p.created_at)}</td>
                    {emails.then(|| view! { <td>{p.email.clone().unwrap_or_default()}</td> })}
                    <td class="num">{format!("${}", format_usd(p.credit))}</td>
                    <td class="num">{format!("${}", format_usd(p.fee))}</td>
                    <td class="num">{charged}</td>
                    <td><span class=format!("status {}", p.status)>{status_label(&p.status)}</span></td>
                    <td class="num">{taken_back.unwrap_or_default()}</td>
                    <td>{receipt}</td>
                </tr>
            }
        })
        .collect();
    view! {
        <table class="table" data-testid="payments-table">
            <thead>
                <tr>
                    <th>"Started"</th>
                    {emails.then(|| view! { <th>"User"</th> })}
                    <th class="num">"Credit"</th><th class="num">"Fee"</th><th class="num">"Charged"</th>
                    <th>"Status"</th><th class="num">"Taken back"</th><th>"Receipt"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

/// `/dashboard/balance/receipt/{id}`: one payment's receipt.
#[component]
pub fn ReceiptPage() -> impl IntoView {
    let params = leptos_router::hooks::use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let payment = resource(id, payment_receipt);
    view! {
        <Title text="Receipt" />
        <h1>"Receipt"</h1>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match payment.await {
                    Ok(p) => view! { <Receipt payment=p /> }.into_any(),
                    Err(err) => view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
        <p><a href="/dashboard/balance">"← Balance"</a></p>
    }
}

#[component]
fn Receipt(payment: PaymentLine) -> impl IntoView {
    let currency = payment.currency.to_uppercase();
    let rows = [
        ("Payment", payment.id.clone()),
        (
            "Paid",
            payment
                .paid_at
                .map(format::datetime)
                .unwrap_or_else(|| "—".into()),
        ),
        ("Account", payment.email.clone().unwrap_or_default()),
        ("Credit added", format!("${}", format_usd(payment.credit))),
        ("Processing fee", format!("${}", format_usd(payment.fee))),
        (
            "Charged",
            format!("{} {currency}", format_cents(payment.charged_cents)),
        ),
        ("Status", status_label(&payment.status).to_string()),
        ("Taken back", format!("${}", format_usd(payment.taken_back))),
    ];
    view! {
        <section class="card" data-testid="receipt">
            <dl class="facts">
                {rows.into_iter().map(|(label, value)| view! { <dt>{label}</dt><dd>{value}</dd> }).collect_view()}
            </dl>
            {payment.receipt_url.map(|url| view! {
                <p><a href=url rel="noopener" target="_blank">"Stripe's receipt"</a></p>
            })}
        </section>
    }
}

/// A payment status in words.
pub fn status_label(status: &str) -> &'static str {
    match status {
        "open" => "Awaiting payment",
        "paid" => "Paid",
        "failed" => "Failed",
        "expired" => "Expired",
        "refunded" => "Refunded",
        "partially_refunded" => "Partly refunded",
        "disputed" => "Disputed",
        "amount_mismatch" => "Amount mismatch",
        _ => "Other",
    }
}

/// `/dashboard/admin/payments`: every payment, and Stripe's latest events.
#[component]
pub fn AdminPaymentsPage() -> impl IntoView {
    let page = super::page_in_query();
    let payments = resource(move || page.get(), admin_payments);
    let events = resource(|| (), |_| admin_stripe_events());
    view! {
        <Title text="Payments" />
        <h1>"Payments"</h1>
        <section class="card">
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match payments.await {
                        Ok(found) => view! {
                            <PaymentsTable payments=found.items emails=true />
                            <nav class="pager" aria-label="Pages">
                                {(found.page > 0).then(|| view! { <a href=format!("?page={}", found.page - 1)>"← Newer"</a> })}
                                {found.has_more.then(|| view! { <a href=format!("?page={}", found.page + 1)>"Older →"</a> })}
                            </nav>
                        }.into_any(),
                        Err(err) => view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <section class="card">
            <h2>"Stripe events"</h2>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match events.await {
                        Ok(events) => view! { <EventsTable events /> }.into_any(),
                        Err(err) => view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn EventsTable(events: Vec<StripeEventLine>) -> impl IntoView {
    if events.is_empty() {
        return view! { <p class="muted">"No events from Stripe yet."</p> }.into_any();
    }
    let rows: Vec<_> = events
        .into_iter()
        .map(|e| {
            view! {
                <tr>
                    <td>{format::datetime(e.received_at)}</td>
                    <td><code>{e.kind}</code></td>
                    <td>{e.outcome}</td>
                    <td><code>{e.payment_id.unwrap_or_default()}</code></td>
                    <td class="muted">{e.detail.unwrap_or_default()}</td>
                    <td><code>{e.id}</code></td>
                </tr>
            }
        })
        .collect();
    view! {
        <table class="table" data-testid="stripe-events">
            <thead>
                <tr><th>"Received"</th><th>"Type"</th><th>"Outcome"</th><th>"Payment"</th><th>"Detail"</th><th>"Event"</th></tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::quote_line;

    #[test]
    fn the_total_shows_the_fee_before_paying() {
        assert_eq!(
            quote_line("10", 300, "USD"),
            "You pay 10.30 USD: 10.00 of credit plus a 3% processing fee of 0.30."
        );
        assert_eq!(quote_line("10", 0, "USD"), "You pay 10.00 USD.");
        assert_eq!(quote_line("10.001", 300, "USD"), "");
        assert_eq!(quote_line("", 300, "USD"), "");
    }
}
