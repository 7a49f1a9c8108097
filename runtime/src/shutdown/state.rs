//! The shutdown's state in one runtime: its trigger and the root scope.

use std::sync::Arc;

use super::trigger::Trigger;
use crate::scope::tree::ScopeInner;

/// The shutdown's state in one runtime: the trigger, and the root scope (the program), whose
/// token, stop flag, phase and hooks are the sequence's.
pub(crate) struct Shutdown {
    pub(crate) trigger: Trigger,
    pub(crate) root: Arc<ScopeInner>,
}

impl Shutdown {
    pub(crate) fn new(root: Arc<ScopeInner>) -> Shutdown {
        Shutdown {
            trigger: Trigger::default(),
            root,
        }
    }
}
