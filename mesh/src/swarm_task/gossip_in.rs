//! Gossip messages received: validated, recorded in the directory, and accepted, ignored (not
//! passed on) or rejected (counted against the peer that passed them).

use super::*;

impl Task {
    // The withdrawal arm's `if` logs a side effect's result; it is no match guard.
    #[allow(clippy::collapsible_match)]
    pub(super) fn handle_gossip(&mut self, ev: gossipsub::Event) {
        match ev {
            gossipsub::Event::Message { propagation_source, message_id, message } => {
                let topic = message.topic.as_str().to_string();
                let verdict = match gossip::validate(&topic, &message.data, message.source) {
                    Ok(msg) => {
                        let now = Instant::now();
                        let me = *self.swarm.local_peer_id();
                        match msg {
                            GossipMessage::Stream(mut a) if a.origin != me => {
                                let origin = a.origin;
                                self.vet_url(origin, &mut a.http_url, now);
                                let stream = a.stream.clone();
                                let (ttl, settle) = (self.ttl, self.settle);
                                // This node's own live claim is fresh by definition: refresh it
                                // before judging a competitor (after a stall of this node, its
                                // own entry may look stale and a competitor could take the name).
                                if !self.taken.contains(&stream)
                                    && let Some(own) = self.local_streams.iter().find(|s| s.stream == stream).cloned()
                                {
                                    self.with_dir(|d| d.claim(own, now, ttl, settle));
                                }
                                let verdict = self.with_dir(|d| d.claim(a, now, ttl, settle));
                                match verdict {
                                    ClaimVerdict::Rejected { holder, race } => {
                                        self.with_dir(|d| d.rejected_claims += 1);
                                        if let Some(held) = self.logs.claim.check(now) {
                                            tracing::warn!(%origin, %holder, %stream, race, suppressed = held, "competing origin claim rejected: the stream's first origin is pinned");
                                        }
                                        // A race between honest nodes is ignored; a later claim is penalised.
                                        let verdict = if race {
                                            gossipsub::MessageAcceptance::Ignore
                                        } else {
                                            gossipsub::MessageAcceptance::Reject
                                        };
                                        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                                            &message_id,
                                            &propagation_source,
                                            verdict,
                                        );
                                        return;
                                    }
                                    ClaimVerdict::Won { displaced } => {
                                        tracing::info!(%origin, %displaced, %stream, "simultaneous claims: the earlier one wins");
                                    }
                                    ClaimVerdict::Withdrawn => {
                                        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                                            &message_id,
                                            &propagation_source,
                                            gossipsub::MessageAcceptance::Ignore,
                                        );
                                        return;
                                    }
                                    ClaimVerdict::Pinned | ClaimVerdict::Refreshed => {}
                                }
                            }
                            GossipMessage::Withdrawal(w) if w.origin != me => {
                                if self.with_dir(|d| d.withdraw_claim(&w, now)) {
                                    tracing::info!(origin = %w.origin, stream = %w.stream, "origin withdrew its claim: the name is free");
                                }
                            }
                            GossipMessage::Presence(peer, mut p) if peer != me => {
                                if let Some(n) = p.node.as_mut() {
                                    self.vet_url(peer, &mut n.http_url, now);
                                }
                                // The origin publishes every interval: not counted in the sample's rate.
                                if p.depth > 0 {
                                    self.presence_rate.heard(&p.stream);
                                }
                                self.with_dir(|d| d.insert_presence(peer, p, now));
                            }
                            GossipMessage::Load(peer, mut load) => {
                                // One hop: recorded when it comes from its publisher (an older
                                // node may still pass others' on), and never passed on (ignored:
                                // no penalty). The publisher floods it to all its connected
                                // subscribers, so each node hears exactly its connected peers.
                                if peer != me && propagation_source == peer {
                                    self.vet_url(peer, &mut load.http_url, now);
                                    self.vet_media_addrs(peer, &mut load.media_addrs);
                                    let connected = self.swarm.is_connected(&peer);
                                    self.with_dir(|d| d.insert_load(peer, load, now, connected));
                                }
                                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                                    &message_id,
                                    &propagation_source,
                                    gossipsub::MessageAcceptance::Ignore,
                                );
                                return;
                            }
                            GossipMessage::Segment(signer, seg) => {
                                let origin = self.with_dir(|d| d.stream(&seg.stream).map(|a| a.origin));
                                if origin.is_none() {
                                    // No fresh claim here (not heard yet, or expired during a stall
                                    // of this node): not judged, and the sender not penalised.
                                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                                        &message_id,
                                        &propagation_source,
                                        gossipsub::MessageAcceptance::Ignore,
                                    );
                                    return;
                                }
                                if origin != Some(signer) {
                                    if let Some(held) = self.logs.segment.check(now) {
                                        tracing::warn!(%signer, stream = %seg.stream, suppressed = held, "segment not signed by the stream's pinned origin; rejected");
                                    }
                                    self.with_dir(|d| {
                                        d.rejected += 1;
                                        d.rejected_segments += 1;
                                    });
                                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                                        &message_id,
                                        &propagation_source,
                                        gossipsub::MessageAcceptance::Reject,
                                    );
                                    return;
                                }
                                if !seg.sig.is_empty() && !crate::gossip::verify_segment(&seg, &signer) {
                                    // Sent by the origin's connection but not signed by its key:
                                    // broken or forged; never passed on.
                                    self.with_dir(|d| d.rejected_segments += 1);
                                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                                        &message_id,
                                        &propagation_source,
                                        gossipsub::MessageAcceptance::Reject,
                                    );
                                    return;
                                }
                                let _ = self.events.try_send(MeshEvent::Segment(seg));
                            }
                            GossipMessage::Held(holder, held) => {
                                // Only mesh nodes count as holders: one known here (a connected
                                // peer's load report, a presence on a followed stream), or one
                                // vouched for by the known node that passed the message on
                                // (it accepted it by the same rule; load reports go one hop, so
                                // a holder further away is known to its neighbours only).
                                let known = self.with_dir(|d| {
                                    d.knows_node(&holder) || (propagation_source != holder && d.knows_node(&propagation_source))
                                });
                                if holder == me || !known {
                                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                                        &message_id,
                                        &propagation_source,
                                        gossipsub::MessageAcceptance::Ignore,
                                    );
                                    return;
                                }
                                let _ = self.events.try_send(MeshEvent::SegmentHeld { holder, held });
                            }
                            _ => {}
                        }
                        gossipsub::MessageAcceptance::Accept
                    }
                    Err(err) => {
                        if let Some(held) = self.logs.gossip.check(Instant::now()) {
                            tracing::warn!(source = ?message.source, %propagation_source, %topic, suppressed = held, "rejected gossip: {err}");
                        }
                        let forged = matches!(err, GossipError::ForgedOrigin { .. });
                        self.with_dir(|d| {
                            d.rejected += 1;
                            if forged {
                                d.rejected_forged += 1;
                            }
                        });
                        gossipsub::MessageAcceptance::Reject
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
            }
            gossipsub::Event::Subscribed { peer_id, topic, .. } => {
                tracing::debug!(%peer_id, %topic, "peer subscribed");
                if topic == self.streams_topic.hash() {
                    self.announce_streams();
                } else if topic == self.load_topic.hash() {
                    self.announce_load();
                } else if let Some(stream) = topic
                    .as_str()
                    .strip_prefix(gossip::PRESENCE_TOPIC_PREFIX)
                    .and_then(|t| t.strip_suffix("/1"))
                    .map(str::to_owned)
                {
                    // A new follower of a stream this node carries: its figures now, not up to
                    // SUMMARY_EVERY intervals later.
                    self.announce_presences(true, Some(&stream));
                }
            }
            _ => {}
        }
    }
}

