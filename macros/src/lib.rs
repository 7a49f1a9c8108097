//! Procedural macros of [`graceful`](https://docs.rs/graceful): `#[graceful::main]` and
//! `#[graceful::test]`. Depend on `graceful`, which re-exports them with their documentation.

mod args;
mod expand;
mod item;

use proc_macro::TokenStream;

/// Runs `async fn main` under a graceful runtime. Documented in the `graceful` crate.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::main(args.into(), item.into()).into()
}

/// Runs an async test under a graceful runtime. Documented in the `graceful` crate.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::test(args.into(), item.into()).into()
}
