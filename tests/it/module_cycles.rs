//! Data flows one way (issue 9): no import cycle between the top-level
//! modules of `src/`. Reads the sources (tests excluded), collects every
//! `crate::MODULE` a module names, and fails with the cycle it finds.
//! `app` (the wiring) and the binaries may use everything and are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that wire the others together: they may import anything, and
/// nothing imports them.
const WIRING: &[&str] = &["app", "lib", "main", "bin"];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without its `#[cfg(test)]` modules (tests may reach across).
fn without_tests(source: &str) -> &str {
    source
        .find("#[cfg(test)]\nmod ")
        .map_or(source, |i| &source[..i])
}

/// The top-level modules named by `crate::NAME` paths, including grouped
/// imports (`use crate::{a, b::c}`).
fn named_modules(source: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = source;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                names.insert(first_segment(item.trim()));
            }
        } else {
            names.insert(first_segment(rest));
        }
    }
    names.remove("");
    names
}

/// The identifier at the start of `path`.
fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The module graph: top-level module → the top-level modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        // Test files (`tests.rs` beside the code) may reach across.
        if WIRING.contains(&module.as_str()) || file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&file).expect("read source");
        let names = named_modules(without_tests(&source));
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(names.into_iter().filter(|n| *n != module && n != "self"));
    }
    graph
}

/// A cycle through `start`, if any (depth-first search).
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    let here = path.last().expect("a path").clone();
    for next in graph.get(&here).into_iter().flatten() {
        if let Some(i) = path.iter().position(|m| m == next) {
            let mut cycle = path[i..].to_vec();
            cycle.push(next.clone());
            return Some(cycle);
        }
        if done.contains(next) {
            continue;
        }
        path.push(next.clone());
        if let Some(cycle) = cycle_from(graph, path, done) {
            return Some(cycle);
        }
        path.pop();
    }
    done.insert(here);
    None
}

#[test]
fn no_import_cycle_between_modules() {
    let graph = graph();
    assert!(
        graph.contains_key("store") && graph.contains_key("smtp"),
        "{graph:?}"
    );
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, &mut vec![module.clone()], &mut done) {
            panic!(
                "import cycle: {} (the graph: {graph:#?})",
                cycle.join(" → ")
            );
        }
    }
}

/// The checker itself finds a cycle and reads grouped imports.
#[test]
fn the_checker_sees_cycles_and_groups() {
    assert_eq!(
        named_modules("use crate::{calendar, mail::x, rules};\nlet a = crate::gsm::f();"),
        ["calendar", "gsm", "mail", "rules"]
            .map(String::from)
            .into()
    );
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
            .collect();
    let cycle = cycle_from(&graph, &mut vec!["a".into()], &mut BTreeSet::new());
    assert_eq!(cycle, Some(["a", "b", "c", "a"].map(String::from).to_vec()));
}
