//! The mesh's HTTP API: `/api/node`, `/api/topology`, `/api/placement/{stream}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use relaycast_mesh::{NodeLoad, PeerId};
use serde::Serialize;

use super::Cluster;

/// Routes of the mesh API.
pub fn routes(cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route("/api/node", get(node))
        .route("/api/topology", get(topology))
        .route("/api/placement/{stream}", get(placement))
        .with_state(cluster)
}

/// `GET /api/node`: this node's peer id, listen addresses and known peers, its public address
/// (`public_addr`) and how it was learned (`nat`).
async fn node(State(c): State<Arc<Cluster>>) -> Response {
    let info = c.mesh().node_info().await;
    let nat = c.nat();
    let mut body = match serde_json::to_value(&info) {
        Ok(v) => v,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    if let Some(obj) = body.as_object_mut() {
        obj.insert("public_addr".into(), serde_json::json!(nat.public_ip));
        obj.insert("nat".into(), serde_json::to_value(&nat).unwrap_or_default());
    }
    Json(body).into_response()
}

/// One node in `/api/topology`.
#[derive(Debug, Serialize)]
pub struct TopologyNode {
    /// Peer id.
    pub peer_id: String,
    /// HTTP base URL.
    pub http_url: String,
    /// Region tag.
    pub region: Option<String>,
    /// Viewers on the node.
    pub viewers: u32,
    /// Viewer capacity.
    pub capacity: u32,
    /// Downstream nodes it relays to.
    pub relay_children: u32,
    /// Its relay fan-out limit.
    pub max_relay_children: u32,
    /// True for the node answering.
    pub local: bool,
}

/// One node carrying a stream in `/api/topology`.
#[derive(Debug, Serialize)]
pub struct StreamNode {
    /// Peer id.
    pub peer_id: String,
    /// Depth in the stream's tree (0 = origin).
    pub depth: u32,
    /// The node it receives the stream from.
    pub upstream: Option<String>,
    /// Its ancestor path: peer ids from the origin to its upstream (empty at the origin, and for
    /// nodes that do not report one).
    pub path: Vec<String>,
    /// Its standby upstream: a second node it receives the stream from, ready to take over.
    pub standby: Option<String>,
    /// The video layers (rids) arriving at it; fewer than at its upstream when the edge sheds
    /// layers it cannot carry.
    pub layers: Vec<String>,
    /// Viewers of the stream on that node.
    pub viewers: u32,
    /// Downstream nodes it relays the stream to.
    pub relay_children: u32,
    /// Bitrate the stream arrives with, bits per second.
    pub bitrate_bps: u64,
}

/// One stream's relay tree in `/api/topology`.
#[derive(Debug, Serialize)]
pub struct StreamTree {
    /// Stream name.
    pub stream: String,
    /// Every node carrying it.
    pub nodes: Vec<StreamNode>,
}

/// One relay edge in `/api/topology`.
#[derive(Debug, Serialize)]
pub struct Edge {
    /// Stream name.
    pub stream: String,
    /// Upstream peer id.
    pub from: String,
    /// Downstream peer id.
    pub to: String,
    /// Depth of the downstream node.
    pub depth: u32,
    /// The downstream node's ancestor path, origin first, the upstream last.
    pub path: Vec<String>,
    /// Viewers at the downstream node.
    pub viewers: u32,
    /// Bitrate over the edge, bits per second.
    pub bitrate_bps: u64,
    /// The video layers (rids) the edge carries, as the downstream node receives them (the
    /// upstream sheds the highest layers the edge's bandwidth estimate cannot carry).
    pub layers: Vec<String>,
}

/// Body of `GET /api/topology`.
#[derive(Debug, Serialize)]
pub struct Topology {
    /// The answering node's peer id.
    pub local: String,
    /// Every node known.
    pub nodes: Vec<TopologyNode>,
    /// Each stream's tree.
    pub streams: Vec<StreamTree>,
    /// Relay edges, upstream to downstream.
    pub edges: Vec<Edge>,
}

/// Builds the topology from this node's load and the loads the mesh announced.
pub fn build_topology(local: PeerId, own: &NodeLoad, others: &[(PeerId, NodeLoad)]) -> Topology {
    let all: Vec<(PeerId, &NodeLoad, bool)> = std::iter::once((local, own, true))
        .chain(others.iter().filter(|(p, _)| *p != local).map(|(p, l)| (*p, l, false)))
        .collect();
    let mut streams: BTreeMap<String, Vec<StreamNode>> = BTreeMap::new();
    let mut edges = Vec::new();
    for (peer, load, _) in &all {
        for s in &load.streams {
            streams.entry(s.stream.clone()).or_default().push(StreamNode {
                peer_id: peer.to_string(),
                depth: s.depth,
                upstream: s.upstream.map(|u| u.to_string()),
                path: s.path.iter().map(PeerId::to_string).collect(),
                standby: s.standby.map(|u| u.to_string()),
                layers: s.layers.clone(),
                viewers: s.viewers,
                relay_children: s.relay_children,
                bitrate_bps: s.ingress_bps,
            });
            if let Some(up) = s.upstream {
                edges.push(Edge {
                    stream: s.stream.clone(),
                    from: up.to_string(),
                    to: peer.to_string(),
                    depth: s.depth,
                    path: s.path.iter().map(PeerId::to_string).collect(),
                    viewers: s.viewers,
                    bitrate_bps: s.ingress_bps,
                    layers: s.layers.clone(),
                });
            }
        }
    }
    let nodes = all
        .iter()
        .map(|(peer, l, is_local)| TopologyNode {
            peer_id: peer.to_string(),
            http_url: l.http_url.clone(),
            region: l.region.clone(),
            viewers: l.viewers,
            capacity: l.capacity,
            relay_children: l.relay_children,
            max_relay_children: l.max_relay_children,
            local: *is_local,
        })
        .collect();
    let streams = streams
        .into_iter()
        .map(|(stream, mut nodes)| {
            nodes.sort_by(|a, b| a.depth.cmp(&b.depth).then(a.peer_id.cmp(&b.peer_id)));
            StreamTree { stream, nodes }
        })
        .collect();
    Topology { local: local.to_string(), nodes, streams, edges }
}

/// `GET /api/topology`: every known node, each stream's relay tree with depths, and the edges.
async fn topology(State(c): State<Arc<Cluster>>) -> Json<Topology> {
    let dir = c.mesh().directory();
    let others: Vec<(PeerId, NodeLoad)> = dir.nodes.iter().map(|(p, e)| (*p, e.load.clone())).collect();
    Json(build_topology(c.mesh().peer_id(), &c.local_load(), &others))
}

/// Body of `GET /api/placement/{stream}`.
#[derive(Debug, Serialize)]
pub struct Placement {
    /// Stream name.
    pub stream: String,
    /// Peer id of the node to use.
    pub peer_id: String,
    /// Its HTTP base URL.
    pub http_url: String,
    /// Its WHEP endpoint for the stream.
    pub whep_url: String,
    /// Its region tag.
    pub region: Option<String>,
    /// Its viewers.
    pub viewers: u32,
    /// Its viewer capacity.
    pub capacity: u32,
    /// True when the node already carries the stream.
    pub carries_stream: bool,
}

/// `GET /api/placement/{stream}`: the best node for a new viewer of the stream.
async fn placement(
    State(c): State<Arc<Cluster>>,
    Path(stream): Path<String>,
    client: Option<axum::Extension<relaycast_signaling::server::ClientInfo>>,
) -> Response {
    if !relaycast_signaling::sessions::valid_stream_name(&stream) {
        return (StatusCode::BAD_REQUEST, "stream names are 1-128 characters of A-Z a-z 0-9 - _ .\n").into_response();
    }
    let Some((peer, load)) = c.placement(&stream) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no node has room for a viewer\n").into_response();
    };
    // This node is named as the client reached it (scheme and host, through a trusted proxy too).
    let own = client.and_then(|axum::Extension(ci)| ci.base_url()).unwrap_or_else(|| c.http_url());
    let http_url = if peer == c.mesh().peer_id() || load.http_url.is_empty() { own } else { load.http_url.clone() };
    Json(Placement {
        whep_url: format!("{}/whep/{stream}", http_url.trim_end_matches('/')),
        carries_stream: load.streams.iter().any(|s| s.stream == stream),
        stream,
        peer_id: peer.to_string(),
        http_url,
        region: load.region,
        viewers: load.viewers,
        capacity: load.capacity,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use relaycast_mesh::StreamPresence;

    use super::*;

    fn load(streams: Vec<StreamPresence>) -> NodeLoad {
        NodeLoad { http_url: "http://x".into(), capacity: 10, max_relay_children: 1, streams, ..Default::default() }
    }

    #[test]
    fn a_chain_gives_depths_and_edges() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let pres = |depth, upstream, path| StreamPresence {
            stream: "room".into(),
            depth,
            upstream,
            viewers: 1,
            relay_children: 0,
            ingress_bps: 1000,
            path,
            standby: None,
            layers: vec![],
            node: None,
        };
        let mut at_c = pres(2, Some(b), vec![a, b]);
        at_c.standby = Some(a);
        let t = build_topology(
            c,
            &load(vec![at_c]),
            &[(a, load(vec![pres(0, None, vec![])])), (b, load(vec![pres(1, Some(a), vec![a])]))],
        );
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.streams.len(), 1);
        let depths: Vec<(String, u32)> = t.streams[0].nodes.iter().map(|n| (n.peer_id.clone(), n.depth)).collect();
        assert_eq!(depths, vec![(a.to_string(), 0), (b.to_string(), 1), (c.to_string(), 2)]);
        assert_eq!(t.edges.len(), 2);
        assert!(t.edges.iter().any(|e| e.from == b.to_string() && e.to == c.to_string() && e.depth == 2));
        let paths: Vec<Vec<String>> = t.streams[0].nodes.iter().map(|n| n.path.clone()).collect();
        assert_eq!(paths, vec![vec![], vec![a.to_string()], vec![a.to_string(), b.to_string()]]);
        let edge = t.edges.iter().find(|e| e.to == c.to_string()).expect("edge to c");
        assert_eq!(edge.path, vec![a.to_string(), b.to_string()]);
        assert!(t.nodes.iter().any(|n| n.local && n.peer_id == c.to_string()));
        let standbys: Vec<Option<String>> = t.streams[0].nodes.iter().map(|n| n.standby.clone()).collect();
        assert_eq!(standbys, vec![None, None, Some(a.to_string())], "a standby upstream is shown, not drawn as an edge");
    }
}
