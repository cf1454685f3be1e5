//! Plumbing under the history strategies: pack files decoded whole, raw
//! tree entries compared in place, commit headers, loose objects, and the
//! guard that turns a worker's panic into an error. Nothing here knows
//! about rules, findings or strategies.

pub(crate) mod commit;
pub(crate) mod pack;
pub(crate) mod tree;

use gix::ObjectId;

/// A worker panicked while reading `what`. The scan stops with this error
/// instead of going on without what the worker had found.
#[derive(Debug, thiserror::Error)]
#[error("a worker failed while reading {what}: {message}")]
pub struct WorkerPanic {
    what: String,
    message: String,
}

impl WorkerPanic {
    pub(crate) fn new(what: impl Into<String>, message: impl Into<String>) -> WorkerPanic {
        WorkerPanic {
            what: what.into(),
            message: message.into(),
        }
    }
}

/// Run `produce` on a thread of its own while the calling thread hands
/// what it sends to `consume`, so that the caller's callback never leaves
/// the caller's thread. The channel is bounded: a slow consumer holds the
/// producer back. A panic that escapes the producer is returned as an
/// error, not lost.
pub(crate) fn stream<T: Send, R: Send>(
    produce: impl FnOnce(crossbeam_channel::Sender<T>) -> Result<R, WorkerPanic> + Send,
    mut consume: impl FnMut(T),
) -> Result<R, WorkerPanic> {
    let (tx, rx) = crossbeam_channel::bounded::<T>(1024);
    std::thread::scope(|s| {
        let producer = s.spawn(move || produce(tx));
        for t in rx {
            consume(t);
        }
        producer.join().unwrap_or_else(|payload| {
            Err(WorkerPanic::new(
                "a history scan worker",
                panic_message(payload.as_ref()),
            ))
        })
    })
}

/// Run `f`, turning a panic into a [`WorkerPanic`] about `what`. The panic
/// still prints its message; the caller's state may be inconsistent
/// afterwards, which is why the scan ends there.
pub(crate) fn catch<R>(
    what: impl FnOnce() -> String,
    f: impl FnOnce() -> R,
) -> Result<R, WorkerPanic> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| WorkerPanic {
        what: what(),
        message: panic_message(payload.as_ref()),
    })
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".into())
}

/// Test builds only: a worker that reads this marker in an object panics,
/// so tests can check that no panic is lost.
#[cfg(test)]
pub(crate) const PANIC_MARKER: &[u8] = b"keyburn-test: panic in this worker";

#[cfg(test)]
pub(crate) fn panic_on_marker(data: &[u8]) {
    if memchr::memmem::find(data, PANIC_MARKER).is_some() {
        panic!("test marker read");
    }
}

/// Ids of the repository's loose objects.
pub(crate) fn loose_objects(repo: &gix::Repository) -> Vec<ObjectId> {
    let dir = repo.common_dir().join("objects");
    gix::odb::loose::Store::at(dir, repo.object_hash())
        .iter()
        .filter_map(Result::ok)
        .collect()
}

/// Hand memory freed by a finished phase back to the system. glibc keeps
/// freed blocks in per-thread arenas, where the next phase's allocations
/// (of other sizes, on other threads) often cannot reuse them, and the
/// process's footprint grows phase after phase.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
