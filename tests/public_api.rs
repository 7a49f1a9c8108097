//! The public surface, written down: every public item of the runtime (types, functions, methods,
//! constants, variants, fields) and every name the facade re-exports, one per line in
//! `tests/public_api.txt`. An item added or removed fails this test, so the surface changes only
//! on purpose: rerun with `GRACEFUL_BLESS=1` to write the new list, and read its diff.
//!
//! A scan of the source, not rustdoc's JSON (nightly only): it reads `pub` items (never
//! `pub(crate)`), the variants of `pub enum`s and the `pub` fields of structs, skipping
//! `#[doc(hidden)]` items and `#[cfg(test)]` modules; the runtime's own `pub use` lines are left
//! to the facade's list, which is what users reach.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The item a `pub` line declares: `fn name`, `struct Name`, …
fn item(line: &str) -> Option<String> {
    let rest = line.strip_prefix("pub ")?;
    // `pub const fn`, `pub async fn`, `pub unsafe fn` are functions like any other.
    let rest = ["const fn ", "async fn ", "unsafe fn "]
        .iter()
        .find_map(|q| rest.strip_prefix(q))
        .map_or(rest.to_string(), |r| format!("fn {r}"));
    let mut words = rest.split(|c: char| !(c.is_alphanumeric() || c == '_'));
    let kind = words.next()?;
    if !matches!(
        kind,
        "fn" | "struct" | "enum" | "trait" | "const" | "type" | "mod"
    ) {
        return None;
    }
    let name = words.find(|w| !w.is_empty())?;
    Some(format!("{kind} {name}"))
}

/// The public items of one file, each as `path: owner::item`.
fn scan(root: &Path, file: &Path, out: &mut Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap();
    let path = file.strip_prefix(root).unwrap().display().to_string();
    let mut hidden = false;
    // The enclosing `impl`/`pub enum`/`pub struct` block: its name and its indentation.
    let mut owner: Option<(String, usize, &str)> = None;
    let mut skip_until: Option<usize> = None;
    // Inside a `pub enum`: the variant whose named fields are being read.
    let mut variant_with_fields: Option<String> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if let Some(depth) = skip_until {
            if indent == depth && trimmed == "}" {
                skip_until = None;
            }
            continue;
        }
        if trimmed == "#[cfg(test)]" || trimmed.starts_with("#[doc(hidden)]") {
            hidden = true;
            continue;
        }
        if trimmed.starts_with("#[") || trimmed.starts_with("//") || trimmed.is_empty() {
            continue;
        }
        if hidden {
            hidden = false;
            // The hidden item's body, if it has one.
            if trimmed.ends_with('{') {
                skip_until = Some(indent);
            }
            continue;
        }
        if let Some((_, depth, _)) = &owner {
            if indent == *depth && trimmed.starts_with('}') {
                owner = None;
                continue;
            }
        }
        if owner.is_none() && indent == 0 {
            if let Some(rest) = trimmed.strip_prefix("impl") {
                // `impl<T> Name<T> {`, `impl Trait for Name {`: methods of trait impls are the
                // trait's, not new names.
                if !rest.contains(" for ") && trimmed.ends_with('{') {
                    let name = after_generics(rest)
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .find(|w| !w.is_empty())
                        .unwrap_or_default()
                        .to_string();
                    owner = Some((name, 0, "impl"));
                } else if trimmed.ends_with('{') {
                    owner = Some((String::new(), 0, "trait impl"));
                }
                continue;
            }
        }
        match &owner {
            Some((name, _, "impl")) if indent == 4 => {
                if let Some(item) = item(trimmed) {
                    out.push(format!("{path}: {name}::{item}"));
                }
            }
            Some((name, _, "enum")) if indent == 4 => {
                let variant: String = trimmed
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !variant.is_empty() {
                    out.push(format!("{path}: {name}::{variant}"));
                }
                variant_with_fields = trimmed.ends_with('{').then_some(variant);
            }
            Some((name, _, "enum")) if indent == 8 => {
                // A named field of a struct-like variant: public with its enum.
                if let (Some(variant), Some((field, _))) =
                    (&variant_with_fields, trimmed.split_once(':'))
                {
                    out.push(format!("{path}: {name}::{variant}.{field}"));
                }
            }
            Some((name, _, "trait")) if indent == 4 => {
                // A trait's items are public with the trait, written without `pub`.
                if let Some(item) = item(&format!("pub {trimmed}")) {
                    out.push(format!("{path}: {name}::{item}"));
                }
            }
            Some((name, _, "struct")) if indent == 4 => {
                if let Some(field) = trimmed.strip_prefix("pub ") {
                    let field: String = field
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    out.push(format!("{path}: {name}.{field}"));
                }
            }
            Some((_, _, "macro")) if indent == 4 => {
                if let Some(item) = item(trimmed) {
                    out.push(format!("{path}: {item}"));
                }
            }
            Some(_) => {}
            None if indent == 0 => {
                if let Some(item) = item(trimmed) {
                    out.push(format!("{path}: {item}"));
                    let name = item.split(' ').nth(1).unwrap().to_string();
                    if trimmed.ends_with('{') {
                        if item.starts_with("enum ") {
                            owner = Some((name, 0, "enum"));
                        } else if item.starts_with("struct ") {
                            owner = Some((name, 0, "struct"));
                        } else if item.starts_with("trait ") {
                            owner = Some((name, 0, "trait"));
                        } else {
                            owner = Some((name, 0, "body"));
                        }
                    }
                } else if trimmed.starts_with("pin_project!") {
                    // A struct declared inside the macro, one level in.
                    owner = Some((String::new(), 0, "macro"));
                } else if trimmed.ends_with('{') && !trimmed.starts_with("pub") {
                    owner = Some((String::new(), 0, "private"));
                }
            }
            None => {}
        }
    }
}

