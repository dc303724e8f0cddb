//! Relaycast mesh: libp2p discovery, signed gossip, relay SDP exchange and placement.
