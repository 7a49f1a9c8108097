//! The runtime's modules form layers, and imports only go down. `ARCHITECTURE.md` lists the
//! layer of every module of `runtime/src` (its "Layers" table, which this test reads); a module
//! may use what a lower layer defines, and what its own layer defines in a module listed before
//! it in that row, never what a higher layer defines.
//!
//! Every `crate::`, `super::` and `self::` path in the runtime's code is read — `use`
//! declarations, paths inside code, paths inside macro invocations, and `use child::…` of a
//! module's own child — with comments, doc comments and string literals left out, and judged by the module that defines the item it names: a
//! re-export does not move an item to another layer. Unit tests (`#[cfg(test)]` modules and
//! `tests.rs` files) are not layered code and are not read.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/src")
}

/// A module's path in the crate (`""` for the crate root, `scope::turn`), from its file.
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(root()).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The code of a file as tokens: comments, string and char literals gone, `#[cfg(test)]`
/// modules cut out.
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && {
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            chars.get(j) == Some(&'"')
        } {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    i = j + 1 + hashes;
                    break;
                }
                j += 1;
            }
        } else if c == '"' {
            i += 1;
            while chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' {
            // A char literal ('a', '\n', '\'') or a lifetime ('a): a lifetime has no closing quote.
            if next == Some('\\') {
                i += 2;
                while chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && next == Some(':') {
            out.push("::".into());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    cut_test_modules(out)
}

/// Drops `#[cfg(test)] mod NAME { … }` and `#[cfg(test)] mod NAME;` (and `cfg(all(test, …))`).
fn cut_test_modules(tokens: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let test_cfg = tokens[i..].starts_with(&["#", "[", "cfg", "("].map(String::from))
            && (tokens.get(i + 4).is_some_and(|t| t == "test")
                || tokens[i + 4..].starts_with(&["all", "(", "test"].map(String::from)));
        if test_cfg {
            let close = i + tokens[i..].iter().position(|t| t == "]").unwrap();
            if tokens.get(close + 1).is_none_or(|t| t != "mod") {
                out.push(tokens[i].clone());
                i += 1;
                continue;
            }
            i = close + 3; // `mod` and the module's name
            if tokens.get(i).map(String::as_str) == Some("{") {
                let mut depth = 0;
                loop {
                    match tokens[i].as_str() {
                        "{" => depth += 1,
                        "}" => depth -= 1,
                        _ => {}
                    }
                    i += 1;
                    if depth == 0 {
                        break;
                    }
                }
            } else {
                i += 1; // `;`
            }
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// One path a file names: where it starts (`crate`, `super`, `self`), its segments, and the
/// name it binds in the file (for `use` trees), if any.
#[derive(Clone, Debug)]
struct Named {
    start: String,
    segments: Vec<String>,
    text: String,
    /// The name a `use` binds it under when renamed (`as`).
    alias: Option<String>,
}

/// Reads the path tree at `tokens[i..]` (just after a `::`), appending every full path to `out`.
fn read_tree(tokens: &[String], mut i: usize, prefix: &Named, out: &mut Vec<Named>) -> usize {
    let mut path = prefix.clone();
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                loop {
                    match tokens.get(i).map(String::as_str) {
                        Some("}") => return i + 1,
                        Some(",") => i += 1,
                        Some("self") => {
                            // `{self, …}` names the prefix itself.
                            out.push(path.clone());
                            i += 1;
                        }
                        Some(_) => i = read_tree(tokens, i, &path, out),
                        None => return i,
                    }
                }
            }
            Some("*") => {
                out.push(path);
                return i + 1;
            }
            Some(word) if is_ident(word) => {
                path.segments.push(word.to_string());
                path.text = format!("{}::{}", path.text, word);
                i += 1;
                if tokens.get(i).map(String::as_str) == Some("::") {
                    i += 1;
                    continue;
                }
                if tokens.get(i).map(String::as_str) == Some("as") {
                    path.alias = tokens.get(i + 1).cloned();
                    i += 2;
                }
                out.push(path);
                return i;
            }
            _ => {
                out.push(path);
                return i;
            }
        }
    }
}

fn is_ident(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Every `crate::`/`super::`/`self::` path in the tokens, use trees expanded.
fn paths(tokens: &[String]) -> Vec<Named> {
    let mut out = Vec::new();
    let mut i = 0;
    // Inline modules (`mod unix { … }`) open at these brace depths: in them `self::` is still
    // this file's module as far as layers go, and the first `super::` is the file's module.
    let mut depth = 0;
    let mut inline: Vec<usize> = Vec::new();
    while i < tokens.len() {
        match tokens[i].as_str() {
            "{" => depth += 1,
            "}" => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t == "{") => inline.push(depth + 1),
            _ => {}
        }
        let word = tokens[i].as_str();
        let starts = matches!(word, "crate" | "super" | "self")
            && tokens.get(i + 1).map(String::as_str) == Some("::")
            // `pub(crate)`, `pub(in crate::x)`: a visibility, not a path.
            && !(i > 1 && tokens[i - 1] == "(" && tokens[i - 2] == "pub")
            && !(i > 2 && tokens[i - 1] == "in" && tokens[i - 2] == "(" && tokens[i - 3] == "pub");
        if !starts {
            i += 1;
            continue;
        }
        let mut start = Named {
            start: word.to_string(),
            segments: Vec::new(),
            text: word.to_string(),
            alias: None,
        };
        if !inline.is_empty() && word == "super" {
            start.start = "self".into();
        }
        i += 2;
        // `super::super::`
        while tokens.get(i).map(String::as_str) == Some("super")
            && tokens.get(i + 1).map(String::as_str) == Some("::")
        {
            start.segments.push("super".into());
            start.text.push_str("::super");
            i += 2;
        }
        i = read_tree(tokens, i, &start, &mut out);
    }
    out
}

/// `use child::…` in a module that declares `mod child;`: a path into its own child module,
/// written without `self::`.
fn child_uses(module: &str, tokens: &[String], modules: &BTreeSet<String>) -> Vec<Named> {
    let mut out = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let first = tokens.get(i + 1).map(String::as_str).unwrap_or("");
        if token == "use"
            && tokens.get(i + 2).is_some_and(|t| t == "::")
            && !matches!(first, "crate" | "super" | "self")
            && modules.contains(&child(module, first))
        {
            let prefix = Named {
                start: "self".into(),
                segments: Vec::new(),
                text: "self".into(),
                alias: None,
            };
            read_tree(tokens, i + 1, &prefix, &mut out);
        }
    }
    for path in &mut out {
        // Shown as written.
        path.text = path.text.trim_start_matches("self::").to_string();
    }
    out
}

