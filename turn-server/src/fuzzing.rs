//! Entry points for the fuzz targets in `fuzz/`: the guard's inspection of a datagram, and STUN
//! decoding with the attribute getters the guard and the `turn` server apply to requests. Not
//! part of the supported API.

use std::net::SocketAddr;
use std::sync::Arc;

use stun::attributes::{
    ATTR_ALTERNATE_SERVER, ATTR_MAPPED_ADDRESS, ATTR_NONCE, ATTR_REALM, ATTR_SOFTWARE, ATTR_USERNAME,
    ATTR_XOR_PEER_ADDRESS, ATTR_XOR_RELAYED_ADDRESS,
};
use stun::message::{Getter, Message};

use crate::filter::PeerPolicy;
use crate::guard::{Shared, Verdict, inspect, peer_addresses};
use crate::quota::{Limits, QuotaTracker};

/// Guard state for fuzzing: a fixed secret, the default peer policy and default quotas.
pub struct Guard(Shared);

impl Default for Guard {
    fn default() -> Self {
        Guard(Shared::new(
            "fuzz".into(),
            "relaycast".into(),
            PeerPolicy::new(vec![], vec![SocketAddr::from(([127, 0, 0, 1], 3478))]),
            QuotaTracker::new(Limits::default()),
            Arc::default(),
        ))
    }
}

impl Guard {
    /// Runs the guard on one datagram from `src`; returns the reply it would send, if any.
    pub fn inspect(&self, buf: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        match inspect(&self.0, buf, src) {
            Verdict::Reply(bytes) => Some(bytes),
            Verdict::Pass(_) | Verdict::Drop => None,
        }
    }
}

/// Decodes `buf` as a STUN message (as the guard does) and reads every attribute the guard and
/// the `turn` server read from a request; returns how many getters succeeded.
pub fn stun_decode(buf: &[u8]) -> usize {
    if !stun::message::is_message(buf) {
        return 0;
    }
    let mut m = Message::new();
    m.raw = buf.to_vec();
    if m.decode().is_err() {
        return 0;
    }
    let mut ok = 0;
    let mut count = |r: Result<(), stun::Error>| ok += usize::from(r.is_ok());
    count(peer_addresses(&m).map(drop).ok_or(stun::Error::ErrAttributeNotFound));
    for t in [ATTR_USERNAME, ATTR_REALM, ATTR_NONCE, ATTR_SOFTWARE] {
        count(stun::textattrs::TextAttribute::get_from_as(&m, t).map(drop));
    }
    for t in [ATTR_XOR_PEER_ADDRESS, ATTR_XOR_RELAYED_ADDRESS] {
        count(stun::xoraddr::XorMappedAddress::default().get_from_as(&m, t));
    }
    count(stun::xoraddr::XorMappedAddress::default().get_from(&m));
    for t in [ATTR_MAPPED_ADDRESS, ATTR_ALTERNATE_SERVER] {
        count(stun::addr::MappedAddress::default().get_from_as(&m, t));
    }
    count(stun::error_code::ErrorCodeAttribute::default().get_from(&m));
    count(stun::uattrs::UnknownAttributes(Vec::new()).get_from(&m));
    count(stun::fingerprint::FINGERPRINT.check(&m));
    count(turn::proto::lifetime::Lifetime::default().get_from(&m));
    count(turn::proto::channum::ChannelNumber::default().get_from(&m));
    count(turn::proto::reqtrans::RequestedTransport::default().get_from(&m));
    count(turn::proto::reqfamily::RequestedAddressFamily::default().get_from(&m));
    count(turn::proto::evenport::EvenPort::default().get_from(&m));
    count(turn::proto::dontfrag::DontFragmentAttr.get_from(&m));
    count(turn::proto::data::Data::default().get_from(&m));
    count(turn::proto::peeraddr::PeerAddress::default().get_from(&m));
    count(turn::proto::relayaddr::RelayedAddress::default().get_from(&m));
    ok
}

/// Decodes `buf` as a TURN ChannelData message with the `turn` crate's decoder.
pub fn channel_data_decode(buf: &[u8]) -> bool {
    let mut c = turn::proto::chandata::ChannelData { raw: buf.to_vec(), ..Default::default() };
    c.decode().is_ok()
}
