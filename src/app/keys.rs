//! `/dashboard/keys`: create, list and revoke API keys, and set the limits
//! each key is held to (a monthly cap, allowed models, an expiry).

use super::resource;
use leptos::html::Input;
use leptos::prelude::*;
use leptos_meta::Title;

use super::ErrorMessage;
use crate::format;
use crate::server_fns::keys::{list_keys, CreateKey, RevokeKey, UpdateKeyLimits};
use crate::server_fns::models::model_catalog;
use crate::server_fns::{CreatedKey, KeyLimits, KeyStatus, KeyView, OperatorLimits};

/// The actions the key list's rows take.
#[derive(Clone, Copy)]
struct RowActions {
    revoke: ServerAction<RevokeKey>,
    update: ServerAction<UpdateKeyLimits>,
    /// The models the gateway serves, as `provider:model`.
    models: Signal<Vec<String>>,
}

/// The API keys page.
#[component]
pub fn KeysPage() -> impl IntoView {
    let create = ServerAction::<CreateKey>::new();
    let revoke = ServerAction::<RevokeKey>::new();
    let update = ServerAction::<UpdateKeyLimits>::new();
    let keys = resource(
        move || {
            (
                create.version().get(),
                revoke.version().get(),
                update.version().get(),
            )
        },
        |_| list_keys(),
    );
    let catalog = resource(|| (), |_| model_catalog());
    let models = Signal::derive(move || {
        catalog
            .get()
            .and_then(Result::ok)
            .map(|list| list.into_iter().map(|m| m.id).collect())
            .unwrap_or_default()
    });
    let actions = RowActions {
        revoke,
        update,
        models,
    };
    let create_error = Signal::derive(move || create.value().get().and_then(Result::err));
    let revoke_error = Signal::derive(move || revoke.value().get().and_then(Result::err));
    let update_error = Signal::derive(move || update.value().get().and_then(Result::err));
    let created = Signal::derive(move || create.value().get().and_then(Result::ok));

    view! {
        <Title text="API keys" />
        <h1>"API keys"</h1>
        <section class="card">
            <h2>"Create a key"</h2>
            <ActionForm action=create attr:class="form">
                <label for="key-name">"Key name"</label>
                <input id="key-name" name="name" maxlength="64" placeholder="e.g. production" required />
                <details>
                    <summary>"Limits (optional)"</summary>
                    <LimitFields id_prefix="new".to_string() limits=KeyLimits::default() models />
                </details>
                <button type="submit" class="button primary" disabled=move || create.pending().get()>
                    "Create key"
                </button>
            </ActionForm>
            <ErrorMessage error=create_error />
            {move || created.get().map(|created| view! { <NewKeyNotice created /> })}
        </section>
        <section class="card">
            <h2>"Your keys"</h2>
            <ErrorMessage error=revoke_error />
            <ErrorMessage error=update_error />
            <Transition fallback=|| view! { <p class="loading">"Loading keys…"</p> }>
                {move || Suspend::new(async move {
                    match keys.await {
                        Ok(list) if list.is_empty() => {
                            view! { <p class="muted">"No keys yet."</p> }.into_any()
                        }
                        Ok(list) => view! { <KeyTable keys=list actions /> }.into_any(),
                        Err(err) => view! {
                            <p class="form-error" role="alert">{err.to_string()}</p>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// The three limit fields, filled with `limits`, their ids starting with
/// `id_prefix`.
#[component]
fn LimitFields(id_prefix: String, limits: KeyLimits, models: Signal<Vec<String>>) -> impl IntoView {
    let cap = limits
        .monthly_cap
        .map(crate::billing::money::format_usd)
        .unwrap_or_default();
    let allowed = limits.allowed_models.unwrap_or_default().join(", ");
    let expiry = limits
        .expires_at
        .map(|ms| format::datetime(ms)[..10].to_string())
        .unwrap_or_default();
    let (cap_id, models_id, expiry_id) = (
        format!("{id_prefix}-cap"),
        format!("{id_prefix}-models"),
        format!("{id_prefix}-expiry"),
    );
    let models_input = NodeRef::<Input>::new();
    view! {
        <label for=cap_id.clone()>"Monthly spend cap (USD)"</label>
        <input id=cap_id name="monthly_cap" inputmode="decimal" placeholder="none" value=cap />
        <label for=models_id.clone()>"Allowed models"</label>
        <input id=models_id name="allowed_models" placeholder="any model, or e.g. openai:gpt-4o-mini, anthropic:*"
            value=allowed node_ref=models_input />
        <ModelChips models input=models_input />
        <label for=expiry_id.clone()>"Expires on (UTC)"</label>
        <input id=expiry_id name="expires_at" type="date" value=expiry />
        <p class="hint">
            "Empty fields mean no limit. The cap resets on the first of each month (UTC); "
            "the key stops working at the start of its expiry day."
        </p>
    }
}

/// The models the gateway serves, each a button adding it to `input`.
#[component]
fn ModelChips(models: Signal<Vec<String>>, input: NodeRef<Input>) -> impl IntoView {
    let add = move |model: String| {
        if let Some(input) = input.get() {
            let current = input.value();
            let mut list: Vec<&str> = current
                .split([',', ' '])
                .filter(|m| !m.is_empty())
                .collect();
            if !list.contains(&model.as_str()) {
                list.push(&model);
            }
            input.set_value(&list.join(", "));
        }
    };
    view! {
        <div class="model-chips">
            {move || models.get().into_iter().map(|model| {
                let label = model.clone();
                view! {
                    <button type="button" class="button small" on:click=move |_| add(model.clone())>
                        "+ " {label}
                    </button>
                }
            }).collect_view()}
        </div>
    }
}

/// The one and only display of a new key's secret.
#[component]
fn NewKeyNotice(created: CreatedKey) -> impl IntoView {
    let secret = created.secret.clone();
    let (copied, set_copied) = signal(false);
    let copy = move |_| {
        copy_to_clipboard(&secret);
        set_copied.set(true);
    };
    view! {
        <div class="new-key" role="status">
            <p>
                <strong>"Copy your new key “" {created.key.name} "” now."</strong>
                " It will not be shown again."
            </p>
            <div class="secret-row">
                <code data-testid="new-key-secret">{created.secret}</code>
                <button type="button" class="button" on:click=copy>
                    {move || if copied.get() { "Copied" } else { "Copy" }}
                </button>
            </div>
        </div>
    }
}

#[component]
fn KeyTable(keys: Vec<KeyView>, actions: RowActions) -> impl IntoView {
    view! {
        <table class="table" data-testid="keys-table">
            <thead>
                <tr>
                    <th>"Name"</th>
                    <th>"Key"</th>
                    <th>"Created"</th>
                    <th>"Last used"</th>
                    <th>"Status"</th>
                    <th>"Limits"</th>
                    <th><span class="visually-hidden">"Actions"</span></th>
                </tr>
            </thead>
            <tbody>
                {keys.into_iter().map(|key| view! { <KeyRow key actions /> }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn KeyRow(key: KeyView, actions: RowActions) -> impl IntoView {
    let active = key.status == KeyStatus::Active;
    let editable = key.status != KeyStatus::Revoked;
    let last_used = key
        .last_used_at
        .map_or_else(|| "never".to_string(), format::datetime);
    let id = key.id.clone();
    let revoke_label = format!("Revoke {}", key.name);
    let revoke = actions.revoke;
    view! {
        <tr data-key-prefix=key.prefix.clone()>
            <td>{key.name.clone()}</td>
            <td><code>{key.prefix.clone()} "…"</code></td>
            <td>{format::datetime(key.created_at)}</td>
            <td>{last_used}</td>
            <td><span class=format!("status {}", key.status.label())>{key.status.label()}</span></td>
            <td><LimitsSummary key=key.clone() /></td>
            <td>
                {active.then(|| view! {
                    <ActionForm action=revoke>
                        <input type="hidden" name="id" value=id.clone() />
                        <button type="submit" class="button danger" aria-label=revoke_label.clone()>
                            "Revoke"
                        </button>
                    </ActionForm>
                })}
            </td>
        </tr>
        {editable.then(|| view! { <EditLimitsRow key actions /> })}
    }
}

/// A key's limits in words: the owner's, this month's spend, and the
/// operator's (which apply too).
#[component]
fn LimitsSummary(key: KeyView) -> impl IntoView {
    let own = key.limits;
    let cap = match own.monthly_cap {
        Some(cap) => format!(
            "{} of {} this month",
            format::dollars(key.month_spend),
            format::dollars(cap)
        ),
        None => format!("{} this month, no cap", format::dollars(key.month_spend)),
    };
    let models = own
        .allowed_models
        .map_or_else(|| "any model".to_string(), |list| list.join(", "));
    let expiry = own.expires_at.map_or_else(
        || "no expiry".to_string(),
        |at| format!("expires {}", format::datetime(at)),
    );
    let operator = operator_summary(&key.operator);
    view! {
        <div data-testid="key-limits">
            <div>{cap}</div>
            <div class="muted">{models} " · " {expiry}</div>
            {operator.map(|text| view! { <div class="hint">"Set by the operator: " {text}</div> })}
        </div>
    }
}

/// The operator's limits in words; `None` when there are none.
fn operator_summary(limits: &OperatorLimits) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(max) = limits.max_budget {
        let period = limits
            .budget_duration_sec
            .map_or_else(|| "in all".to_string(), |s| format!("per {}", duration(s)));
        parts.push(format!("budget {} {period}", format::dollars(max)));
    }
    if let Some(models) = &limits.allowed_models {
        parts.push(format!("models {}", models.join(", ")));
    }
    if let Some(rpm) = limits.rpm_limit {
        parts.push(format!("{rpm} requests/min"));
    }
    if let Some(tpm) = limits.tpm_limit {
        parts.push(format!("{tpm} tokens/min"));
    }
    if let Some(at) = limits.expires_at {
        parts.push(format!("expires {}", format::datetime(at)));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// Seconds as the largest whole unit: `30 days`, `12 hours`, `90 seconds`.
fn duration(seconds: i64) -> String {
    for (unit, name) in [(86_400, "day"), (3_600, "hour"), (60, "minute")] {
        if seconds % unit == 0 {
            let n = seconds / unit;
            return if n == 1 {
                name.to_string()
            } else {
                format!("{n} {name}s")
            };
        }
    }
    format!("{seconds} seconds")
}

/// The row under a key with the form that sets its limits.
#[component]
fn EditLimitsRow(key: KeyView, actions: RowActions) -> impl IntoView {
    let id_prefix = format!("limits-{}", key.id);
    view! {
        <tr class="limits-row">
            <td colspan="7">
                <details>
                    <summary>"Edit limits of “" {key.name.clone()} "”"</summary>
                    <ActionForm action=actions.update attr:class="form">
                        <input type="hidden" name="id" value=key.id.clone() />
                        <LimitFields id_prefix limits=key.limits models=actions.models />
                        <button type="submit" class="button" disabled=move || actions.update.pending().get()>
                            "Save limits"
                        </button>
                    </ActionForm>
                </details>
            </td>
        </tr>
    }
}

#[cfg(feature = "hydrate")]
fn copy_to_clipboard(text: &str) {
    if let Some(window) = web_sys::window() {
        let _ = window.navigator().clipboard().write_text(text);
    }
}

#[cfg(not(feature = "hydrate"))]
fn copy_to_clipboard(_text: &str) {}
