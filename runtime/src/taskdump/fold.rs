//! A dumped task's frames as the report shows them: outermost first, the program's own
//! frames one per line, each run of tokio's, std's and this crate's folded into one line, and the
//! harness above the program's first frame left out.

use std::path::Path;

use super::Chains;

/// Of one chain, at most this many lines; of one task, at most this many chains (a `join!`
/// waits on several leaves at once).
const LINES: usize = 12;
const BRANCHES: usize = 3;

/// The chains of the tasks of `dump` that are `wanted`: resolving frames is the costly part.
pub(super) fn chains(dump: &tokio::runtime::Dump, wanted: &[tokio::task::Id]) -> Chains {
    let here = std::env::current_dir().ok();
    let mut chains = Chains::default();
    for task in dump.tasks().iter().filter(|task| wanted.contains(&task.id())) {
        let mut lines = Vec::new();
        let backtraces = task.trace().resolve_backtraces();
        for (i, backtrace) in backtraces.iter().enumerate() {
            if i == BRANCHES {
                lines.push(format!("… and {} more", backtraces.len() - BRANCHES));
                break;
            }
            if i > 0 {
                lines.push("and, at the same time:".to_string());
            }
            // Innermost first in a backtrace, and within a frame, inlined calls first.
            let frames: Vec<Frame> = backtrace
                .frames()
                .flat_map(|frame| frame.symbols())
                .filter_map(|symbol| Frame::of(symbol, here.as_deref()))
                .collect();
            lines.extend(fold(frames.into_iter().rev()));
        }
        chains.0.insert(task.id(), lines);
    }
    chains
}

struct Frame {
    name: String,
    krate: String,
    at: Option<String>,
    own: bool,
}

impl Frame {
    fn of(symbol: &tokio::runtime::dump::BacktraceSymbol, here: Option<&Path>) -> Option<Frame> {
        let name = clean(symbol.name_demangled()?);
        let krate = crate_of(&name).to_string();
        let file = symbol.filename();
        let at = file.map(|file| {
            let file = here.and_then(|here| file.strip_prefix(here).ok()).unwrap_or(file);
            match symbol.lineno() {
                Some(line) => format!("{}:{line}", file.display()),
                None => file.display().to_string(),
            }
        });
        let own = file.is_some_and(is_own) && !INTERNAL.contains(&krate.as_str());
        Some(Frame {
            name,
            krate,
            at,
            own,
        })
    }
}

/// Crates whose frames are plumbing to the reader, wherever their source is.
const INTERNAL: &[&str] = &[
    "tokio",
    "tokio_util",
    "std",
    "core",
    "alloc",
    "graceful_runtime",
    "graceful",
];

/// A file of the program's own: not a dependency's from a registry, a git checkout or a vendor
/// directory, nor the standard library's (`/rustc/<commit>/library/…`).
fn is_own(file: &Path) -> bool {
    let file = file.to_string_lossy();
    !["/registry/src/", "/git/checkouts/", "/vendor/", "/rustc/"]
        .iter()
        .any(|dir| file.contains(dir))
}

/// `app::flusher::{{closure}}::h0123456789abcdef` → `app::flusher`.
fn clean(name: &str) -> String {
    let mut name = name;
    if let Some((rest, hash)) = name.rsplit_once("::h") {
        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            name = rest;
        }
    }
    name.replace("::{{closure}}", "")
}

/// `tokio::time::Sleep::poll` → `tokio`; `<tokio::time::Sleep as Future>::poll` → `tokio`.
fn crate_of(name: &str) -> &str {
    let name = name.trim_start_matches('<');
    let end = name.find([':', ' ', '<', '>']).unwrap_or(name.len());
    &name[..end]
}

fn fold(frames: impl Iterator<Item = Frame>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut run: Vec<Frame> = Vec::new();
    let mut shown = 0;
    for frame in frames {
        if frame.own {
            // The run above the program's first frame is the task's harness (this crate's
            // wrapper, tokio's, `catch_unwind`): plumbing of every task, said nowhere.
            if !run.is_empty() && shown > 0 {
                lines.push(folded(&run, false));
            }
            run.clear();
            shown += 1;
            if shown <= LINES {
                lines.push(match &frame.at {
                    Some(at) => format!("{} at {at}", frame.name),
                    None => frame.name.clone(),
                });
            }
        } else {
            run.push(frame);
        }
    }
    if shown > LINES {
        lines.push(format!("… {} more frames of the program", shown - LINES));
    }
    if !run.is_empty() {
        lines.push(folded(&run, true));
    }
    lines
}

/// `… 3 frames in tokio, core`, and for the innermost run the frame it ends in.
fn folded(run: &[Frame], innermost: bool) -> String {
    let mut crates: Vec<&str> = Vec::new();
    for frame in run {
        if !crates.contains(&frame.krate.as_str()) {
            crates.push(&frame.krate);
        }
    }
    let frames = if run.len() == 1 { "frame" } else { "frames" };
    let mut line = format!("… {} {frames} in {}", run.len(), crates.join(", "));
    if let (true, Some(last)) = (innermost, run.last()) {
        line.push_str(", innermost ");
        line.push_str(&last.name);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_hash_and_closures_and_say_their_crate() {
        let name = clean("app::flusher::{{closure}}::{{closure}}::h0123456789abcdef");
        assert_eq!(name, "app::flusher");
        assert_eq!(crate_of(&name), "app");
        let poll = "<tokio::time::sleep::Sleep as core::future::future::Future>::poll";
        assert_eq!(crate_of(poll), "tokio");
    }
}