/// The facade's re-exports, one name a line, and the runtime's items.
fn surface() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut lines = Vec::new();
    let facade = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let mut in_use = false;
    // The top level of the facade: what the macros' output uses (`__private`) is not public API.
    let public = &facade[..facade.find("pub mod __private").unwrap_or(facade.len())];
    for line in public.lines() {
        let trimmed = line.trim();
        if let Some(names) = line.strip_prefix("pub use graceful_runtime::{") {
            match names.strip_suffix("};") {
                Some(names) => {
                    let names = names.split(',').map(str::trim).filter(|n| !n.is_empty());
                    lines.extend(names.map(|name| format!("graceful::{name}")));
                }
                None => in_use = true,
            }
            continue;
        }
        if in_use {
            if trimmed.starts_with("};") {
                in_use = false;
                continue;
            }
            for name in trimmed.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                lines.push(format!("graceful::{name}"));
            }
        } else if let Some(rest) = line.strip_prefix("pub use graceful_") {
            let name = rest.rsplit("::").next().unwrap().trim_end_matches(';');
            lines.push(format!("graceful::{name}"));
        }
    }
    let mut files = Vec::new();
    rust_files(&root.join("runtime/src"), &mut files);
    for file in files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        scan(&root.join("runtime/src"), &file, &mut lines);
    }
    lines.sort();
    lines.dedup();
    lines.join("\n") + "\n"
}

#[test]
fn the_public_surface_changes_only_on_purpose() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/public_api.txt");
    let now = surface();
    if std::env::var_os("GRACEFUL_BLESS").is_some() {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    if written != now {
        let added: Vec<&str> = now
            .lines()
            .filter(|l| !written.lines().any(|w| w == *l))
            .collect();
        let removed: Vec<&str> = written
            .lines()
            .filter(|l| !now.lines().any(|n| n == *l))
            .collect();
        panic!(
            "the public surface changed; if on purpose, rerun with GRACEFUL_BLESS=1 and commit \
             tests/public_api.txt\n  added: {added:#?}\n  removed: {removed:#?}"
        );
    }
}

/// What follows an `impl`'s generic parameters (`<L, S> Serve<L, S> {` → ` Serve<L, S> {`).
fn after_generics(rest: &str) -> &str {
    if !rest.starts_with('<') {
        return rest;
    }
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return &rest[i + 1..];
                }
            }
            _ => {}
        }
    }
    rest
}
