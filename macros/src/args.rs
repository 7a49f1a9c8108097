//! The attribute's options, parsed in two steps: [`Options::parse`] collects each `key = value`
//! with its span (rejecting unknown and duplicated keys and malformed values), then
//! [`Options::build`] checks how they combine and points at the conflicting token.

use std::time::Duration;

use graceful_options as options;
use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Ident, Lit, LitBool, LitInt, LitStr, Token};

/// Which attribute is being parsed: they accept different options.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    Main,
    Test,
}

impl Entry {
    fn name(self) -> &'static str {
        match self {
            Entry::Main => "#[graceful::main]",
            Entry::Test => "#[graceful::test]",
        }
    }

    pub(crate) fn options(self) -> &'static [&'static str] {
        match self {
            Entry::Main => options::MAIN_OPTIONS,
            Entry::Test => options::TEST_OPTIONS,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    MultiThread,
    CurrentThread,
}

/// The settings the expansion uses, checked.
pub(crate) struct Settings {
    pub(crate) flavor: Option<Flavor>,
    pub(crate) worker_threads: Option<LitInt>,
    pub(crate) blocking_threads: Option<LitInt>,
    pub(crate) grace: Option<Duration>,
    pub(crate) signals: Option<Vec<LitStr>>,
    pub(crate) run_forever: bool,
    pub(crate) stop_on_panic: bool,
    pub(crate) stop_on_error: bool,
    pub(crate) signal_exit_code: Option<LitInt>,
    pub(crate) drain_delay: Option<Duration>,
    pub(crate) dump_signal: Option<LitStr>,
    pub(crate) start_paused: bool,
    pub(crate) notify_ready_auto: bool,
    pub(crate) second_signal_ignore: bool,
    pub(crate) upgrade_signal: Option<LitStr>,
    pub(crate) upgrade_timeout: Option<Duration>,
    pub(crate) krate: Option<syn::Path>,
}

impl Settings {
    /// What the expansion uses when the options could not be read: the function still expands,
    /// so the IDE keeps working on its body while the error is shown.
    pub(crate) fn defaults() -> Settings {
        Settings {
            flavor: None,
            worker_threads: None,
            blocking_threads: None,
            grace: None,
            signals: None,
            run_forever: false,
            stop_on_panic: false,
            stop_on_error: false,
            signal_exit_code: None,
            drain_delay: None,
            dump_signal: None,
            start_paused: false,
            notify_ready_auto: false,
            second_signal_ignore: false,
            upgrade_signal: None,
            upgrade_timeout: None,
            krate: None,
        }
    }
}

type At<T> = Option<(T, Span)>;

/// Step one: every option as written, with the span of its key.
#[derive(Default)]
pub(crate) struct Options {
    flavor: At<Flavor>,
    uvloop_like: At<Flavor>,
    worker_threads: At<LitInt>,
    blocking_threads: At<LitInt>,
    grace: At<Duration>,
    signals: At<Vec<LitStr>>,
    run_forever: At<bool>,
    stop_on_panic: At<bool>,
    stop_on_error: At<bool>,
    signal_exit_code: At<LitInt>,
    drain_delay: At<(Duration, Span)>,
    dump_signal: At<LitStr>,
    start_paused: At<bool>,
    notify_ready: At<bool>,
    second_signal: At<bool>,
    upgrade_signal: At<LitStr>,
    upgrade_timeout: At<Duration>,
    krate: At<syn::Path>,
}

/// One `key = value` as tokens; the value is read by the key's own parser.
struct Raw {
    key: Ident,
    value: syn::Expr,
}

fn parse_raw(input: ParseStream) -> syn::Result<Raw> {
    // `parse_any`: `crate` is a keyword but a valid option name.
    let key = Ident::parse_any(input)?;
    if !input.peek(Token![=]) {
        return Err(syn::Error::new(
            key.span(),
            format!("expected `{key} = ...`; every option takes a value"),
        ));
    }
    input.parse::<Token![=]>()?;
    let value = input.parse()?;
    Ok(Raw { key, value })
}

fn lit_str(value: &syn::Expr, key: &str, expected: &str) -> syn::Result<LitStr> {
    match value {
        syn::Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{key}` takes a string, {expected}"),
        )),
    }
}

fn lit_bool(value: &syn::Expr, key: &str) -> syn::Result<bool> {
    match value {
        syn::Expr::Lit(syn::ExprLit {
            lit: Lit::Bool(LitBool { value, .. }),
            ..
        }) => Ok(*value),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{key}` takes `true` or `false`"),
        )),
    }
}

