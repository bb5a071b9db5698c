//! Small helpers over monoio's owned-buffer I/O, shared by the mock server and the load
//! generator: append reads into a `BytesMut`, write a buffer out and keep it for reuse, and a
//! per-thread shutdown flag that wakes every task waiting on it.
//!
//! Single-threaded by design (`Rc`, `Cell`): each monoio runtime owns its own.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// Bytes a read asks the kernel for at least (the buffer grows by this much when short).
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// Reads once from `stream`, appending to `buf`. `Ok(0)` is end of stream.
///
/// If the returned future is dropped before it completes, `buf` is left empty: the caller must
/// treat the connection as unusable (it only happens on timeouts and shutdown).
pub(crate) async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let (res, slice) = stream.read(owned.slice_mut(len..)).await;
    *buf = slice.into_inner();
    res
}

/// Writes all of `buf` to `stream`, then clears it (keeping its allocation for reuse).
pub(crate) async fn write_buf(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let owned = std::mem::take(buf);
    let (res, mut owned) = stream.write_all(owned).await;
    owned.clear();
    *buf = owned;
    res.map(drop)
}

/// A one-way flag for one runtime thread: once set, every [`LocalFlag::wait`] future completes.
#[derive(Debug, Default)]
pub(crate) struct LocalFlag {
    set: Cell<bool>,
    /// Waker slots; `None` slots are free and listed in `free`.
    waiters: RefCell<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

/// Completes once its [`LocalFlag`] is set.
#[derive(Debug)]
pub(crate) struct FlagWait {
    flag: Rc<LocalFlag>,
    slot: Option<usize>,
}

// === impl LocalFlag ===

impl LocalFlag {
    /// Sets the flag and wakes every waiter.
    pub(crate) fn set(&self) {
        self.set.set(true);
        // Take the wakers out first: waking must not happen while the slots are borrowed.
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .slots
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether the flag is set.
    pub(crate) fn is_set(&self) -> bool {
        self.set.get()
    }

    /// A future that completes once the flag is set.
    pub(crate) fn wait(self: &Rc<Self>) -> FlagWait {
        FlagWait {
            flag: Rc::clone(self),
            slot: None,
        }
    }
}

// === impl FlagWait ===

impl Future for FlagWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.flag.set.get() {
            return Poll::Ready(());
        }
        let mut waiters = this.flag.waiters.borrow_mut();
        match this.slot {
            Some(slot) => match &mut waiters.slots[slot] {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                entry => *entry = Some(cx.waker().clone()),
            },
            None => {
                let waker = Some(cx.waker().clone());
                let slot = match waiters.free.pop() {
                    Some(slot) => {
                        waiters.slots[slot] = waker;
                        slot
                    }
                    None => {
                        waiters.slots.push(waker);
                        waiters.slots.len() - 1
                    }
                };
                this.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for FlagWait {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut waiters = self.flag.waiters.borrow_mut();
            waiters.slots[slot] = None;
            waiters.free.push(slot);
        }
    }
}

/// A monoio runtime with timers, on io_uring or the legacy driver.
pub(crate) type Runtime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// Which monoio driver a runtime uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Driver {
    /// io_uring when the kernel allows it, else the legacy epoll driver.
    #[default]
    Auto,
    /// io_uring only (fails where it is unavailable, e.g. under Docker's default seccomp).
    IoUring,
    /// The legacy epoll driver.
    Legacy,
}

impl std::str::FromStr for Driver {
    type Err = String;

    /// `auto`, `io-uring` (or `io_uring`, `uring`) or `legacy` (or `epoll`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "io-uring" | "io_uring" | "uring" => Ok(Self::IoUring),
            "legacy" | "epoll" => Ok(Self::Legacy),
            _ => Err(format!(
                "invalid driver {s:?}: expected auto, io-uring or legacy"
            )),
        }
    }
}

/// Builds a monoio runtime with timers on the chosen driver. Returns the runtime and the name
/// of the driver it ended up on (`"io_uring"` or `"legacy"`).
pub(crate) fn build_runtime(choice: Driver) -> io::Result<(Runtime, &'static str)> {
    let runtime = match choice {
        Driver::Auto => monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()?,
        Driver::IoUring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .map(Runtime::from)?,
        Driver::Legacy => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(Runtime::from)?,
    };
    let driver = match &runtime {
        monoio::FusionRuntime::Uring(_) => "io_uring",
        monoio::FusionRuntime::Legacy(_) => "legacy",
    };
    Ok((runtime, driver))
}
