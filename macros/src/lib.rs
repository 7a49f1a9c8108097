//! Procedural macros of [`graceful-main`](https://docs.rs/graceful-main): `#[graceful::main]` and
//! `#[graceful::test]`. Depend on `graceful-main`, which re-exports them with their documentation.

mod args;
mod expand;
mod item;

use proc_macro::TokenStream;

// `#[graceful::main]`. Its documentation is on the facade's re-export: rustdoc would append any
// written here to every page that shows the attribute.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::main(args.into(), item.into()).into()
}

// `#[graceful::test]`, documented on the facade's re-export as `main` is.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::test(args.into(), item.into()).into()
}
