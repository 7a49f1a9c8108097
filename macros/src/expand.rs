//! Every `quote!` of the crate: the attribute's expansion into a `graceful::Builder` call.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::args::{Entry, Flavor, Options, Settings};
use crate::item::Function;

pub(crate) fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item, Entry::Main)
}

pub(crate) fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item, Entry::Test)
}

fn expand(args: TokenStream, item: TokenStream, entry: Entry) -> TokenStream {
    let attribute = match entry {
        Entry::Main => "#[graceful::main]",
        Entry::Test => "#[graceful::test]",
    };
    let mut function = match Function::parse2(item.clone()) {
        Ok(function) => function,
        // Not a function at all: nothing to expand; give the tokens back beside the error.
        Err(error) => {
            let message = format!("`{attribute}` goes on an `async fn`: {error}");
            let error = syn::Error::new(error.span(), message).to_compile_error();
            return quote!(#error #item);
        }
    };
    let mut errors = Vec::new();
    // On a bad option, expand with the defaults so the body keeps type-checking in the IDE.
    let settings = match Options::parse(args, entry).and_then(|o| o.build(entry)) {
        Ok(settings) => settings,
        Err(error) => {
            errors.push(error);
            Settings::defaults()
        }
    };
    errors.extend(function.check(attribute));
    if entry == Entry::Test {
        errors.extend(second_test_attribute(&function));
    }
    let expanded = match entry {
        Entry::Main => expand_main(&function, &settings),
        Entry::Test => expand_test(&function, &settings),
    };
    let errors = errors.iter().map(syn::Error::to_compile_error);
    quote!(#(#errors)* #expanded)
}

fn is_test_attribute(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "test")
}

fn second_test_attribute(function: &Function) -> Option<syn::Error> {
    function
        .attrs
        .iter()
        .find(|a| is_test_attribute(a))
        .map(|a| {
            syn::Error::new(
                a.span(),
                "`#[graceful::test]` already makes this a test; remove this attribute",
            )
        })
}

fn krate(settings: &Settings) -> TokenStream {
    match &settings.krate {
        Some(path) => quote!(#path),
        None => quote!(::graceful),
    }
}

/// A signal name the options checked, as its `Signal` constant, spanned on the name.
fn signal(krate: &TokenStream, name: &syn::LitStr) -> TokenStream {
    let constant = syn::Ident::new(&name.value(), name.span());
    quote!(#krate::__private::Signal::#constant)
}

fn duration(d: std::time::Duration) -> TokenStream {
    let secs = Literal::u64_unsuffixed(d.as_secs());
    let nanos = Literal::u32_unsuffixed(d.subsec_nanos());
    quote!(::core::time::Duration::new(#secs, #nanos))
}

/// `Builder::new()` followed by one call per option set.
fn builder(settings: &Settings, entry: Entry) -> TokenStream {
    let krate = krate(settings);
    let mut calls = quote!(#krate::__private::Builder::new());
    let flavor = settings.flavor.or(match entry {
        Entry::Main => None,
        Entry::Test => Some(Flavor::CurrentThread),
    });
    if let Some(flavor) = flavor {
        let variant = match flavor {
            Flavor::MultiThread => quote!(MultiThread),
            Flavor::CurrentThread => quote!(CurrentThread),
        };
        calls.extend(quote!(.flavor(#krate::__private::Flavor::#variant)));
    }
    if let Some(n) = &settings.worker_threads {
        calls.extend(quote!(.worker_threads(#n)));
    }
    if let Some(n) = &settings.blocking_threads {
        calls.extend(quote!(.blocking_threads(#n)));
    }
    if let Some(grace) = settings.grace {
        let grace = duration(grace);
        calls.extend(quote!(.grace(#grace)));
    }
    if let Some(signals) = &settings.signals {
        let signals = signals.iter().map(|name| signal(&krate, name));
        calls.extend(quote!(.signals([#(#signals),*])));
    }
    if settings.run_forever {
        calls.extend(quote!(.run_forever(true)));
    }
    if settings.stop_on_panic {
        calls.extend(quote!(.stop_on_panic(true)));
    }
    if settings.stop_on_error {
        calls.extend(quote!(.stop_on_error(true)));
    }
    if let Some(code) = &settings.signal_exit_code {
        calls.extend(quote!(.signal_exit_code(#code)));
    }
    if let Some(delay) = settings.drain_delay {
        let delay = duration(delay);
        calls.extend(quote!(.drain_delay(#delay)));
    }
    if let Some(name) = &settings.dump_signal {
        let signal = signal(&krate, name);
        calls.extend(quote!(.dump_signal(#signal)));
    }
    if settings.notify_ready_auto {
        calls.extend(quote!(.notify_ready(#krate::__private::NotifyReady::Auto)));
    }
    if settings.second_signal_ignore {
        calls.extend(quote!(.second_signal(#krate::__private::SecondSignal::Ignore)));
    }
    if settings.start_paused {
        calls.extend(quote!(.start_paused(true)));
    }
    if let Some(name) = &settings.upgrade_signal {
        let signal = signal(&krate, name);
        calls.extend(quote!(.upgrade_signal(#signal)));
    }
    if let Some(timeout) = settings.upgrade_timeout {
        let timeout = duration(timeout);
        calls.extend(quote!(.upgrade_timeout(#timeout)));
    }
    calls
}

/// The body as a future whose output type is the declared return type, so `?` in the body knows
/// what to convert errors into.
fn body(function: &Function, settings: &Settings) -> (TokenStream, Span) {
    let krate = krate(settings);
    let body = &function.body;
    let (output, span) = match &function.sig.output {
        syn::ReturnType::Default => (quote!(()), function.sig.ident.span()),
        syn::ReturnType::Type(_, ty) => (quote!(#ty), ty.span()),
    };
    let future = quote! {
        #krate::__private::main_body::<#output, _>(async move #body)
    };
    (future, span)
}

fn expand_main(function: &Function, settings: &Settings) -> TokenStream {
    let Function {
        attrs, vis, sig, ..
    } = function;
    let ident = &sig.ident;
    let krate = krate(settings);
    let builder = builder(settings, Entry::Main);
    let (body, span) = body(function, settings);
    // Spanned on the return type: a type that is not `Termination` is reported there, and
    // `run`'s `#[track_caller]` location (main's entry in the registry) is the signature line.
    let run = quote_spanned!(span=> __graceful_builder.run(__graceful_body));
    quote! {
        #(#attrs)*
        #vis fn #ident() -> #krate::Exit {
            let __graceful_body = #body;
            let __graceful_builder = #builder;
            #run
        }
    }
}

fn expand_test(function: &Function, settings: &Settings) -> TokenStream {
    let Function {
        attrs, vis, sig, ..
    } = function;
    let ident = &sig.ident;
    let krate = krate(settings);
    let builder = builder(settings, Entry::Test);
    let (body, span) = body(function, settings);
    let run =
        quote_spanned!(span=> #krate::__private::run_test(__graceful_builder, __graceful_body));
    quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis fn #ident() {
            let __graceful_body = #body;
            let __graceful_builder = #builder;
            #run
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a reproducible stream without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    /// Names that are not options, or not quite: misspelt, raw, of the wrong case.
    const NOT_KEYS: &[&str] = &["grase", "r#grace", "self", "_", "Flavor"];

    const VALUES: &[&str] = &[
        "\"current_thread\"",
        "\"multi_thread\"",
        "\"fast\"",
        "\"10s\"",
        "\"0s\"",
        "\"1m30s\"",
        "\"10 parsecs\"",
        "\"99999999999999999999h\"",
        "\"\"",
        "4",
        "0",
        "-1",
        "300",
        "255",
        "18446744073709551616",
        "true",
        "false",
        "[\"SIGINT\", \"SIGTERM\"]",
        "[\"SIGKILL\"]",
        "[]",
        "[1, 2]",
        "[\"SIGINT\", \"SIGINT\"]",
        "\"SIGUSR1\"",
        "\"auto\"",
        "::foo::bar",
        "{}",
        "(a, b)",
        "\"::graceful\"",
        "\"not a path !\"",
        "1.5",
        "'c'",
        "b\"x\"",
        "x + 1",
        "[[\"SIGINT\"]]",
        "\"SIGQUIT\"",
        "r\"10s\"",
        "1_000",
    ];

    const JUNK: &[&str] = &["=", ",", ";", "#", "::", "!", "?", "..", "@", "=="];

    const ITEMS: &[&str] = &[
        "async fn main() {}",
        "fn main() {}",
        "async fn f(x: u8) {}",
        "async fn g<T>() {}",
        "async fn g<'a>() {}",
        "struct S;",
        "",
        "async fn main() -> Result<(), E> { x?; Ok(()) }",
        "pub async unsafe fn x() {}",
        "const async fn y() {}",
        "async fn z(self) {}",
        "extern \"C\" fn q() {}",
        "async fn w() where T: Copy {}",
        "#[attr] #[test] async fn a() {}",
        "async fn",
        "fn main()",
        "async fn main() -> impl Termination {}",
        "async fn v(...) {}",
        "impl X {}",
    ];

    /// Every option of both attributes, and names that are not options.
    fn keys() -> Vec<&'static str> {
        let options = Entry::Main.options().iter().chain(Entry::Test.options());
        options.chain(NOT_KEYS).copied().collect()
    }

    fn random_args(rng: &mut Rng) -> String {
        let mut out = String::new();
        for _ in 0..rng.next() % 6 {
            match rng.next() % 10 {
                0 => out.push_str(rng.pick(JUNK)),
                1 => out.push_str(rng.pick(&keys())),
                2 => out.push_str(rng.pick(VALUES)),
                _ => {
                    out.push_str(rng.pick(&keys()));
                    out.push_str(" = ");
                    out.push_str(rng.pick(VALUES));
                }
            }
            out.push_str(if rng.next() % 8 == 0 { " " } else { ", " });
        }
        out
    }

    /// Random option lists and items through the whole expansion: an error is fine, a panic is
    /// a bug (a macro panic is an unreadable error for the user).
    #[test]
    fn random_input_never_panics_the_macro() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut parsed = 0;
        for _ in 0..20_000 {
            let args = random_args(&mut rng);
            let item = rng.pick(ITEMS);
            let (Ok(args), Ok(item)) = (args.parse::<TokenStream>(), item.parse::<TokenStream>())
            else {
                continue;
            };
            parsed += 1;
            let entry = if rng.next() % 2 == 0 {
                Entry::Main
            } else {
                Entry::Test
            };
            let outcome = std::panic::catch_unwind(|| expand(args.clone(), item.clone(), entry));
            assert!(
                outcome.is_ok(),
                "panicked on args `{args}` and item `{item}`"
            );
        }
        assert!(
            parsed > 10_000,
            "the generator mostly made unparsable text: {parsed}"
        );
    }

    #[test]
    fn every_option_alone_with_every_value_never_panics() {
        for key in keys() {
            for value in VALUES {
                let args: TokenStream = format!("{key} = {value}").parse().unwrap();
                let item: TokenStream = "async fn main() {}".parse().unwrap();
                for entry in [Entry::Main, Entry::Test] {
                    let outcome =
                        std::panic::catch_unwind(|| expand(args.clone(), item.clone(), entry));
                    assert!(outcome.is_ok(), "panicked on `{key} = {value}`");
                }
            }
        }
    }
}