/// What the crate's modules define and import, to follow a path to the module defining its item.
struct Crate {
    modules: BTreeSet<String>,
    /// Per module: the names it defines.
    defines: BTreeMap<String, BTreeSet<String>>,
    /// Per module: each name a `use` brings in, and the module and name it comes from.
    imports: BTreeMap<String, BTreeMap<String, Named>>,
}

fn child(module: &str, name: &str) -> String {
    if module.is_empty() {
        name.to_string()
    } else {
        format!("{module}::{name}")
    }
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_string())
}

impl Crate {
    fn read(files: &[(String, Vec<String>)]) -> Crate {
        let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
        let mut defines = BTreeMap::new();
        let mut imports = BTreeMap::new();
        for (module, tokens) in files {
            let mut names = BTreeSet::new();
            for pair in tokens.windows(2) {
                if matches!(
                    pair[0].as_str(),
                    "fn" | "struct" | "enum" | "trait" | "type" | "const" | "static" | "union"
                ) && is_ident(&pair[1])
                {
                    names.insert(pair[1].clone());
                }
            }
            for (i, pair) in tokens.windows(3).enumerate() {
                if pair[0] == "macro_rules" && pair[1] == "!" {
                    names.insert(tokens[i + 2].clone());
                }
            }
            defines.insert(module.clone(), names);
            // `use` declarations: the last segment (or `as` name) is bound in this module.
            let mut bound = BTreeMap::new();
            let mut i = 0;
            while i < tokens.len() {
                if tokens[i] == "use" {
                    let end = tokens[i..]
                        .iter()
                        .position(|t| t == ";")
                        .map_or(tokens.len(), |p| i + p);
                    let tree = &tokens[i + 1..end];
                    let first = tree.first().map(String::as_str).unwrap_or("");
                    let start = match first {
                        "crate" | "super" | "self" => first.to_string(),
                        // A child module of this one (`use hooks::on_shutdown;`).
                        _ if modules.contains(&child(module, first)) => "self".into(),
                        _ => String::new(),
                    };
                    if !start.is_empty() {
                        let mut found = Vec::new();
                        let skip = if start == first { 2 } else { 0 };
                        let prefix = Named {
                            start: start.clone(),
                            segments: vec![],
                            text: start.clone(),
                            alias: None,
                        };
                        if tree.len() > skip {
                            read_tree(tree, skip, &prefix, &mut found);
                        }
                        for path in found {
                            if let Some(name) = path.alias.clone().or(path.segments.last().cloned())
                            {
                                bound.insert(name, path);
                            }
                        }
                    }
                    i = end;
                }
                i += 1;
            }
            imports.insert(module.clone(), bound);
        }
        Crate {
            modules,
            defines,
            imports,
        }
    }

