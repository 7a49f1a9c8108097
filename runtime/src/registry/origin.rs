//! Where a piece of work was spawned and, for labelled work, its [`Label`], in one pointer-sized
//! word.
//!
//! Every live task holds a registry entry, and a task may cost 64 bytes over a bare tokio one. Most
//! tasks are plain `spawn`s with a location and no name: a separate `Option<Box<…>>` for the name
//! would cost every one of them 8 bytes, and slab growth slack on top. So an entry keeps one word:
//! the `&'static Location` itself, or, for labelled work (a name, a group, restarts), a box holding
//! label and location, told apart by the pointer's low bit (both pointees are aligned to at least
//! 2, so it is always free).

use std::borrow::Cow;
use std::fmt;
use std::mem::align_of;
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::Arc;

use super::Label;

/// The low bit of a pointer to a [`Named`].
const NAMED: usize = 1;

const _: () = assert!(align_of::<Location<'static>>() > NAMED && align_of::<Named>() > NAMED);

pub(super) struct Origin(NonNull<u8>);

struct Named {
    label: Label,
    location: &'static Location<'static>,
}

// SAFETY: an `Origin` is either a shared `&'static Location` (which is `Send + Sync`) or owns a
// `Box<Named>` (whose fields are `Send + Sync`); it hands out only shared references to either.
unsafe impl Send for Origin {}
// SAFETY: as above.
unsafe impl Sync for Origin {}

impl Origin {
    #[inline]
    pub(super) fn new(location: &'static Location<'static>, label: Label) -> Origin {
        match label.is_empty() {
            true => Origin(NonNull::from(location).cast()),
            false => {
                // `into_raw` keeps the permission to free the box; `drop` rebuilds this pointer
                // from the stored one, never from a shared reference, so that permission survives.
                let named = Box::into_raw(Box::new(Named { label, location }));
                // SAFETY: `Box::into_raw` never returns null.
                let named = unsafe { NonNull::new_unchecked(named) };
                Origin(named.cast::<u8>().map_addr(|addr| addr | NAMED))
            }
        }
    }

    /// The box's pointer, with the provenance `new` gave it, for named work.
    fn named_ptr(&self) -> Option<*mut Named> {
        if self.0.addr().get() & NAMED == 0 {
            return None;
        }
        Some(
            self.0
                .as_ptr()
                .map_addr(|addr| addr & !NAMED)
                .cast::<Named>(),
        )
    }

    fn named(&self) -> Option<&Named> {
        // SAFETY: the bit is only set by `new`, on a pointer from `Box::into_raw` that only
        // `drop` frees; the reference cannot outlive `self`.
        self.named_ptr().map(|named| unsafe { &*named })
    }

    pub(super) fn location(&self) -> &'static Location<'static> {
        match self.named() {
            Some(named) => named.location,
            // SAFETY: with the bit clear, `new` stored a `&'static Location`, unchanged.
            None => unsafe { self.0.cast::<Location<'static>>().as_ref() },
        }
    }

    /// The name, or `None` for unnamed work.
    pub(super) fn name(&self) -> Option<&Cow<'static, str>> {
        self.named().and_then(|named| named.label.name.as_ref())
    }

    /// The group, or `None` for ungrouped work.
    pub(super) fn group(&self) -> Option<&Arc<str>> {
        self.named().and_then(|named| named.label.group.as_ref())
    }

    pub(super) fn restarts(&self) -> u32 {
        self.named().map_or(0, |named| named.label.restarts)
    }

    pub(super) fn is_supervised(&self) -> bool {
        self.named().is_some_and(|named| named.label.supervised)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(named) = self.named_ptr() {
            // SAFETY: `named` is the pointer `Box::into_raw` returned in `new` (only its low bit
            // was set and cleared again), no reference to the box is live, and this is its one
            // drop.
            drop(unsafe { Box::from_raw(named) });
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin")
            .field("name", &self.name())
            .field("location", &self.location())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_with_a_niche() {
        assert_eq!(std::mem::size_of::<Origin>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<Option<Origin>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn unnamed_keeps_its_location() {
        let here = Location::caller();
        let origin = Origin::new(here, Label::default());
        assert!(origin.name().is_none());
        assert!(std::ptr::eq(origin.location(), here));
    }

    /// That the box is freed exactly once shows only under a leak checker:
    /// `valgrind --leak-check=full --errors-for-leak-kinds=definite <the runtime's unit-test
    /// binary> registry` reports 0 errors and 0 bytes definitely lost over every registry test.
    /// (Without the flag it counts one "possibly lost" block: libtest's handle of its main thread.)
    #[test]
    fn named_keeps_name_and_location() {
        let here = Location::caller();
        let origin = Origin::new(here, Label::named(Cow::Owned(String::from("flusher"))));
        assert_eq!(origin.name().map(|n| n.as_ref()), Some("flusher"));
        assert!(std::ptr::eq(origin.location(), here));
        let borrowed = Origin::new(here, Label::named(Cow::Borrowed("static")));
        assert_eq!(borrowed.name().map(|n| n.as_ref()), Some("static"));
        assert!(format!("{borrowed:?}").contains("static"));
        let grouped = Origin::new(
            here,
            Label {
                group: Some(Arc::from("db")),
                restarts: 3,
                ..Label::default()
            },
        );
        assert!(grouped.name().is_none());
        assert_eq!(grouped.group().map(|g| &**g), Some("db"));
        assert_eq!(grouped.restarts(), 3);
    }
}
