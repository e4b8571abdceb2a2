//! Keeps the layers of ARCHITECTURE.md: a module imports only from its own
//! layer or those below, and no two files import each other, directly or
//! through others. Reads the source; needs no build of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file, by its path under `src/` without the extension
/// (`proxy/chat`, `billing/mod`).
type FileId = String;

/// The layer of each top-level module, from the table in ARCHITECTURE.md:
/// rows `| N | `a`, `b` | … |`.
fn layer_table() -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut layers = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(number), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Ok(layer) = number.parse::<u32>() else {
            continue;
        };
        for module in modules.split(',') {
            let module = module.trim().trim_matches('`');
            if !module.is_empty() {
                layers.insert(module.to_string(), layer);
            }
        }
    }
    layers
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `src/`, but the crate roots.
fn source_files() -> BTreeMap<FileId, String> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<FileId, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let id = path.strip_prefix(src).unwrap().with_extension("");
                let id = id.to_string_lossy().replace('\\', "/");
                if id != "lib" && id != "main" {
                    out.insert(id, std::fs::read_to_string(&path).unwrap());
                }
            }
        }
    }
    let src = root().join("src");
    let mut files = BTreeMap::new();
    walk(&src, &src, &mut files);
    files
}

/// The module path a file defines (`proxy/mod` and `proxy` both are `proxy`).
fn module_of(file: &str) -> Vec<String> {
    let mut path: Vec<String> = file.split('/').map(str::to_string).collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// The code without comments (doc links name modules without importing them).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path the code names: each leaf of its `use` trees, and each
/// `crate::…` or `super::…` path elsewhere. Paths are absolute, from the
/// crate root.
fn named_paths(file: &str, code: &str) -> Vec<Vec<String>> {
    let here = module_of(file);
    let mut paths = Vec::new();
    for statement in use_statements(code) {
        for path in expand_use_tree(&statement) {
            paths.extend(absolute(&here, &path));
        }
    }
    let words: Vec<char> = code.chars().collect();
    let mut at = 0;
    while at < words.len() {
        let rest: String = words[at..words.len().min(at + 7)].iter().collect();
        let starts_path = (rest.starts_with("crate::") || rest.starts_with("super::"))
            && (at == 0 || !(words[at - 1].is_alphanumeric() || words[at - 1] == '_'));
        if starts_path {
            let mut end = at;
            while end < words.len() && (words[end].is_alphanumeric() || "_:".contains(words[end])) {
                end += 1;
            }
            let path: Vec<String> = words[at..end]
                .iter()
                .collect::<String>()
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            paths.extend(absolute(&here, &path));
            at = end;
        } else {
            at += 1;
        }
    }
    paths
}

/// The `use` statements of some code, each without `use` and `;`.
fn use_statements(code: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let boundary = at == 0 || !rest[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let after = &rest[at + 4..];
        let Some(end) = after.find(';') else { break };
        if boundary {
            statements.push(after[..end].split_whitespace().collect::<Vec<_>>().join(""));
        }
        rest = &after[end..];
    }
    statements
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e`.
fn expand_use_tree(tree: &str) -> Vec<Vec<String>> {
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        return vec![path
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|part| {
            let part = if part == "self" { "" } else { part };
            expand_use_tree(&format!("{prefix}{part}"))
        })
        .collect()
}

/// A path from the crate root, or nothing for an outside crate's.
fn absolute(here: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = here.to_vec();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &path[1..];
        }
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some("self") => rest = &path[1..],
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The file that defines the longest prefix of `path`.
fn file_of(path: &[String], files: &BTreeMap<FileId, String>) -> Option<FileId> {
    (1..=path.len()).rev().find_map(|len| {
        let joined = path[..len].join("/");
        [joined.clone(), format!("{joined}/mod")]
            .into_iter()
            .find(|id| files.contains_key(id))
    })
}

/// Who imports whom, file by file. A `mod.rs` naming its own children
/// (mounting their routes, re-exporting them) is not an import.
fn imports(files: &BTreeMap<FileId, String>) -> BTreeMap<FileId, BTreeSet<FileId>> {
    let mut graph = BTreeMap::new();
    for (file, text) in files {
        let here = module_of(file);
        let own_children =
            |target: &str| file.ends_with("mod") && module_of(target).starts_with(&here);
        let targets: BTreeSet<FileId> = named_paths(file, &code_of(text))
            .iter()
            .filter_map(|path| file_of(path, files))
            .filter(|target| target != file && !own_children(target))
            .collect();
        graph.insert(file.clone(), targets);
    }
    graph
}

fn top_module(file: &str) -> &str {
    file.split('/').next().unwrap_or(file)
}

/// Every import from a module's file into a higher layer's.
fn upward_imports(
    graph: &BTreeMap<FileId, BTreeSet<FileId>>,
    layers: &BTreeMap<String, u32>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for (file, targets) in graph {
        let from = layers[top_module(file)];
        for target in targets {
            let to = layers[top_module(target)];
            if to > from {
                wrong.push(format!(
                    "{file}.rs (layer {from}) imports {target}.rs (layer {to})"
                ));
            }
        }
    }
    wrong
}

/// The files of each import cycle (strongly connected set of two or more).
fn cycles(graph: &BTreeMap<FileId, BTreeSet<FileId>>) -> Vec<Vec<FileId>> {
    let reaches = |from: &FileId| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(file) = stack.pop() {
            for next in graph.get(&file).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&FileId, BTreeSet<FileId>> =
        graph.keys().map(|f| (f, reaches(f))).collect();
    let mut found: Vec<Vec<FileId>> = Vec::new();
    for file in graph.keys() {
        let circle: Vec<FileId> = graph
            .keys()
            .filter(|other| reach[file].contains(*other) && reach[*other].contains(file))
            .cloned()
            .collect();
        if circle.len() > 1 && !found.contains(&circle) {
            found.push(circle);
        }
    }
    found
}

#[test]
fn every_module_has_a_layer() {
    let layers = layer_table();
    let files = source_files();
    let modules: BTreeSet<&str> = files.keys().map(|f| top_module(f)).collect();
    let missing: Vec<&&str> = modules
        .iter()
        .filter(|m| !layers.contains_key(**m))
        .collect();
    assert!(
        missing.is_empty(),
        "modules missing from ARCHITECTURE.md's layer table: {missing:?}"
    );
    let stale: Vec<&String> = layers
        .keys()
        .filter(|m| !modules.contains(m.as_str()))
        .collect();
    assert!(
        stale.is_empty(),
        "ARCHITECTURE.md names modules that do not exist: {stale:?}"
    );
}

#[test]
fn no_module_imports_one_above_it() {
    let graph = imports(&source_files());
    let wrong = upward_imports(&graph, &layer_table());
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_files_import_each_other() {
    let found = cycles(&imports(&source_files()));
    assert!(found.is_empty(), "import cycles: {found:?}");
}

#[test]
fn the_checks_see_bad_imports() {
    let files: BTreeMap<FileId, String> = [
        ("db/mod", "use crate::billing::money::format_usd;"),
        (
            "billing/money",
            "use crate::db::{self, Db};\nfn f() { super::meter::x(); }",
        ),
        (
            "billing/meter",
            "// crate::proxy::chat is only a comment\nuse super::money;",
        ),
        ("proxy/chat", "use crate::billing::meter::{Meter, Counted};"),
    ]
    .into_iter()
    .map(|(id, code)| (id.to_string(), code.to_string()))
    .collect();
    let layers: BTreeMap<String, u32> = [("db", 1), ("billing", 2), ("proxy", 3)]
        .map(|(m, l)| (m.to_string(), l))
        .into();
    let graph = imports(&files);
    assert_eq!(
        graph["billing/meter"],
        BTreeSet::from(["billing/money".to_string()])
    );
    assert_eq!(
        upward_imports(&graph, &layers),
        ["db/mod.rs (layer 1) imports billing/money.rs (layer 2)"]
    );
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains(&"db/mod".to_string()) && found[0].contains(&"billing/meter".to_string())
    );
}
