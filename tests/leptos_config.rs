//! `Leptos.toml` (runtime site options) must agree with `[package.metadata.leptos]`
//! in Cargo.toml (what cargo-leptos builds with), except for `env`.

fn leptos_table(text: &str) -> toml::Table {
    let doc: toml::Table = text.parse().unwrap();
    doc["package"]["metadata"]["leptos"]
        .as_table()
        .unwrap()
        .clone()
}

#[test]
fn leptos_toml_agrees_with_cargo_toml() {
    let root = env!("CARGO_MANIFEST_DIR");
    let cargo = leptos_table(&std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap());
    let runtime = leptos_table(&std::fs::read_to_string(format!("{root}/Leptos.toml")).unwrap());
    for (key, value) in &runtime {
        if key == "env" {
            assert_eq!(
                value.as_str(),
                Some("PROD"),
                "Leptos.toml is for production"
            );
            continue;
        }
        assert_eq!(
            cargo.get(key),
            Some(value),
            "`{key}` differs between Leptos.toml and Cargo.toml"
        );
    }
    for key in ["output-name", "site-root", "site-pkg-dir"] {
        assert!(runtime.contains_key(key), "Leptos.toml lacks `{key}`");
    }
}

#[test]
fn the_stylesheet_link_matches_the_output_name() {
    let root = env!("CARGO_MANIFEST_DIR");
    let cargo = leptos_table(&std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap());
    let name = cargo["output-name"].as_str().unwrap();
    let app = std::fs::read_to_string(format!("{root}/src/app/mod.rs")).unwrap();
    assert!(
        app.contains(&format!("/pkg/{name}.css")),
        "the app links a stylesheet cargo-leptos does not produce"
    );
}
