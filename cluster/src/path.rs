//! Ancestor paths: what keeps a stream's relay tree free of loops and under its depth cap.
//!
//! A node's path for a stream lists its ancestors, the origin first and its upstream last; its
//! depth is the path's length (0 at the origin). An upstream answers a relay request with its own
//! path and itself appended, which becomes the requester's path. Two rules keep the tree a tree:
//! an upstream refuses a requester that is on its own path (the requester is its ancestor), and
//! a requester refuses an answer whose path holds itself (the upstream is its descendant). Paths
//! are kept current by pushes down the relay edges (`core/push.rs`: a node tells its relay
//! children its path whenever it changes, and freezes them while it has none), or from the
//! upstream's load reports where no push has come, so a move of any ancestor reaches every
//! descendant.

use relaycast_mesh::PeerId;
use relaycast_mesh::relay_protocol::MAX_PATH;

/// Default most hops from the origin (`--max-depth`).
pub const DEFAULT_MAX_DEPTH: u32 = 8;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The node itself is on the path: attaching would close a cycle.
    #[error("attaching would close a cycle: this node is an ancestor of the upstream")]
    Cycle,
    /// The node would sit deeper than the depth cap.
    #[error("depth {depth} over the cap of {max}")]
    TooDeep {
        /// The depth the node would have.
        depth: u32,
        /// The cap (`--max-depth`).
        max: u32,
    },
    /// The path is malformed: too long, a node twice, or not ending at the upstream.
    #[error("malformed path: {0}")]
    Malformed(&'static str),
    /// The path names a node this node lost moments ago: it predates that loss (the subtree that
    /// lost it is re-attaching) and may lead into this node's own subtree.
    #[error("stale path: it names a node lost moments ago")]
    Stale,
}

/// Checks a relay request from `from` against this node's own path for the stream (`own`,
/// origin first, upstream last): refused when `from` is an ancestor of this node (a cycle), or
/// when the requester would sit deeper than `max_depth`.
pub fn check_request(own: &[PeerId], from: PeerId, max_depth: u32) -> Result<(), PathError> {
    if own.contains(&from) {
        return Err(PathError::Cycle);
    }
    let depth = depth_of(own).saturating_add(1);
    if depth > max_depth {
        return Err(PathError::TooDeep { depth, max: max_depth });
    }
    Ok(())
}

/// The path `me` would have below `upstream`, from the upstream's answer (`answered`, which
/// ends with the upstream; `upstream_depth` is the depth it states): refused when `me` is on it
/// (the upstream is a descendant of `me`), when it is malformed, or when `me` would sit deeper
/// than `max_depth`. An empty answer (a node that predates paths) gives `[upstream]` at the
/// stated depth.
pub fn path_below(
    me: PeerId,
    upstream: PeerId,
    answered: &[PeerId],
    upstream_depth: u32,
    max_depth: u32,
) -> Result<(Vec<PeerId>, u32), PathError> {
    if answered.len() > MAX_PATH {
        return Err(PathError::Malformed("too long"));
    }
    if upstream == me || answered.contains(&me) {
        return Err(PathError::Cycle);
    }
    let path = if answered.is_empty() { vec![upstream] } else { answered.to_vec() };
    if path.last() != Some(&upstream) {
        return Err(PathError::Malformed("does not end at the upstream"));
    }
    if has_duplicates(&path) {
        return Err(PathError::Malformed("a node appears twice"));
    }
    let depth = depth_of(&path).max(upstream_depth.saturating_add(1));
    if depth > max_depth {
        return Err(PathError::TooDeep { depth, max: max_depth });
    }
    Ok((path, depth))
}

/// Depth of a node whose ancestor path is `path`.
pub fn depth_of(path: &[PeerId]) -> u32 {
    u32::try_from(path.len()).unwrap_or(u32::MAX)
}

fn has_duplicates(path: &[PeerId]) -> bool {
    path.iter().enumerate().any(|(i, p)| path[..i].contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ancestor_at_any_depth_is_refused_as_a_downstream() {
        let chain: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        // chain[5] is at depth 5 below chain[0..5]; each ancestor asking it for a relay is refused.
        let own = &chain[..5];
        for ancestor in own {
            assert_eq!(check_request(own, *ancestor, 8), Err(PathError::Cycle));
        }
        assert_eq!(check_request(own, PeerId::random(), 8), Ok(()));
        assert_eq!(check_request(&[], PeerId::random(), 8), Ok(()), "the origin serves anyone");
    }

    #[test]
    fn an_answer_with_the_requester_on_its_path_is_refused() {
        let (o, a, b, me) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
        // b is me's grandchild: b's path is o, me, a, b.
        assert_eq!(path_below(me, b, &[o, me, a, b], 3, 8), Err(PathError::Cycle));
        assert_eq!(path_below(me, me, &[], 0, 8), Err(PathError::Cycle));
        assert_eq!(path_below(me, b, &[o, a, b], 2, 8), Ok((vec![o, a, b], 3)));
    }

    #[test]
    fn depth_is_capped_on_both_sides() {
        let path: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        assert_eq!(check_request(&path, PeerId::random(), 3), Err(PathError::TooDeep { depth: 4, max: 3 }));
        assert_eq!(check_request(&path, PeerId::random(), 4), Ok(()));
        let me = PeerId::random();
        let up = path[2];
        assert_eq!(path_below(me, up, &path, 2, 2), Err(PathError::TooDeep { depth: 3, max: 2 }));
        assert_eq!(path_below(me, up, &path, 2, 3).map(|(_, d)| d), Ok(3));
        // A node that predates paths states only its depth.
        assert_eq!(path_below(me, up, &[], 7, 8), Ok((vec![up], 8)));
        assert_eq!(path_below(me, up, &[], 8, 8), Err(PathError::TooDeep { depth: 9, max: 8 }));
    }

    #[test]
    fn malformed_paths_are_refused() {
        let (o, a, me) = (PeerId::random(), PeerId::random(), PeerId::random());
        assert_eq!(path_below(me, a, &[a, o], 1, 8), Err(PathError::Malformed("does not end at the upstream")));
        assert_eq!(path_below(me, a, &[o, a, o, a], 3, 8), Err(PathError::Malformed("a node appears twice")));
        let long: Vec<PeerId> = (0..=MAX_PATH).map(|_| PeerId::random()).collect();
        assert_eq!(path_below(me, long[MAX_PATH], &long, 0, u32::MAX), Err(PathError::Malformed("too long")));
    }
}
