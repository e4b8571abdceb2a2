//! `/dashboard/keys`: create, list and revoke API keys.

use leptos::prelude::*;
use leptos_meta::Title;

use super::ErrorMessage;
use crate::format;
use crate::server_fns::keys::{list_keys, CreateKey, RevokeKey};
use crate::server_fns::{CreatedKey, KeyStatus, KeyView};

/// The API keys page.
#[component]
pub fn KeysPage() -> impl IntoView {
    let create = ServerAction::<CreateKey>::new();
    let revoke = ServerAction::<RevokeKey>::new();
    let keys = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| list_keys(),
    );
    let create_error = Signal::derive(move || create.value().get().and_then(Result::err));
    let revoke_error = Signal::derive(move || revoke.value().get().and_then(Result::err));
    let created = Signal::derive(move || create.value().get().and_then(Result::ok));

    view! {
        <Title text="API keys" />
        <h1>"API keys"</h1>
        <section class="card">
            <h2>"Create a key"</h2>
            <ActionForm action=create attr:class="form inline">
                <label for="key-name">"Key name"</label>
                <input id="key-name" name="name" maxlength="64" placeholder="e.g. production" required />
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
            <Transition fallback=|| view! { <p class="loading">"Loading keys…"</p> }>
                {move || Suspend::new(async move {
                    match keys.await {
                        Ok(list) if list.is_empty() => {
                            view! { <p class="muted">"No keys yet."</p> }.into_any()
                        }
                        Ok(list) => view! { <KeyTable keys=list revoke /> }.into_any(),
                        Err(err) => view! {
                            <p class="form-error" role="alert">{err.to_string()}</p>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
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
fn KeyTable(keys: Vec<KeyView>, revoke: ServerAction<RevokeKey>) -> impl IntoView {
    view! {
        <table class="table" data-testid="keys-table">
            <thead>
                <tr>
                    <th>"Name"</th>
                    <th>"Key"</th>
                    <th>"Created"</th>
                    <th>"Last used"</th>
                    <th>"Status"</th>
                    <th><span class="visually-hidden">"Actions"</span></th>
                </tr>
            </thead>
            <tbody>
                {keys.into_iter().map(|key| view! { <KeyRow key revoke /> }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn KeyRow(key: KeyView, revoke: ServerAction<RevokeKey>) -> impl IntoView {
    let active = key.status == KeyStatus::Active;
    let last_used = key
        .last_used_at
        .map_or_else(|| "never".to_string(), format::datetime);
    let id = key.id.clone();
    view! {
        <tr data-key-prefix=key.prefix.clone()>
            <td>{key.name.clone()}</td>
            <td><code>{key.prefix.clone()} "…"</code></td>
            <td>{format::datetime(key.created_at)}</td>
            <td>{last_used}</td>
            <td><span class=format!("status {}", key.status.label())>{key.status.label()}</span></td>
            <td>
                {active.then(|| view! {
                    <ActionForm action=revoke>
                        <input type="hidden" name="id" value=id.clone() />
                        <button type="submit" class="button danger" aria-label=format!("Revoke {}", key.name)>
                            "Revoke"
                        </button>
                    </ActionForm>
                })}
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
