//! [`LinkMemory`]: which ports each output channel feeds (and which feed each input port:
//! JACK's `midi_in`, `in_1 ..`, numbered after the channels), learned from the server's
//! graph while the output runs, so that the same links can be restored when the output
//! comes back after its server went away.
//!
//! Rules:
//! - A link seen in the graph is remembered at once.
//! - A remembered link missing from the graph is forgotten only once it has stayed missing
//!   for [`DISCONNECT_GRACE`] while the output ran: a server that is shutting down removes
//!   every link a moment before it tells its clients it is gone, and those links must
//!   survive. A link the user removes on purpose is forgotten after the grace.
//! - A link that went away with its peer port (the peer client left) or while the graph
//!   stood still (netjack2's driver drops its ports' links when its master returns) is not
//!   a user's removal: it becomes *pending* at once ([`LinkMemory::observe_with`]).
//! - When the output is lost, every remembered link becomes *pending*: to be restored by
//!   the next output as soon as its peer port exists, however long that takes (a peer
//!   client may come back well after the server). A pending link is never forgotten for
//!   being absent from the graph.
//! - A pending link whose peer exists but which the server refuses is retried, and
//!   forgotten only once it has been refused for [`REFUSAL_GRACE`]: a returning client
//!   registers its ports before it activates, and JACK refuses links to the ports of an
//!   inactive client, so the first attempt may well fall in between.
//!
//! Threading: plain data, owned by the supervising thread.

use std::time::{Duration, Instant};

/// How long a link must stay missing from the graph before it is believed removed.
pub const DISCONNECT_GRACE: Duration = Duration::from_millis(500);
/// How long a pending link may be refused by the server before it is given up.
pub const REFUSAL_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// In the graph at the last look.
    Live,
    /// Missing from the graph since this instant; forgotten after the grace.
    Missing(Instant),
    /// Remembered from before a loss; not restored yet.
    Pending,
    /// Pending, and refused by the server since this instant (see [`REFUSAL_GRACE`]).
    Refused(Instant),
}

/// The remembered links of every output channel.
#[derive(Debug, Clone, Default)]
pub struct LinkMemory {
    /// Per channel: (peer port, state), in the order first seen.
    channels: Vec<Vec<(String, LinkState)>>,
}

impl LinkMemory {
    /// Nothing remembered yet, for `channels` output channels.
    pub fn new(channels: usize) -> Self {
        Self {
            channels: vec![Vec::new(); channels],
        }
    }

    /// Take in the graph as it is `now` (per channel, the peers it feeds).
    pub fn observe(&mut self, graph: &[Vec<String>], now: Instant) {
        self.observe_with(graph, now, |_| false);
    }

    /// [`observe`](Self::observe), where `vanished(peer)` says whether a missing link to
    /// `peer` went away by itself (its port is gone, or the graph stood still) rather than
    /// by hand (asked only for missing links): such a link becomes pending.
    pub fn observe_with(
        &mut self,
        graph: &[Vec<String>],
        now: Instant,
        mut vanished: impl FnMut(&str) -> bool,
    ) {
        // An output with input ports (MIDI, live input) lists them after its channels.
        if graph.len() > self.channels.len() {
            self.channels.resize(graph.len(), Vec::new());
        }
        for (k, links) in self.channels.iter_mut().enumerate() {
            let seen = graph.get(k).map(Vec::as_slice).unwrap_or_default();
            for (peer, state) in links.iter_mut() {
                *state = match *state {
                    _ if seen.contains(peer) => LinkState::Live,
                    LinkState::Live | LinkState::Missing(_) if vanished(peer) => LinkState::Pending,
                    LinkState::Live => LinkState::Missing(now),
                    other => other,
                };
            }
            links.retain(|(_, state)| match *state {
                LinkState::Missing(since) => now.duration_since(since) < DISCONNECT_GRACE,
                _ => true,
            });
            for peer in seen {
                if !links.iter().any(|(p, _)| p == peer) {
                    links.push((peer.clone(), LinkState::Live));
                }
            }
        }
    }

