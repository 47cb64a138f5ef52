//! No import cycle between the daemon's top-level modules, and every import down the layers
//! docs/architecture.md lists (section "Layering").
//!
//! A top-level module is `src/<name>.rs` together with everything under `src/<name>/`
//! (`lib.rs` and `main.rs` are the roots, not modules). Module `a` uses module `b` when a
//! line of `a` that is not a comment names `crate::b` (also inside `crate::{b, ...}`). The
//! graph of those uses must have no cycle: a module that needs something from a module
//! above it gets it passed in (a trait, a callback), or the thing moves to the module that
//! owns the fact. Comment lines (`//`, `///`, `//!`) are skipped, so a doc link upward is
//! not a use.
//!
//! Threading: a plain test; reads the source tree only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One use: from `from` to `to`, first seen at `at` (`file:line`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Use {
    from: String,
    to: String,
    at: String,
}

/// Every top-level module's source files: `name -> [(path, text)]`.
type Sources = BTreeMap<String, Vec<(String, String)>>;

/// The daemon's top-level modules and their files.
fn daemon_sources() -> Sources {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Sources::new();
    for entry in std::fs::read_dir(&src).expect("daemon/src") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut files = Vec::new();
            collect_rs(&path, &mut files);
            sources.entry(name).or_default().extend(files);
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
            let text = std::fs::read_to_string(&path).expect("readable");
            sources
                .entry(name)
                .or_default()
                .push((path.display().to_string(), text));
        }
    }
    sources
}

fn collect_rs(dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("a module folder")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("readable");
            out.push((path.display().to_string(), text));
        }
    }
}

/// Where a `crate::{ ... }` group left off at the end of a line (a group may span lines).
#[derive(Default)]
struct Group {
    /// Brace depth inside the group; 0: not in one.
    depth: usize,
    /// The next name at depth 1 starts a path (after the `{` or a `,`).
    expect_name: bool,
}

/// The top-level names a line's `crate::` paths start with: `crate::a::X` gives `a`,
/// `crate::{a::X, b}` gives `a` and `b`.
fn crate_paths(line: &str, group: &mut Group, out: &mut Vec<String>) {
    let bytes = line.as_bytes();
    let ident_at = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        (line[start..i].to_owned(), i)
    };
    let mut i = 0;
    while i < bytes.len() {
        // Inside a `crate::{ ... }` group: a name after `{` or `,` at depth 1 is a module.
        if group.depth > 0 {
            match bytes[i] {
                b'{' => group.depth += 1,
                b'}' => group.depth -= 1,
                b',' if group.depth == 1 => group.expect_name = true,
                c if group.expect_name && (c.is_ascii_alphabetic() || c == b'_') => {
                    let (name, end) = ident_at(i);
                    out.push(name);
                    group.expect_name = false;
                    i = end;
                    continue;
                }
                c if !c.is_ascii_whitespace() => group.expect_name = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if line[i..].starts_with("crate::") {
            let before = line[..i].chars().next_back();
            // `$crate::` and `latentd_crate::` are not this crate's root.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                i += "crate::".len();
                continue;
            }
            i += "crate::".len();
            if line[i..].starts_with('{') {
                *group = Group {
                    depth: 1,
                    expect_name: true,
                };
                i += 1;
            } else {
                let (name, end) = ident_at(i);
                out.push(name);
                i = end;
            }
            continue;
        }
        i += 1;
    }
}

/// Every use of one top-level module by another, in `sources`.
fn uses(sources: &Sources) -> Vec<Use> {
    let mut found = Vec::new();
    for (module, files) in sources {
        for (path, text) in files {
            let mut group = Group::default();
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                let mut names = Vec::new();
                crate_paths(line, &mut group, &mut names);
                for name in names {
                    if name != *module && sources.contains_key(&name) {
                        found.push(Use {
                            from: module.clone(),
                            to: name,
                            at: format!("{path}:{}", n + 1),
                        });
                    }
                }
            }
        }
    }
    found
}

/// A cycle of `uses`, as the uses that make it, if there is one.
fn find_cycle(uses: &[Use]) -> Option<Vec<Use>> {
    let mut edges: BTreeMap<&str, BTreeMap<&str, &Use>> = BTreeMap::new();
    for u in uses {
        edges
            .entry(u.from.as_str())
            .or_default()
            .entry(u.to.as_str())
            .or_insert(u);
    }
    // Depth-first search; a use that reaches a module still on the path closes a cycle.
    fn visit<'a>(
        at: &'a str,
        edges: &BTreeMap<&'a str, BTreeMap<&'a str, &'a Use>>,
        path: &mut Vec<&'a Use>,
        on_path: &mut BTreeSet<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<Use>> {
        on_path.insert(at);
        for (&to, &u) in edges.get(at).into_iter().flatten() {
            if on_path.contains(to) {
                let start = path.iter().position(|p| p.from == to).unwrap_or(path.len());
                let mut cycle: Vec<Use> = path[start..].iter().map(|u| (*u).clone()).collect();
                cycle.push(u.clone());
                return Some(cycle);
            }
            if !done.contains(to) {
                path.push(u);
                if let Some(cycle) = visit(to, edges, path, on_path, done) {
                    return Some(cycle);
                }
                path.pop();
            }
        }
        on_path.remove(at);
        done.insert(at);
        None
    }
    let mut done = BTreeSet::new();
    for &start in edges.keys() {
        if !done.contains(start) {
            let mut on_path = BTreeSet::new();
            if let Some(cycle) = visit(start, &edges, &mut Vec::new(), &mut on_path, &mut done) {
                return Some(cycle);
            }
        }
    }
    None
}

