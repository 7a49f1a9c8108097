//! One runtime's upgrade as state: what it starts, whether one runs, and the new process while it
//! is not ready yet. Starting and watching the new process is `upgrade/mod.rs`'s.

#[cfg(unix)]
use std::sync::{atomic::AtomicBool, Mutex, PoisonError};

use crate::config::Command;

/// One runtime's upgrade: what it starts, and the new process while it is not ready yet.
#[derive(Default)]
pub(crate) struct Upgrade {
    /// The program as resolved when `run` started; `None` for a run that is not the program, or
    /// if the executable's path could not be resolved.
    #[cfg(unix)]
    pub(super) command: Option<Command>,
    #[cfg(unix)]
    pub(super) running: AtomicBool,
    /// The new process's pid from its start until it is ready, failed or reaped: while it is
    /// here, it is not reaped, so a kill through it cannot reach a recycled pid.
    #[cfg(unix)]
    pub(super) unready: Mutex<Option<u32>>,
}

impl Upgrade {
    /// For a run that is the program: resolves the executable now, before any deploy replaces it.
    pub(crate) fn new(is_program: bool, command: Option<Command>) -> Upgrade {
        #[cfg(unix)]
        {
            let command = is_program.then(|| {
                command.or_else(|| {
                    Some(Command {
                        program: std::env::current_exe().ok()?,
                        args: std::env::args_os().skip(1).collect(),
                    })
                })
            });
            Upgrade {
                command: command.flatten(),
                ..Upgrade::default()
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (is_program, command);
            Upgrade::default()
        }
    }

    /// A shutdown started for another reason: the new process, if not ready yet, is killed now.
    pub(crate) fn abandon(&self) {
        #[cfg(unix)]
        if let Some(pid) = self
            .unready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            kill(pid);
        }
    }
}

#[cfg(unix)]
fn kill(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: `kill` has no memory preconditions; the caller holds the pid unreaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
