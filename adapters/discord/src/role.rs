//! Which replica of the bot runs the Discord gateway. Discord sends every event of a shard to
//! each session open on it, so replicas sharing one store open one session per shard between
//! them: the replica that holds the shard's role ([`EventSink::lead`]) runs the gateway and
//! renews the role every [`RENEW`]; the others stand by, asking for it every
//! [`STANDBY_POLL`], and take over when the holder stops renewing (within [`ROLE_TTL`] of its
//! death, at once when it resigns at shutdown). The REST side (replies, events taken over from
//! a replica that died) works on every replica regardless.
//!
//! [`GatewayRole`] is the decision apart from the I/O: given what `lead` answered and when,
//! start the gateway, keep it or stop it.
//!
//! [`EventSink::lead`]: anchorbot_platform::EventSink::lead

use std::time::{Duration, Instant};

/// How long the role lasts unrenewed: a holder that dies (or freezes) loses it this long
/// after its last renewal.
pub const ROLE_TTL: Duration = Duration::from_secs(15);
/// How often the holder renews the role (a third of its time to live, so two renewals can
/// fail before it lapses).
pub const RENEW: Duration = Duration::from_secs(5);
/// How long a request for the role may take; a store slower than this counts as a refusal.
pub const LEAD_WAIT: Duration = RENEW;
/// How often a replica standing by asks for the role.
pub const STANDBY_POLL: Duration = Duration::from_secs(2);
/// The shard the adapter runs (serenity's `Client::start`: one shard of one).
pub const SHARD: u32 = 0;

/// The role of running `shard` of `application`'s gateway.
pub fn gateway_role(application: u64, shard: u32) -> String {
    format!("discord:gateway:{application}:{shard}")
}

/// Where this replica stands with the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayRole {
    /// It does not hold the role: no gateway session here.
    Standby,
    /// It holds the role and runs the gateway. The role is surely its own until `until`: the
    /// time the last renewal that succeeded was asked, plus the time to live (the store set the
    /// lease's expiry after that moment).
    Active {
        /// Until when no other replica can hold the role.
        until: Instant,
    },
}

/// What to do with the gateway after asking for the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The role was taken: open the gateway.
    Start,
    /// Go on as before (renewed, or still standing by).
    Keep,
    /// The role may be another replica's now: close the gateway and stand by.
    Stop,
}

impl GatewayRole {
    /// The state and the step after `lead` answered `led` to a request sent at `asked`, at
    /// `now`, for a role lasting `ttl`. A holder whose renewal is refused keeps the gateway
    /// while the role is surely still its own (the store did not answer; no one else can have
    /// taken it yet), and stops once it may have lapsed (a freeze, a store away too long).
    pub fn on_lead(self, led: bool, asked: Instant, now: Instant, ttl: Duration) -> (Self, Step) {
        match (self, led) {
            (Self::Standby, true) => (Self::Active { until: asked + ttl }, Step::Start),
            (Self::Standby, false) => (Self::Standby, Step::Keep),
            (Self::Active { until }, true) => (
                Self::Active {
                    until: until.max(asked + ttl),
                },
                Step::Keep,
            ),
            (Self::Active { until }, false) if now < until => (self, Step::Keep),
            (Self::Active { .. }, false) => (Self::Standby, Step::Stop),
        }
    }

    /// How long to wait before asking for the role again.
    pub fn next_ask(self) -> Duration {
        match self {
            Self::Standby => STANDBY_POLL,
            Self::Active { .. } => RENEW,
        }
    }

    /// Whether another replica holds (or may hold) the gateway.
    pub fn standby(self) -> bool {
        self == Self::Standby
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = ROLE_TTL;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_standby_starts_the_gateway_when_it_gets_the_role_and_waits_otherwise() {
        let t0 = Instant::now();
        let (s, step) = GatewayRole::Standby.on_lead(false, t0, t0, TTL);
        assert_eq!((s, step), (GatewayRole::Standby, Step::Keep));
        assert!(s.standby());
        assert_eq!(s.next_ask(), STANDBY_POLL);
        let (s, step) = s.on_lead(true, t0 + secs(2), t0 + secs(2), TTL);
        assert_eq!(step, Step::Start);
        assert_eq!(
            s,
            GatewayRole::Active {
                until: t0 + secs(2) + TTL
            }
        );
        assert!(!s.standby());
        assert_eq!(s.next_ask(), RENEW);
    }

    #[test]
    fn a_renewal_moves_the_sure_end_forward() {
        let t0 = Instant::now();
        let s = GatewayRole::Active { until: t0 + TTL };
        let (s, step) = s.on_lead(true, t0 + secs(5), t0 + secs(6), TTL);
        assert_eq!(step, Step::Keep);
        assert_eq!(
            s,
            GatewayRole::Active {
                until: t0 + secs(5) + TTL
            }
        );
        // An answer to an older request does not move it back.
        let (s, _) = s.on_lead(true, t0 + secs(1), t0 + secs(7), TTL);
        assert_eq!(
            s,
            GatewayRole::Active {
                until: t0 + secs(5) + TTL
            }
        );
    }

    #[test]
    fn a_refused_renewal_keeps_the_gateway_while_the_role_is_surely_held() {
        let t0 = Instant::now();
        let s = GatewayRole::Active { until: t0 + TTL };
        // The store did not answer 5 and 10 s in: nobody can hold the role before t0 + TTL.
        let (s, step) = s.on_lead(false, t0 + secs(5), t0 + secs(5), TTL);
        assert_eq!(
            (s, step),
            (GatewayRole::Active { until: t0 + TTL }, Step::Keep)
        );
        let (s, step) = s.on_lead(false, t0 + secs(10), t0 + secs(10), TTL);
        assert_eq!(step, Step::Keep);
        // Renewed again in time: as if nothing happened.
        let (s, step) = s.on_lead(true, t0 + secs(14), t0 + secs(14), TTL);
        assert_eq!(step, Step::Keep);
        assert_eq!(
            s,
            GatewayRole::Active {
                until: t0 + secs(14) + TTL
            }
        );
    }

    #[test]
    fn a_holder_that_lost_the_role_stops_and_stands_by() {
        let t0 = Instant::now();
        let s = GatewayRole::Active { until: t0 + TTL };
        // Frozen past the time to live; another replica took the role meanwhile.
        let (s, step) = s.on_lead(false, t0 + secs(20), t0 + secs(20), TTL);
        assert_eq!((s, step), (GatewayRole::Standby, Step::Stop));
        assert!(s.standby());
        // Back in line: it starts again only when the role is its own again.
        let (s, step) = s.on_lead(false, t0 + secs(22), t0 + secs(22), TTL);
        assert_eq!((s, step), (GatewayRole::Standby, Step::Keep));
        let (_, step) = s.on_lead(true, t0 + secs(40), t0 + secs(40), TTL);
        assert_eq!(step, Step::Start);
    }

    #[test]
    fn a_frozen_holder_that_nobody_replaced_keeps_its_gateway() {
        let t0 = Instant::now();
        let s = GatewayRole::Active { until: t0 + TTL };
        let (s, step) = s.on_lead(true, t0 + secs(20), t0 + secs(20), TTL);
        assert_eq!(step, Step::Keep);
        assert_eq!(
            s,
            GatewayRole::Active {
                until: t0 + secs(20) + TTL
            }
        );
    }

    #[test]
    fn renewals_leave_two_chances_before_the_role_lapses() {
        assert!(RENEW * 3 <= ROLE_TTL);
        assert!(STANDBY_POLL < ROLE_TTL);
        assert_eq!(gateway_role(42, SHARD), "discord:gateway:42:0");
    }
}
