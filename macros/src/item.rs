//! The annotated function: its signature is parsed and checked, its body kept as tokens.

use proc_macro2::{Delimiter, Group, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Signature, Visibility};

pub(crate) struct Function {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    /// The `{ ... }` block as the user wrote it: never parsed, so the IDE and the compiler see
    /// exactly the user's tokens.
    pub(crate) body: Group,
}

impl Parse for Function {
    fn parse(input: ParseStream) -> syn::Result<Function> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig: Signature = input.parse()?;
        let body: Group = match input.parse::<Group>() {
            Ok(group) if group.delimiter() == Delimiter::Brace => group,
            _ => {
                return Err(syn::Error::new(
                    sig.span(),
                    "expected a function with a body `{ ... }`",
                ))
            }
        };
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the function"));
        }
        Ok(Function {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

impl Function {
    pub(crate) fn parse2(item: TokenStream) -> syn::Result<Function> {
        syn::parse2(item)
    }

    /// An `async fn` with no parameters and no generics. Every problem is reported, each
    /// on its own token; the function is then made fit to expand, so the body still type-checks.
    pub(crate) fn check(&mut self, attribute: &str) -> Option<syn::Error> {
        let mut errors: Vec<syn::Error> = Vec::new();
        let sig = &mut self.sig;
        if sig.asyncness.is_none() {
            errors.push(syn::Error::new(
                sig.fn_token.span,
                format!("`{attribute}` needs an `async fn`; add `async` before `fn`"),
            ));
        }
        if let Some(constness) = &sig.constness {
            errors.push(syn::Error::new(
                constness.span,
                format!("`{attribute}` cannot be used on a `const fn`"),
            ));
        }
        if let syn::Safety::Unsafe(token) = &sig.safety {
            errors.push(syn::Error::new(
                token.span,
                format!("`{attribute}` cannot be used on an `unsafe fn`"),
            ));
        }
        if let Some(abi) = &sig.abi {
            errors.push(syn::Error::new(
                abi.span(),
                format!("`{attribute}` cannot be used on an `extern` fn"),
            ));
        }
        if !sig.generics.params.is_empty() {
            errors.push(syn::Error::new(
                sig.generics.params.span(),
                format!("`{attribute}` functions cannot have generic parameters"),
            ));
        }
        if let Some(where_clause) = &sig.generics.where_clause {
            errors.push(syn::Error::new(
                where_clause.span(),
                format!("`{attribute}` functions cannot have a `where` clause"),
            ));
        }
        if !sig.inputs.is_empty() {
            errors.push(syn::Error::new(
                sig.inputs.span(),
                format!("`{attribute}` functions take no parameters; remove them"),
            ));
        }
        if let Some(variadic) = &sig.variadic {
            errors.push(syn::Error::new(
                variadic.span(),
                format!("`{attribute}` functions take no parameters; remove them"),
            ));
        }
        sig.constness = None;
        sig.safety = syn::Safety::Default;
        sig.abi = None;
        sig.generics = syn::Generics::default();
        sig.inputs.clear();
        sig.variadic = None;
        errors.into_iter().reduce(|mut all, e| {
            all.combine(e);
            all
        })
    }
}
