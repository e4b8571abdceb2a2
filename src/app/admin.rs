//! `/dashboard/admin/…`: the operator's pages. Only admins see them; anyone
//! else gets a 403 page (and 403 from every server function behind them).

use super::resource;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::{Outlet, A};
use leptos_router::hooks::use_query_map;

use super::chart::SpendChart;
use super::ErrorMessage;
use crate::billing::audit::{AuditReport, ReconciliationRow};
use crate::billing::money::format_usd;
use crate::format;
use crate::server_fns::admin::{
    admin_overview, admin_prices, admin_providers, admin_reconciliation, admin_users, AdminBlock,
    AdminCredit, AdminDeletePrice, AdminSetPrice, AdminUserLine, GatewayOverview, PriceCatalog,
    ProviderStatus,
};
use crate::server_fns::UserView;

fn usd(nanos: i64) -> String {
    format!("${}", format_usd(nanos))
}

fn percent(bp: i64) -> String {
    format!("{}%", bp as f64 / 100.0)
}

fn failed(err: crate::error::AppError) -> AnyView {
    view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any()
}

/// Guards the admin pages and shows their navigation. A signed-in
/// non-admin sees a notice (with a 403 status, from
/// `server::page_guard`), and every server function behind the pages
/// refuses them too.
#[component]
pub fn AdminLayout() -> impl IntoView {
    let user = expect_context::<UserView>();
    if !user.is_admin {
        return view! {
            <Title text="Forbidden" />
            <h1>"Admins only"</h1>
            <p class="form-error" role="alert">"This page is for admins only."</p>
        }
        .into_any();
    }
    view! {
        <nav class="tabs subnav" aria-label="Admin">
            <A href="/dashboard/admin" exact=true>"Gateway"</A>
            <A href="/dashboard/admin/users">"Users"</A>
            <A href="/dashboard/admin/pricing">"Pricing"</A>
            <A href="/dashboard/admin/providers">"Providers"</A>
            <A href="/dashboard/admin/reconciliation">"Reconciliation"</A>
            <A href="/dashboard/admin/payments">"Payments"</A>
        </nav>
        <Outlet />
    }
    .into_any()
}

