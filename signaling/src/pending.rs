//! Per-address cap on WHEP sessions that have not connected yet.
//!
//! A WHEP offer costs the node a session for up to the connect timeout even when no peer ever
//! answers, so one address could hold the viewer share with offers alone. Each accepted offer
//! takes a slot of its client address ([`crate::server::HttpContext::pending_viewers`]) that is
//! given back when the session connects or ends, whichever comes first. Connected viewers never
//! count: hundreds of people at a venue share one NAT address.

use std::time::Duration;

use relaycast_sfu::stream::SessionEvent;
use tokio::sync::broadcast;

use crate::server::limits::AdmissionGuard;

/// How long a slot is held at most, even if the session neither connects nor reports its end
/// (a bound beyond the SFU's own connect timeout).
pub const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// Holds `slot` until the session's events say it connected or closed (or the channel ends, or
/// `limit` passes), then releases it. Returns whether the session connected.
pub async fn hold_until_connected(
    mut events: broadcast::Receiver<SessionEvent>,
    slot: AdmissionGuard,
    limit: Duration,
) -> bool {
    let settled = tokio::time::timeout(limit, async {
        loop {
            match events.recv().await {
                Ok(SessionEvent::Connected) => return true,
                Ok(SessionEvent::Closed) | Err(broadcast::error::RecvError::Closed) => return false,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            }
        }
    })
    .await;
    drop(slot);
    settled.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::limits::SharedAdmission;
    use std::net::{IpAddr, Ipv4Addr};

    const ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    #[tokio::test]
    async fn a_connected_session_gives_its_slot_back() {
        let pending = SharedAdmission::new(0, 1);
        let slot = pending.admit(ADDR, false).unwrap();
        assert!(pending.admit(ADDR, false).is_err(), "the address holds its one slot");
        let (tx, rx) = broadcast::channel(4);
        let held = tokio::spawn(hold_until_connected(rx, slot, HOLD_LIMIT));
        tx.send(SessionEvent::Viewers { count: 1 }).unwrap();
        tx.send(SessionEvent::Connected).unwrap();
        assert!(held.await.unwrap(), "reported as connected");
        assert_eq!(pending.total(), 0);
        assert!(pending.admit(ADDR, false).is_ok(), "the slot is free again");
    }

    #[tokio::test]
    async fn a_session_that_ends_unconnected_gives_its_slot_back() {
        let pending = SharedAdmission::new(0, 1);
        let (tx, rx) = broadcast::channel(4);
        let held = tokio::spawn(hold_until_connected(rx, pending.admit(ADDR, false).unwrap(), HOLD_LIMIT));
        tx.send(SessionEvent::Closed).unwrap();
        assert!(!held.await.unwrap());
        assert_eq!(pending.total(), 0);
        // The sender going away (the session removed) also ends the hold.
        let (tx, rx) = broadcast::channel::<SessionEvent>(4);
        let held = tokio::spawn(hold_until_connected(rx, pending.admit(ADDR, false).unwrap(), HOLD_LIMIT));
        drop(tx);
        assert!(!held.await.unwrap());
        assert_eq!(pending.total(), 0);
    }

    #[tokio::test]
    async fn a_silent_session_gives_its_slot_back_at_the_limit() {
        let pending = SharedAdmission::new(0, 1);
        let (_tx, rx) = broadcast::channel::<SessionEvent>(4);
        let limit = Duration::from_millis(20);
        let held = tokio::spawn(hold_until_connected(rx, pending.admit(ADDR, false).unwrap(), limit));
        assert!(!held.await.unwrap());
        assert_eq!(pending.total(), 0);
    }
}