fn lit_int(value: &syn::Expr, key: &str, what: &str) -> syn::Result<LitInt> {
    match value {
        syn::Expr::Lit(syn::ExprLit {
            lit: Lit::Int(i), ..
        }) => Ok(i.clone()),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{key}` takes {what}"),
        )),
    }
}

fn positive(value: &syn::Expr, key: &str) -> syn::Result<LitInt> {
    let lit = lit_int(value, key, "an integer greater than 0, like `4`")?;
    let n = lit.base10_parse::<usize>().unwrap_or(0);
    options::check_threads(key, n).map_err(|message| syn::Error::new(lit.span(), message))?;
    Ok(lit)
}

fn flavor(value: &syn::Expr, key: &str) -> syn::Result<Flavor> {
    let lit = lit_str(value, key, "`\"multi_thread\"` or `\"current_thread\"`")?;
    match lit.value().as_str() {
        "multi_thread" => Ok(Flavor::MultiThread),
        "current_thread" => Ok(Flavor::CurrentThread),
        other => Err(syn::Error::new(
            lit.span(),
            format!(
                "unknown flavor `{other}`; expected `\"multi_thread\"` or `\"current_thread\"`"
            ),
        )),
    }
}

fn duration(value: &syn::Expr, key: &str) -> syn::Result<(Duration, Span)> {
    let lit = lit_str(
        value,
        key,
        "a duration like `\"250ms\"`, `\"10s\"` or `\"2m\"`",
    )?;
    let parsed =
        options::parse_duration(&lit.value()).map_err(|msg| syn::Error::new(lit.span(), msg))?;
    Ok((parsed, lit.span()))
}

fn signals(value: &syn::Expr) -> syn::Result<Vec<LitStr>> {
    let syn::Expr::Array(array) = value else {
        return Err(syn::Error::new(
            value.span(),
            "`signals` takes an array of signal names, like `[\"SIGINT\", \"SIGTERM\"]`",
        ));
    };
    let mut names: Vec<LitStr> = Vec::new();
    for element in &array.elems {
        let lit = lit_str(
            element,
            "signals",
            "one name per element, like `\"SIGTERM\"`",
        )?;
        names.push(lit);
    }
    let values: Vec<String> = names.iter().map(LitStr::value).collect();
    options::check_signals(values.iter().map(String::as_str))
        .map_err(|(at, message)| syn::Error::new(names[at].span(), message))?;
    Ok(names)
}

fn dump_signal(value: &syn::Expr) -> syn::Result<LitStr> {
    let lit = lit_str(
        value,
        "dump_signal",
        "one of `\"SIGUSR1\"`, `\"SIGUSR2\"`, `\"SIGQUIT\"`",
    )?;
    options::check_dump_signal(&lit.value())
        .map_err(|message| syn::Error::new(lit.span(), message))?;
    Ok(lit)
}

fn upgrade_signal(value: &syn::Expr) -> syn::Result<LitStr> {
    let lit = lit_str(
        value,
        "upgrade_signal",
        "one of `\"SIGHUP\"`, `\"SIGUSR1\"`, `\"SIGUSR2\"`",
    )?;
    options::check_upgrade_signal(&lit.value())
        .map_err(|message| syn::Error::new(lit.span(), message))?;
    Ok(lit)
}

/// A string option that takes one of two words: `true` for `first`, `false` for `second`.
fn one_of_two(value: &syn::Expr, key: &str, first: &str, second: &str) -> syn::Result<bool> {
    let expected = format!("`\"{first}\"` or `\"{second}\"`");
    let lit = lit_str(value, key, &expected)?;
    match lit.value().as_str() {
        word if word == first => Ok(true),
        word if word == second => Ok(false),
        other => Err(syn::Error::new(
            lit.span(),
            format!("`{key}` must be {expected}, not `{other}`"),
        )),
    }
}

/// `"auto"` (send `READY=1` when `main` first awaits) or `"manual"` (when it calls `ready()`).
fn notify_ready(value: &syn::Expr) -> syn::Result<bool> {
    one_of_two(value, "notify_ready", "auto", "manual")
}

/// `"force"` (a signal more than a second after the first ends the process) or `"ignore"`;
/// `true` for `"ignore"`.
fn second_signal(value: &syn::Expr) -> syn::Result<bool> {
    one_of_two(value, "second_signal", "force", "ignore").map(|force| !force)
}

fn signal_exit_code(value: &syn::Expr) -> syn::Result<LitInt> {
    let lit = lit_int(value, "signal_exit_code", "an exit status from 0 to 255")?;
    if lit.base10_parse::<u8>().is_err() {
        return Err(syn::Error::new(
            lit.span(),
            "`signal_exit_code` must be an exit status from 0 to 255",
        ));
    }
    Ok(lit)
}

