//! The code's shape, kept: no top-level module of `src/` imports one that imports it back
//! (directly or around a longer circle), so that each can be read, tested and changed from
//! the bottom up (`config`, `family`, `health` below `upstream`, below `chain`). Test code
//! (`#[cfg(test)]` modules, `tests.rs` files) and comments are not counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules it names as `crate::…`, with a file that does.
fn imports() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut deps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".rs") || name == "tests.rs" || name.ends_with("_tests.rs") {
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let top = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for line in code.lines() {
                let line = line.split("//").next().unwrap_or_default();
                for (at, _) in line.match_indices("crate::") {
                    let used: String = line[at + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !used.is_empty() && used != top {
                        deps.entry(top.clone())
                            .or_default()
                            .entry(used)
                            .or_insert_with(|| rel.clone());
                    }
                }
            }
        }
    }
    deps
}

/// A path of imports from `from` to `to`, if any.
fn path(
    deps: &BTreeMap<String, BTreeMap<String, String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in deps.get(from).into_iter().flat_map(|d| d.keys()) {
        if next == to {
            return Some(vec![from.to_string(), to.to_string()]);
        }
        if seen.insert(next.clone()) {
            if let Some(mut rest) = path(deps, next, to, seen) {
                rest.insert(0, from.to_string());
                return Some(rest);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let deps = imports();
    assert!(deps.contains_key("chain") && deps["chain"].contains_key("upstream"));
    let mut circles = Vec::new();
    for (module, used) in &deps {
        for (other, file) in used {
            if let Some(back) = path(&deps, other, module, &mut BTreeSet::new()) {
                circles.push(format!(
                    "{module} -> {other} ({file}), back: {}",
                    back.join(" -> ")
                ));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}
