//! `site-tool`: the two WASM steps of `scripts/build.sh`.
//!
//! ```text
//! site-tool split   <input.wasm> <out-dir> <main-module>
//! site-tool bindgen <input.wasm> <out-dir> <out-name> [--split]
//! ```
//!
//! `split` cuts the lazy-loaded parts (Leptos's `#[lazy]` and
//! `#[lazy_route]`) out of the client into chunks in `<out-dir>`, beside
//! their loader (`__wasm_split.…js`) and `__wasm_split_manifest.json`, and
//! writes the remaining main module to `<out-dir>/main.wasm`. The input must
//! be linked with `--emit-relocs`. `bindgen` is `wasm-bindgen --target web
//! --no-typescript`; with `--split` it keeps the exports the chunks import.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The loader's name, as the main module imports it: the name Leptos's
/// `HydrationScripts` preloads when file names carry no hash of their own
/// (here the folder carries it).
const SPLIT_LOADER: &str = "./__wasm_split.______________________.js";
/// The prefetch map: route chunk → the chunk files it needs.
const SPLIT_MANIFEST: &str = "__wasm_split_manifest.json";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["split", input, out_dir, main_module] => {
            split(input.as_ref(), out_dir.as_ref(), main_module)
        }
        ["bindgen", input, out_dir, out_name] => {
            bindgen(input.as_ref(), out_dir.as_ref(), out_name, false)
        }
        ["bindgen", input, out_dir, out_name, "--split"] => {
            bindgen(input.as_ref(), out_dir.as_ref(), out_name, true)
        }
        _ => Err(
            "usage: site-tool split <input.wasm> <out-dir> <main-module>\n       \
                  site-tool bindgen <input.wasm> <out-dir> <out-name> [--split]"
                .into(),
        ),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("site-tool: {error}");
            ExitCode::FAILURE
        }
    }
}

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// Splits `input` into a main module and lazily loaded chunks.
fn split(input: &Path, out_dir: &Path, main_module: &str) -> Outcome {
    let wasm = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
    std::fs::create_dir_all(out_dir)?;
    let main_out: PathBuf = out_dir.join("main.wasm");
    let mut options = wasm_split_cli_support::Options::new(&wasm);
    options.output_dir = out_dir;
    options.main_out_path = &main_out;
    options.link_name = SPLIT_LOADER;
    options.main_module = main_module;
    let split = wasm_split_cli_support::transform(options).map_err(|e| format!("{e:#}"))?;
    // The chunks carry the input's names and other custom sections: a third
    // of a small chunk, and of no use to a browser.
    for chunk in &split.split_modules {
        let wasm = std::fs::read(chunk)?;
        std::fs::write(chunk, without_custom_sections(&wasm)?)?;
    }
    // Sorted, so that equal builds write equal bytes.
    let manifest: std::collections::BTreeMap<_, _> = split.prefetch_map.iter().collect();
    std::fs::write(out_dir.join(SPLIT_MANIFEST), serde_json::to_vec(&manifest)?)?;
    eprintln!("site-tool: {} chunks", split.split_modules.len());
    Ok(())
}

/// `wasm` without its custom sections (names, producers, relocations).
fn without_custom_sections(wasm: &[u8]) -> Result<Vec<u8>, wasmparser::BinaryReaderError> {
    let mut module = wasm_encoder::Module::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        if matches!(payload, wasmparser::Payload::CustomSection(_)) {
            continue;
        }
        if let Some((id, range)) = payload.as_section() {
            let data = &wasm[range.start as usize..range.end as usize];
            module.section(&wasm_encoder::RawSection { id, data });
        }
    }
    Ok(module.finish())
}

/// Generates the JS glue and the final `<out-name>_bg.wasm`.
fn bindgen(input: &Path, out_dir: &Path, out_name: &str, split: bool) -> Outcome {
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(input)
        .out_name(out_name)
        .web(true)?
        .typescript(false)
        .keep_lld_exports(split)
        .demangle(!split)
        .generate(out_dir)?;
    Ok(())
}