    /// The module that defines the item `path` names, as seen from `from`.
    fn defining(&self, from: &str, path: &Named, depth: usize) -> Option<String> {
        if depth > 16 {
            return None;
        }
        let mut module = match path.start.as_str() {
            "crate" => String::new(),
            "super" => parent(from),
            _ => from.to_string(),
        };
        let mut segments = path.segments.iter().peekable();
        while segments.peek().map(|s| s.as_str()) == Some("super") {
            module = parent(&module);
            segments.next();
        }
        for segment in segments {
            let below = child(&module, segment);
            if self.modules.contains(&below) {
                module = below;
                continue;
            }
            if self.defines[&module].contains(segment) {
                return Some(module);
            }
            if let Some(source) = self.imports[&module].get(segment) {
                return self.defining(&module, source, depth + 1);
            }
            // A name this scan does not see defined (a glob import, a macro's item): the
            // module it is reached through.
            return Some(module);
        }
        Some(module)
    }
}

/// The layers of `ARCHITECTURE.md`: per module, its layer and its place in the layer's row.
struct Layers {
    of: BTreeMap<String, (usize, usize)>,
    names: Vec<String>,
    /// Imports that go up on purpose: (from module, to module).
    exceptions: BTreeSet<(String, String)>,
}

fn layers() -> Layers {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap();
    let section = &text[text
        .find("\n## Layers")
        .expect("ARCHITECTURE.md has a `## Layers` section")..];
    let section = &section[..section[4..].find("\n## ").map_or(section.len(), |e| e + 4)];
    let mut of = BTreeMap::new();
    let mut names = Vec::new();
    let mut exceptions = BTreeSet::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| 3 work and the sequence | `tracked`, `spawn`, … |`
        if cells.len() >= 3 && cells[1].chars().next().is_some_and(|c| c.is_ascii_digit()) {
            let layer: usize = cells[1].split(' ').next().unwrap().parse().unwrap();
            names.resize(layer + 1, String::new());
            names[layer] = cells[1].to_string();
            for (place, module) in cells[2].split(',').enumerate() {
                let module = module.trim().trim_matches('`');
                let module = if module == "lib" { "" } else { module };
                assert!(
                    of.insert(module.to_string(), (layer, place)).is_none(),
                    "ARCHITECTURE.md lists `{module}` twice"
                );
            }
        }
        // `- Exception: `scope` → `context`: why.`
        if let Some(rest) = line.trim_start().strip_prefix("- Exception: `") {
            let (from, rest) = rest
                .split_once("` → `")
                .expect("- Exception: `from` → `to`: why");
            let to = rest.split('`').next().unwrap();
            exceptions.insert((from.to_string(), to.to_string()));
        }
    }
    Layers {
        of,
        names,
        exceptions,
    }
}

fn name(module: &str) -> &str {
    if module.is_empty() {
        "lib"
    } else {
        module
    }
}

