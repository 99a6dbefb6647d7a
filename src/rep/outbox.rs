//! The outgoing-message queue: what the core asks its host to send, in the
//! order it decided, until the host drains it with `Core::take_output`.
//! Knows nothing of `Core`: the sender's header fields come in a
//! [`Sender`], each message in an [`Outgoing`] built with a few chained calls.

use crate::lsn::Lsn;
use crate::rep::types::{Eid, OutMsg, SendFlags, EID_BROADCAST};
use crate::wire::{self, Envelope, Message, MsgFlags};

/// One message to queue, built as `Outgoing::to(eid, msg).lsn(l).hints(h)`.
pub(crate) struct Outgoing<B = Vec<u8>> {
    /// The site to deliver to, or [`EID_BROADCAST`].
    pub to: Eid,
    /// What to say.
    pub msg: Message<B>,
    /// The LSN the control header carries.
    pub lsn: Lsn,
    /// Wire flags (`FROM_MASTER` is added by the [`Sender`]).
    pub flags: MsgFlags,
    /// Delivery hints for the host.
    pub hints: SendFlags,
}

impl<B> Outgoing<B> {
    /// `msg` for `to`, with a zero LSN and no flags.
    #[inline]
    pub fn to(to: Eid, msg: Message<B>) -> Outgoing<B> {
        Outgoing {
            to,
            msg,
            lsn: Lsn::ZERO,
            flags: MsgFlags::EMPTY,
            hints: SendFlags::EMPTY,
        }
    }

    /// `msg` for every site.
    #[inline]
    pub fn broadcast(msg: Message<B>) -> Outgoing<B> {
        Outgoing::to(EID_BROADCAST, msg)
    }

    /// Sets the LSN the header carries.
    #[inline]
    pub fn lsn(mut self, lsn: Lsn) -> Outgoing<B> {
        self.lsn = lsn;
        self
    }

    /// Adds wire flags.
    #[inline]
    pub fn flags(mut self, flags: MsgFlags) -> Outgoing<B> {
        self.flags |= flags;
        self
    }

    /// Adds delivery hints.
    #[inline]
    pub fn hints(mut self, hints: SendFlags) -> Outgoing<B> {
        self.hints |= hints;
        self
    }
}

/// Who is sending: the header fields every message of this site carries.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Sender {
    /// This site's id (a message to it is dropped).
    pub local: Option<Eid>,
    /// Its generation.
    pub gen: u32,
    /// Its election generation.
    pub egen: u32,
    /// It is master: every message carries `FROM_MASTER`.
    pub is_master: bool,
}

impl Sender {
    /// The envelope this site puts around `msg`.
    #[inline]
    pub fn envelope<B>(&self, msg: Message<B>, lsn: Lsn, mut flags: MsgFlags) -> Envelope<B> {
        if self.is_master {
            flags |= MsgFlags::FROM_MASTER;
        }
        Envelope {
            gen: self.gen,
            egen: self.egen,
            lsn,
            flags,
            msg,
        }
    }
}

/// What a queued message tells its queue's owner.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Not queued: it was addressed to this site itself.
    Dropped,
    /// Queued.
    Sent,
    /// Queued, and it tells every client where the log ends (it stands in
    /// for a heartbeat).
    SentLogEnd,
}

/// The queue of messages for the host.
#[derive(Default)]
pub(crate) struct Outbox {
    queue: Vec<OutMsg>,
}

impl Outbox {
    /// Encodes and queues `out` from `sender`.
    pub fn send(&mut self, sender: &Sender, out: Outgoing) -> Queued {
        if Some(out.to) == sender.local {
            return Queued::Dropped;
        }
        let env = sender.envelope(out.msg, out.lsn, out.flags);
        let mut rec = Vec::new();
        wire::encode_body(&env, &mut rec);
        self.push_encoded(sender, out.to, env, rec, out.hints)
    }

    /// Queues a message whose body `rec` is already encoded; `env` gives its
    /// header fields and type (its body is not looked at).
    #[inline]
    pub fn push_encoded<B>(
        &mut self,
        sender: &Sender,
        to: Eid,
        env: Envelope<B>,
        rec: Vec<u8>,
        hints: SendFlags,
    ) -> Queued {
        if Some(to) == sender.local {
            return Queued::Dropped;
        }
        let control = wire::encode_control(&env, rec.len());
        // Only messages that tell clients where the log ends stand in for a
        // heartbeat; a lease request does not, and counting it starved
        // heartbeats whenever leases refresh as often.
        let log_end = to == EID_BROADCAST
            && matches!(
                env.msg,
                Message::Log { .. } | Message::NewMaster { .. } | Message::Heartbeat { .. }
            );
        self.queue.push(OutMsg {
            eid: to,
            control,
            rec,
            lsn: env.lsn,
            flags: hints,
        });
        if log_end {
            Queued::SentLogEnd
        } else {
            Queued::Sent
        }
    }

    /// Moves every queued message to the end of `to`, in order.
    #[inline]
    pub fn drain_into(&mut self, to: &mut Vec<OutMsg>) {
        move_all(&mut self.queue, to);
    }
}

/// Moves everything in `from` to the end of `to`, in order. Called after
/// every message a host delivers, usually with one or no item: an empty
/// `from` costs nothing, and into an empty `to` the buffers are swapped
/// rather than the items copied (each side keeps a buffer with capacity).
#[inline]
pub(crate) fn move_all<T>(from: &mut Vec<T>, to: &mut Vec<T>) {
    if from.is_empty() {
        return;
    }
    if to.is_empty() {
        std::mem::swap(from, to);
    } else {
        to.append(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(is_master: bool) -> Sender {
        Sender {
            local: Some(1),
            gen: 4,
            egen: 5,
            is_master,
        }
    }

    #[test]
    fn a_message_to_this_site_is_dropped() {
        let mut o = Outbox::default();
        let q = o.send(&sender(false), Outgoing::to(1, Message::MasterReq));
        assert_eq!(q, Queued::Dropped);
        let mut out = Vec::new();
        o.drain_into(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_header_carries_the_sender_and_the_builder_fields() {
        let mut o = Outbox::default();
        let m = Outgoing::broadcast(Message::Heartbeat {
            perm_lsn: Lsn::ZERO,
        })
        .lsn(Lsn::new(1, 9))
        .flags(MsgFlags::REREQUEST)
        .hints(SendFlags::NOBUFFER);
        assert_eq!(o.send(&sender(true), m), Queued::SentLogEnd);
        let q = o.send(&sender(true), Outgoing::to(2, Message::MasterReq));
        assert_eq!(q, Queued::Sent);
        let mut out = Vec::new();
        o.drain_into(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].eid, EID_BROADCAST);
        assert_eq!(out[0].flags, SendFlags::NOBUFFER);
        assert_eq!(out[0].lsn, Lsn::new(1, 9));
        let env = wire::decode(&out[0].control, &out[0].rec, &Default::default()).unwrap();
        assert_eq!((env.gen, env.egen), (4, 5));
        assert!(env
            .flags
            .contains(MsgFlags::FROM_MASTER | MsgFlags::REREQUEST));
    }
}
