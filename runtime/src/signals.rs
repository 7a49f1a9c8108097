//! Signal capture on an OS thread of its own, so a signal is seen even when every runtime thread
//! is busy (a task hogging a `current_thread` runtime makes tokio's own signal streams deaf).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::SecondSignal;
use crate::reason::Reason;
use crate::report;
use crate::runtime::Runtime;
use crate::signal::Signal;
use crate::watchdog::state::Forced;

/// How a captured signal counts while a shutdown may already run.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    /// The first captured signal: it starts the shutdown, or joins one already running.
    First,
    /// Within a second of the first: the same request delivered again (GNU `timeout` signals the
    /// process and then its group; a terminal and a wrapper both forward Ctrl-C).
    Merged,
    /// More than a second after the first: the user means it.
    Again,
}

/// A repeat this close to the first signal is the same request.
const SAME_REQUEST: Duration = Duration::from_secs(1);

fn classify(first: &OnceLock<(Signal, Instant)>, signal: Signal, at: Instant) -> Delivery {
    match first.set((signal, at)) {
        Ok(()) => Delivery::First,
        Err(_) => {
            let (_, first_at) = first.get().expect("set above or before");
            if at.saturating_duration_since(*first_at) > SAME_REQUEST {
                Delivery::Again
            } else {
                Delivery::Merged
            }
        }
    }
}

/// Called on the signal thread for each captured signal, with the moment it was delivered.
///
/// This thread never writes and never ends the process itself: both can block (a full pipe on
/// stderr), and it must stay free to hear the next signal. The dump goes to the report's own
/// thread, a forced exit to the watchdog.
fn on_signal(shared: &Arc<Runtime>, signal: Signal, at: Instant) {
    if shared.config().dump() == Some(signal) {
        let items = report::running(shared.registry().snapshot());
        let dump = shared.take_dump(&items);
        report::dump(shared.reporter(), items, dump);
        return;
    }
    if shared.config().upgrade() == Some(signal) {
        crate::upgrade::on_signal(shared);
        return;
    }
    match classify(&shared.shutdown().trigger.first_signal, signal, at) {
        Delivery::First => {
            shared.start_shutdown(Reason::Signal(signal));
        }
        Delivery::Merged => {}
        Delivery::Again => match shared.config().second_signal {
            SecondSignal::Force => shared.watchdog().force(Forced::Signal(signal)),
            SecondSignal::Ignore => {}
        },
    }
}

fn wanted(shared: &Runtime) -> Vec<Signal> {
    let mut wanted = shared.config().signals();
    wanted.extend(shared.config().dump());
    wanted.extend(shared.config().upgrade());
    wanted
}

/// One signal-capturing runtime per process: two would both act on every signal, and the first
/// to finish would end the process in the middle of the other's drain.
static CAPTURING: AtomicBool = AtomicBool::new(false);

/// Claims the process's signals for one runtime; the claim ends with the guard.
struct Claim;

impl Claim {
    fn take() -> Claim {
        if CAPTURING.swap(true, Ordering::SeqCst) {
            panic!(
                "graceful: another graceful runtime in this process is already capturing signals; \
                 only one may at a time (give this one `signals([])`, as tests do, and stop it \
                 through its `Handle` or `graceful::shutdown()`)"
            );
        }
        Claim
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        CAPTURING.store(false, Ordering::SeqCst);
    }
}

/// The running signal thread; [`close`](Listener::close) ends it.
pub(crate) struct Listener {
    thread: std::thread::JoinHandle<()>,
    #[cfg(unix)]
    epoch: u32,
    #[cfg(windows)]
    stop: tokio_util::sync::CancellationToken,
    _claim: Claim,
}

impl Listener {
    /// Stops capturing and waits for the thread to end, so that nothing of this runtime outlives
    /// `run`. From here on the signals act as they did before `run` (see [`unix`]).
    pub(crate) fn close(self) {
        #[cfg(unix)]
        unix::release(self.epoch);
        #[cfg(windows)]
        self.stop.cancel();
        let _ = self.thread.join();
    }
}

