//! cargo-leptos (`cargo leptos watch`, for development) builds with
//! `[package.metadata.leptos]` in Cargo.toml; `scripts/build.sh` and the
//! server (`server::site`) use names built into the binary. They must agree,
//! or a watched build serves a page whose script and style are missing.

use llm_gateway::server::site::{OUTPUT_NAME, PKG_DIR};

fn cargo_leptos_table() -> toml::Table {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let doc: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    doc["package"]["metadata"]["leptos"]
        .as_table()
        .unwrap()
        .clone()
}

#[test]
fn cargo_leptos_builds_the_names_the_server_serves() {
    let table = cargo_leptos_table();
    assert_eq!(table["output-name"].as_str(), Some(OUTPUT_NAME));
    assert_eq!(table["site-pkg-dir"].as_str(), Some(PKG_DIR));
    // `site` beside target/debug and target/release: the binary's default.
    assert_eq!(table["site-root"].as_str(), Some("target/site"));
}

#[test]
fn the_build_script_writes_the_names_the_server_serves() {
    let script =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build.sh")).unwrap();
    assert!(script.contains(&format!("output_name={OUTPUT_NAME}")));
    assert!(script.contains(&format!("pkg_dir={PKG_DIR}")));
}

/// A dependency's version requirement in a Cargo.toml's `[dependencies]`.
fn pinned(manifest: &str, krate: &str) -> String {
    let path = format!("{}/{manifest}", env!("CARGO_MANIFEST_DIR"));
    let doc: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    let dep = &doc["dependencies"][krate];
    dep.as_str()
        .or_else(|| dep.get("version").and_then(|v| v.as_str()))
        .unwrap()
        .to_string()
}

#[test]
fn site_tool_generates_glue_for_the_wasm_bindgen_the_client_links() {
    // The glue and the library must be the very same version, or the
    // client fails to start in the browser.
    let client = pinned("Cargo.toml", "wasm-bindgen");
    let tool = pinned("tools/site-tool/Cargo.toml", "wasm-bindgen-cli-support");
    assert!(
        client.starts_with('='),
        "the client pins wasm-bindgen exactly: {client}"
    );
    assert_eq!(client, tool);
}

#[test]
fn the_pages_preload_the_chunk_loader_site_tool_writes() {
    let tool = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tools/site-tool/src/main.rs"
    ))
    .unwrap();
    let name = llm_gateway::app::CHUNK_LOADER;
    assert!(
        tool.contains(&format!("\"./{name}\"")),
        "site-tool names the loader otherwise"
    );
}