/// Every user's usage: totals and the 30-day chart.
#[component]
pub fn AdminOverviewPage() -> impl IntoView {
    let overview = resource(|| (), |_| admin_overview());
    view! {
        <Title text="Gateway" />
        <h1>"Gateway"</h1>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(overview) => view! { <Overview overview /> }.into_any(),
                    Err(err) => failed(err),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Overview(overview: GatewayOverview) -> impl IntoView {
    view! {
        <div class="figures">
            <div class="figure"><span class="label">"Users"</span><strong>{overview.users}</strong></div>
            <div class="figure"><span class="label">"Balances held"</span><strong>{format::dollars(overview.balances)}</strong></div>
            <div class="figure">
                <span class="label">"Owed by users"</span>
                <strong data-testid="global-debts">{usd(overview.debts)}</strong>
                <span class="muted">{format!("{} in debt", overview.debtors)}</span>
            </div>
            <div class="figure"><span class="label">"Spend today"</span><strong>{usd(overview.spend_today)}</strong></div>
            <div class="figure"><span class="label">"Spend this month"</span><strong data-testid="global-spend-month">{usd(overview.spend_month)}</strong></div>
            <div class="figure"><span class="label">"Requests this month"</span><strong>{overview.requests_month}</strong></div>
            <div class="figure"><span class="label">"Tokens this month"</span><strong>{overview.tokens_month}</strong></div>
        </div>
        <section class="card">
            <h2>"Daily spend by model, all users"</h2>
            <SpendChart series=overview.series />
        </section>
    }
}

/// Users: search, balances, credit adjustments, blocking, and their keys.
#[component]
pub fn AdminUsersPage() -> impl IntoView {
    let credit = ServerAction::<AdminCredit>::new();
    let block = ServerAction::<AdminBlock>::new();
    let query = use_query_map();
    let search = Signal::derive(move || query.read().get("q").unwrap_or_default());
    let page = super::page_in_query();
    let users = resource(
        move || {
            (
                search.get(),
                page.get(),
                credit.version().get(),
                block.version().get(),
            )
        },
        |(search, page, _, _)| admin_users(search, page),
    );
    let credit_error = Signal::derive(move || credit.value().get().and_then(Result::err));
    let block_error = Signal::derive(move || block.value().get().and_then(Result::err));
    view! {
        <Title text="Users" />
        <h1>"Users"</h1>
        <form method="get" class="form inline" role="search">
            <label for="user-search">"Search"</label>
            <input id="user-search" name="q" placeholder="id, email or alias" prop:value=search />
            <button type="submit" class="button">"Search"</button>
        </form>
        <ErrorMessage error=credit_error />
        <ErrorMessage error=block_error />
        <Transition fallback=|| view! { <p class="loading">"Loading users…"</p> }>
            {move || Suspend::new(async move {
                match users.await {
                    Ok(page) if page.items.is_empty() => view! { <p class="muted">"No users match."</p> }.into_any(),
                    Ok(page) => {
                        let rows = page.items.into_iter().map(|user| view! { <UserRow user credit block /> }).collect_view();
                        let q = search.get_untracked();
                        let link = move |p: u32| format!("?q={}&page={p}", super::auth::encode_component(&q));
                        view! {
                            <table class="table" data-testid="admin-users">
                                <thead>
                                    <tr>
                                        <th>"User"</th><th>"Role"</th><th class="num">"Balance"</th>
                                        <th>"Status"</th><th>"Keys"</th><th>"Adjust credit"</th>
                                        <th><span class="visually-hidden">"Block"</span></th>
                                    </tr>
                                </thead>
                                <tbody>{rows}</tbody>
                            </table>
                            <nav class="pager" aria-label="Pages">
                                {(page.page > 0).then(|| view! { <a href=link(page.page - 1)>"← Previous"</a> })}
                                {page.has_more.then(|| view! { <a href=link(page.page + 1)>"Next →"</a> })}
                            </nav>
                        }.into_any()
                    }
                    Err(err) => failed(err),
                }
            })}
        </Transition>
    }
}

#[component]
fn UserRow(
    user: AdminUserLine,
    credit: ServerAction<AdminCredit>,
    block: ServerAction<AdminBlock>,
) -> impl IntoView {
    let name = user.email.clone().unwrap_or_else(|| user.id.clone());
    let keys = user
        .keys
        .iter()
        .map(|k| format!("{} ({})", k.prefix, k.status.label()))
        .collect::<Vec<_>>()
        .join(", ");
    let status = if user.blocked { "blocked" } else { "active" };
    let (credit_id, block_id) = (user.id.clone(), user.id.clone());
    let amount_label = format!("Amount for {name}");
    let note_label = format!("Note for {name}");
    let block_label = if user.blocked { "Unblock" } else { "Block" };
    let block_value = (!user.blocked).to_string();
    let row_name = name.clone();
    view! {
        <tr data-user=row_name>
            <td>
                <strong>{name}</strong>
                <div class="muted">{user.id} " · since " {format::datetime(user.created_at)}</div>
            </td>
            <td>{user.role.clone()}</td>
            <td class="num" data-testid="user-balance">
                {format::dollars(user.balance)}
                {(user.balance < 0).then(|| view! { <div class="status revoked">"owes"</div> })}
            </td>
            <td><span class=format!("status {}", if user.blocked { "revoked" } else { "active" })>{status}</span></td>
            <td class="muted">{if keys.is_empty() { "none".to_string() } else { keys }}</td>
            <td>
                <ActionForm action=credit attr:class="form inline">
                    <input type="hidden" name="user_id" value=credit_id />
                    <input name="amount" inputmode="decimal" placeholder="10.00" required
                        aria-label=amount_label size="8" />
                    <input name="note" placeholder="note" aria-label=note_label size="14" />
                    <button type="submit" class="button">"Credit"</button>
                </ActionForm>
            </td>
            <td>
                <ActionForm action=block>
                    <input type="hidden" name="user_id" value=block_id />
                    <input type="hidden" name="blocked" value=block_value />
                    <button type="submit" class="button">{block_label}</button>
                </ActionForm>
            </td>
        </tr>
    }
}

/// The price catalog: provider cost, margin and user price; set or remove prices.
#[component]
pub fn AdminPricingPage() -> impl IntoView {
    let set = ServerAction::<AdminSetPrice>::new();
    let delete = ServerAction::<AdminDeletePrice>::new();
    let catalog = resource(
        move || (set.version().get(), delete.version().get()),
        |_| admin_prices(),
    );
    let set_error = Signal::derive(move || set.value().get().and_then(Result::err));
    let delete_error = Signal::derive(move || delete.value().get().and_then(Result::err));
    view! {
        <Title text="Pricing" />
        <h1>"Pricing"</h1>
        <section class="card">
            <h2>"Set a price"</h2>
            <p class="hint">"Provider cost in USD per million tokens. Cache prices left empty bill those tokens as input (a 1-hour write at the 5-minute price); an empty margin uses the global one. A change applies from the next request."</p>
            <ActionForm action=set attr:class="form inline">
                <label for="price-model">"Model"</label>
                <input id="price-model" name="model_key" placeholder="openai:gpt-4o-mini" required />
                <label for="price-input">"Input"</label>
                <input id="price-input" name="input" inputmode="decimal" placeholder="0.15" required size="8" />
                <label for="price-output">"Output"</label>
                <input id="price-output" name="output" inputmode="decimal" placeholder="0.60" required size="8" />
                <label for="price-cache-read">"Cache read"</label>
                <input id="price-cache-read" name="cache_read" inputmode="decimal" placeholder="input" size="8" />
                <label for="price-cache-write">"Cache write 5 min"</label>
                <input id="price-cache-write" name="cache_write" inputmode="decimal" placeholder="input" size="8" />
                <label for="price-cache-write-1h">"Cache write 1 h"</label>
                <input id="price-cache-write-1h" name="cache_write_1h" inputmode="decimal" placeholder="5 min" size="8" />
                <label for="price-margin">"Margin %"</label>
                <input id="price-margin" name="margin_percent" inputmode="decimal" placeholder="global" size="6" />
                <button type="submit" class="button primary" disabled=move || set.pending().get()>"Save price"</button>
            </ActionForm>
            <ErrorMessage error=set_error />
        </section>
        <ErrorMessage error=delete_error />
        <Transition fallback=|| view! { <p class="loading">"Loading prices…"</p> }>
            {move || Suspend::new(async move {
                match catalog.await {
                    Ok(catalog) => view! { <PriceTable catalog delete /> }.into_any(),
                    Err(err) => failed(err),
                }
            })}
        </Transition>
    }
}

#[component]
fn PriceTable(catalog: PriceCatalog, delete: ServerAction<AdminDeletePrice>) -> impl IntoView {
    let default_margin = catalog.default_margin_bp;
    let rows = catalog
        .prices
        .into_iter()
        .map(|price| {
            let margin = match price.margin_bp {
                Some(bp) => percent(bp),
                None => format!("{} (global)", percent(default_margin)),
            };
            let key = price.model_key.clone();
            let row_key = price.model_key.clone();
            view! {
                <tr data-model=row_key>
                    <td><code>{price.model_key}</code></td>
                    <td class="num">{usd(price.input)}</td>
                    <td class="num">{usd(price.output)}</td>
                    <td class="num">{price.cached_input.map(usd).unwrap_or_else(|| "input".into())}</td>
                    <td class="num">{cache_writes(price.cache_write, price.cache_write_1h)}</td>
                    <td class="num">{margin}</td>
                    <td class="num" data-testid="user-input-price">{usd(price.user_input)}</td>
                    <td class="num" data-testid="user-output-price">{usd(price.user_output)}</td>
                    <td>
                        <ActionForm action=delete>
                            <input type="hidden" name="model_key" value=key />
                            <button type="submit" class="button">"Remove"</button>
                        </ActionForm>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p class="muted">"Global margin: " {percent(default_margin)}</p>
        <table class="table" data-testid="admin-prices">
            <thead>
                <tr>
                    <th>"Model"</th><th class="num">"Cost in"</th><th class="num">"Cost out"</th>
                    <th class="num">"Cache read"</th><th class="num">"Cache write 5 min / 1 h"</th>
                    <th class="num">"Margin"</th><th class="num">"User pays in"</th><th class="num">"User pays out"</th>
                    <th><span class="visually-hidden">"Remove"</span></th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// The books: the audit's checks, and usage by provider and day with the
/// providers' cost, the users' price and the margin earned.
#[component]
pub fn AdminReconciliationPage() -> impl IntoView {
    let query = use_query_map();
    let days = Signal::derive(move || {
        query
            .read()
            .get("days")
            .and_then(|d| d.parse::<u32>().ok())
            .unwrap_or(30)
    });
    let report = resource(move || days.get(), admin_reconciliation);
    view! {
        <Title text="Reconciliation" />
        <h1>"Reconciliation"</h1>
        <nav class="tabs subnav" aria-label="Period">
            <a href="?days=1">"Today"</a>
            <a href="?days=7">"7 days"</a>
            <a href="?days=30">"30 days"</a>
            <a href="?days=0">"All time"</a>
        </nav>
        <Transition fallback=|| view! { <p class="loading">"Auditing…"</p> }>
            {move || Suspend::new(async move {
                match report.await {
                    Ok(report) => view! { <Books report /> }.into_any(),
                    Err(err) => failed(err),
                }
            })}
        </Transition>
    }
}

#[component]
fn Books(report: AuditReport) -> impl IntoView {
    let checked = format!(
        "Checked {} users, {} usage records and {} ledger entries.",
        report.users, report.usage_records, report.ledger_entries
    );
    let verdict = if report.passed() {
        view! {
            <p class="status active" data-testid="audit-passed">
                "Every check passed: ledger = balance for every user, each usage record's cost = its debit, no hold past its time, every debt recorded."
            </p>
        }
        .into_any()
    } else {
        let findings = report
            .findings
            .iter()
            .map(|f| view! { <li><code>{f.check.clone()}</code>" " {f.subject.clone()} ": " {f.detail.clone()}</li> })
            .collect_view();
        view! {
            <div class="form-error" role="alert" data-testid="audit-failed">
                <p>{format!("{} problem(s) found:", report.findings.len())}</p>
                <ul>{findings}</ul>
            </div>
        }
        .into_any()
    };
    let rows = report
        .reconciliation
        .iter()
        .map(|row| view! { <BooksRow row=row.clone() /> })
        .collect_view();
    view! {
        <section class="card">
            <p class="muted">{checked}</p>
            {verdict}
        </section>
        <section class="card">
            <h2>"By provider and day"</h2>
            <p class="hint">"Tokens by bucket; money in USD. The margin is what users paid less what the providers charge."</p>
            <table class="table" data-testid="reconciliation">
                <thead>
                    <tr>
                        <th>"Day (UTC)"</th><th>"Provider"</th><th class="num">"Requests"</th>
                        <th class="num">"Input"</th><th class="num">"Cache read"</th>
                        <th class="num">"Cache write 5 min"</th><th class="num">"Cache write 1 h"</th>
                        <th class="num">"Output"</th><th class="num">"Provider cost"</th>
                        <th class="num">"User price"</th><th class="num">"Margin"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
                <tfoot><BooksRow row=report.totals /></tfoot>
            </table>
        </section>
    }
}

#[component]
fn BooksRow(row: ReconciliationRow) -> impl IntoView {
    view! {
        <tr>
            <td>{row.day}</td>
            <td>{row.provider}</td>
            <td class="num">{row.requests}</td>
            <td class="num">{row.input_tokens}</td>
            <td class="num">{row.cache_read_tokens}</td>
            <td class="num">{row.cache_write_tokens}</td>
            <td class="num">{row.cache_write_1h_tokens}</td>
            <td class="num">{row.output_tokens}</td>
            <td class="num">{usd(row.provider_cost)}</td>
            <td class="num">{usd(row.user_price)}</td>
            <td class="num" data-testid="margin">{format::dollars(row.margin)}</td>
        </tr>
    }
}

/// The cache-write prices as the table shows them.
fn cache_writes(five_minutes: Option<i64>, one_hour: Option<i64>) -> String {
    let five = five_minutes.map(usd).unwrap_or_else(|| "input".into());
    let hour = one_hour.map(usd).unwrap_or_else(|| five.clone());
    format!("{five} / {hour}")
}

/// The configured providers and their latest upstream errors.
#[component]
pub fn AdminProvidersPage() -> impl IntoView {
    let providers = resource(|| (), |_| admin_providers());
    view! {
        <Title text="Providers" />
        <h1>"Providers"</h1>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match providers.await {
                    Ok(list) if list.is_empty() => view! { <p class="muted">"No providers are configured."</p> }.into_any(),
                    Ok(list) => view! { <ProviderTable providers=list /> }.into_any(),
                    Err(err) => failed(err),
                }
            })}
        </Suspense>
    }
}

#[component]
fn ProviderTable(providers: Vec<ProviderStatus>) -> impl IntoView {
    let rows = providers
        .into_iter()
        .map(|p| {
            let error = match p.last_error {
                Some(e) => view! {
                    <span class="form-error">{format!("{} · {}: {}", format::datetime(e.at), e.kind, e.message)}</span>
                }
                .into_any(),
                None => view! { <span class="muted">"none since start"</span> }.into_any(),
            };
            let row_name = p.name.clone();
            view! {
                <tr data-provider=row_name>
                    <td><strong>{p.name}</strong></td>
                    <td>{p.kind}</td>
                    <td><code>{p.api_base}</code></td>
                    <td class="num">{p.priced_models}</td>
                    <td>{error}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="table" data-testid="admin-providers">
            <thead>
                <tr><th>"Name"</th><th>"Kind"</th><th>"API base"</th><th class="num">"Priced models"</th><th>"Latest upstream error"</th></tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}
