//! Connections as the state sees them: registering one (its number and command queue, the
//! control plane's way to close or fault it), attaching its session, and what becomes of that
//! session when the connection ends or its resume window passes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::{Command, ConnectionHandle, Fake, add, lock};
use crate::control::SessionEnd;
use crate::rules::{self, US_PER_MS};
use crate::session::{Link, Session};

impl Fake {
    /// Registers a new connection; returns its number and its command queue.
    pub fn connect(&self) -> (u64, mpsc::UnboundedReceiver<Command>) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.connections).insert(
            id,
            ConnectionHandle {
                commands: tx,
                session: None,
            },
        );
        add(&self.stats.connections_total, 1);
        add(&self.stats.connections_open, 1);
        (id, rx)
    }

    pub(super) fn set_connection_session(&self, connection: u64, session: Option<Arc<Session>>) {
        if let Some(handle) = lock(&self.connections).get_mut(&connection) {
            handle.session = session;
        }
    }

    /// A connection ended, by a close with `code` (either side) or a drop (`None`). Its session,
    /// if still attached to it, stays resumable or ends as the close code says.
    pub fn disconnect(&self, connection: u64, session: Option<&Arc<Session>>, code: Option<u16>) {
        lock(&self.connections).remove(&connection);
        self.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
        if let Some(session) = session {
            self.release(connection, session, code);
        }
    }

    /// Detaches a session from a connection that is closing with `code` (or dropped: `None`):
    /// it stays resumable or ends as the close code says.
    pub fn release(&self, connection: u64, session: &Arc<Session>, code: Option<u16>) {
        self.set_connection_session(connection, None);
        let now = self.clock.now_us();
        let end = {
            let mut state = session.state();
            if state.link != Link::Attached(connection) {
                return;
            }
            if rules::session_survives_close(code) {
                state.link = Link::Detached(now);
                false
            } else {
                state.link = Link::Ended;
                state.end = Some(SessionEnd::Closed { code });
                true
            }
        };
        if end {
            self.sessions_write().remove(session);
        }
    }

    /// Ends a session at once (op 9 `false`, expiry, reset), for the reason `end`.
    pub fn end_session(&self, session: &Session, end: SessionEnd) {
        {
            let mut state = session.state();
            state.link = Link::Ended;
            state.end.get_or_insert(end);
        }
        self.sessions_write().remove(session);
    }

    /// Drops sessions whose resume window has passed; returns how many.
    pub fn expire_sessions(&self) -> usize {
        let now = self.clock.now_us();
        let window = self.config.resume_window_ms * US_PER_MS;
        let expired: Vec<Arc<Session>> = self
            .sessions_read()
            .by_id
            .values()
            .filter(
                |s| matches!(s.state().link, Link::Detached(at) if now.saturating_sub(at) > window),
            )
            .cloned()
            .collect();
        for session in &expired {
            self.end_session(session, SessionEnd::Expired);
        }
        expired.len()
    }
}