/// Starts the thread, then installs the handlers: signals from this moment on are captured. On
/// an error nothing is left behind: no handler acts for this runtime, no thread runs.
///
/// # Panics
///
/// If another runtime of this process is capturing signals.
#[cfg(unix)]
pub(crate) fn listen(shared: &Arc<Runtime>) -> std::io::Result<Option<Listener>> {
    let wanted = wanted(shared);
    if wanted.is_empty() {
        return Ok(None);
    }
    let claim = Claim::take();
    let read = unix::pipe()?;
    let epoch = unix::next_epoch();
    let shared = shared.clone();
    let signals = wanted.clone();
    let thread = std::thread::Builder::new()
        .name("graceful-signals".into())
        .spawn(move || {
            while let Some((number, at)) = unix::next(read, epoch) {
                if let Some(signal) = signals.iter().find(|s| s.number() == number) {
                    on_signal(&shared, *signal, at);
                }
            }
        })?;
    if let Err(err) = unix::capture(&wanted, epoch) {
        unix::release(epoch);
        let _ = thread.join();
        return Err(err);
    }
    Ok(Some(Listener {
        thread,
        epoch,
        _claim: claim,
    }))
}

/// Windows delivers console events on a thread of its own; tokio's listeners for them run here on
/// a small runtime of ours, so a busy main runtime does not delay them.
#[cfg(windows)]
pub(crate) fn listen(shared: &Arc<Runtime>) -> std::io::Result<Option<Listener>> {
    use tokio::signal::windows;

    let wanted = wanted(shared);
    if wanted.is_empty() {
        return Ok(None);
    }
    let claim = Claim::take();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name("graceful-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                macro_rules! forward {
                    ($signal:expr, $listen:path) => {{
                        let signal = $signal;
                        let shared = shared.clone();
                        match $listen() {
                            Ok(mut events) => {
                                tokio::spawn(async move {
                                    while events.recv().await.is_some() {
                                        on_signal(&shared, signal, Instant::now());
                                    }
                                });
                            }
                            Err(err) => report::stderr_line(format_args!(
                                "cannot listen for {}: {err}",
                                signal.name
                            )),
                        }
                    }};
                }
                for signal in wanted {
                    match signal.name {
                        "CTRL_C" => forward!(signal, windows::ctrl_c),
                        "CTRL_BREAK" => forward!(signal, windows::ctrl_break),
                        "CTRL_CLOSE" => forward!(signal, windows::ctrl_close),
                        "CTRL_LOGOFF" => forward!(signal, windows::ctrl_logoff),
                        _ => forward!(signal, windows::ctrl_shutdown),
                    }
                }
                stopped.cancelled().await;
            })
        })?;
    Ok(Some(Listener {
        thread,
        stop,
        _claim: claim,
    }))
}

#[cfg(not(any(unix, windows)))]
pub(crate) fn listen(_shared: &Arc<Runtime>) -> std::io::Result<Option<Listener>> {
    Ok(None)
}

/// Unix signal capture, process-wide.
///
/// signal-hook never uninstalls a handler, and restoring the old `sigaction` behind its back
/// would break later registrations. So each signal's handler is installed once, for the life of
/// the process, and decides at each delivery what to do:
///
/// - while a runtime captures the signal, in the process that installed the capture: write one
///   message (the signal, the capture's epoch, the delivery time) to a pipe its thread reads;
/// - otherwise (no runtime captures it now, or this is a child made by `fork()` without `exec`):
///   act as the signal did before the first capture: the default action, emulated, or nothing if
///   it was ignored.
///
/// The pipe is made once per process and never closed, so a handler can never write into a
/// descriptor that has been closed and handed to somebody else. Messages carry the epoch of the
/// capture they were meant for; a reader skips any other (one that raced a capture's end).
#[cfg(unix)]
mod unix {
    use std::io;
    use std::os::fd::RawFd;
    use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
    use std::sync::{Mutex, PoisonError};
    use std::time::{Duration, Instant};

    use super::Signal;

    /// The capture now in force: bit `n` of the low half set while signal `n` is captured, the
    /// capture's epoch in the high half. 0: nothing is captured.
    static STATE: AtomicU64 = AtomicU64::new(0);
    /// The process whose runtime captures: a fork child has another pid.
    static CAPTURE_PID: AtomicI32 = AtomicI32::new(0);
    /// Signals that were ignored (`SIG_IGN`) when their handler was installed: they stay ignored.
    static IGNORED: AtomicU64 = AtomicU64::new(0);
    /// The pipe's write end (non-blocking: a full pipe loses a message rather than blocking in a
    /// handler), and its read end; -1 until made.
    static WRITE: AtomicI32 = AtomicI32::new(-1);
    static READ: AtomicI32 = AtomicI32::new(-1);
    /// The process that made the pipe: a fork child that captures makes its own.
    static PIPE_PID: AtomicI32 = AtomicI32::new(0);
    static EPOCH: AtomicU32 = AtomicU32::new(0);

