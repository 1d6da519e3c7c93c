//! What a Slack event is claimed as before it is acknowledged (see the contract's
//! `Arrival`): its conversation and event id, worked out from the event alone (no Slack
//! call), and its body, so that a process taking the claim over maps it again.
//!
//! Only what may be owed an answer is claimed: a mention, a message in a DM or in a thread, a
//! slash command. A channel message that mentions the bot is left to its `app_mention` twin
//! (both carry `CHANNEL:TS`, so either one's claim covers the other); the bot's own messages,
//! other bots' (unless configured), edits, deletes and top-level channel chatter are not
//! claimed. Clicks and assistant-thread notices are not claimed either: a click is journaled
//! once mapped (it needs no Slack call), and a notice owes no answer.

use anchorbot_platform::{Arrival, ConversationKey};
use serde::{Deserialize, Serialize};
use slack_morphism::prelude::*;

use crate::target::is_dm;
use crate::work::{Identity, Work};
use crate::SlackConfig;

/// The body journaled with a claim.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "slack", rename_all = "snake_case")]
enum Body {
    /// An Events API event.
    Push {
        /// The event.
        event: Box<SlackPushEventCallback>,
    },
    /// A slash command.
    Command {
        /// The command.
        command: Box<SlackCommandEvent>,
    },
}

/// The claim for `work`, if it may be owed an answer.
pub fn of(me: &Identity, cfg: &SlackConfig, work: &Work) -> Option<Arrival> {
    let (key, event_id, body) = match work {
        Work::Push(cb) => {
            let (channel, thread, ts) = message_of(me, cfg, cb)?;
            let key = ConversationKey::new(
                "slack",
                Some(cb.team_id.as_ref()),
                &channel,
                thread.as_deref(),
            )
            .ok()?;
            let body = Body::Push { event: cb.clone() };
            (key, format!("{channel}:{ts}"), body)
        }
        Work::Command(c) => {
            let key = ConversationKey::new(
                "slack",
                Some(c.team_id.as_ref()),
                c.channel_id.as_ref(),
                None,
            )
            .ok()?;
            let body = Body::Command { command: c.clone() };
            (key, format!("cmd:{}", c.trigger_id), body)
        }
        Work::Interaction(_) => return None,
    };
    Some(Arrival {
        key,
        event_id,
        body: serde_json::to_string(&body).ok()?,
    })
}

/// The work an arrival journaled by [`of`] came from; `None` for a body this adapter did not
/// write.
pub fn work_of(arrival: &Arrival) -> Option<Work> {
    match serde_json::from_str::<Body>(&arrival.body) {
        Ok(Body::Push { event }) => Some(Work::Push(event)),
        Ok(Body::Command { command }) => Some(Work::Command(command)),
        Err(e) => {
            tracing::warn!(error = %e, "a journaled Slack event is unreadable");
            None
        }
    }
}