fn krate(value: &syn::Expr) -> syn::Result<syn::Path> {
    let lit = lit_str(value, "crate", "a path like `\"::my_crate::graceful\"`")?;
    lit.parse::<syn::Path>()
        .map_err(|_| syn::Error::new(lit.span(), format!("`{}` is not a path", lit.value())))
}

/// Levenshtein distance, for "did you mean" hints on misspelt options.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn unknown(key: &Ident, entry: Entry) -> syn::Error {
    let name = key.unraw().to_string();
    let valid = entry.options();
    let list: Vec<String> = valid.iter().map(|o| format!("`{o}`")).collect();
    let hint = valid
        .iter()
        .map(|o| (distance(&name, o), o))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, o)| format!("; did you mean `{o}`?"))
        .unwrap_or_default();
    let elsewhere = if entry == Entry::Test && Entry::Main.options().contains(&name.as_str()) {
        format!(" (`{name}` is an option of `#[graceful::main]` only)")
    } else {
        String::new()
    };
    syn::Error::new(
        key.span(),
        format!(
            "unknown option `{name}` for `{}`{elsewhere}; expected one of {}{hint}",
            entry.name(),
            list.join(", ")
        ),
    )
}

fn set<T>(slot: &mut At<T>, key: &Ident, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(
            key.span(),
            format!("`{}` is set twice; keep one", key.unraw()),
        ));
    }
    *slot = Some((value, key.span()));
    Ok(())
}

/// Collects every error instead of stopping at the first, so one build shows them all.
fn push(errors: &mut Option<syn::Error>, error: syn::Error) {
    match errors {
        Some(all) => all.combine(error),
        None => *errors = Some(error),
    }
}

impl Options {
    pub(crate) fn parse(args: TokenStream, entry: Entry) -> Result<Options, syn::Error> {
        let raws = Punctuated::<Raw, Token![,]>::parse_terminated_with;
        let raws = (|input: ParseStream| raws(input, parse_raw)).parse2(args)?;
        let mut options = Options::default();
        let mut errors = None;
        for Raw { key, value } in raws {
            let name = key.unraw().to_string();
            if !entry.options().contains(&name.as_str()) {
                push(&mut errors, unknown(&key, entry));
                continue;
            }
            let o = &mut options;
            let result = match name.as_str() {
                "flavor" => flavor(&value, &name).and_then(|v| set(&mut o.flavor, &key, v)),
                "uvloop_like" => {
                    flavor(&value, &name).and_then(|v| set(&mut o.uvloop_like, &key, v))
                }
                "worker_threads" => {
                    positive(&value, &name).and_then(|v| set(&mut o.worker_threads, &key, v))
                }
                "blocking_threads" => {
                    positive(&value, &name).and_then(|v| set(&mut o.blocking_threads, &key, v))
                }
                "grace" => duration(&value, &name).and_then(|(d, span)| {
                    options::check_grace(d).map_err(|message| syn::Error::new(span, message))?;
                    set(&mut o.grace, &key, d)
                }),
                "signals" => signals(&value).and_then(|v| set(&mut o.signals, &key, v)),
                "run_forever" => {
                    lit_bool(&value, &name).and_then(|v| set(&mut o.run_forever, &key, v))
                }
                "stop_on_panic" => {
                    lit_bool(&value, &name).and_then(|v| set(&mut o.stop_on_panic, &key, v))
                }
                "stop_on_error" => {
                    lit_bool(&value, &name).and_then(|v| set(&mut o.stop_on_error, &key, v))
                }
                "start_paused" => {
                    lit_bool(&value, &name).and_then(|v| set(&mut o.start_paused, &key, v))
                }
                "signal_exit_code" => {
                    signal_exit_code(&value).and_then(|v| set(&mut o.signal_exit_code, &key, v))
                }
                "drain_delay" => {
                    duration(&value, &name).and_then(|v| set(&mut o.drain_delay, &key, v))
                }
                "dump_signal" => dump_signal(&value).and_then(|v| set(&mut o.dump_signal, &key, v)),
                "notify_ready" => {
                    notify_ready(&value).and_then(|v| set(&mut o.notify_ready, &key, v))
                }
                "second_signal" => {
                    second_signal(&value).and_then(|v| set(&mut o.second_signal, &key, v))
                }
                "upgrade_signal" => {
                    upgrade_signal(&value).and_then(|v| set(&mut o.upgrade_signal, &key, v))
                }
                "upgrade_timeout" => duration(&value, &name).and_then(|(d, span)| {
                    options::check_upgrade_timeout(d)
                        .map_err(|message| syn::Error::new(span, message))?;
                    set(&mut o.upgrade_timeout, &key, d)
                }),
                "crate" => krate(&value).and_then(|v| set(&mut o.krate, &key, v)),
                _ => unreachable!("every name in `Entry::options` has a parser"),
            };
            if let Err(error) = result {
                push(&mut errors, error);
            }
        }
        match errors {
            Some(errors) => Err(errors),
            None => Ok(options),
        }
    }

