//! Sessions run on a fixed set of threads, each with its own single-threaded runtime, and a
//! session stays on the thread it starts on. A session's two halves wake each other on every
//! message; on one thread that costs a queue push, where a work-stealing pool would pay for
//! waking and parking its workers.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;

use crate::Error;

pub struct Shards {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

impl Shards {
    /// `n` threads; 0 means one per core. The threads live as long as the process.
    pub fn start(n: usize) -> Result<Shards, Error> {
        let n = match n {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(rt.handle().clone());
            std::thread::Builder::new()
                .name(format!("drawbridge-{i}"))
                // Deep enough for the SQL parser's recursion.
                .stack_size(sql::MIN_CALLER_STACK)
                .spawn(move || rt.block_on(std::future::pending::<()>()))?;
        }
        Ok(Shards { handles, next: AtomicUsize::new(0) })
    }

    /// Runs `f` on the next thread in turn.
    pub fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(f);
    }
}
