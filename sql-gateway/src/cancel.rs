//! CancelRequest: find the session by its (pid, secret key) and stop its
//! running statement — unless it is committing. Postgres ignores a cancel
//! that arrives during COMMIT; answering 57014 then would tell the client
//! a transaction failed that may well have committed.
//!
//! pgwire's [`ConnectionManager`] holds each session's cancel signal;
//! [`SessionRegistry`] adds the gateway's view of the same sessions (their
//! [`Session`], held weakly so a closed connection is never kept alive).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::ConnectionManager;
use pgwire::messages::cancel::CancelRequest;

use crate::server::CONNECTIONS_MAX;
use crate::transaction::Session;

type SessionKey = (i32, Bytes);

/// The sessions of this gateway by the (pid, secret key) they were given.
#[derive(Default)]
pub(crate) struct SessionRegistry {
    sessions: Mutex<HashMap<SessionKey, Weak<Session>>>,
}

impl SessionRegistry {
    pub(crate) fn register(&self, key: SessionKey, session: &Arc<Session>) {
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Closed sessions leave dead entries: drop them once they could
        // outnumber the live ones, so the map stays bounded.
        if sessions.len() >= CONNECTIONS_MAX {
            sessions.retain(|_, session| session.strong_count() > 0);
        }
        sessions.insert(key, Arc::downgrade(session));
    }

    fn committing(&self, key: &SessionKey) -> bool {
        let sessions = self
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions
            .get(key)
            .and_then(Weak::upgrade)
            .is_some_and(|session| session.committing())
    }
}

pub(crate) struct GatewayCancel {
    connections: Arc<ConnectionManager>,
    sessions: Arc<SessionRegistry>,
}

impl GatewayCancel {
    pub(crate) fn new(connections: Arc<ConnectionManager>, sessions: Arc<SessionRegistry>) -> Self {
        Self {
            connections,
            sessions,
        }
    }
}

#[async_trait]
impl CancelHandler for GatewayCancel {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes());
        if self.sessions.committing(&key) {
            tracing::info!(
                pid = request.pid,
                "cancel ignored: the session is committing"
            );
            return;
        }
        self.connections
            .cancel(request.pid, &request.secret_key)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_live_committing_session_refuses_a_cancel() {
        let registry = SessionRegistry::default();
        let session = Arc::new(Session::default());
        let key: SessionKey = (7, Bytes::from_static(b"secret"));
        registry.register(key.clone(), &session);
        assert!(!registry.committing(&key));
        let committing = session.start_commit();
        assert!(registry.committing(&key));
        assert!(!registry.committing(&(7, Bytes::from_static(b"other"))));
        drop(committing);
        assert!(!registry.committing(&key));
        drop(session);
        assert!(!registry.committing(&key), "a closed session is not found");
    }

    #[test]
    fn the_registry_forgets_closed_sessions_once_it_is_full() {
        let registry = SessionRegistry::default();
        for pid in 0..CONNECTIONS_MAX as i32 {
            registry.register((pid, Bytes::new()), &Arc::new(Session::default()));
        }
        let live = Arc::new(Session::default());
        registry.register((-1, Bytes::new()), &live);
        let held = registry.sessions.lock().expect("registry").len();
        assert_eq!(held, 1, "only the live session stays");
    }
}