    /// Step two: the combinations.
    pub(crate) fn build(self, entry: Entry) -> syn::Result<Settings> {
        let mut errors = None;
        if let (Some(_), Some((_, span))) = (&self.flavor, &self.uvloop_like) {
            push(
                &mut errors,
                syn::Error::new(
                    *span,
                    "`uvloop_like` is another name for `flavor`; set only one of them",
                ),
            );
        }
        let flavor = self.flavor.or(self.uvloop_like).map(|(f, _)| f);
        let effective = flavor.unwrap_or(match entry {
            Entry::Main => Flavor::MultiThread,
            Entry::Test => Flavor::CurrentThread,
        });
        let current_thread = effective == Flavor::CurrentThread;
        let mut check = |result: Result<(), String>, span: Span| {
            if let Err(message) = result {
                push(&mut errors, syn::Error::new(span, message));
            }
        };
        if let Some((_, span)) = &self.worker_threads {
            check(
                options::check_worker_threads_flavor(current_thread, true),
                *span,
            );
        }
        if let Some((start_paused, span)) = &self.start_paused {
            check(
                options::check_start_paused_flavor(current_thread, *start_paused),
                *span,
            );
        }
        if let Some(((delay, literal), _)) = &self.drain_delay {
            let grace = self.grace.map_or(options::DEFAULT_GRACE, |(g, _)| g);
            check(options::check_drain_delay(*delay, grace), *literal);
        }
        if let (Some((dump, _)), Some((signals, _))) = (&self.dump_signal, &self.signals) {
            let names: Vec<String> = signals.iter().map(LitStr::value).collect();
            check(
                options::check_dump_not_in_signals(&dump.value(), names.iter().map(String::as_str)),
                dump.span(),
            );
        }
        if let Some((upgrade, _)) = &self.upgrade_signal {
            let signals: Vec<String> = match &self.signals {
                Some((signals, _)) => signals.iter().map(LitStr::value).collect(),
                None => options::DEFAULT_UNIX_SIGNALS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            };
            let dump = self.dump_signal.as_ref().map(|(d, _)| d.value());
            check(
                options::check_upgrade_signal_free(
                    &upgrade.value(),
                    signals.iter().map(String::as_str),
                    dump.as_deref(),
                ),
                upgrade.span(),
            );
        }
        if let Some(errors) = errors {
            return Err(errors);
        }
        Ok(Settings {
            flavor,
            worker_threads: self.worker_threads.map(|(v, _)| v),
            blocking_threads: self.blocking_threads.map(|(v, _)| v),
            grace: self.grace.map(|(v, _)| v),
            signals: self.signals.map(|(v, _)| v),
            run_forever: self.run_forever.is_some_and(|(v, _)| v),
            stop_on_panic: self.stop_on_panic.is_some_and(|(v, _)| v),
            stop_on_error: self.stop_on_error.is_some_and(|(v, _)| v),
            signal_exit_code: self.signal_exit_code.map(|(v, _)| v),
            drain_delay: self.drain_delay.map(|((d, _), _)| d),
            dump_signal: self.dump_signal.map(|(v, _)| v),
            start_paused: self.start_paused.is_some_and(|(v, _)| v),
            notify_ready_auto: self.notify_ready.is_some_and(|(v, _)| v),
            second_signal_ignore: self.second_signal.is_some_and(|(v, _)| v),
            upgrade_signal: self.upgrade_signal.map(|(v, _)| v),
            upgrade_timeout: self.upgrade_timeout.map(|(v, _)| v),
            krate: self.krate.map(|(v, _)| v),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_hinted() {
        let key = Ident::new("grase", Span::call_site());
        assert!(unknown(&key, Entry::Main)
            .to_string()
            .contains("did you mean `grace`?"));
        let key = Ident::new("signals", Span::call_site());
        assert!(unknown(&key, Entry::Test)
            .to_string()
            .contains("of `#[graceful::main]` only"));
    }
}
