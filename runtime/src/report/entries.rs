//! How the report names work: one entry per piece of work, but one per server for the
//! connections of `graceful::http::serve`, with how many have a request in flight.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::task::{TaskInfo, TaskKind};

/// What one line of the report names: a piece of work, or one server's connections.
pub(super) enum Entry<'a> {
    Item(&'a TaskInfo),
    /// The connections of one `graceful::http::serve`, `count` of them, `busy` of them with a
    /// request in flight (where the server says).
    Connections {
        first: &'a TaskInfo,
        count: usize,
        busy: Option<usize>,
    },
}

impl fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Item(item) => write!(f, "{item}"),
            Entry::Connections { first, count, busy } => {
                let noun = if *count == 1 {
                    "connection"
                } else {
                    "connections"
                };
                write!(f, "{count} {noun}")?;
                if let Some(scope) = &first.scope {
                    write!(f, " in {scope}")?;
                }
                write!(f, " at {}", first.location)?;
                if let Some(busy) = busy {
                    write!(f, ", {busy} with a request in flight")?;
                }
                Ok(())
            }
        }
    }
}

/// `items` as the report names them: the connections of one server (work named `connection` in
/// the scope of a server `servers` knows) as one entry, where the first of them stands. Without
/// `servers` (the forced exit's last line, which takes no lock) each item is its own entry.
pub(super) fn entries<'a>(items: &'a [TaskInfo], servers: Option<&Busy>) -> Vec<Entry<'a>> {
    let mut entries: Vec<Entry<'a>> = Vec::new();
    for item in items {
        let server = item.scope.as_ref().filter(|scope| {
            item.kind == TaskKind::Service
                && item.name == "connection"
                && servers.is_some_and(|s| s.of(scope).is_some())
        });
        let Some(scope) = server else {
            entries.push(Entry::Item(item));
            continue;
        };
        let same = entries.iter_mut().find_map(|entry| match entry {
            Entry::Connections { first, count, .. }
                if first.scope.as_ref().is_some_and(|s| Arc::ptr_eq(s, scope)) =>
            {
                Some(count)
            }
            _ => None,
        });
        match same {
            Some(count) => *count += 1,
            None => entries.push(Entry::Connections {
                first: item,
                count: 1,
                busy: servers.and_then(|s| s.of(scope)),
            }),
        }
    }
    entries
}

/// The servers of `graceful::http::serve`, by scope: how many of each one's connections have a
/// request in flight, for the line that names them as one.
#[derive(Default)]
pub(crate) struct Servers(Mutex<Vec<(Weak<str>, Weak<AtomicUsize>)>>);

impl Servers {
    /// A server in the scope `path`, whose connections with a request in flight `busy` counts;
    /// forgotten once either is gone.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn add(&self, path: &Arc<str>, busy: &Arc<AtomicUsize>) {
        let mut servers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        servers.retain(|(path, busy)| path.strong_count() > 0 && busy.strong_count() > 0);
        servers.push((Arc::downgrade(path), Arc::downgrade(busy)));
    }

    /// Each live server's count now: taken before an abort, whose ends would change them.
    pub(crate) fn busy(&self) -> Busy {
        let servers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Busy(
            servers
                .iter()
                .filter_map(|(path, busy)| {
                    Some((path.upgrade()?, busy.upgrade()?.load(Ordering::SeqCst)))
                })
                .collect(),
        )
    }
}

/// The servers' scopes, and how many connections of each had a request in flight, at one moment.
pub(crate) struct Busy(Vec<(Arc<str>, usize)>);

impl Busy {
    fn of(&self, path: &Arc<str>) -> Option<usize> {
        self.0
            .iter()
            .find_map(|(at, busy)| Arc::ptr_eq(at, path).then_some(*busy))
    }
}
