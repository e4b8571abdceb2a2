//! The site: where its files are, what the built ones are called, and how
//! long browsers may keep them.
//!
//! `scripts/build.sh` puts the built files in a content-hashed folder
//! (`pkg/<hash>/`: `llm-gateway.js`, `…_bg.wasm`, `….css`, and the lazily
//! loaded chunks with their loader and manifest), a `.br` and a `.gz` beside
//! each compressible file, and writes `site.json` naming the folder. Nothing
//! here reads Cargo.toml or Leptos.toml, so the binary runs from any working
//! directory.

use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, VARY};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use leptos::config::{Env, LeptosOptions};
use std::path::{Path, PathBuf};

use crate::app::PageChunks;
use crate::config::Config;

/// The name of the built script, module and stylesheet.
pub const OUTPUT_NAME: &str = "llm-gateway";
/// The folder under the site root holding them (in a build, in a hashed
/// folder of its own).
pub const PKG_DIR: &str = "pkg";
/// What `scripts/build.sh` writes at the site root.
pub const MANIFEST: &str = "site.json";
/// What `site-tool split` writes beside the chunks: each lazily loaded
/// function's chunks.
pub const CHUNK_MANIFEST: &str = "__wasm_split_manifest.json";

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
    /// Whether `pkg/` holds a content-hashed folder (a build's, not a watch's).
    pub hashed: bool,
    /// The chunks of the lazily loaded pages, for the pages to preload.
    pub chunks: PageChunks,
}

/// `site.json`: where the build put its output.
#[derive(serde::Deserialize)]
struct Manifest {
    /// `pkg/<hash>`, relative to the site root.
    pkg_dir: String,
}

impl Site {
    /// The site options: cargo-leptos's `LEPTOS_*` variables when it runs
    /// the server (`cargo leptos watch`); otherwise the root from the
    /// config, `LEPTOS_SITE_ROOT`, or `site` beside the binary's folder,
    /// and the hashed folder from its `site.json`.
    pub fn resolve(config: &Config) -> Result<Site, String> {
        if std::env::var_os("LEPTOS_OUTPUT_NAME").is_some() {
            let conf = leptos::config::get_config_from_env()
                .map_err(|e| format!("LEPTOS_* variables: {e}"))?;
            let chunks = page_chunks(&conf.leptos_options)?;
            return Ok(Site {
                options: conf.leptos_options,
                hashed: false,
                chunks,
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
        let pkg_dir = match manifest {
            Some(m) if is_hashed_pkg_dir(&m.pkg_dir) => m.pkg_dir,
            Some(m) => {
                return Err(format!(
                    "{}: pkg_dir {:?} is not a folder in {PKG_DIR}/",
                    manifest_path.display(),
                    m.pkg_dir
                ))
            }
            None => PKG_DIR.to_string(),
        };
        let options = LeptosOptions::builder()
            .output_name(OUTPUT_NAME)
            .site_root(root.to_string_lossy().into_owned())
            .site_pkg_dir(pkg_dir)
            .env(Env::PROD)
            .site_addr(
                format!("{}:{}", config.host, config.port)
                    .parse::<std::net::SocketAddr>()
                    .unwrap_or_else(|_| ([127, 0, 0, 1], config.port).into()),
            )
            .build();
        let chunks = page_chunks(&options)?;
        Ok(Site {
            options,
            hashed,
            chunks,
        })
    }
}

/// The chunk manifest in the site's `pkg` folder; none when the build
/// split nothing off.
fn page_chunks(options: &LeptosOptions) -> Result<PageChunks, String> {
    let path = Path::new(&*options.site_root)
        .join(&*options.site_pkg_dir)
        .join(CHUNK_MANIFEST);
    let by_function = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(err) => return Err(format!("{}: {err}", path.display())),
    };
    Ok(PageChunks {
        base: format!("/{}", options.site_pkg_dir),
        by_function: std::sync::Arc::new(by_function),
    })
}

/// Whether `dir` is one folder inside `pkg/`, named by letters and digits.
fn is_hashed_pkg_dir(dir: &str) -> bool {
    dir.strip_prefix(PKG_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()))
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
    fn a_built_site_names_its_hashed_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(PKG_DIR)).unwrap();
        std::fs::write(dir.path().join(MANIFEST), r#"{"pkg_dir":"pkg/0123abcd"}"#).unwrap();
        let site = Site::at(dir.path(), &Config::default()).unwrap();
        assert!(site.hashed);
        assert_eq!(&*site.options.output_name, OUTPUT_NAME);
        assert_eq!(&*site.options.site_root, dir.path().to_str().unwrap());
        assert_eq!(&*site.options.site_pkg_dir, "pkg/0123abcd");
    }

    #[test]
    fn a_manifest_pointing_outside_pkg_is_refused() {
        for pkg_dir in [
            "pkg",
            "pkg/",
            "pkg/../etc",
            "/pkg/abc",
            "other/abc",
            "pkg/a/b",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let text = format!(r#"{{"pkg_dir":"{pkg_dir}"}}"#);
            std::fs::write(dir.path().join(MANIFEST), text).unwrap();
            let err = Site::at(dir.path(), &Config::default()).unwrap_err();
            assert!(err.contains("is not a folder in pkg/"), "{pkg_dir}: {err}");
        }
    }

    #[test]
    fn a_site_without_a_manifest_keeps_the_plain_names() {
        let dir = tempfile::tempdir().unwrap();
        let site = Site::at(dir.path(), &Config::default()).unwrap();
        assert!(!site.hashed);
        assert_eq!(&*site.options.output_name, OUTPUT_NAME);
        assert_eq!(&*site.options.site_pkg_dir, PKG_DIR);
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
