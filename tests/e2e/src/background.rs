//! Tasks a fixture runs beside the test (watches, port-forwards, the workers' stand-in), stopped
//! when the fixture is dropped, and the records such a task keeps for the test to read.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

/// A spawned task, aborted on drop.
#[derive(Debug)]
pub struct Background(JoinHandle<()>);

impl Background {
    /// Spawns `task` on the test's runtime.
    pub fn spawn(task: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }

    /// Stops the task now.
    pub fn stop(&self) {
        self.0.abort();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A value a background task records into (`T`: what it saw so far), read by the test.
#[derive(Debug)]
pub struct Recorder<T> {
    record: Arc<Mutex<T>>,
    task: Background,
}

impl<T: Default + Clone + Send + 'static> Recorder<T> {
    /// Spawns `task` with the shared record, empty at first.
    pub fn start<F, Fut>(task: F) -> Self
    where
        F: FnOnce(Arc<Mutex<T>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let record: Arc<Mutex<T>> = Arc::default();
        let task = Background::spawn(task(Arc::clone(&record)));
        Self { record, task }
    }

    /// What was recorded so far.
    pub fn seen(&self) -> T {
        self.record.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Stops recording (what was recorded stays).
    pub fn stop(&self) {
        self.task.stop();
    }
}
