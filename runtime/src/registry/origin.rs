//! Where a piece of work was spawned and, for labelled work, its [`Label`], in one pointer-sized
//! word.
//!
//! Every live task holds a registry entry, and a task may cost 48 bytes over a bare tokio one. Most
//! tasks are plain `spawn`s with a location and nothing else: a separate `Option<Box<…>>` for the
//! rest would cost every one of them 8 bytes, and slab growth slack on top. So an entry keeps one
//! word: the `&'static Location` itself; for named work (services, blocking jobs), a box of name
//! and location; for work with more of a label (a scope's group, a supervisor's restarts), a box
//! of the whole label and the location. The pointer's two low bits tell the three apart (every
//! pointee is aligned to at least 4, so they are always free), and a named root service keeps the
//! small box. A whole label is reference-counted, so that the work one call site spawns into a
//! scope can share one ([`SharedLabel`]) instead of allocating a label per task.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::mem::align_of;
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::Arc;
use std::thread::LocalKey;

/// What an entry says of its work beyond kind and location. Unlabelled work (most `spawn`s)
/// costs no allocation; labelled work keeps its label in a box.
#[derive(Default, Debug)]
pub(crate) struct Label {
    pub(crate) name: Option<Cow<'static, str>>,
    /// A group the work belongs to, by its label: grouped work is counted apart from the rest
    /// and can be aborted or listed by group. (The scopes use their paths.)
    pub(crate) group: Option<Arc<str>>,
    pub(crate) restarts: u32,
    /// An incarnation of a supervised service: its supervisor handles its failures.
    pub(crate) supervised: bool,
}

impl Label {
    pub(crate) fn named(name: Cow<'static, str>) -> Label {
        Label {
            name: Some(name),
            ..Label::default()
        }
    }
}

/// The low bits of a pointer to a [`Named`] or a [`Labelled`]; clear for a `Location`.
const NAMED: usize = 1;
const LABELLED: usize = 2;
const TAG: usize = NAMED | LABELLED;

const _: () = assert!(
    align_of::<Location<'static>>() > TAG
        && align_of::<Named>() > TAG
        && align_of::<Labelled>() > TAG
);

pub(super) struct Origin(NonNull<u8>);

struct Named {
    name: Cow<'static, str>,
    location: &'static Location<'static>,
}

struct Labelled {
    label: Label,
    location: &'static Location<'static>,
}