    /// Signals whose handler is installed, by number (bit `n`), guarded for installation.
    static INSTALLED: Mutex<u64> = Mutex::new(0);

    /// One message: signal number, epoch, delivery time in nanoseconds of `CLOCK_MONOTONIC`.
    /// 16 bytes, far below `PIPE_BUF`: each write is atomic, so reads stay aligned.
    const MESSAGE: usize = 16;
    /// The signal number of the message that ends a capture's thread.
    const CLOSE: i32 = 0;

    /// A message as the handler writes it and the signal thread reads it.
    fn encode(number: i32, epoch: u32, nanos: u64) -> [u8; MESSAGE] {
        let mut message = [0u8; MESSAGE];
        message[..4].copy_from_slice(&number.to_ne_bytes());
        message[4..8].copy_from_slice(&epoch.to_ne_bytes());
        message[8..].copy_from_slice(&nanos.to_ne_bytes());
        message
    }

    fn bit(number: i32) -> u64 {
        1u64 << (number as u32 % 64)
    }

    pub(super) fn next_epoch() -> u32 {
        // Zero means "nothing captured": skip it when the counter wraps.
        loop {
            let epoch = EPOCH.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if epoch != 0 {
                return epoch;
            }
        }
    }

    fn monotonic_nanos() -> u64 {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `clock_gettime` writes the struct we pass and is async-signal-safe.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        (now.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(now.tv_nsec as u64)
    }

    /// The handler, for every delivery of a signal we installed. Async-signal-safe: atomics,
    /// `getpid`, `clock_gettime`, one `write(2)` of a message on the stack, and signal-hook's
    /// default emulation (`sigaction`, `sigprocmask`, `raise`).
    fn deliver(number: i32) {
        let state = STATE.load(Ordering::SeqCst);
        // SAFETY: `getpid` has no preconditions and is async-signal-safe.
        let pid = unsafe { libc::getpid() };
        if state & bit(number) != 0 && pid == CAPTURE_PID.load(Ordering::SeqCst) {
            let message = encode(number, (state >> 32) as u32, monotonic_nanos());
            // SAFETY: the buffer is valid for its length; the descriptor is the pipe's write end,
            // which is never closed once made.
            unsafe {
                libc::write(
                    WRITE.load(Ordering::SeqCst),
                    message.as_ptr().cast(),
                    MESSAGE,
                )
            };
            return;
        }
        if IGNORED.load(Ordering::SeqCst) & bit(number) == 0 {
            // Fails only for signals that cannot be caught, which we never install for.
            let _ = signal_hook::low_level::emulate_default_handler(number);
        }
    }

    /// The pipe's read end, made on first use in this process.
    pub(super) fn pipe() -> io::Result<RawFd> {
        let _installing = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: `getpid` has no preconditions.
        let pid = unsafe { libc::getpid() };
        if PIPE_PID.load(Ordering::SeqCst) == pid {
            return Ok(READ.load(Ordering::SeqCst));
        }
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `pipe` writes two descriptors into the array we pass.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        for fd in fds {
            // SAFETY: plain `fcntl` calls on descriptors we own; on failure both are closed.
            let ok = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0;
            if !ok {
                let err = io::Error::last_os_error();
                // SAFETY: both descriptors are ours and used nowhere else yet.
                unsafe {
                    libc::close(fds[0]);
                    libc::close(fds[1]);
                }
                return Err(err);
            }
        }
        // SAFETY: as above.
        unsafe {
            let flags = libc::fcntl(fds[1], libc::F_GETFL);
            libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        READ.store(fds[0], Ordering::SeqCst);
        WRITE.store(fds[1], Ordering::SeqCst);
        PIPE_PID.store(pid, Ordering::SeqCst);
        Ok(fds[0])
    }

    /// Captures `signals` for the capture `epoch`: installs whatever handler is missing, then
    /// routes the signals to its thread.
    pub(super) fn capture(signals: &[Signal], epoch: u32) -> io::Result<()> {
        let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
        let mut mask = 0;
        for signal in signals {
            mask |= bit(signal.number());
        }
        // SAFETY: `getpid` has no preconditions.
        CAPTURE_PID.store(unsafe { libc::getpid() }, Ordering::SeqCst);
        // Routed before the handlers exist: until a handler is installed the old disposition acts,
        // and from that instant on the handler finds the signal captured.
        STATE.store(u64::from(epoch) << 32 | mask, Ordering::SeqCst);
        for signal in signals {
            let number = signal.number();
            if *installed & bit(number) != 0 {
                continue;
            }
            if was_ignored(number)? {
                IGNORED.fetch_or(bit(number), Ordering::SeqCst);
            }
            // SAFETY: `deliver` is async-signal-safe (see there).
            unsafe { signal_hook::low_level::register(number, move || deliver(number)) }?;
            *installed |= bit(number);
        }
        Ok(())
    }

    fn was_ignored(number: i32) -> io::Result<bool> {
        // SAFETY: `sigaction` is a plain C struct for which all-zero bytes are a valid value.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a query: with a null new action, `sigaction` only writes the current one into
        // `old`, which is valid for writes.
        if unsafe { libc::sigaction(number, std::ptr::null(), &mut old) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(old.sa_sigaction == libc::SIG_IGN)
    }

    /// Ends the capture `epoch`: its signals act as before it, and its thread is told to end.
    pub(super) fn release(epoch: u32) {
        STATE.store(0, Ordering::SeqCst);
        write_blocking(&encode(CLOSE, epoch, 0));
    }

    /// Writes the close message even if the pipe is full (the thread is draining it).
    fn write_blocking(message: &[u8; MESSAGE]) {
        let fd = WRITE.load(Ordering::SeqCst);
        loop {
            // SAFETY: the buffer is valid for its length; the descriptor is never closed.
            let n = unsafe { libc::write(fd, message.as_ptr().cast(), MESSAGE) };
            if n == MESSAGE as isize {
                return;
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 100) };
        }
    }

    /// The next signal for capture `epoch` and when it was delivered; `None` at its end.
    pub(super) fn next(read: RawFd, epoch: u32) -> Option<(i32, Instant)> {
        loop {
            let mut message = [0u8; MESSAGE];
            let mut filled = 0;
            while filled < MESSAGE {
                // SAFETY: reads into the unfilled rest of the buffer.
                let n = unsafe {
                    libc::read(
                        read,
                        message[filled..].as_mut_ptr().cast(),
                        MESSAGE - filled,
                    )
                };
                if n > 0 {
                    filled += n as usize;
                } else if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                } else {
                    return None;
                }
            }
            let number = i32::from_ne_bytes(message[..4].try_into().unwrap());
            let from = u32::from_ne_bytes(message[4..8].try_into().unwrap());
            let sent = u64::from_ne_bytes(message[8..].try_into().unwrap());
            if from != epoch {
                continue;
            }
            if number == CLOSE {
                return None;
            }
            let ago = Duration::from_nanos(monotonic_nanos().saturating_sub(sent));
            let now = Instant::now();
            return Some((number, now.checked_sub(ago).unwrap_or(now)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_within_a_second_is_merged_and_a_later_one_counts_again() {
        let first = OnceLock::new();
        let sigterm = Signal::SIGTERM;
        let t0 = Instant::now();
        assert_eq!(classify(&first, sigterm, t0), Delivery::First);
        // GNU `timeout`: the process, then its group, microseconds apart.
        let t = t0 + Duration::from_micros(30);
        assert_eq!(classify(&first, sigterm, t), Delivery::Merged);
        let t = t0 + Duration::from_millis(1000);
        assert_eq!(classify(&first, sigterm, t), Delivery::Merged);
        let t = t0 + Duration::from_millis(1001);
        assert_eq!(classify(&first, sigterm, t), Delivery::Again);
        // Measured from the first signal, not from the last one merged.
        assert_eq!(first.get().unwrap().1, t0);
        // A delivery stamped before the first (two threads racing) is the same request.
        let early = t0.checked_sub(Duration::from_millis(5)).unwrap_or(t0);
        assert_eq!(classify(&first, sigterm, early), Delivery::Merged);
    }
}
