//! The swarm task's side of [`crate::relay_protocol::PATH_PROTOCOL`]: paths pushed to relay
//! children go out as one-way requests; pushes from peers are checked and passed to the node
//! with the connection's remote peer as their sender.

use libp2p::PeerId;
use libp2p::request_response::{self, InboundFailure};
use tokio::sync::oneshot;

use crate::node::MeshEvent;
use crate::relay_protocol::{PathAck, PushedPath};
use crate::swarm_task::Task;

impl Task {
    /// Sends `push` to `peer`; the acknowledgement is not waited for (a lost push is re-sent).
    pub(crate) fn push_path(&mut self, peer: PeerId, push: PushedPath, sent: oneshot::Sender<()>) {
        self.swarm.behaviour_mut().path_rr.send_request(&peer, push);
        let _ = sent.send(());
    }

    /// Handles the path protocol's events: pushes from peers are checked, acknowledged and
    /// passed to the node; failures are counted.
    pub(crate) fn handle_path(&mut self, ev: request_response::Event<PushedPath, PathAck>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .path_rr
                        .send_response(channel, PathAck {});
                    let refusal = if !self.trusted.is_empty() && !self.trusted.contains(&peer) {
                        Some("peer not trusted".to_string())
                    } else {
                        request.validate().err().map(|e| e.to_string())
                    };
                    if let Some(why) = refusal {
                        self.count_path(|d| d.path_pushes_refused += 1);
                        tracing::debug!(%peer, stream = %request.stream.escape_debug(), "pushed path dropped: {why}");
                        return;
                    }
                    match self.events.try_send(MeshEvent::PathPushed {
                        from: peer,
                        push: request,
                    }) {
                        Ok(()) => self.count_path(|d| d.path_pushes_received += 1),
                        Err(_) => {
                            self.count_path(|d| d.path_pushes_refused += 1);
                            tracing::debug!(%peer, "pushed path dropped: the node's event queue is full");
                        }
                    }
                }
                request_response::Message::Response { .. } => {}
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                self.count_path(|d| d.path_pushes_failed += 1);
                tracing::debug!(%peer, "path push not delivered: {error}");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                // An undecodable push (bad CBOR, a malformed peer id, over the size bound) ends
                // here as an I/O failure of the stream.
                if matches!(error, InboundFailure::Io(_)) {
                    self.count_path(|d| d.path_pushes_refused += 1);
                }
                tracing::debug!(%peer, "inbound path push failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn count_path(&self, f: impl FnOnce(&mut crate::directory::Directory)) {
        let mut d = self.dir.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut d);
    }
}
