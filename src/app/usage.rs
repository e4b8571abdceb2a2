//! `/dashboard/usage`: the signed-in user's requests, filtered and paged, with CSV export.

use super::resource;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Form;
use leptos_router::hooks::use_query_map;

use crate::billing::money::format_usd;
use crate::format;
use crate::server_fns::billing::{usage_page, UsageLine, UsageView};

/// The filters, read from the query string.
#[derive(Clone, PartialEq)]
struct Filters {
    from: String,
    to: String,
    key: String,
    model: String,
    page: u32,
}

impl Filters {
    fn query(&self, page: u32) -> String {
        let encode = super::auth::encode_component;
        format!(
            "from={}&to={}&key={}&model={}&page={page}",
            encode(&self.from),
            encode(&self.to),
            encode(&self.key),
            encode(&self.model)
        )
    }
}

/// The usage page.
#[component]
pub fn UsagePage() -> impl IntoView {
    let query = use_query_map();
    let filters = Memo::new(move |_| {
        let q = query.read();
        let get = |name: &str| q.get(name).unwrap_or_default();
        Filters {
            from: get("from"),
            to: get("to"),
            key: get("key"),
            model: get("model"),
            page: get("page").parse().unwrap_or(0),
        }
    });
    let data = resource(
        move || filters.get(),
        |f| usage_page(f.from, f.to, f.key, f.model, f.page),
    );
    view! {
        <Title text="Usage" />
        <h1>"Usage"</h1>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view_data) => view! { <UsageBody data=view_data filters=filters.get_untracked() /> }.into_any(),
                    Err(err) => view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn UsageBody(data: UsageView, filters: Filters) -> impl IntoView {
    let key_options: Vec<_> = data
        .keys
        .iter()
        .map(|(id, prefix, name)| {
            let selected = *id == filters.key;
            view! { <option value=id.clone() selected=selected>{format!("{name} ({prefix}…)")}</option> }
        })
        .collect();
    let model_options: Vec<_> = data
        .models
        .iter()
        .map(|model| {
            let selected = *model == filters.model;
            view! { <option value=model.clone() selected=selected>{model.clone()}</option> }
        })
        .collect();
    let page = data.rows.page;
    let csv = format!("/export/usage.csv?{}", filters.query(0));
    let newer = (page > 0).then(|| format!("?{}", filters.query(page - 1)));
    let older = data
        .rows
        .has_more
        .then(|| format!("?{}", filters.query(page + 1)));
    let Filters { from, to, .. } = filters;
    view! {
        <section class="card">
            <Form method="GET" action="" attr:class="form filters">
                <label for="from">"From"</label>
                <input id="from" type="date" name="from" value=from />
                <label for="to">"To"</label>
                <input id="to" type="date" name="to" value=to />
                <label for="key">"Key"</label>
                <select id="key" name="key">
                    <option value="">"All keys"</option>
                    {key_options}
                </select>
                <label for="model">"Model"</label>
                <select id="model" name="model">
                    <option value="">"All models"</option>
                    {model_options}
                </select>
                <button type="submit" class="button">"Filter"</button>
                <a class="button" href=csv rel="external" download="usage.csv">"Export CSV"</a>
            </Form>
        </section>
        <section class="card">
            <UsageTable rows=data.rows.items />
            <nav class="pager" aria-label="Pages">
                {newer.map(|href| view! { <a href=href>"← Newer"</a> })}
                {older.map(|href| view! { <a href=href>"Older →"</a> })}
            </nav>
        </section>
    }
}

/// The cache buckets of a request, or a dash when it used none.
fn cache_cell(row: &UsageLine) -> String {
    let (read, write, hour) = (
        row.cache_read_tokens,
        row.cache_write_tokens,
        row.cache_write_1h_tokens,
    );
    if read == 0 && write == 0 && hour == 0 {
        "–".into()
    } else {
        format!("{read} / {write} / {hour}")
    }
}

/// How a request's tokens were known, in words.
fn source_label(source: &str) -> &'static str {
    match source {
        "upstream" => "provider",
        "local_count" => "local count",
        "client_aborted" => "client left",
        "upstream_cut" => "provider cut off",
        "shutdown" => "shutdown",
        _ => "–",
    }
}

#[component]
fn UsageTable(rows: Vec<UsageLine>) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="muted">"No requests match."</p> }.into_any();
    }
    let rows: Vec<_> = rows
        .into_iter()
        .map(|row| {
            let cache = cache_cell(&row);
            let source = source_label(&row.tokens_source);
            view! {
                <tr data-request-id=row.id.clone()>
                    <td>{format::datetime(row.created_at)}</td>
                    <td><code>{row.source()}</code></td>
                    <td>{row.model.unwrap_or_default()}</td>
                    <td class="num">{row.prompt_tokens}" / "{row.completion_tokens}</td>
                    <td class="num" data-testid="cache">{cache}</td>
                    <td data-testid="tokens-source">{source}</td>
                    <td class="num" data-testid="cost">{format!("${}", format_usd(row.cost))}</td>
                    <td class="num">{format!("{} ms", row.latency_ms)}</td>
                    <td>{row.status}</td>
                </tr>
            }
        })
        .collect();
    view! {
        <table class="table" data-testid="usage-table">
            <thead>
                <tr>
                    <th>"Time"</th><th>"Key"</th><th>"Model"</th><th class="num">"Tokens in / out"</th>
                    <th class="num" title="Prompt tokens read from the cache / written for 5 minutes / written for an hour">"Cache read / write / 1 h"</th>
                    <th title="How the tokens were known">"Counted by"</th>
                    <th class="num">"Cost"</th><th class="num">"Latency"</th><th>"Status"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}