/// What an origin points to.
enum Pointee<'a> {
    Location(&'static Location<'static>),
    Named(&'a Named),
    Labelled(&'a Labelled),
}

// SAFETY: an `Origin` is either a shared `&'static Location` (which is `Send + Sync`), or owns a
// `Box<Named>` or one count of an `Arc<Labelled>` (whose fields are `Send + Sync`); it hands out
// only shared references to any of them.
unsafe impl Send for Origin {}
// SAFETY: as above.
unsafe impl Sync for Origin {}

impl Origin {
    /// A location, and a name for named work: the spawn path of the root's work.
    #[inline]
    pub(super) fn new(
        location: &'static Location<'static>,
        name: Option<Cow<'static, str>>,
    ) -> Origin {
        match name {
            None => Origin(NonNull::from(location).cast()),
            Some(name) => Origin::boxed_as(Box::new(Named { name, location }), NAMED),
        }
    }

    /// A location and a whole label.
    pub(super) fn labelled(location: &'static Location<'static>, label: Label) -> Origin {
        if label.group.is_none() && label.restarts == 0 && !label.supervised {
            return Origin::new(location, label.name);
        }
        Origin::shared(SharedLabel(Arc::new(Labelled { label, location })))
    }

    /// A label shared with other work: the origin keeps the count it is given.
    pub(super) fn shared(label: SharedLabel) -> Origin {
        // `into_raw` keeps the permission to give the count back; `drop` rebuilds this pointer
        // from the stored one, never from a shared reference, so that permission survives.
        let pointer = Arc::into_raw(label.0).cast_mut().cast::<u8>();
        // SAFETY: `Arc::into_raw` never returns null.
        let pointer = unsafe { NonNull::new_unchecked(pointer) };
        Origin(pointer.map_addr(|addr| addr | LABELLED))
    }

    fn boxed_as<T>(boxed: Box<T>, tag: usize) -> Origin {
        // As in `shared`, for the box's permission to free it.
        let pointer = Box::into_raw(boxed).cast::<u8>();
        // SAFETY: `Box::into_raw` never returns null.
        let pointer = unsafe { NonNull::new_unchecked(pointer) };
        Origin(pointer.map_addr(|addr| addr | tag))
    }

    /// The stored word, to tell shared origins apart in tests.
    #[cfg(test)]
    pub(super) fn addr(&self) -> usize {
        self.0.addr().get()
    }

    fn tag(&self) -> usize {
        self.0.addr().get() & TAG
    }

    /// The box's pointer, with the provenance `new` gave it, for boxed origins.
    fn boxed(&self) -> *mut u8 {
        self.0.as_ptr().map_addr(|addr| addr & !TAG)
    }

    fn pointee(&self) -> Pointee<'_> {
        match self.tag() {
            // SAFETY: with the bits clear, `new` stored a `&'static Location`, unchanged.
            0 => Pointee::Location(unsafe { self.0.cast::<Location<'static>>().as_ref() }),
            // SAFETY: the tag is only set by `boxed_as`, on a pointer from `Box::into_raw` of the
            // tagged type that only `drop` frees; the reference cannot outlive `self`.
            NAMED => Pointee::Named(unsafe { &*self.boxed().cast::<Named>() }),
            // SAFETY: the tag is only set by `shared`, on a pointer from `Arc::into_raw` whose
            // count only `drop` gives back; the reference cannot outlive `self`.
            _ => Pointee::Labelled(unsafe { &*self.boxed().cast::<Labelled>() }),
        }
    }

    pub(super) fn location(&self) -> &'static Location<'static> {
        match self.pointee() {
            Pointee::Location(location) => location,
            Pointee::Named(named) => named.location,
            Pointee::Labelled(labelled) => labelled.location,
        }
    }

    /// The name, or `None` for unnamed work.
    pub(super) fn name(&self) -> Option<&Cow<'static, str>> {
        match self.pointee() {
            Pointee::Location(_) => None,
            Pointee::Named(named) => Some(&named.name),
            Pointee::Labelled(labelled) => labelled.label.name.as_ref(),
        }
    }

    fn label(&self) -> Option<&Label> {
        match self.pointee() {
            Pointee::Labelled(labelled) => Some(&labelled.label),
            _ => None,
        }
    }

    /// The group, or `None` for ungrouped work.
    pub(super) fn group(&self) -> Option<&Arc<str>> {
        self.label().and_then(|label| label.group.as_ref())
    }

    pub(super) fn restarts(&self) -> u32 {
        self.label().map_or(0, |label| label.restarts)
    }

    pub(super) fn is_supervised(&self) -> bool {
        self.label().is_some_and(|label| label.supervised)
    }
}

impl Drop for Origin {
    #[inline]
    fn drop(&mut self) {
        if self.tag() != 0 {
            self.free();
        }
    }
}

impl Origin {
    /// Frees a boxed origin: out of the line of the common, unboxed drop.
    #[cold]
    fn free(&mut self) {
        let boxed = self.boxed();
        match self.tag() {
            0 => {}
            // SAFETY: `boxed` is the pointer `Box::into_raw` returned in `boxed_as` for this tag
            // (only the tag bits were set and cleared again), no reference to the box is live,
            // and this is its one drop.
            NAMED => drop(unsafe { Box::from_raw(boxed.cast::<Named>()) }),
            // SAFETY: `boxed` is the pointer `Arc::into_raw` returned in `shared` (only the tag
            // bits were set and cleared again), and this gives back the one count it took.
            _ => drop(unsafe { Arc::from_raw(boxed.cast::<Labelled>().cast_const()) }),
        }
    }
}

/// A whole label, to be shared by the entries of many pieces of work: see
/// [`Registry::fill_shared`](super::Registry::fill_shared).
#[derive(Clone)]
pub(crate) struct SharedLabel(Arc<Labelled>);

/// A thread's last label of one sort, for [`SharedLabel::reuse`].
pub(crate) type LastLabel = LocalKey<RefCell<Option<SharedLabel>>>;

impl SharedLabel {
    pub(crate) fn new(location: &'static Location<'static>, label: Label) -> SharedLabel {
        SharedLabel(Arc::new(Labelled { label, location }))
    }

    /// The label this thread keeps in `last` if `fits` says it is the one wanted, else a new one
    /// from `make`, kept there in its place: work spawned in a loop from one call site shares one
    /// label instead of allocating one each. Per thread: no lock, and no line two threads share.
    #[inline]
    pub(crate) fn reuse(
        last: &'static LastLabel,
        fits: impl FnOnce(&SharedLabel) -> bool,
        make: impl FnOnce() -> SharedLabel,
    ) -> SharedLabel {
        let hit = last.try_with(|last| match &*last.borrow() {
            Some(label) if fits(label) => Some(label.clone()),
            _ => None,
        });
        match hit {
            Ok(Some(label)) => label,
            _ => SharedLabel::make_and_keep(last, make),
        }
    }

    /// [`reuse`](Self::reuse) on a miss: out of the way of the hit.
    #[cold]
    #[inline(never)]
    fn make_and_keep(last: &'static LastLabel, make: impl FnOnce() -> SharedLabel) -> SharedLabel {
        let label = make();
        let _ = last.try_with(|last| *last.borrow_mut() = Some(label.clone()));
        label
    }

    /// Whether this is the label of ungrouped work named `name` (a `&'static str`, compared by
    /// address) from `location`: see `Registry::fill`.
    pub(super) fn is_named(
        &self,
        location: &'static Location<'static>,
        name: &'static str,
    ) -> bool {
        let label = &self.0.label;
        std::ptr::eq(self.0.location, location)
            && matches!(label.name, Some(Cow::Borrowed(own)) if std::ptr::eq(own, name))
            && label.group.is_none()
            && label.restarts == 0
            && !label.supervised
    }

    pub(crate) fn is_grouped(&self) -> bool {
        self.0.label.group.is_some()
    }

    /// Whether this is the label of unnamed work in the group `path` from `location`. The label
    /// holds its group, so a group it compares equal to by pointer cannot be a new one that took
    /// a freed one's address.
    pub(crate) fn is_for(&self, path: &Arc<str>, location: &'static Location<'static>) -> bool {
        std::ptr::eq(self.0.location, location)
            && self
                .0
                .label
                .group
                .as_ref()
                .is_some_and(|group| Arc::ptr_eq(group, path))
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
    fn a_named_root_service_keeps_the_small_box() {
        // Every live service holds one: a scope's group or a supervisor's count must not grow it.
        assert_eq!(std::mem::size_of::<Named>(), 32);
        let here = Location::caller();
        let named = Origin::labelled(here, Label::named(Cow::Borrowed("svc")));
        assert_eq!(named.tag(), NAMED);
        let grouped = Origin::labelled(
            here,
            Label {
                group: Some(Arc::from("db")),
                ..Label::default()
            },
        );
        assert_eq!(grouped.tag(), LABELLED);
        assert!(grouped.name().is_none());
        assert!(std::ptr::eq(grouped.location(), here));
    }

    #[test]
    fn a_shared_label_is_counted_not_copied() {
        let here = Location::caller();
        let label = SharedLabel::new(
            here,
            Label {
                group: Some(Arc::from("workers")),
                ..Label::default()
            },
        );
        let origins: Vec<Origin> = (0..3).map(|_| Origin::shared(label.clone())).collect();
        assert_eq!(Arc::strong_count(&label.0), 4);
        for origin in &origins {
            assert_eq!(origin.tag(), LABELLED);
            assert_eq!(origin.group().map(|g| &**g), Some("workers"));
            assert!(std::ptr::eq(origin.location(), here));
        }
        drop(origins);
        assert_eq!(
            Arc::strong_count(&label.0),
            1,
            "each origin gave its count back"
        );
    }

    #[test]
    fn unnamed_keeps_its_location() {
        let here = Location::caller();
        let origin = Origin::new(here, None);
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
        let origin = Origin::new(here, Some(Cow::Owned(String::from("flusher"))));
        assert_eq!(origin.name().map(|n| n.as_ref()), Some("flusher"));
        assert!(std::ptr::eq(origin.location(), here));
        let borrowed = Origin::new(here, Some(Cow::Borrowed("static")));
        assert_eq!(borrowed.name().map(|n| n.as_ref()), Some("static"));
        assert!(format!("{borrowed:?}").contains("static"));
        let grouped = Origin::labelled(
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
