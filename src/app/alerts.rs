//! The low-balance alert's setting: a threshold in USD (empty: off), shown
//! on the balance page.

use super::resource;
use leptos::prelude::*;

use super::ErrorMessage;
use crate::billing::money::format_usd;
use crate::server_fns::account::{low_balance_alert, SetLowBalanceAlert};

/// Sets the balance below which the user gets one mail, each time it falls there.
#[component]
pub fn LowBalanceAlert() -> impl IntoView {
    let set = ServerAction::<SetLowBalanceAlert>::new();
    let current = resource(move || set.version().get(), |_| low_balance_alert());
    let error = Signal::derive(move || set.value().get().and_then(Result::err));
    view! {
        <section class="card" data-testid="low-balance-alert">
            <h2>"Low-balance alert"</h2>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let threshold = current.await.ok().flatten();
                    let text = threshold.map(format_usd).unwrap_or_default();
                    let status = match threshold {
                        Some(_) => format!("We mail you when your balance falls below ${text}."),
                        None => "Off: set an amount to get a mail when your balance falls below it.".to_string(),
                    };
                    view! {
                        <p class="muted" data-testid="low-balance-status">{status}</p>
                        <ActionForm action=set attr:class="form inline">
                            <label for="threshold">"Alert below (USD)"</label>
                            <input id="threshold" name="threshold" inputmode="decimal" placeholder="5.00" value=text />
                            <button type="submit" class="button" disabled=move || set.pending().get()>
                                "Save"
                            </button>
                        </ActionForm>
                    }
                })}
            </Suspense>
            <ErrorMessage error />
        </section>
    }
}
