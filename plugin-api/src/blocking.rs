//! Runtime-neutral helpers for blocking work: [`Worker`] and [`block_on`].
//!
//! A sink's futures are polled by whatever drives the plugin: the host's tokio runtime
//! (compiled in), a host thread (dylib), or nothing at all (inside one WASM call). Blocking
//! calls (file I/O, fsync, a synchronous HTTP client) must therefore not run on the polling
//! thread. A [`Worker`] owns some state on a dedicated thread and runs closures on it, in order;
//! awaiting the result parks only the task. In WASM, where there are no threads, the closure
//! runs inline and the future is ready at once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// The worker's thread is gone: a job panicked, or the thread could not run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerGone;

impl fmt::Display for WorkerGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the plugin's worker thread stopped (a job panicked)")
    }
}

impl std::error::Error for WorkerGone {}

#[cfg(not(target_family = "wasm"))]
type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// State `S` owned by one thread; closures run on it one at a time, in submission order.
pub struct Worker<S: Send + 'static> {
    #[cfg(not(target_family = "wasm"))]
    tx: std::sync::mpsc::Sender<Job<S>>,
    #[cfg(target_family = "wasm")]
    state: Mutex<S>,
}

impl<S: Send + 'static> Worker<S> {
    /// Start a worker thread named `name` that owns `state`. The thread ends when the worker is
    /// dropped, after the jobs already submitted.
    #[cfg(not(target_family = "wasm"))]
    pub fn spawn(name: &str, mut state: S) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Job<S>>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // A panicking job unwinds out of this loop and ends the thread: the state may be
                // half-updated, so no later job should see it. Waiters get `WorkerGone`.
                while let Ok(job) = rx.recv() {
                    job(&mut state);
                }
            })?;
        Ok(Worker { tx })
    }

    /// In WASM the "worker" is the calling thread.
    #[cfg(target_family = "wasm")]
    pub fn spawn(_name: &str, state: S) -> std::io::Result<Self> {
        Ok(Worker {
            state: Mutex::new(state),
        })
    }

    /// Run `job` on the worker and await its result.
    pub fn run<R, F>(&self, job: F) -> WorkerFuture<R>
    where
        F: FnOnce(&mut S) -> R + Send + 'static,
        R: Send + 'static,
    {
        #[cfg(not(target_family = "wasm"))]
        {
            let (tx, rx) = oneshot();
            let job: Job<S> = Box::new(move |state| tx.send(job(state)));
            match self.tx.send(job) {
                Ok(()) => WorkerFuture(Inner::Waiting(rx)),
                Err(_) => WorkerFuture(Inner::Gone),
            }
        }
        #[cfg(target_family = "wasm")]
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            WorkerFuture(Inner::Ready(Some(job(&mut state))))
        }
    }

    /// Run `job` on the worker without waiting for it (cleanup from `Drop`).
    pub fn submit<F>(&self, job: F)
    where
        F: FnOnce(&mut S) + Send + 'static,
    {
        #[cfg(not(target_family = "wasm"))]
        {
            // If the thread is gone there is nobody left to run it; that is the best we can do.
            let _ = self.tx.send(Box::new(job));
        }
        #[cfg(target_family = "wasm")]
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            job(&mut state);
        }
    }
}

/// The result of [`Worker::run`].
pub struct WorkerFuture<R>(Inner<R>);

// Nothing in a WorkerFuture is ever pinned in place: the value is moved out whole.
impl<R> Unpin for WorkerFuture<R> {}

enum Inner<R> {
    #[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
    Ready(Option<R>),
    #[cfg_attr(target_family = "wasm", allow(dead_code))]
    Waiting(Receiver<R>),
    #[cfg_attr(target_family = "wasm", allow(dead_code))]
    Gone,
}

impl<R> Future for WorkerFuture<R> {
    type Output = Result<R, WorkerGone>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.0 {
            Inner::Ready(value) => Poll::Ready(value.take().ok_or(WorkerGone)),
            Inner::Waiting(rx) => rx.poll(cx).map(|v| v.ok_or(WorkerGone)),
            Inner::Gone => Poll::Ready(Err(WorkerGone)),
        }
    }
}

// A one-shot channel: the smallest thing that turns a thread's result into a future.

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    closed: bool,
}

#[cfg_attr(target_family = "wasm", allow(dead_code))]
struct Sender<T>(Arc<Mutex<Slot<T>>>);
struct Receiver<T>(Arc<Mutex<Slot<T>>>);

#[cfg_attr(target_family = "wasm", allow(dead_code))]
fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
        closed: false,
    }));
    (Sender(slot.clone()), Receiver(slot))
}

#[cfg_attr(target_family = "wasm", allow(dead_code))]
impl<T> Sender<T> {
    fn send(self, value: T) {
        let waker = {
            let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        // Drop runs next and marks the slot closed; the value is already there.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            slot.closed = true;
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = slot.value.take() {
            return Poll::Ready(Some(v));
        }
        if slot.closed {
            return Poll::Ready(None);
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Run a future to completion on the current thread.
///
/// Natively the thread parks until the future is woken (this is how the C entry points drive a
/// plugin's async code). In WASM there is nothing to wait for except host calls, which are
/// synchronous, so a future that is not ready at once is a plugin bug: this panics, which the
/// host reports as a trap.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    #[cfg(not(target_family = "wasm"))]
    {
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
    #[cfg(target_family = "wasm")]
    {
        let mut cx = Context::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!(
                "a plugin future was not ready inside a WASM call; WASM plugins can only wait on host calls"
            ),
        }
    }
}

#[cfg(not(target_family = "wasm"))]
struct ThreadWaker(std::thread::Thread);

#[cfg(not(target_family = "wasm"))]
impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_in_order_on_its_thread() {
        let w = Worker::spawn("test-worker", Vec::new()).unwrap();
        let caller = std::thread::current().id();
        let a = w.run(|v: &mut Vec<u32>| {
            v.push(1);
            std::thread::current().id()
        });
        w.submit(|v| v.push(2));
        let b = w.run(|v: &mut Vec<u32>| v.clone());
        assert_ne!(block_on(a).unwrap(), caller);
        assert_eq!(block_on(b).unwrap(), vec![1, 2]);
    }

    #[test]
    fn a_panicking_job_reports_gone() {
        let w = Worker::spawn("test-worker", ()).unwrap();
        let r = block_on(w.run(|_| -> u32 { panic!("boom") }));
        assert_eq!(r, Err(WorkerGone));
        assert_eq!(block_on(w.run(|_| 1)), Err(WorkerGone));
    }
}
