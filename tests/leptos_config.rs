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