fn describe(cycle: &[Use]) -> String {
    let names: Vec<&str> = cycle
        .iter()
        .map(|u| u.from.as_str())
        .chain(cycle.last().map(|u| u.to.as_str()))
        .collect();
    let uses: Vec<String> = cycle
        .iter()
        .map(|u| format!("  {} -> {} at {}", u.from, u.to, u.at))
        .collect();
    format!("{}\n{}", names.join(" -> "), uses.join("\n"))
}

/// The layers docs/architecture.md lists (section "Layering"): module -> layer number, a
/// module in the first numbered item that names it in backticks.
fn documented_layers(doc: &str, modules: &Sources) -> BTreeMap<String, u32> {
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Layering"))
        .expect("docs/architecture.md has a Layering section");
    let mut layers = BTreeMap::new();
    let mut layer = None;
    for line in section.lines() {
        if let Some((number, _)) = line.split_once(". ")
            && let Ok(n) = number.parse::<u32>()
        {
            layer = Some(n);
        } else if !line.starts_with("   ") {
            layer = None;
        }
        let Some(n) = layer else { continue };
        for name in line.split('`').skip(1).step_by(2) {
            if modules.contains_key(name) {
                layers.entry(name.to_owned()).or_insert(n);
            }
        }
    }
    layers
}

#[test]
fn every_import_goes_down_the_documented_layers() {
    let sources = daemon_sources();
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/architecture.md");
    let layers = documented_layers(&doc, &sources);
    let unlisted: Vec<&String> = sources
        .keys()
        .filter(|m| !layers.contains_key(*m))
        .collect();
    assert!(
        unlisted.is_empty(),
        "modules missing from docs/architecture.md, Layering: {unlisted:?}"
    );
    let upward: Vec<String> = uses(&sources)
        .into_iter()
        .filter(|u| layers[&u.from] <= layers[&u.to])
        .map(|u| {
            format!(
                "{} (layer {}) -> {} (layer {}) at {}",
                u.from, layers[&u.from], u.to, layers[&u.to], u.at
            )
        })
        .collect();
    assert!(
        upward.is_empty(),
        "imports beside or above the module's layer (docs/architecture.md, Layering):\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_daemon_modules_import_one_another_without_a_cycle() {
    let sources = daemon_sources();
    for expected in [
        "audio", "settings", "cli", "config", "control", "service", "osc",
    ] {
        assert!(
            sources.contains_key(expected),
            "module {expected} not found"
        );
    }
    let uses = uses(&sources);
    assert!(
        uses.iter()
            .any(|u| u.from == "settings" && u.to == "config"),
        "the scanner sees settings use config"
    );
    if let Some(cycle) = find_cycle(&uses) {
        panic!(
            "import cycle between daemon modules (see docs/architecture.md, Layering):\n{}",
            describe(&cycle)
        );
    }
}

/// A made-up tree: `a` uses `b` (a grouped import over two lines), `b` uses `c`, `c` uses `a`
/// in code; `c` also names `d` in a doc comment only, and `d` names `a` only in a string
/// after `$crate::`.
fn planted(with_cycle: bool) -> Sources {
    let file = |name: &str, text: &str| {
        (
            name.to_owned(),
            vec![(format!("{name}.rs"), text.to_owned())],
        )
    };
    let c_text = if with_cycle {
        "/// See [`crate::d::Thing`].\nuse crate::a::Top;\n"
    } else {
        "/// See [`crate::d::Thing`] and [`crate::a::Top`].\n"
    };
    [
        file("a", "use crate::{\n    stoppable::X,\n    b::Mid,\n};\n"),
        file("b", "fn f() { crate::c::low(); }\n"),
        file("c", c_text),
        file("d", "macro_rules! m { () => { $crate::a::Top } }\n"),
        file("stoppable", "//! crate::a is mentioned here only.\n"),
    ]
    .into_iter()
    .collect()
}

#[test]
fn the_scanner_finds_a_planted_cycle_and_names_its_uses() {
    let uses = uses(&planted(true));
    let pairs: BTreeSet<(&str, &str)> = uses
        .iter()
        .map(|u| (u.from.as_str(), u.to.as_str()))
        .collect();
    let expected: BTreeSet<(&str, &str)> = [("a", "stoppable"), ("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .collect();
    assert_eq!(pairs, expected);
    let cycle = find_cycle(&uses).expect("a -> b -> c -> a is found");
    let text = describe(&cycle);
    assert!(text.starts_with("a -> b -> c -> a\n"), "{text}");
    assert!(text.contains("c -> a at c.rs:2"), "{text}");
}

#[test]
fn the_scanner_passes_the_same_tree_without_the_closing_use() {
    let uses = uses(&planted(false));
    assert_eq!(find_cycle(&uses), None, "{uses:?}");
}
