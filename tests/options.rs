//! The attribute and `Builder` reject the same settings with the same words: every invalid value
//! or combination that is a compile error in `tests/ui/fail` has a `Builder` twin here that
//! panics, at the setter or at `run`, with the message of that compile error. Cases that exist
//! only as syntax (an unknown key, a key given twice, a malformed duration) have no twin and are
//! listed as such, so a new `tests/ui/fail` case must be placed in one list or the other.

mod support;

use std::panic::{catch_unwind, UnwindSafe};
use std::path::Path;
use std::time::Duration;

use graceful::{Builder, Flavor, Signal};

/// A `tests/ui/fail` case and the `Builder` code that must fail the same way.
struct Twin {
    case: &'static str,
    builder: fn(),
}

fn run(builder: Builder) {
    let _ = builder.signals([]).run(async {});
}

fn twins() -> Vec<Twin> {
    vec![
        Twin {
            case: "zero_grace",
            builder: || run(Builder::new().grace(Duration::ZERO)),
        },
        Twin {
            case: "zero_worker_threads",
            builder: || run(Builder::new().worker_threads(0)),
        },
        Twin {
            case: "zero_blocking_threads",
            builder: || run(Builder::new().blocking_threads(0)),
        },
        Twin {
            case: "drain_delay_past_grace",
            builder: || {
                let five = Duration::from_secs(5);
                run(Builder::new().grace(five).drain_delay(five))
            },
        },
        Twin {
            case: "worker_threads_current_thread",
            builder: || {
                run(Builder::new()
                    .flavor(Flavor::CurrentThread)
                    .worker_threads(4))
            },
        },
        Twin {
            case: "test_start_paused_multi_thread",
            builder: || {
                run(Builder::new()
                    .flavor(Flavor::MultiThread)
                    .start_paused(true))
            },
        },
        Twin {
            case: "duplicate_signal",
            builder: || {
                drop(Builder::new().signals([Signal::SIGTERM, Signal::SIGINT, Signal::SIGTERM]))
            },
        },
        Twin {
            case: "bad_dump_signal",
            builder: || drop(Builder::new().dump_signal(Signal::SIGINT)),
        },
        Twin {
            case: "dump_signal_in_signals",
            builder: || {
                let _ = Builder::new()
                    .signals([Signal::SIGUSR1])
                    .dump_signal(Signal::SIGUSR1)
                    .run(async {});
            },
        },
        Twin {
            case: "bad_upgrade_signal",
            builder: || drop(Builder::new().upgrade_signal(Signal::SIGTERM)),
        },
        Twin {
            case: "upgrade_signal_in_signals",
            builder: || {
                let _ = Builder::new()
                    .signals([Signal::SIGTERM, Signal::SIGHUP])
                    .upgrade_signal(Signal::SIGHUP)
                    .run(async {});
            },
        },
        Twin {
            case: "upgrade_signal_is_dump_signal",
            builder: || {
                let _ = Builder::new()
                    .dump_signal(Signal::SIGUSR1)
                    .upgrade_signal(Signal::SIGUSR1)
                    .run(async {});
            },
        },
        Twin {
            case: "zero_upgrade_timeout",
            builder: || drop(Builder::new().upgrade_timeout(Duration::ZERO)),
        },
    ]
}

/// Misuses of the attribute's syntax, which `Builder`'s types rule out. (A signal name the
/// attribute rejects is a `ParseSignalError` at run time: see
/// `a_signal_name_the_attribute_rejects_fails_to_parse_with_the_same_words`.)
const SYNTAX_ONLY: &[&str] = &[
    "bad_duration",
    "bad_flavor",
    "bad_second_signal",
    "body_errors_still_reported",
    "duplicate_option",
    "flavor_and_uvloop_like",
    "generics",
    "not_a_function",
    "not_async",
    "not_termination",
    "option_without_value",
    "parameters",
    "sigkill",
    "sigstop",
    "test_main_only_option",
    "test_not_async",
    "test_second_test_attribute",
    "unknown_option",
    "unknown_signal",
    "wrong_value_types",
];

fn panic_message(f: impl FnOnce() + UnwindSafe) -> Option<String> {
    let payload = catch_unwind(f).err()?;
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
}

fn fail_cases() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/fail");
    let mut cases: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_compile_error_case_has_a_builder_twin_or_is_syntax_only() {
    let twins = twins();
    for case in fail_cases() {
        let twinned = twins.iter().any(|t| t.case == case);
        let syntax = SYNTAX_ONLY.contains(&case.as_str());
        assert!(
            twinned != syntax,
            "tests/ui/fail/{case}.rs: give it a `Builder` twin in tests/options.rs, or list it as syntax-only (not both)"
        );
    }
}

#[test]
fn builder_rejects_what_the_attribute_rejects_with_the_same_words() {
    for twin in twins() {
        let message = panic_message(twin.builder).unwrap_or_else(|| {
            panic!(
                "{}: `Builder` accepted what the attribute rejects",
                twin.case
            )
        });
        let words = message
            .strip_prefix("graceful::Builder: ")
            .unwrap_or_else(|| panic!("{}: not a Builder error: {message}", twin.case));
        let path = format!(
            "{}/tests/ui/fail/{}.stderr",
            env!("CARGO_MANIFEST_DIR"),
            twin.case
        );
        let stderr = std::fs::read_to_string(&path).unwrap();
        assert!(
            stderr.lines().any(|line| line == format!("error: {words}")),
            "{}: `Builder` says {words:?}; the attribute says:\n{stderr}",
            twin.case
        );
    }
}

