//! The layer order of docs/architecture.md, enforced: no module of `src/` names a module of a
//! higher layer (`crate::x`), so the crate has no import circle.

use std::collections::BTreeMap;
use std::path::Path;

/// Lowest first. Modules on one line form one layer and may use each other only in the
/// direction docs/architecture.md gives; the test checks across layers.
const LAYERS: &[&[&str]] = &[
    &["config", "limits", "logging", "privdrop", "state"],
    &["domain"],
    &["zones", "select"],
    &["snapshot"],
    &["dns"],
    &["metrics", "querylog"],
    &["net", "probe"],
    &["monitor"],
    &["control"],
    &["status"],
    &["app", "cli", "fuzzing"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `crate::name` (and each name of `crate::{a, b::c}`) in `text`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        // Skip `lbns_crate::` and the like: `crate` must start a path.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_higher_layer() {
    let src = Path::new("src");
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut violations = Vec::new();
    let mut checked = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            violations.push(format!(
                "{}: module `{module}` has no place in LAYERS (tests/it/layers.rs) and docs/architecture.md",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_paths(&text) {
            *checked.entry(module.clone()).or_insert(0) += 1;
            match layer_of(&used) {
                Some(l) if l > own => violations.push(format!(
                    "{}: `{module}` (layer {own}) uses `crate::{used}` (layer {l})",
                    file.display()
                )),
                Some(_) => {}
                None => violations.push(format!(
                    "{}: `crate::{used}` is not a module in LAYERS",
                    file.display()
                )),
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    // The scan saw the imports it should: a broken parser would pass vacuously.
    for m in ["monitor", "control", "status", "net", "snapshot"] {
        assert!(checked.get(m).is_some_and(|&n| n >= 3), "{m}: {checked:?}");
    }
}

#[test]
fn the_scan_finds_every_form_of_path() {
    assert_eq!(
        crate_paths("use crate::a::b;\nuse crate::{c, d::e};\nlet x = crate::f();"),
        ["a", "c", "d", "f"]
    );
    assert!(crate_paths("my_crate::a; crate_x").is_empty());
}

#[test]
fn the_order_in_the_docs_is_the_order_here() {
    let doc = std::fs::read_to_string("docs/architecture.md").unwrap();
    let line = doc
        .lines()
        .find(|l| l.starts_with("Layers:"))
        .expect("docs/architecture.md has a `Layers:` line");
    let written: Vec<Vec<String>> = line["Layers:".len()..]
        .split('→')
        .map(|layer| {
            layer
                .split(['/', ',', '`', '.'])
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty())
                .collect()
        })
        .collect();
    let here: Vec<Vec<String>> = LAYERS
        .iter()
        .map(|l| l.iter().map(|m| (*m).to_owned()).collect())
        .collect();
    assert_eq!(written, here, "{line}");
}