/// The channel, thread root and ts of an event that may be a question to the bot, following
/// the mapper's rules (see [`crate::inbound`]) as far as they need no Slack call.
fn message_of(
    me: &Identity,
    cfg: &SlackConfig,
    cb: &SlackPushEventCallback,
) -> Option<(String, Option<String>, String)> {
    match &cb.event {
        SlackEventCallbackBody::AppMention(e) => {
            let ts = e.origin.ts.to_string();
            let root = e
                .origin
                .thread_ts
                .as_ref()
                .map_or_else(|| ts.clone(), |t| t.to_string());
            Some((e.channel.to_string(), Some(root), ts))
        }
        SlackEventCallbackBody::Message(e) => {
            match &e.subtype {
                None
                | Some(SlackMessageEventType::FileShare)
                | Some(SlackMessageEventType::ThreadBroadcast) => {}
                Some(_) => return None,
            }
            let user = e.sender.user.as_ref().map(|u| u.to_string());
            let own = (me.bot_id.is_some()
                && e.sender.bot_id.as_ref().map(|b| b.to_string()) == me.bot_id)
                || user.as_deref() == Some(me.bot_user.as_str());
            if own || (e.sender.bot_id.is_some() && !cfg.answer_bots) {
                return None;
            }
            user.as_ref()?;
            let channel = e.origin.channel.as_ref()?.to_string();
            let text = e
                .content
                .as_ref()
                .and_then(|c| c.text.as_deref())
                .unwrap_or("");
            if !is_dm(&channel) && text.contains(&format!("<@{}>", me.bot_user)) {
                return None;
            }
            let thread = e.origin.thread_ts.as_ref().map(|t| t.to_string());
            if !is_dm(&channel) && thread.is_none() {
                return None;
            }
            Some((channel, thread, e.origin.ts.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Identity {
        Identity {
            team: "T1".into(),
            bot_user: "UBOT".into(),
            bot_id: Some("BBOT".into()),
        }
    }

    fn cfg() -> SlackConfig {
        SlackConfig::new(secrecy::SecretString::from("xoxb-test".to_string()))
    }

    fn push(event: serde_json::Value) -> Work {
        let cb = serde_json::json!({
            "team_id": "T1", "api_app_id": "A1", "event_id": "Ev1", "event_time": 1,
            "event": event,
        });
        Work::Push(Box::new(serde_json::from_value(cb).unwrap()))
    }

    #[test]
    fn a_mention_and_its_message_twin_claim_the_same_event() {
        let mention = push(serde_json::json!({
            "type": "app_mention", "user": "U1", "text": "<@UBOT> rent?",
            "ts": "1.000200", "channel": "C1", "thread_ts": "1.000100",
        }));
        let a = of(&me(), &cfg(), &mention).expect("a mention is claimed");
        assert_eq!(a.key.to_string(), "slack:T1/C1/1.000100");
        assert_eq!(a.event_id, "C1:1.000200");
        // In a DM the message event is the question (no app_mention comes).
        let dm = push(serde_json::json!({
            "type": "message", "user": "U1", "text": "rent?", "ts": "2.0", "channel": "D1",
        }));
        let d = of(&me(), &cfg(), &dm).expect("a DM is claimed");
        assert_eq!(
            (d.key.to_string().as_str(), d.event_id.as_str()),
            ("slack:T1/D1", "D1:2.0")
        );
        let back = work_of(&a).expect("the body reads back");
        assert!(matches!(back, Work::Push(cb) if cb.event_id.to_string() == "Ev1"));
    }

    #[test]
    fn chatter_the_bot_owes_nothing_is_not_claimed() {
        let cases = [
            // Top-level channel chatter.
            serde_json::json!({"type": "message", "user": "U1", "text": "hi", "ts": "1.0", "channel": "C1"}),
            // The message twin of a mention: the app_mention claims it.
            serde_json::json!({"type": "message", "user": "U1", "text": "<@UBOT> hi", "ts": "1.0", "channel": "C1", "thread_ts": "0.5"}),
            // The bot's own reply.
            serde_json::json!({"type": "message", "user": "UBOT", "bot_id": "BBOT", "text": "answer", "ts": "1.0", "channel": "C1", "thread_ts": "0.5"}),
            // A join.
            serde_json::json!({"type": "message", "subtype": "channel_join", "user": "U1", "text": "<@U1> has joined", "ts": "1.0", "channel": "C1", "thread_ts": "0.5"}),
        ];
        for (i, event) in cases.into_iter().enumerate() {
            let work = push(event);
            assert!(of(&me(), &cfg(), &work).is_none(), "case {i} claimed");
        }
        let thread_reply = push(serde_json::json!({
            "type": "message", "user": "U1", "text": "and the deposit?", "ts": "1.0",
            "channel": "C1", "thread_ts": "0.5",
        }));
        assert!(
            of(&me(), &cfg(), &thread_reply).is_some(),
            "a thread reply may be owed an answer"
        );
    }
}