    /// The output is gone: every remembered link is to be restored.
    pub fn output_lost(&mut self) {
        for (_, state) in self.channels.iter_mut().flatten() {
            *state = LinkState::Pending;
        }
    }

    /// Links waiting to be restored, as (channel, peer).
    pub fn pending(&self) -> Vec<(usize, String)> {
        self.links()
            .filter(|(_, _, s)| matches!(s, LinkState::Pending | LinkState::Refused(_)))
            .map(|(k, peer, _)| (k, peer.to_owned()))
            .collect()
    }

    /// `peer` is fed by `channel` again.
    pub fn restored(&mut self, channel: usize, peer: &str) {
        self.set(channel, peer, Some(LinkState::Live));
    }

    /// The server refused to link `channel` to `peer` at `now`: the link stays pending,
    /// unless it has been refused for [`REFUSAL_GRACE`]; then it is forgotten and this
    /// returns `true`.
    pub fn refused(&mut self, channel: usize, peer: &str, now: Instant) -> bool {
        let since = match self.state(channel, peer) {
            Some(LinkState::Refused(since)) => since,
            _ => now,
        };
        if now.duration_since(since) >= REFUSAL_GRACE {
            self.forget(channel, peer);
            return true;
        }
        self.set(channel, peer, Some(LinkState::Refused(since)));
        false
    }

    /// Stop trying to restore `peer` on `channel`.
    pub fn forget(&mut self, channel: usize, peer: &str) {
        self.set(channel, peer, None);
    }

    /// Every remembered link (live, missing within the grace, or pending), per channel.
    pub fn remembered(&self) -> Vec<Vec<String>> {
        self.channels
            .iter()
            .map(|links| links.iter().map(|(p, _)| p.clone()).collect())
            .collect()
    }

    fn links(&self) -> impl Iterator<Item = (usize, &str, LinkState)> {
        self.channels.iter().enumerate().flat_map(|(k, links)| {
            links
                .iter()
                .map(move |(peer, state)| (k, peer.as_str(), *state))
        })
    }

    fn state(&self, channel: usize, peer: &str) -> Option<LinkState> {
        self.channels
            .get(channel)?
            .iter()
            .find(|(p, _)| p == peer)
            .map(|(_, state)| *state)
    }

