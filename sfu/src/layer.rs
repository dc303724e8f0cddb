//! Per-viewer simulcast layer selection.
//!
//! [`LayerSelector::update`] runs on estimate or layer changes and picks a target layer with
//! hysteresis; [`LayerSelector::on_packet`] runs per packet and only switches at a keyframe of
//! the target layer, so the viewer's decoder never sees a frame it cannot decode.

use std::time::{Duration, Instant};

/// Number of simulcast layers a stream can carry.
pub const MAX_LAYERS: usize = 3;

/// A viewer's layer preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LayerPreference {
    /// Highest layer the bandwidth estimate allows.
    #[default]
    Auto,
    /// Like `Auto`, but only layers at most this many pixels tall.
    ///
    /// A layer of unknown height counts as allowed when a higher active layer has a known height
    /// within the limit, or when no active layer has a known height. When no layer qualifies,
    /// the lowest active layer is used.
    MaxHeight(u32),
    /// Exactly this layer whatever the estimate: if it is inactive the nearest active layer
    /// below, else the nearest above. Indices past the top layer mean the top layer.
    Fixed(u8),
}

/// What the selector knows about one incoming layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerState {
    /// The publisher is currently sending this layer.
    pub active: bool,
    /// Measured bitrate of the layer.
    pub bitrate_bps: u64,
    /// Frame height, once known from a keyframe.
    pub height: Option<u32>,
}

/// Tuning for the selector.
#[derive(Clone, Copy, Debug)]
pub struct SelectorConfig {
    /// How long the estimate must stay high enough before an up-switch.
    pub up_hold: Duration,
    /// How long the estimate must stay below the target's bitrate before a down-switch.
    pub down_hold: Duration,
    /// Going up needs an estimate of at least the layer's bitrate times this.
    pub up_headroom: f64,
    /// An estimate below the forwarded layer's bitrate times this is a collapse: drop at once.
    pub collapse_ratio: f64,
}

impl Default for SelectorConfig {
    fn default() -> Self {
        Self {
            up_hold: Duration::from_millis(1500),
            down_hold: Duration::from_millis(500),
            up_headroom: 1.25,
            collapse_ratio: 0.5,
        }
    }
}

/// What to do with one packet for this viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketAction {
    /// Do not send the packet.
    Drop,
    /// Send the packet, rewritten as usual.
    Forward,
    /// The viewer switches to this packet's layer here: re-base the rewriters, then send it.
    SwitchAndForward,
}

/// Layers the preference allows, as a mask over active layers (empty only when none is active).
fn allowed_layers(pref: LayerPreference, layers: &[LayerState; MAX_LAYERS]) -> [bool; MAX_LAYERS] {
    let active = |i: &usize| layers[*i].active;
    let mut mask = [false; MAX_LAYERS];
    match pref {
        LayerPreference::Auto => {
            for (m, l) in mask.iter_mut().zip(layers) {
                *m = l.active;
            }
        }
        LayerPreference::MaxHeight(max) => {
            let fits = |i: usize| layers[i].active && layers[i].height.is_some_and(|h| h <= max);
            let any_known = layers.iter().any(|l| l.active && l.height.is_some());
            for (i, m) in mask.iter_mut().enumerate() {
                *m = layers[i].active
                    && match layers[i].height {
                        Some(h) => h <= max,
                        None => !any_known || (i + 1..MAX_LAYERS).any(fits),
                    };
            }
            if !mask.contains(&true)
                && let Some(lowest) = (0..MAX_LAYERS).find(active)
            {
                mask[lowest] = true;
            }
        }
        LayerPreference::Fixed(wanted) => {
            let wanted = usize::from(wanted).min(MAX_LAYERS - 1);
            let below = (0..=wanted).rev().find(active);
            if let Some(layer) = below.or_else(|| (wanted + 1..MAX_LAYERS).find(active)) {
                mask[layer] = true;
            }
        }
    }
    mask
}

