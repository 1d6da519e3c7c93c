//! A streamed reply that outgrows one message ends as exactly the split of its final text:
//! however the answer arrived (in many small updates or a few large ones), every message shows
//! its piece, none is missing a line and none repeats one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorbot_platform::{
    split_message, Attachment, Author, FinalState, Limits, MessageRef, Platform, PlatformError,
    ReplyTarget, Status, StreamingReply,
};
use async_trait::async_trait;
use proptest::prelude::*;

/// A platform that keeps the text each of its messages shows, like a chat would.
#[derive(Default)]
struct Channel {
    /// Message ids in the order they were posted.
    order: Mutex<Vec<String>>,
    /// The text each message shows now.
    shown: Mutex<HashMap<String, String>>,
}

impl Channel {
    fn messages(&self) -> Vec<String> {
        let shown = self.shown.lock().unwrap();
        self.order
            .lock()
            .unwrap()
            .iter()
            .map(|id| shown[id].clone())
            .collect()
    }
}

#[async_trait]
impl Platform for Channel {
    fn limits(&self) -> Limits {
        Limits {
            max_message_chars: 2000,
            min_edit_interval: Duration::ZERO,
        }
    }
    async fn post(&self, to: &ReplyTarget, text: &str) -> Result<MessageRef, PlatformError> {
        assert!(text.chars().count() <= 2000, "a post over the limit");
        let mut order = self.order.lock().unwrap();
        let id = format!("m{}", order.len());
        order.push(id.clone());
        self.shown.lock().unwrap().insert(id.clone(), text.into());
        Ok(MessageRef {
            channel: to.channel.clone(),
            id,
        })
    }
    async fn edit(&self, m: &MessageRef, text: &str) -> Result<(), PlatformError> {
        assert!(text.chars().count() <= 2000, "an edit over the limit");
        self.shown.lock().unwrap().insert(m.id.clone(), text.into());
        Ok(())
    }
    async fn ephemeral(&self, _: &ReplyTarget, _: &Author, _: &str) -> Result<(), PlatformError> {
        Ok(())
    }
    async fn status(&self, _: &ReplyTarget, _: &Status) -> Result<(), PlatformError> {
        Ok(())
    }
    async fn fetch(&self, _: &Attachment, _: u64) -> Result<Vec<u8>, PlatformError> {
        Err(PlatformError::Rejected("no files".into()))
    }
}

/// An answer of prose, lists and code blocks, some long.
fn answer() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        4 => "[a-zA-Z ,.]{0,150}",
        1 => "(- |## )[a-z ]{1,60}",
        1 => "```(rust|python|)",
        1 => "[a-z]{200,900}",
        1 => "[\u{4e00}-\u{4fff}]{1,200}",
        1 => Just(String::new()),
    ];
    prop::collection::vec(line, 10..80).prop_map(|l| l.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_messages_of_a_streamed_reply_are_the_split_of_its_final_text(
        text in answer(),
        steps in prop::collection::vec(1usize..400, 1..40),
    ) {
        prop_assume!(!text.trim().is_empty());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let channel = Arc::new(Channel::default());
        rt.block_on(async {
            let mut reply = StreamingReply::new(channel.clone(), ReplyTarget::default());
            let chars: Vec<char> = text.chars().collect();
            let mut at = 0;
            for step in &steps {
                at = (at + step).min(chars.len());
                reply.update(&chars[..at].iter().collect::<String>()).await;
            }
            reply.finish(&text, FinalState::Complete).await.unwrap();
        });
        prop_assert_eq!(channel.messages(), split_message(&text, 2000));
    }
}