    fn set(&mut self, channel: usize, peer: &str, state: Option<LinkState>) {
        if let Some(links) = self.channels.get_mut(channel) {
            match state {
                Some(state) => {
                    if let Some(link) = links.iter_mut().find(|(p, _)| p == peer) {
                        link.1 = state;
                    }
                }
                None => links.retain(|(p, _)| p != peer),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(a: &[&str], b: &[&str]) -> Vec<Vec<String>> {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        vec![owned(a), owned(b)]
    }

    #[test]
    fn links_seen_are_remembered_and_a_removal_is_believed_after_the_grace() {
        let t0 = Instant::now();
        let mut m = LinkMemory::new(2);
        m.observe(&graph(&["sys:p1", "cap:in_1"], &["sys:p2"]), t0);
        assert_eq!(m.remembered(), graph(&["sys:p1", "cap:in_1"], &["sys:p2"]));
        // cap:in_1 unplugged: kept through the grace, forgotten after it.
        m.observe(&graph(&["sys:p1"], &["sys:p2"]), t0);
        let within = t0 + DISCONNECT_GRACE / 2;
        m.observe(&graph(&["sys:p1"], &["sys:p2"]), within);
        assert_eq!(m.remembered(), graph(&["sys:p1", "cap:in_1"], &["sys:p2"]));
        m.observe(&graph(&["sys:p1"], &["sys:p2"]), t0 + DISCONNECT_GRACE);
        assert_eq!(m.remembered(), graph(&["sys:p1"], &["sys:p2"]));
        assert!(m.pending().is_empty());
    }

    #[test]
    fn a_link_that_vanished_by_itself_is_pending_not_forgotten() {
        let t0 = Instant::now();
        let mut m = LinkMemory::new(2);
        m.observe(&graph(&["sys:p1"], &["sys:p2"]), t0);
        // A driver drops sys:p1's link (its port gone, or the graph stood still), for
        // longer than the grace.
        let gone = |peer: &str| peer == "sys:p1";
        m.observe_with(&graph(&[], &["sys:p2"]), t0, gone);
        m.observe_with(&graph(&[], &["sys:p2"]), t0 + 10 * DISCONNECT_GRACE, gone);
        assert_eq!(m.pending(), [(0, "sys:p1".to_owned())]);
        m.restored(0, "sys:p1");
        m.observe(&graph(&["sys:p1"], &["sys:p2"]), t0 + 11 * DISCONNECT_GRACE);
        assert!(m.pending().is_empty());
        // Unlinked while the peer stays: forgotten after the grace, as before.
        let t1 = t0 + 12 * DISCONNECT_GRACE;
        m.observe_with(&graph(&["sys:p1"], &[]), t1, |_| false);
        m.observe_with(&graph(&["sys:p1"], &[]), t1 + DISCONNECT_GRACE, |_| false);
        assert_eq!(m.remembered(), graph(&["sys:p1"], &[]));
    }

    #[test]
    fn links_that_vanish_just_before_a_loss_are_restored() {
        let t0 = Instant::now();
        let mut m = LinkMemory::new(2);
        m.observe(&graph(&["sys:p1"], &["cap:in_2"]), t0);
        // The dying server empties the graph, then the loss is noticed.
        m.observe(&graph(&[], &[]), t0 + Duration::from_millis(10));
        m.output_lost();
        assert_eq!(
            m.pending(),
            [(0, "sys:p1".to_owned()), (1, "cap:in_2".to_owned())]
        );
        // The new output: sys:p1 restored, cap:in_2's port not back yet.
        m.restored(0, "sys:p1");
        let later = t0 + 10 * DISCONNECT_GRACE;
        m.observe(&graph(&["sys:p1"], &[]), later);
        assert_eq!(m.pending(), [(1, "cap:in_2".to_owned())]);
        assert_eq!(m.remembered(), graph(&["sys:p1"], &["cap:in_2"]));
        // Something else linked it (autoconnect, a user): no longer pending.
        m.observe(&graph(&["sys:p1"], &["cap:in_2"]), later);
        assert!(m.pending().is_empty());
        m.forget(0, "sys:p1");
        assert_eq!(m.remembered(), graph(&[], &["cap:in_2"]));
    }

    #[test]
    fn a_refused_link_stays_pending_until_refused_for_the_grace() {
        let t0 = Instant::now();
        let mut m = LinkMemory::new(2);
        m.observe(&graph(&["cap:in_1"], &["cap:in_2"]), t0);
        m.output_lost();
        // The peer's ports exist but its client is not active yet: refused, kept.
        assert!(!m.refused(0, "cap:in_1", t0));
        assert!(!m.refused(1, "cap:in_2", t0));
        let almost = t0 + REFUSAL_GRACE - Duration::from_millis(1);
        assert!(!m.refused(0, "cap:in_1", almost));
        assert_eq!(
            m.pending(),
            [(0, "cap:in_1".to_owned()), (1, "cap:in_2".to_owned())]
        );
        // cap:in_2 is linked once the client is active; cap:in_1 never is.
        m.restored(1, "cap:in_2");
        m.observe(&graph(&[], &["cap:in_2"]), almost);
        assert_eq!(m.pending(), [(0, "cap:in_1".to_owned())]);
        assert!(m.refused(0, "cap:in_1", t0 + REFUSAL_GRACE));
        assert!(m.pending().is_empty());
        assert_eq!(m.remembered(), graph(&[], &["cap:in_2"]));
    }
}