/// Per-viewer simulcast layer choice.
#[derive(Clone, Debug)]
pub struct LayerSelector {
    /// Tuning.
    config: SelectorConfig,
    /// The viewer's preference.
    pref: LayerPreference,
    /// Layer being forwarded.
    current: Option<u8>,
    /// Layer wanted.
    target: Option<u8>,
    /// The current layer's packets are dropped (after a collapse) until the target's keyframe.
    dropping: bool,
    /// Since when an up-switch has continuously been possible.
    up_since: Option<Instant>,
    /// Since when the estimate has continuously been below the target's bitrate.
    down_since: Option<Instant>,
    /// Inputs of the last `update`, to re-evaluate at once on a preference change.
    last_input: Option<(Option<u64>, [LayerState; MAX_LAYERS])>,
    /// After [`LayerSelector::restart`]: the first keyframe of any layer up to the target (of
    /// any layer without a target) starts forwarding, before the next `update` knows the new
    /// source's layers.
    restarting: bool,
}

impl LayerSelector {
    /// Creates a selector with no target until the first `update`.
    pub fn new(config: SelectorConfig) -> Self {
        Self {
            config,
            pref: LayerPreference::Auto,
            current: None,
            target: None,
            dropping: false,
            up_since: None,
            down_since: None,
            last_input: None,
            restarting: false,
        }
    }

    /// The stream's source changed (a publisher restart, or a switch to or from its backup):
    /// nothing is forwarded until a keyframe, and the first keyframe of a layer no higher than
    /// the target is taken at once (the new source's layers are not known yet; the target is
    /// reached from there as usual). The preference and target stay.
    pub fn restart(&mut self) {
        self.current = None;
        self.dropping = false;
        self.up_since = None;
        self.down_since = None;
        self.last_input = None;
        self.restarting = true;
    }

    /// Sets the viewer's preference; the target moves at once (no hold) using the last `update`'s inputs.
    pub fn set_preference(&mut self, pref: LayerPreference) {
        if pref == self.pref {
            return;
        }
        self.pref = pref;
        if let Some((estimate, layers)) = self.last_input {
            self.evaluate(None, estimate, &layers);
        }
    }

    /// The viewer's preference.
    pub fn preference(&self) -> LayerPreference {
        self.pref
    }

    /// Re-evaluates the target layer. `estimate_bps` is the viewer's TWCC estimate (None = none yet: then the highest layer the preference allows). Returns Some(layer) when the caller should ask the publisher for a keyframe of that layer (target changed and differs from current, or still waiting for it).
    pub fn update(&mut self, now: Instant, estimate_bps: Option<u64>, layers: &[LayerState; MAX_LAYERS]) -> Option<u8> {
        self.last_input = Some((estimate_bps, *layers));
        self.evaluate(Some(now), estimate_bps, layers);
        self.target.filter(|&t| self.current != Some(t) || self.dropping)
    }

    /// Moves the target; `now` None means at once, without hysteresis.
    fn evaluate(&mut self, now: Option<Instant>, estimate: Option<u64>, layers: &[LayerState; MAX_LAYERS]) {
        let mask = allowed_layers(self.pref, layers);
        let allowed = || (0..MAX_LAYERS).filter(|&i| mask[i]);
        let (Some(lowest), Some(highest)) = (allowed().next(), allowed().next_back()) else {
            self.set_target(None);
            return;
        };
        let Some(estimate) = estimate else {
            self.set_target(Some(highest));
            return;
        };
        let est = estimate as f64;
        let rate = |i: usize| layers[i].bitrate_bps as f64;
        // Highest allowed layer the estimate covers, else the lowest allowed.
        let fit = allowed().rev().find(|&i| rate(i) <= est).unwrap_or(lowest);
        // Without a usable target (first estimate, target gone, preference change) jump at once.
        let (target, now) = match (self.target, now) {
            (Some(t), Some(now)) if mask.get(usize::from(t)) == Some(&true) => (usize::from(t), now),
            _ => {
                self.set_target(Some(fit));
                return;
            }
        };

        // Collapse: the forwarded layer is far beyond the estimate; stop it now.
        let forwarded = self.current.map_or(target, usize::from).min(MAX_LAYERS - 1);
        if est < rate(forwarded) * self.config.collapse_ratio && fit < forwarded {
            let lower = fit.min(target);
            self.set_target(Some(lower));
            self.dropping |= self.current.is_some_and(|c| lower < usize::from(c));
            return;
        }

        if est < rate(target) && fit < target {
            self.up_since = None;
            let since = *self.down_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.config.down_hold {
                self.set_target(Some(fit));
            }
            return;
        }
        self.down_since = None;

        let headroom = self.config.up_headroom;
        match allowed().rev().find(|&i| i > target && est >= rate(i) * headroom) {
            Some(up) => {
                let since = *self.up_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= self.config.up_hold {
                    self.set_target(Some(up));
                }
            }
            None => self.up_since = None,
        }
    }

