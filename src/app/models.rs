//! `/models`: the public price list, per 1M tokens, margin included.

use super::resource;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use crate::billing::money::format_usd;
use crate::server_fns::models::{model_catalog, ModelPrice};

/// The public model catalog with the prices users pay.
#[component]
pub fn ModelsPage() -> impl IntoView {
    let models = resource(|| (), |_| model_catalog());
    view! {
        <Title text="Models and prices" />
        <header class="topbar">
            <A href="/" attr:class="brand">"llm-gateway"</A>
            <nav>
                <A href="/models">"Models"</A>
                <A href="/login">"Sign in"</A>
                <A href="/signup" attr:class="button">"Sign up"</A>
            </nav>
        </header>
        <main class="page">
            <h1>"Models and prices"</h1>
            <p class="muted">
                "What a request costs, in USD per million tokens. Call a model by its id, "
                "e.g. " <code>"openai:gpt-4o-mini"</code> ", from any OpenAI SDK."
            </p>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match models.await {
                        Ok(models) if models.is_empty() => view! {
                            <p class="muted">"No models are configured yet."</p>
                        }.into_any(),
                        Ok(models) => view! { <PriceTable models /> }.into_any(),
                        Err(err) => view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </main>
    }
}

#[component]
fn PriceTable(models: Vec<ModelPrice>) -> impl IntoView {
    view! {
        <table class="table" data-testid="models-table">
            <thead>
                <tr>
                    <th scope="col">"Model"</th>
                    <th scope="col" class="num">"Input / 1M"</th>
                    <th scope="col" class="num">"Cached input / 1M"</th>
                    <th scope="col" class="num">"Output / 1M"</th>
                </tr>
            </thead>
            <tbody>
                {models.into_iter().map(|m| view! {
                    <tr data-model=m.id.clone()>
                        <td><code>{m.id.clone()}</code></td>
                        <td class="num">{format!("${}", format_usd(m.input_per_million))}</td>
                        <td class="num">{format!("${}", format_usd(m.cached_input_per_million))}</td>
                        <td class="num">{format!("${}", format_usd(m.output_per_million))}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}
