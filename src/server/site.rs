//! The site: where its files are, what the built ones are called, and how
//! long browsers may keep them.
//!
//! `scripts/build.sh` writes the site with content-hashed names
//! (`pkg/llm-gateway.<hash>.js`, `…_bg.wasm`, `….css`), a `.br` and a `.gz`
//! beside each compressible file, and `site.json` naming the hashed
//! output. Nothing here reads Cargo.toml or Leptos.toml, so the binary runs
//! from any working directory.

use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, VARY};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use leptos::config::{Env, LeptosOptions};
use std::path::{Path, PathBuf};

use crate::config::Config;

/// The unhashed name of the built script, module and stylesheet.
pub const OUTPUT_NAME: &str = "llm-gateway";
/// The folder under the site root holding them.
pub const PKG_DIR: &str = "pkg";
/// What `scripts/build.sh` writes at the site root.
pub const MANIFEST: &str = "site.json";

/// Files whose names carry their content's hash: kept for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Other files: kept, but checked (`Last-Modified`) before each use.
const REVALIDATE: &str = "no-cache";
/// Pages: never stored, as they hold the signed-in user's data.
const NOT_STORED: &str = "no-store";

/// The site as this process serves it.
#[derive(Debug, Clone)]
pub struct Site {
    pub options: LeptosOptions,
    /// Whether `pkg/` holds content-hashed names (a build's, not a watch's).
    pub hashed: bool,
}

/// `site.json`: what the build named its output.
#[derive(serde::Deserialize)]
struct Manifest {
    output_name: String,
}

impl Site {
    /// The site options: cargo-leptos's `LEPTOS_*` variables when it runs
    /// the server (`cargo leptos watch`); otherwise the root from the
    /// config, `LEPTOS_SITE_ROOT`, or `site` beside the binary's folder,
    /// and the names from its `site.json`.
    pub fn resolve(config: &Config) -> Result<Site, String> {
        if std::env::var_os("LEPTOS_OUTPUT_NAME").is_some() {
            let conf = leptos::config::get_config_from_env()
                .map_err(|e| format!("LEPTOS_* variables: {e}"))?;
            return Ok(Site {
                options: conf.leptos_options,
                hashed: false,
            });
        }
        let root = std::env::var("LEPTOS_SITE_ROOT")
            .ok()
            .filter(|root| !root.is_empty())
            .or_else(|| config.site_root.clone())
            .map(PathBuf::from)
            .unwrap_or_else(default_root);
        Self::at(&root, config)
    }

    /// The site built into `root`.
    pub fn at(root: &Path, config: &Config) -> Result<Site, String> {
        let manifest_path = root.join(MANIFEST);
        let manifest = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => Some(
                serde_json::from_str::<Manifest>(&text)
                    .map_err(|e| format!("{}: {e}", manifest_path.display()))?,
            ),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(format!("{}: {err}", manifest_path.display())),
        };
        if !root.join(PKG_DIR).is_dir() {
            tracing::warn!(
                site_root = %root.display(),
                "no built site there: pages render without their script and style \
                 (build it with scripts/build.sh, or set site_root)"
            );
        }
        let hashed = manifest.is_some();
        let output_name = manifest.map_or_else(|| OUTPUT_NAME.to_string(), |m| m.output_name);
        let options = LeptosOptions::builder()
            .output_name(output_name)
            .site_root(root.to_string_lossy().into_owned())
            .site_pkg_dir(PKG_DIR)
            .env(Env::PROD)
            .site_addr(
                format!("{}:{}", config.host, config.port)
                    .parse::<std::net::SocketAddr>()
                    .unwrap_or_else(|_| ([127, 0, 0, 1], config.port).into()),
            )
            .build();
        Ok(Site { options, hashed })
    }
}

/// `site` beside the folder holding the binary: `target/site` for
/// `target/release/llm-gateway`, `/app/site` for `/app/bin/llm-gateway`.
fn default_root() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("site")))
        .unwrap_or_else(|| PathBuf::from("site"))
}

/// Sets how long browsers keep what the site router answers: hashed files
/// for good, other files until they change, pages not at all; and, on
/// files, that the answer depends on `Accept-Encoding`.
pub async fn cache_control(State(hashed): State<bool>, request: Request, next: Next) -> Response {
    // Server functions share this router; their POSTs are not files or pages.
    if !matches!(request.method(), &Method::GET | &Method::HEAD) {
        return next.run(request).await;
    }
    let in_pkg = request.uri().path().starts_with(&format!("/{PKG_DIR}/"));
    let mut response = next.run(request).await;
    if response.headers().contains_key(CACHE_CONTROL) {
        return response;
    }
    let is_html = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    let policy = match response.status() {
        _ if is_html => NOT_STORED,
        StatusCode::OK | StatusCode::NOT_MODIFIED if in_pkg && hashed => IMMUTABLE,
        StatusCode::OK | StatusCode::NOT_MODIFIED => REVALIDATE,
        _ => NOT_STORED,
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(policy));
    // A file may be sent as its .br or .gz copy: caches must key on the ask.
    if policy != NOT_STORED && !headers.contains_key(VARY) {
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_site_names_its_hashed_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(PKG_DIR)).unwrap();
        std::fs::write(
            dir.path().join(MANIFEST),
            r#"{"output_name":"llm-gateway.0123abcd"}"#,
        )
        .unwrap();
        let site = Site::at(dir.path(), &Config::default()).unwrap();
        assert!(site.hashed);
        assert_eq!(&*site.options.output_name, "llm-gateway.0123abcd");
        assert_eq!(&*site.options.site_root, dir.path().to_str().unwrap());
        assert_eq!(&*site.options.site_pkg_dir, PKG_DIR);
    }

    #[test]
    fn a_site_without_a_manifest_keeps_the_plain_names() {
        let dir = tempfile::tempdir().unwrap();
        let site = Site::at(dir.path(), &Config::default()).unwrap();
        assert!(!site.hashed);
        assert_eq!(&*site.options.output_name, OUTPUT_NAME);
    }

    #[test]
    fn a_broken_manifest_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), "{").unwrap();
        let err = Site::at(dir.path(), &Config::default()).unwrap_err();
        assert!(err.contains(MANIFEST), "{err}");
    }

    #[test]
    fn the_default_root_is_site_beside_the_binarys_folder() {
        let exe = std::env::current_exe().unwrap();
        let expected = exe.parent().unwrap().parent().unwrap().join("site");
        assert_eq!(default_root(), expected);
    }
}
