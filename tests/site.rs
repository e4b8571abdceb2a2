//! The site's files as `scripts/build.sh` writes them: content-hashed names
//! that pages link and browsers keep for good, precompressed copies sent
//! with `Content-Encoding`, and pages that are never stored.
#![cfg(feature = "ssr")]

mod common;

use common::{Backend, TestApp};
use reqwest::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use reqwest::StatusCode;
use std::path::Path;

const HASHED: &str = "llm-gateway.0123456789abcdef";

/// A built site in `root`: the three outputs (hashed or not), a brotli and
/// a gzip copy of the script whose bytes tell which one was sent, and a
/// file of `public/`.
fn write_site(root: &Path, output_name: &str, manifest: bool) {
    let pkg = root.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    let script = "export function hydrate() {}\n".repeat(100);
    std::fs::write(pkg.join(format!("{output_name}.js")), &script).unwrap();
    std::fs::write(pkg.join(format!("{output_name}.js.br")), b"brotli bytes").unwrap();
    std::fs::write(pkg.join(format!("{output_name}.js.gz")), b"gzip bytes").unwrap();
    std::fs::write(pkg.join(format!("{output_name}_bg.wasm")), b"\0asm").unwrap();
    std::fs::write(pkg.join(format!("{output_name}.css")), "body{}").unwrap();
    std::fs::write(root.join("robots.txt"), "User-agent: *\n").unwrap();
    if manifest {
        std::fs::write(
            root.join("site.json"),
            format!(r#"{{"output_name":"{output_name}"}}"#),
        )
        .unwrap();
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
    let script = format!("/pkg/{HASHED}.js");

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
        format!("/pkg/{HASHED}.css"),
        format!("/pkg/{HASHED}.js"),
        format!("/pkg/{HASHED}_bg.wasm"),
    ] {
        assert!(html.contains(&linked), "{linked} not in {html}");
    }

    let missing = get(&app, "/no-such-page", "").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&missing, CACHE_CONTROL), "no-store");
}

#[tokio::test]
async fn a_site_without_hashed_names_is_revalidated_not_kept() {
    // What `cargo leptos watch` writes: the same names on every build.
    let dir = tempfile::tempdir().unwrap();
    write_site(dir.path(), "llm-gateway", false);
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