/// The option rows of a Markdown table in `docs` (`/// | \`name\` | …`), in order, with their cells.
fn option_rows(docs: &str) -> Vec<(String, Vec<String>)> {
    docs.lines()
        .filter_map(|line| line.trim_start().strip_prefix("/// | `"))
        .map(|row| {
            let cells: Vec<String> = row.split(" | ").map(|c| c.trim().to_string()).collect();
            let name = cells[0].trim_end_matches('`').to_string();
            (name, cells[1..].to_vec())
        })
        .collect()
}

/// The option reference is in the attributes' rustdoc (what docs.rs shows) and the README, and
/// both agree with the one option table: every option, in its order, with its default.
#[test]
fn the_attributes_docs_list_every_option_with_its_default() {
    let docs = include_str!("../src/lib.rs");
    let at = docs.find("pub use graceful_macros::main;").unwrap();
    let main = option_rows(&docs[..at]);
    let names: Vec<&str> = main.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        graceful_options::MAIN_OPTIONS,
        "`main`'s option table"
    );
    let default = |name: &str| main.iter().find(|(n, _)| n == name).unwrap().1[1].clone();
    let grace = graceful_options::format_duration(graceful_options::DEFAULT_GRACE);
    assert_eq!(default("grace"), format!("`\"{grace}\"`"));
    let timeout = graceful_options::format_duration(graceful_options::DEFAULT_UPGRADE_TIMEOUT);
    assert_eq!(default("upgrade_timeout"), format!("`\"{timeout}\"`"));
    let quoted = |names: &[&str]| {
        let names: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        format!("[{}]", names.join(", "))
    };
    assert!(default("signals").contains(&quoted(graceful_options::DEFAULT_UNIX_SIGNALS)));
    assert!(default("signals").contains(&quoted(graceful_options::DEFAULT_WINDOWS_SIGNALS)));

    let test = option_rows(&docs[at..]);
    let names: Vec<&str> = test.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        graceful_options::TEST_OPTIONS,
        "`test`'s option table"
    );

    let readme = include_str!("../README.md");
    for option in graceful_options::MAIN_OPTIONS {
        assert!(
            readme.contains(&format!("| `{option}` |")),
            "`{option}` is missing from the README's table"
        );
    }
}

/// One name per option: every option of the attributes is the `Builder` setter of the same name,
/// taking the same values — but `crate` and the alias `uvloop_like`, which are the attribute's own.
#[test]
fn every_option_is_the_builder_setter_of_the_same_name() {
    let builder = [
        include_str!("../runtime/src/builder/mod.rs"),
        include_str!("../runtime/src/builder/upgrade.rs"),
    ]
    .concat();
    let options = graceful_options::MAIN_OPTIONS
        .iter()
        .chain(graceful_options::TEST_OPTIONS);
    for option in options {
        if matches!(*option, "crate" | "uvloop_like") {
            continue;
        }
        assert!(
            builder.contains(&format!("pub fn {option}("))
                || builder.contains(&format!("pub fn {option}<")),
            "`{option}` has no `Builder::{option}` setter"
        );
    }
}

/// A bad value given to a setter, or settings that conflict, given to `run`, panic at the caller's
/// line (every setter and `run` are `#[track_caller]`), with the attribute's words.
#[test]
fn a_bad_setter_value_panics_at_the_callers_line() {
    let source = support::source("bad_setter");
    for setter in [
        "grace",
        "worker_threads",
        "signals",
        "dump_signal",
        "upgrade_signal",
        "upgrade_timeout",
        "drain_delay_past_grace",
        "worker_threads_current_thread",
    ] {
        let out = support::fixture("bad_setter").arg(setter).run();
        out.assert_code(101)
            .assert_stderr_has(&format!("panicked at {source}:"))
            .assert_stderr_has("graceful::Builder: ");
    }
}

/// A name read at run time that the attribute would reject at compile time is an `Err` with the
/// attribute's words: the program handles it, nothing panics.
#[test]
fn a_signal_name_the_attribute_rejects_fails_to_parse_with_the_same_words() {
    for (case, name) in [
        ("sigkill", "SIGKILL"),
        ("sigstop", "SIGSTOP"),
        ("unknown_signal", "SIGWINCH"),
    ] {
        let words = name.parse::<Signal>().unwrap_err().to_string();
        let path = format!("{}/tests/ui/fail/{case}.stderr", env!("CARGO_MANIFEST_DIR"));
        let stderr = std::fs::read_to_string(&path).unwrap();
        assert!(
            stderr.lines().any(|line| line == format!("error: {words}")),
            "{case}: parsing says {words:?}; the attribute says:\n{stderr}"
        );
    }
    for name in graceful_options::UNIX_SIGNALS
        .iter()
        .chain(graceful_options::WINDOWS_SIGNALS)
    {
        assert_eq!(name.parse::<Signal>().unwrap().to_string(), *name);
    }
}
