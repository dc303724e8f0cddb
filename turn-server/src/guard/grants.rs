//! Allocation counts per client, and the mesh peers each allocation was granted.

use super::*;

/// Counts live allocations per client transport address (the server's 5-tuple key).
pub(crate) type Allocated = Arc<Mutex<HashMap<SocketAddr, usize>>>;

/// One counted allocation of a client; dropping it releases the count.
pub(crate) struct AllocMark {
    map: Allocated,
    client: SocketAddr,
}

impl AllocMark {
    pub(super) fn new(map: &Allocated, client: SocketAddr) -> Self {
        *lock(map).entry(client).or_insert(0) += 1;
        AllocMark { map: map.clone(), client }
    }
}

impl Drop for AllocMark {
    fn drop(&mut self) {
        let mut m = lock(&self.map);
        if let Some(n) = m.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

/// Most mesh peer addresses one allocation is granted.
pub const MAX_GRANTS: usize = 64;

/// Mesh peer media addresses an allocation was granted when its client created a permission or
/// bound a channel for them (the mesh set is read then, not per packet).
#[derive(Debug, Default)]
pub(crate) struct Grants(pub(super) std::sync::RwLock<std::collections::HashSet<SocketAddr>>);

impl Grants {
    pub(super) fn add(&self, addrs: &[SocketAddr]) {
        let mut g = self.0.write().unwrap_or_else(|e| e.into_inner());
        for a in addrs {
            if g.len() >= MAX_GRANTS {
                break;
            }
            g.insert(*a);
        }
    }

    pub(super) fn contains(&self, addr: SocketAddr) -> bool {
        let addr = SocketAddr::new(crate::filter::canonical(addr.ip()), addr.port());
        self.0.read().unwrap_or_else(|e| e.into_inner()).contains(&addr)
    }
}

/// The grants of each live allocation, by client transport address.
pub(crate) type Granted = Arc<Mutex<HashMap<SocketAddr, Arc<Grants>>>>;

/// Removes an allocation's grants when its relay socket goes.
pub(crate) struct GrantMark {
    pub(super) map: Granted,
    pub(super) client: SocketAddr,
    pub(super) grants: Arc<Grants>,
}

impl Drop for GrantMark {
    fn drop(&mut self) {
        let mut m = lock(&self.map);
        if m.get(&self.client).is_some_and(|g| Arc::ptr_eq(g, &self.grants)) {
            m.remove(&self.client);
        }
    }
}

/// Admits `peer` for `client`'s allocation when it is a signed mesh peer's media address (the
/// exact address for a channel, the peer's addresses on that IP for a permission), recording the
/// grant for the allocation's relay socket. False when not a mesh peer or no allocation.
pub(super) fn grant_mesh_peer(shared: &Shared, client: SocketAddr, peer: SocketAddr, exact: bool) -> bool {
    let addrs = if exact {
        if shared.policy.mesh.contains(peer) { vec![peer] } else { vec![] }
    } else {
        shared.policy.mesh.addrs_of(peer.ip())
    };
    if addrs.is_empty() {
        return false;
    }
    let Some(grants) = lock(&shared.granted).get(&client).cloned() else { return false };
    let addrs: Vec<SocketAddr> =
        addrs.into_iter().map(|a| SocketAddr::new(crate::filter::canonical(a.ip()), a.port())).collect();
    grants.add(&addrs);
    true
}
