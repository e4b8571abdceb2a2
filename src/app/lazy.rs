//! The pages loaded on demand. In the WASM client each is a chunk of its
//! own (`site-tool split` in scripts/build.sh cuts them out), fetched when
//! the page is first shown. The server renders them like any page, and
//! links the chunks of the one it renders for the browser to preload.
//! The landing, sign-in and overview pages stay in the main module.

use leptos::prelude::*;
use leptos_router::{lazy_route, LazyRoute};

use super::{account, admin, balance, keys, payments, playground, usage};

/// Declares `$route`, the lazily loaded route showing `$page`.
macro_rules! lazy_page {
    ($($route:ident => $page:path;)*) => {$(
        #[doc = concat!("`", stringify!($page), "`, loaded on demand.")]
        pub(super) struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(this: Self) -> AnyView {
                let _ = this;
                view! {
                    <ChunkPreloads route=stringify!($route) />
                    {$page()}
                }
                .into_any()
            }
        }
    )*};
}

lazy_page! {
    KeysRoute => keys::KeysPage;
    UsageRoute => usage::UsagePage;
    BalanceRoute => balance::BalancePage;
    ReceiptRoute => payments::ReceiptPage;
    PlaygroundRoute => playground::PlaygroundPage;
    AccountRoute => account::AccountPage;
    AdminOverviewRoute => admin::AdminOverviewPage;
    AdminUsersRoute => admin::AdminUsersPage;
    AdminPricingRoute => admin::AdminPricingPage;
    AdminProvidersRoute => admin::AdminProvidersPage;
    AdminReconciliationRoute => admin::AdminReconciliationPage;
    AdminPaymentsRoute => payments::AdminPaymentsPage;
}

/// The script loading the chunks, beside them; named by `site-tool split`
/// (tools/site-tool), and imported by the main module.
pub const CHUNK_LOADER: &str = "__wasm_split.______________________.js";

/// The chunks each lazily loaded route needs, from the build's
/// `__wasm_split_manifest.json`; the server provides it to its pages.
#[cfg(feature = "ssr")]
#[derive(Debug, Clone, Default)]
pub struct PageChunks {
    /// Where the chunks are served from: `/pkg/<hash>`.
    pub base: String,
    /// The manifest: a lazily loaded function's unique name (for a route,
    /// `__<route in snake case>_view_<hash>`) → the chunk files it needs.
    pub by_function: std::sync::Arc<std::collections::HashMap<String, Vec<String>>>,
}

#[cfg(feature = "ssr")]
impl PageChunks {
    /// The URLs of the chunks `route`'s view needs.
    pub fn for_route(&self, route: &str) -> Vec<String> {
        let prefix = format!("__{}_view_", snake_case(route));
        let mut urls: Vec<String> = self
            .by_function
            .iter()
            .filter(|(name, _)| name.strip_prefix(&prefix).is_some_and(is_digits))
            .flat_map(|(_, chunks)| chunks.iter())
            .map(|chunk| format!("{}/{chunk}.wasm", self.base))
            .collect();
        urls.sort();
        urls.dedup();
        urls
    }
}

#[cfg(feature = "ssr")]
fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `AdminUsersRoute` → `admin_users_route`, as Leptos's `#[lazy]` names
/// the function it splits off.
#[cfg(feature = "ssr")]
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// On the server, links in the head preloading the chunks of `route` and
/// their loader (the dashboard renders whole pages, so the head is written
/// last). Renders nothing itself, on either side, so hydration matches.
#[component]
fn ChunkPreloads(route: &'static str) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(chunks) = use_context::<PageChunks>() {
        use leptos_meta::Link;
        // `to_html` hands a `Link` to the head rather than returning it.
        let urls = chunks.for_route(route);
        if !urls.is_empty() {
            let loader = format!("{}/{CHUNK_LOADER}", chunks.base);
            let _ = view! { <Link rel="modulepreload" href=loader /> }.to_html();
        }
        for href in urls {
            let _ = view! {
                <Link
                    rel="preload"
                    href=href
                    as_="fetch"
                    type_="application/wasm"
                    crossorigin="anonymous"
                />
            }
            .to_html();
        }
    }
    let _ = route;
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    #[test]
    fn route_names_become_the_split_functions_names() {
        assert_eq!(snake_case("KeysRoute"), "keys_route");
        assert_eq!(snake_case("AdminUsersRoute"), "admin_users_route");
    }

    #[test]
    fn a_route_gets_the_urls_of_its_own_chunks_only() {
        let manifest = [
            (
                "__keys_route_view_42",
                vec!["chunk_1", "split___keys_route_view_42"],
            ),
            ("__admin_users_route_view_42", vec!["chunk_1", "chunk_2"]),
            ("__keys_route_view_extra", vec!["chunk_9"]),
        ];
        let chunks = PageChunks {
            base: "/pkg/abc".into(),
            by_function: std::sync::Arc::new(
                manifest
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
                    .collect(),
            ),
        };
        assert_eq!(
            chunks.for_route("KeysRoute"),
            [
                "/pkg/abc/chunk_1.wasm",
                "/pkg/abc/split___keys_route_view_42.wasm"
            ]
        );
        assert_eq!(chunks.for_route("UsageRoute"), Vec::<String>::new());
    }
}