impl Task {
    /// Keeps only the announced media addresses on an IP the peer is seen at (a peer must not
    /// make other nodes' TURN servers relay to a third party); counts the rest.
    pub(super) fn vet_media_addrs(&mut self, peer: PeerId, addrs: &mut Vec<std::net::SocketAddr>) {
        let seen = self.peers.get(&peer).map(|p| p.seen_ips.as_slice()).unwrap_or(&[]);
        let before = addrs.len();
        addrs.retain(|a| seen.contains(&a.ip()));
        let dropped = (before - addrs.len()) as u64;
        if dropped > 0 {
            self.with_dir(|d| d.rejected_media_addrs += dropped);
        }
    }

    /// Blanks a peer's announced `http_url` unless its host is an address the peer is seen at
    /// or a trusted host, and its scheme http(s); counts and logs (rate-limited) the refusal.
    pub(super) fn vet_url(&mut self, peer: PeerId, url: &mut String, now: Instant) {
        if url.is_empty() {
            return;
        }
        let seen = self.peers.get(&peer).map(|p| p.seen_ips.as_slice()).unwrap_or(&[]);
        let checked = trust::check_http_url(url, seen, &self.trusted_url_hosts);
        if let Err(e) = checked {
            if let Some(held) = self.logs.url.check(now) {
                tracing::warn!(%peer, url = %url, suppressed = held, "announced http_url refused: {e}");
            }
            self.with_dir(|d| d.rejected_urls += 1);
            url.clear();
        }
    }
}
