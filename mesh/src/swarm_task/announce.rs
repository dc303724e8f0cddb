//! What a node publishes on its gossip topics each interval: its streams, its load (one hop) and
//! its presences (a sample of a large stream's carriers), and which presence topics it follows.

use super::*;

impl Task {
    /// Claims each local stream in the directory and announces those pinned to this node; a
    /// local stream whose name another origin holds is not announced, and reported once.
    pub(super) fn announce_streams(&mut self) {
        let now = Instant::now();
        let (ttl, settle) = (self.ttl, self.settle);
        for s in self.local_streams.clone() {
            let verdict = self.with_dir(|d| d.claim(s.clone(), now, ttl, settle));
            if let ClaimVerdict::Rejected { holder, .. } = verdict {
                if self.taken.insert(s.stream.clone()) {
                    tracing::warn!(stream = %s.stream, %holder, "another node originates this stream; not announcing it");
                    self.emit(MeshEvent::StreamTaken { stream: s.stream.clone(), holder });
                }
                continue;
            }
            self.taken.remove(&s.stream);
            let data = gossip::encode(&s);
            let topic = self.streams_topic.clone();
            if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
                tracing::trace!(stream = %s.stream, "announce stream: {e}");
            }
        }
    }

    pub(super) fn announce_load(&mut self) {
        let mut load = self.load.clone().unwrap_or_default();
        if load.http_url.is_empty() {
            load.http_url = self.http_url.clone();
        }
        if load.region.is_none() {
            load.region = self.region.clone();
        }
        let topic = self.load_topic.clone();
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, gossip::encode(&load)) {
            tracing::trace!("announce load: {e}");
        }
    }

    /// Each interval: this node's streams and the presences of the streams it carries, on their
    /// topics; every [`gossip::SUMMARY_EVERY`]th interval its whole load on the load topic (to its
    /// connected peers) and its node-wide figures with the presences.
    pub(super) fn announce_all(&mut self) {
        self.announce_streams();
        let summary_due = self.announce_ticks.is_multiple_of(gossip::SUMMARY_EVERY);
        self.announce_presences(summary_due, None);
        if summary_due {
            self.announce_load();
        }
        self.announce_ticks = self.announce_ticks.wrapping_add(1);
    }

    /// Publishes this node's presence of each stream it carries (or of `only` that one) on the
    /// stream's presence topic; `with_summary`, with its node-wide figures (followers not
    /// connected to this node get no load report; like the load report, every
    /// [`gossip::SUMMARY_EVERY`] intervals).
    pub(super) fn announce_presences(&mut self, with_summary: bool, only: Option<&str>) {
        let Some(load) = &self.load else { return };
        // The periodic presences of a stream with many carriers are a sample (see
        // [`crate::presence_rate`]); one asked for (`only`: a new follower) always goes.
        let rate = &mut self.presence_rate;
        if only.is_none() {
            rate.retain(|s| load.streams.iter().any(|p| p.stream == s));
        }
        let send: Vec<(bool, bool)> = load
            .streams
            .iter()
            .map(|p| match only {
                Some(s) => (s == p.stream, with_summary),
                // The origin's presence always goes: every follower keeps it.
                None if p.depth == 0 => (true, with_summary),
                None => (rate.tick(&p.stream, rand::random::<f64>()), with_summary || rate.probability(&p.stream) < 1.0),
            })
            .collect();
        let mut summary = gossip::CarrierSummary::of(load);
        if summary.http_url.is_empty() {
            summary.http_url = self.http_url.clone();
        }
        if summary.region.is_none() {
            summary.region = self.region.clone();
        }
        let msgs: Vec<(String, Vec<u8>)> = load
            .streams
            .iter()
            .zip(send)
            .filter(|(_, (go, _))| *go)
            .map(|(p, (_, with))| {
                // A sampled presence carries the figures: its next one may be many intervals off.
                let node = with.then(|| summary.clone());
                let p = gossip::StreamPresence { node, ..p.clone() };
                (gossip::presence_topic(&p.stream), gossip::encode(&p))
            })
            .collect();
        for (topic, data) in msgs {
            if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(gossipsub::IdentTopic::new(topic), data) {
                tracing::trace!("announce presence: {e}");
            }
        }
    }

    /// Follows the presence topics of the streams this node carries and of those it wanted in
    /// the last [`WANT_PRESENCE_FOR`]; leaves the others.
    pub(super) fn update_presence_subs(&mut self, now: Instant) {
        self.wanted.retain(|_, t| now.saturating_duration_since(*t) < WANT_PRESENCE_FOR);
        let mut want: HashSet<String> = self.wanted.keys().cloned().collect();
        if let Some(load) = &self.load {
            want.extend(load.streams.iter().map(|p| p.stream.clone()));
        }
        let leave: Vec<String> = self.presence_subs.difference(&want).cloned().collect();
        for stream in leave {
            self.swarm.behaviour_mut().gossipsub.unsubscribe(&gossipsub::IdentTopic::new(gossip::presence_topic(&stream)));
            self.presence_subs.remove(&stream);
        }
        let join: Vec<String> = want.difference(&self.presence_subs).cloned().collect();
        for stream in join {
            let topic = gossipsub::IdentTopic::new(gossip::presence_topic(&stream));
            // Invalid presences count against their sender as on the mesh-wide topics (the
            // parameters stay set after leaving: one small entry per stream ever followed).
            if let Err(e) = self.swarm.behaviour_mut().gossipsub.set_topic_params(topic.clone(), behaviour::topic_score_params()) {
                tracing::debug!("score parameters of {topic}: {e}");
            }
            match self.swarm.behaviour_mut().gossipsub.subscribe(&topic) {
                Ok(_) => {
                    self.presence_subs.insert(stream);
                }
                Err(e) => tracing::debug!("subscribe {topic}: {e}"),
            }
        }
    }
}