    /// Sets the target layer, restarting the hysteresis timers when it changes.
    fn set_target(&mut self, target: Option<usize>) {
        let target = target.and_then(|t| u8::try_from(t).ok());
        if target != self.target {
            self.target = target;
            self.up_since = None;
            self.down_since = None;
        }
    }

    /// Hot path: decide for one packet of `layer`. `keyframe_start` is true on the first packet of a keyframe.
    pub fn on_packet(&mut self, layer: u8, keyframe_start: bool) -> PacketAction {
        if usize::from(layer) >= MAX_LAYERS {
            return PacketAction::Drop;
        }
        let is_current = self.current == Some(layer);
        if keyframe_start && self.restarting && self.current.is_none() && self.target.is_none_or(|t| layer <= t) {
            self.current = Some(layer);
            self.restarting = false;
            return PacketAction::SwitchAndForward;
        }
        if keyframe_start && self.target == Some(layer) && (!is_current || self.dropping) {
            self.current = Some(layer);
            self.dropping = false;
            return PacketAction::SwitchAndForward;
        }
        if is_current && !self.dropping { PacketAction::Forward } else { PacketAction::Drop }
    }

    /// Layer being forwarded.
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// Layer wanted.
    pub fn target(&self) -> Option<u8> {
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PacketAction::{Drop, Forward, SwitchAndForward};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    const RATES: [u64; MAX_LAYERS] = [150_000, 500_000, 1_500_000];

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn layers() -> [LayerState; MAX_LAYERS] {
        let heights = [180, 360, 720];
        std::array::from_fn(|i| LayerState { active: true, bitrate_bps: RATES[i], height: Some(heights[i]) })
    }

    fn selector() -> LayerSelector {
        LayerSelector::new(SelectorConfig::default())
    }

    /// A selector forwarding `layer` (target reached via a preference, then back to Auto).
    fn forwarding(layer: u8, t0: Instant, estimate: Option<u64>) -> LayerSelector {
        let mut s = selector();
        s.set_preference(LayerPreference::Fixed(layer));
        s.update(t0, estimate, &layers());
        assert_eq!(s.on_packet(layer, true), SwitchAndForward);
        s.set_preference(LayerPreference::Auto);
        s.update(t0, estimate, &layers());
        assert_eq!(s.current(), Some(layer));
        s
    }

    #[test]
    fn first_keyframe_of_target_starts_forwarding() {
        let t0 = Instant::now();
        let mut s = selector();
        assert_eq!((s.preference(), s.current(), s.target()), (LayerPreference::Auto, None, None));
        assert_eq!(s.on_packet(2, true), Drop, "nothing before the first update");
        assert_eq!(s.update(t0, None, &layers()), Some(2), "no estimate: highest layer");
        assert_eq!(s.on_packet(2, false), Drop);
        assert_eq!(s.on_packet(1, true), Drop);
        assert_eq!(s.on_packet(2, true), SwitchAndForward);
        assert_eq!(s.current(), Some(2));
        assert_eq!(s.on_packet(2, false), Forward);
        assert_eq!(s.on_packet(2, true), Forward);
        assert_eq!(s.on_packet(0, true), Drop);
        assert_eq!(s.update(t0, None, &layers()), None, "nothing to wait for");
        for layer in [3, 4, 200, u8::MAX] {
            assert_eq!(s.on_packet(layer, true), Drop);
        }
        // The first estimate picks the fitting layer at once; the lowest when nothing fits.
        assert_eq!(selector().update(t0, Some(600_000), &layers()), Some(1));
        assert_eq!(selector().update(t0, Some(10), &layers()), Some(0));
    }

    #[test]
    fn down_switch_needs_hold_and_keeps_forwarding_until_keyframe() {
        let t0 = Instant::now();
        let mut s = forwarding(2, t0, Some(2_000_000));
        // 1.2 Mbps: below layer 2 but above the collapse threshold. A recovery restarts the hold.
        assert_eq!(s.update(t0, Some(1_200_000), &layers()), None);
        assert_eq!(s.update(t0 + ms(450), Some(1_600_000), &layers()), None);
        assert_eq!(s.update(t0 + ms(500), Some(1_200_000), &layers()), None);
        assert_eq!(s.update(t0 + ms(999), Some(1_200_000), &layers()), None);
        assert_eq!(s.target(), Some(2));
        assert_eq!(s.update(t0 + ms(1000), Some(1_200_000), &layers()), Some(1));
        // Still forwarding layer 2 until a layer-1 keyframe.
        assert_eq!(s.on_packet(2, false), Forward);
        assert_eq!(s.on_packet(1, false), Drop);
        assert_eq!(s.update(t0 + ms(1100), Some(1_200_000), &layers()), Some(1), "still waiting");
        assert_eq!(s.on_packet(1, true), SwitchAndForward);
        assert_eq!(s.on_packet(2, true), Drop);
        assert_eq!(s.on_packet(1, false), Forward);
        assert_eq!(s.current(), Some(1));
    }

    #[test]
    fn up_switch_needs_headroom_and_hold() {
        let t0 = Instant::now();
        let mut s = forwarding(0, t0, Some(200_000));
        // Exactly layer 1's bitrate is not enough headroom, however long it lasts.
        for i in 0..50 {
            assert_eq!(s.update(t0 + ms(i * 100), Some(500_000), &layers()), None);
        }
        // A dip restarts the hold.
        let t1 = t0 + ms(10_000);
        s.update(t1, Some(625_000), &layers());
        s.update(t1 + ms(1000), Some(300_000), &layers());
        s.update(t1 + ms(1100), Some(625_000), &layers());
        assert_eq!(s.update(t1 + ms(2599), Some(625_000), &layers()), None);
        assert_eq!(s.update(t1 + ms(2600), Some(625_000), &layers()), Some(1));
        assert_eq!(s.on_packet(0, false), Forward, "current until the keyframe");
        assert_eq!(s.on_packet(1, true), SwitchAndForward);
        assert_eq!(s.on_packet(0, false), Drop);
        // Plenty of bandwidth jumps straight to the highest layer it covers.
        let mut s = forwarding(0, t0, Some(200_000));
        s.update(t0, Some(3_000_000), &layers());
        assert_eq!(s.update(t0 + ms(1500), Some(3_000_000), &layers()), Some(2));
    }

    #[test]
    fn collapse_drops_current_at_once() {
        let t0 = Instant::now();
        let mut s = forwarding(2, t0, Some(2_000_000));
        // 600 kbps < 1.5 Mbps * 0.5: no hold, layer 2 stops immediately.
        assert_eq!(s.update(t0 + ms(10), Some(600_000), &layers()), Some(1));
        assert_eq!(s.on_packet(2, false), Drop);
        assert_eq!(s.on_packet(2, true), Drop);
        assert_eq!(s.on_packet(1, false), Drop);
        assert_eq!(s.current(), Some(2));
        assert_eq!(s.update(t0 + ms(20), Some(600_000), &layers()), Some(1));
        assert_eq!(s.on_packet(1, true), SwitchAndForward);
        assert_eq!(s.on_packet(1, false), Forward);
        assert_eq!(s.update(t0 + ms(30), Some(600_000), &layers()), None);
    }

    #[test]
    fn collapse_during_pending_down_switch_drops_too() {
        let t0 = Instant::now();
        let mut s = forwarding(2, t0, Some(2_000_000));
        s.update(t0, Some(1_000_000), &layers());
        assert_eq!(s.update(t0 + ms(500), Some(1_000_000), &layers()), Some(1));
        assert_eq!(s.on_packet(2, false), Forward);
        assert_eq!(s.update(t0 + ms(600), Some(100_000), &layers()), Some(0));
        assert_eq!(s.on_packet(2, false), Drop);
        assert_eq!(s.on_packet(1, true), Drop);
        assert_eq!(s.on_packet(0, true), SwitchAndForward);
        // A collapse on the lowest layer has nowhere to go: keep forwarding.
        assert_eq!(s.update(t0 + ms(700), Some(1_000), &layers()), None);
        assert_eq!(s.on_packet(0, false), Forward);
    }

    #[test]
    fn recovery_after_collapse_back_to_current_needs_a_keyframe() {
        let t0 = Instant::now();
        let mut s = forwarding(1, t0, Some(600_000));
        assert_eq!(s.update(t0, Some(200_000), &layers()), Some(0));
        assert_eq!(s.on_packet(1, false), Drop);
        // The estimate comes back before layer 0's keyframe; layer 1's stream was cut, so it
        // restarts at a keyframe too.
        s.update(t0 + ms(100), Some(700_000), &layers());
        assert_eq!(s.update(t0 + ms(1600), Some(700_000), &layers()), Some(1));
        assert_eq!(s.on_packet(1, false), Drop);
        assert_eq!(s.on_packet(1, true), SwitchAndForward);
        assert_eq!(s.on_packet(1, false), Forward);
    }

    #[test]
    fn preference_change_moves_target_at_once() {
        let t0 = Instant::now();
        let mut s = forwarding(2, t0, Some(5_000_000));
        s.set_preference(LayerPreference::Fixed(0));
        assert_eq!(s.target(), Some(0));
        assert_eq!(s.preference(), LayerPreference::Fixed(0));
        assert_eq!(s.on_packet(2, false), Forward);
        assert_eq!(s.update(t0 + ms(1), Some(5_000_000), &layers()), Some(0));
        assert_eq!(s.on_packet(0, true), SwitchAndForward);
        // Back up without any up hold.
        s.set_preference(LayerPreference::MaxHeight(400));
        assert_eq!(s.target(), Some(1));
        s.set_preference(LayerPreference::Auto);
        assert_eq!(s.update(t0 + ms(2), Some(5_000_000), &layers()), Some(2));
    }

    #[test]
    fn fixed_preference_ignores_estimate_and_falls_back() {
        let t0 = Instant::now();
        let mut s = selector();
        s.set_preference(LayerPreference::Fixed(2));
        assert_eq!(s.update(t0, Some(1), &layers()), Some(2));
        let mut l = layers();
        l[2].active = false;
        assert_eq!(s.update(t0, Some(1), &l), Some(1), "nearest below");
        l[1].active = false;
        l[0].active = false;
        assert_eq!(s.update(t0, Some(1), &l), None, "nothing active");
        l[2].active = true;
        s.set_preference(LayerPreference::Fixed(0));
        assert_eq!(s.update(t0, Some(1), &l), Some(2), "nearest above");
        s.set_preference(LayerPreference::Fixed(99));
        assert_eq!(s.update(t0, None, &layers()), Some(2), "clamped");
    }

    #[test]
    fn max_height_rules() {
        let t0 = Instant::now();
        let pick = |max: u32, heights: [Option<u32>; MAX_LAYERS]| {
            let mut s = selector();
            s.set_preference(LayerPreference::MaxHeight(max));
            let mut l = layers();
            for (state, h) in l.iter_mut().zip(heights) {
                state.height = h;
            }
            s.update(t0, None, &l)
        };
        let known = [Some(180), Some(360), Some(720)];
        assert_eq!(pick(360, known), Some(1));
        assert_eq!(pick(719, known), Some(1));
        assert_eq!(pick(1080, known), Some(2));
        assert_eq!(pick(100, known), Some(0), "lowest when none qualifies");
        assert_eq!(pick(100, [None; 3]), Some(2), "unknown heights are not judged");
        assert_eq!(pick(400, [None, Some(360), None]), Some(1));
        assert_eq!(pick(500, [Some(180), None, Some(720)]), Some(0));
        // Bandwidth still applies under the height cap.
        let mut s = selector();
        s.set_preference(LayerPreference::MaxHeight(720));
        assert_eq!(s.update(t0, Some(400_000), &layers()), Some(0));
    }

    #[test]
    fn inactive_current_layer_moves_target_at_once() {
        let t0 = Instant::now();
        let mut s = forwarding(2, t0, Some(5_000_000));
        let mut l = layers();
        l[2].active = false;
        assert_eq!(s.update(t0 + ms(1), Some(5_000_000), &l), Some(1));
        assert_eq!(s.on_packet(1, true), SwitchAndForward);
        // It comes back: the normal up hold applies.
        assert_eq!(s.update(t0 + ms(2), Some(5_000_000), &layers()), None);
        assert_eq!(s.update(t0 + ms(1502), Some(5_000_000), &layers()), Some(2));
    }

    #[test]
    fn holds_come_from_the_config() {
        let t0 = Instant::now();
        let config = SelectorConfig { up_hold: Duration::ZERO, down_hold: ms(50), ..SelectorConfig::default() };
        let mut s = LayerSelector::new(config);
        s.update(t0, Some(200_000), &layers());
        assert_eq!(s.update(t0, Some(700_000), &layers()), Some(1));
        assert_eq!(s.update(t0, Some(400_000), &layers()), Some(1));
        assert_eq!(s.update(t0 + ms(50), Some(400_000), &layers()), Some(0));
    }

    #[test]
    fn random_inputs_keep_invariants() {
        let mut rng = StdRng::seed_from_u64(42);
        let t0 = Instant::now();
        let mut s = selector();
        let mut now = t0;
        for _ in 0..50_000 {
            match rng.random_range(0..10) {
                0 => {
                    let pref = match rng.random_range(0..3) {
                        0 => LayerPreference::Auto,
                        1 => LayerPreference::MaxHeight(rng.random_range(0..1200)),
                        _ => LayerPreference::Fixed(rng.random()),
                    };
                    s.set_preference(pref);
                }
                1..=3 => {
                    now += ms(rng.random_range(0..400));
                    let l: [LayerState; MAX_LAYERS] = std::array::from_fn(|_| LayerState {
                        active: rng.random_bool(0.8),
                        bitrate_bps: rng.random_range(0..3_000_000),
                        height: rng.random_bool(0.7).then(|| rng.random_range(0..1200)),
                    });
                    let est = rng.random_bool(0.9).then(|| rng.random_range(0..4_000_000));
                    let want = s.update(now, est, &l);
                    if let Some(t) = s.target() {
                        assert!(l[usize::from(t)].active, "target is active");
                    }
                    assert!(want.is_none() || want == s.target());
                }
                _ => {
                    let layer = rng.random_range(0..5u8);
                    let key = rng.random_bool(0.1);
                    let (before_current, before_target) = (s.current(), s.target());
                    match s.on_packet(layer, key) {
                        SwitchAndForward => {
                            assert!(key && before_target == Some(layer));
                            assert_eq!(s.current(), Some(layer));
                        }
                        Forward => assert_eq!((before_current, s.current()), (Some(layer), Some(layer))),
                        Drop => assert_eq!(s.current(), before_current),
                    }
                    assert_eq!(s.target(), before_target, "packets never move the target");
                    if layer >= 3 {
                        assert_eq!(s.on_packet(layer, true), Drop);
                    }
                }
            }
        }
    }
}
