//! The site's files as `scripts/build.sh` writes them: a content-hashed
//! folder that pages link and browsers keep for good, precompressed copies
//! sent with `Content-Encoding`, and pages that are never stored.
#![cfg(feature = "ssr")]

mod common;

use common::{Backend, TestApp};
use reqwest::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use reqwest::StatusCode;
use std::path::Path;

/// The folder a build names in site.json.
const HASHED: &str = "pkg/0123456789abcdef";

/// A built site in `root`: the three outputs in `pkg_dir`, a brotli and a
/// gzip copy of the script whose bytes tell which one was sent, and a file
/// of `public/`; with `manifest`, the site.json naming `pkg_dir`.
fn write_site(root: &Path, pkg_dir: &str, manifest: bool) {
    let pkg = root.join(pkg_dir);
    std::fs::create_dir_all(&pkg).unwrap();
    let script = "export function hydrate() {}\n".repeat(100);
    std::fs::write(pkg.join("llm-gateway.js"), &script).unwrap();
    std::fs::write(pkg.join("llm-gateway.js.br"), b"brotli bytes").unwrap();
    std::fs::write(pkg.join("llm-gateway.js.gz"), b"gzip bytes").unwrap();
    std::fs::write(pkg.join("llm-gateway_bg.wasm"), b"\0asm").unwrap();
    std::fs::write(pkg.join("llm-gateway.css"), "body{}").unwrap();
    std::fs::write(root.join("robots.txt"), "User-agent: *\n").unwrap();
    if manifest {
        let text = format!(r#"{{"pkg_dir":"{pkg_dir}"}}"#);
        std::fs::write(root.join("site.json"), text).unwrap();
    }
}

async fn app_on(root: &Path) -> TestApp {
    let root = root.to_str().unwrap().to_string();
    TestApp::start_with(Backend::Sqlite, |c| c.site_root = Some(root)).await
}

async fn get(app: &TestApp, path: &str, encodings: &str) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(app.url(path));
    if !encodings.is_empty() {
        request = request.header(ACCEPT_ENCODING, encodings);
    }
    request.send().await.unwrap()
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> &str {
    response
        .headers()
        .get(&name)
        .map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn hashed_files_are_sent_precompressed_and_kept_for_good() {
    let dir = tempfile::tempdir().unwrap();
    write_site(dir.path(), HASHED, true);
    let app = app_on(dir.path()).await;
    let script = format!("/{HASHED}/llm-gateway.js");

    let br = get(&app, &script, "gzip, deflate, br").await;
    assert_eq!(br.status(), StatusCode::OK);
    assert_eq!(header(&br, CONTENT_ENCODING), "br");
    assert_eq!(
        header(&br, CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert!(header(&br, VARY)
        .to_ascii_lowercase()
        .contains("accept-encoding"));
    assert!(header(&br, CONTENT_TYPE).contains("javascript"));
    assert_eq!(br.bytes().await.unwrap().as_ref(), b"brotli bytes");

    let gz = get(&app, &script, "gzip").await;
    assert_eq!(header(&gz, CONTENT_ENCODING), "gzip");
    assert_eq!(gz.bytes().await.unwrap().as_ref(), b"gzip bytes");

    let raw = get(&app, &script, "").await;
    assert_eq!(header(&raw, CONTENT_ENCODING), "");
    assert!(raw
        .text()
        .await
        .unwrap()
        .starts_with("export function hydrate"));

    // Unhashed files are checked before each use.
    let robots = get(&app, "/robots.txt", "").await;
    assert_eq!(robots.status(), StatusCode::OK);
    assert_eq!(header(&robots, CACHE_CONTROL), "no-cache");
}

#[tokio::test]
async fn pages_link_the_hashed_files_and_are_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    write_site(dir.path(), HASHED, true);
    let app = app_on(dir.path()).await;

    let page = get(&app, "/login", "br").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, CACHE_CONTROL), "no-store");
    let html = page.text().await.unwrap();
    for linked in [
        format!("/{HASHED}/llm-gateway.css"),
        format!("/{HASHED}/llm-gateway.js"),
        format!("/{HASHED}/llm-gateway_bg.wasm"),
    ] {
        assert!(html.contains(&linked), "{linked} not in {html}");
    }

    let missing = get(&app, "/no-such-page", "").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&missing, CACHE_CONTROL), "no-store");
}

#[tokio::test]
async fn a_site_without_a_hashed_folder_is_revalidated_not_kept() {
    // What `cargo leptos watch` writes: the same names on every build.
    let dir = tempfile::tempdir().unwrap();
    write_site(dir.path(), "pkg", false);
    let app = app_on(dir.path()).await;
    let script = get(&app, "/pkg/llm-gateway.js", "br").await;
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(header(&script, CACHE_CONTROL), "no-cache");
    let html = get(&app, "/login", "").await.text().await.unwrap();
    assert!(html.contains("/pkg/llm-gateway.css"), "{html}");
}

#[tokio::test]
async fn server_functions_answers_are_left_alone() {
    // They share the site's router, but a POST's answer is not a file.
    let dir = tempfile::tempdir().unwrap();
    write_site(dir.path(), HASHED, true);
    let app = app_on(dir.path()).await;
    let (status, body) = app.rpc(&app.client(), "signup_info", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = app
        .client()
        .post(app.url("/rpc/signup_info"))
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CACHE_CONTROL), "");
    assert_eq!(header(&response, VARY), "");
}

#[tokio::test]
async fn a_lazily_loaded_page_links_its_own_chunks_for_preloading() {
    let dir = tempfile::tempdir().unwrap();
    write_site(dir.path(), HASHED, true);
    // As `site-tool split` writes it: each split function's chunks.
    std::fs::write(
        dir.path().join(HASHED).join("__wasm_split_manifest.json"),
        r#"{"__keys_route_view_123":["chunk_1","split___keys_route_view_123"],
            "__usage_route_view_123":["chunk_1","chunk_2"]}"#,
    )
    .unwrap();
    let app = app_on(dir.path()).await;
    let client = app.client();
    app.sign_up(&client, "lazy-pages@example.com").await;

    // The `<link>` in `head` fetching `chunk`, if any.
    let link_to = |head: &str, chunk: &str| -> Option<String> {
        let href = format!(r#"href="/{HASHED}/{chunk}.wasm""#);
        head.split('<')
            .find(|tag| tag.starts_with("link ") && tag.contains(&href))
            .map(str::to_string)
    };
    let keys = client.get(app.url("/dashboard/keys")).send().await.unwrap();
    assert_eq!(keys.status(), StatusCode::OK);
    let html = keys.text().await.unwrap();
    let head = &html[..html.find("</head>").expect("a head")];
    for chunk in ["chunk_1", "split___keys_route_view_123"] {
        let link = link_to(head, chunk).unwrap_or_else(|| panic!("no link to {chunk}: {head}"));
        for attribute in [
            r#"rel="preload""#,
            r#"as="fetch""#,
            r#"type="application/wasm""#,
        ] {
            assert!(link.contains(attribute), "{link}");
        }
    }
    let loader = format!(r#"href="/{HASHED}/__wasm_split.______________________.js""#);
    assert!(
        head.split('<')
            .any(|tag| tag.contains(&loader) && tag.contains(r#"rel="modulepreload""#)),
        "the chunks' loader is not preloaded: {head}"
    );
    assert!(!html.contains("chunk_2"), "another page's chunk: {html}");

    // The overview is in the main module: nothing to preload.
    let overview = client.get(app.url("/dashboard")).send().await.unwrap();
    assert!(!overview.text().await.unwrap().contains("chunk_"));
}
