//! The real `App` with the real `SlackAdapter` (slack-morphism pointed at `slack.api_url`)
//! against the fake Slack, for the Slack end-to-end tests.

use std::path::Path;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use super::running::RunningApp;
use super::slack::FakeSlack;

/// A running app with the Slack adapter, connected over Socket Mode, until [`SlackApp::stop`].
pub struct SlackApp {
    app: RunningApp,
}

impl SlackApp {
    /// Starts the app with its data in `dir`, the model at `llm_url`, and Slack at `slack`;
    /// returns once a Socket Mode connection is open.
    pub async fn start(dir: &Path, llm_url: &str, slack: &FakeSlack) -> Self {
        let mut s: anchorbot::Settings = super::settings(dir, llm_url);
        s.slack.bot_token = Some(SecretString::from(slack.config().bot_token.clone()));
        s.slack.app_token = Some(SecretString::from(slack.config().app_token.clone()));
        s.slack.api_url = slack.api_url();
        let adapters = anchorbot::adapters::configured(&s).unwrap();
        let before = slack.connections_opened();
        let mut app = anchorbot::App::build(s).await.unwrap();
        for a in adapters {
            app = app.with_adapter(a);
        }
        let app = RunningApp::start(app);
        let deadline = Instant::now() + Duration::from_secs(20);
        while slack.connections_opened() <= before || slack.open_connections() == 0 {
            assert!(
                Instant::now() < deadline,
                "the adapter never opened a Socket Mode connection"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { app }
    }

    /// Stops the app and waits (up to 30 s) for it to drain.
    pub async fn stop(self) {
        self.app.stop().await;
    }
}
