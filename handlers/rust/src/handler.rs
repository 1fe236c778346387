//! What a bot's logic implements: one async call per event, in the partition's order. `Ok` acks
//! the event; `Err` (or a panic) asks for a redelivery after a delay, up to the configured
//! number of attempts.

use std::future::Future;

use crate::event::Event;

/// A handler's failure: any error.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A bot's event handler. Closures `Fn(Event) -> impl Future<Output = Result<(), HandlerError>>`
/// are handlers too.
///
/// Events of one partition are handled one at a time, in order; partitions run concurrently, so
/// `handle` is called from several tasks at once. An event may be delivered more than once
/// (after a failure, or when its owner died before acknowledging it: [`Event::redelivered`]):
/// make effects idempotent (for replies, Discord's `nonce` with `enforce_nonce`).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, event: Event) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(&self, event: Event) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(event)
    }
}