#[test]
fn imports_only_go_down_the_layers() {
    let mut paths_of = Vec::new();
    let mut list = Vec::new();
    files(&root(), &mut list);
    list.sort();
    for file in &list {
        let text = std::fs::read_to_string(file).unwrap();
        paths_of.push((module_of(file), tokens(&text), file.clone()));
    }
    let krate = Crate::read(
        &paths_of
            .iter()
            .map(|(m, t, _)| (m.clone(), t.clone()))
            .collect::<Vec<_>>(),
    );
    let layers = layers();
    let mut problems = String::new();
    for module in &krate.modules {
        if !layers.of.contains_key(module) {
            writeln!(
                problems,
                "`{}` has no layer in ARCHITECTURE.md",
                name(module)
            )
            .unwrap();
        }
    }
    for module in layers.of.keys() {
        if !krate.modules.contains(module) {
            writeln!(
                problems,
                "ARCHITECTURE.md lists `{}`, which is not a module",
                name(module)
            )
            .unwrap();
        }
    }
    for (module, tokens, file) in &paths_of {
        let Some(&(layer, place)) = layers.of.get(module) else {
            continue;
        };
        let mut reported = BTreeSet::new();
        for path in paths(tokens)
            .into_iter()
            .chain(child_uses(module, tokens, &krate.modules))
        {
            let Some(target) = krate.defining(module, &path, 0) else {
                continue;
            };
            if target == *module || !layers.of.contains_key(&target) {
                continue;
            }
            let (target_layer, target_place) = layers.of[&target];
            let upward = target_layer > layer || (target_layer == layer && target_place > place);
            if !upward {
                continue;
            }
            let pair = (name(module).to_string(), name(&target).to_string());
            if layers.exceptions.contains(&pair) {
                continue;
            }
            if reported.insert((path.text.clone(), target.clone())) {
                let file = file
                    .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
                    .unwrap();
                let how = if target_layer == layer {
                    format!("is listed after it in layer {}", layers.names[layer])
                } else {
                    format!("is in layer {}", layers.names[target_layer])
                };
                writeln!(
                    problems,
                    "{}: `{}` reaches up: `{}` is in layer {}, `{}` (which defines it) {how}",
                    file.display(),
                    path.text,
                    name(module),
                    layers.names[layer],
                    name(&target),
                )
                .unwrap();
            }
        }
    }
    assert!(problems.is_empty(), "\n{problems}");
}

/// The reader itself: a path in a comment, a string or a test module is not code; a use tree is
/// expanded; a re-export is followed to the module that defines the item.
#[test]
fn the_reader_finds_paths_as_the_compiler_would() {
    let text = r#"
        use crate::a::{self, b::{C, D as E}, f::*};
        // crate::comment::X
        /// [`crate::doc::Y`]
        fn g() { let _ = "crate::string::Z"; let c = 'c'; super::h::I::new(); m!(self::j::K); }
        fn q() { for x in crate::r::s() {} }
        fn l<'a>(x: &'a str) -> crate::n::O { todo!() }
        pub(crate) fn p() {}
        #[cfg(test)]
        mod tests { use crate::test_only::T; }
    "#;
    let found: Vec<String> = paths(&tokens(text)).into_iter().map(|p| p.text).collect();
    assert_eq!(
        found,
        [
            "crate::a",
            "crate::a::b::C",
            "crate::a::b::D",
            "crate::a::f",
            "super::h::I::new",
            "self::j::K",
            "crate::r::s",
            "crate::n::O",
        ]
    );
    let files = vec![
        ("".to_string(), tokens("mod x; pub use x::Thing;")),
        ("x".to_string(), tokens("pub use crate::y::Thing as Thing;")),
        ("y".to_string(), tokens("pub struct Thing;")),
        ("z".to_string(), tokens("fn f() { crate::Thing::new(); }")),
    ];
    let krate = Crate::read(&files);
    let path = &paths(&files[3].1)[0];
    assert_eq!(krate.defining("z", path, 0).as_deref(), Some("y"));
    // `use child::…` without `self::`, in the module that declares the child.
    let files = vec![
        (
            "p".to_string(),
            tokens("mod q; use q::{R, s::T}; use std::x::Y;"),
        ),
        ("p::q".to_string(), tokens("pub struct R;")),
        ("p::q::s".to_string(), tokens("pub struct T;")),
    ];
    let krate = Crate::read(&files);
    let found = child_uses("p", &files[0].1, &krate.modules);
    let texts: Vec<&str> = found.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, ["q::R", "q::s::T"]);
    assert_eq!(
        krate.defining("p", &found[1], 0).as_deref(),
        Some("p::q::s")
    );
}
