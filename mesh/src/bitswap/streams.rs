//! A minimal raw-stream behaviour for Bitswap: inbound streams on the Bitswap protocols are
//! handed out through a bounded queue, and outbound streams are opened on request over an
//! existing connection (never dialling).
//!
//! Helia and boxo open a new stream for every message they send, often several at once, so
//! the inbound queue is deep ([`INBOUND_QUEUE`]); past it streams are dropped (reset).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, InboundUpgrade, Multiaddr, OutboundUpgrade, UpgradeInfo};
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId,
    FromSwarm, NetworkBehaviour, NotifyHandler, StreamUpgradeError, SubstreamProtocol, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, behaviour::ConnectionEstablished,
};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::{mpsc, oneshot};

/// Inbound streams queued for the server before more are dropped.
pub const INBOUND_QUEUE: usize = 256;

/// An inbound stream: the remote peer, the stream and the protocol it was opened with.
pub type Inbound = (PeerId, Stream, StreamProtocol);

/// Why an outbound stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No connection to the peer.
    #[error("not connected")]
    NotConnected,
    /// The peer does not speak the protocol.
    #[error("protocol not supported by the peer")]
    Unsupported,
    /// The connection failed or closed.
    #[error("io: {0}")]
    Io(String),
}

/// A request to open an outbound stream.
#[derive(Debug)]
pub struct OpenRequest {
    peer: PeerId,
    protocol: StreamProtocol,
    reply: oneshot::Sender<Result<Stream, OpenError>>,
}

/// Opens outbound streams through the behaviour.
#[derive(Clone, Debug)]
pub struct Control {
    tx: mpsc::UnboundedSender<OpenRequest>,
}

impl Control {
    /// Opens a stream to a connected peer with `protocol`.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
    ) -> Result<Stream, OpenError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(OpenRequest {
                peer,
                protocol,
                reply,
            })
            .map_err(|_| OpenError::Io("swarm stopped".into()))?;
        rx.await
            .map_err(|_| OpenError::Io("connection closed".into()))?
    }
}

/// The behaviour; see the module documentation.
pub struct Behaviour {
    protocols: Vec<StreamProtocol>,
    inbound: mpsc::Sender<Inbound>,
    requests: mpsc::UnboundedReceiver<OpenRequest>,
    connections: HashMap<PeerId, Vec<ConnectionId>>,
}

/// Builds the behaviour for `protocols`, its [`Control`] and the queue of inbound streams.
pub fn new(protocols: Vec<StreamProtocol>) -> (Behaviour, Control, mpsc::Receiver<Inbound>) {
    let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    let (tx, requests) = mpsc::unbounded_channel();
    (
        Behaviour {
            protocols,
            inbound,
            requests,
            connections: HashMap::new(),
        },
        Control { tx },
        inbound_rx,
    )
}

impl Behaviour {
    fn handler(&self, peer: PeerId) -> Handler {
        Handler {
            peer,
            protocols: self.protocols.clone(),
            inbound: self.inbound.clone(),
            requests: VecDeque::new(),
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) => {
                self.connections
                    .entry(peer_id)
                    .or_default()
                    .push(connection_id);
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => {
                if let Some(list) = self.connections.get_mut(&peer_id) {
                    list.retain(|c| *c != connection_id);
                    if list.is_empty() {
                        self.connections.remove(&peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        while let Poll::Ready(Some(req)) = self.requests.poll_recv(cx) {
            // The newest connection is the most likely to be alive.
            match self.connections.get(&req.peer).and_then(|l| l.last()) {
                Some(conn) => {
                    return Poll::Ready(ToSwarm::NotifyHandler {
                        peer_id: req.peer,
                        handler: NotifyHandler::One(*conn),
                        event: req,
                    });
                }
                None => {
                    let _ = req.reply.send(Err(OpenError::NotConnected));
                }
            }
        }
        Poll::Pending
    }
}

/// Per-connection handler.
pub struct Handler {
    peer: PeerId,
    protocols: Vec<StreamProtocol>,
    inbound: mpsc::Sender<Inbound>,
    requests: VecDeque<OpenRequest>,
}

type Reply = oneshot::Sender<Result<Stream, OpenError>>;

impl ConnectionHandler for Handler {
    type FromBehaviour = OpenRequest;
    type ToBehaviour = Infallible;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = Upgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Reply;

    fn listen_protocol(&self) -> SubstreamProtocol<Upgrade> {
        SubstreamProtocol::new(Upgrade(self.protocols.clone()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Upgrade, Reply, Infallible>> {
        match self.requests.pop_front() {
            Some(req) => Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(Upgrade(vec![req.protocol]), req.reply),
            }),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, req: OpenRequest) {
        self.requests.push_back(req);
    }

    #[allow(clippy::collapsible_match)] // the stream is moved into the queue, not in a guard
    fn on_connection_event(&mut self, event: ConnectionEvent<Upgrade, Upgrade, (), Reply>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, proto),
                ..
            }) => {
                if self.inbound.try_send((self.peer, stream, proto)).is_err() {
                    tracing::debug!(peer = %self.peer, "bitswap inbound queue full; stream dropped");
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, _),
                info,
            }) => {
                let _ = info.send(Ok(stream));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info, error }) => {
                let e = match error {
                    StreamUpgradeError::NegotiationFailed => OpenError::Unsupported,
                    StreamUpgradeError::Timeout => OpenError::Io("timed out".into()),
                    StreamUpgradeError::Io(e) => OpenError::Io(e.to_string()),
                    StreamUpgradeError::Apply(never) => match never {},
                };
                let _ = info.send(Err(e));
            }
            _ => {}
        }
    }
}

/// Accepts any of the given protocols and yields the raw stream with the one negotiated.
#[derive(Debug, Clone)]
pub struct Upgrade(Vec<StreamProtocol>);

impl UpgradeInfo for Upgrade {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_inbound(self, socket: Stream, info: StreamProtocol) -> Self::Future {
        ready(Ok((socket, info)))
    }
}

impl OutboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_outbound(self, socket: Stream, info: StreamProtocol) -> Self::Future {
        ready(Ok((socket, info)))
    }
}
