//! The real `App` with the Discord adapter against the fake Discord, for the end-to-end tests
//! (kept apart from `discord.rs`, which its self-test includes on its own).

use std::time::{Duration, Instant};

use super::discord::FakeDiscord;
use super::running::RunningApp;

/// The real `App` with the Discord adapter, connected to a fake Discord (started the way
/// `anchorbot run` starts it), until [`DiscordApp::stop`].
pub struct DiscordApp {
    /// Where `/healthz`, `/readyz` and `/metrics` are served, when `metrics.listen` is set.
    pub ops: Option<std::net::SocketAddr>,
    app: RunningApp,
}

impl DiscordApp {
    pub async fn start(dir: &std::path::Path, llm_url: &str, discord: &FakeDiscord) -> Self {
        Self::start_with(dir, llm_url, discord, |_| {}).await
    }

    pub async fn start_with(
        dir: &std::path::Path,
        llm_url: &str,
        discord: &FakeDiscord,
        tweak: impl FnOnce(&mut anchorbot::Settings),
    ) -> Self {
        let mut s = super::settings(dir, llm_url);
        s.discord.token = Some(secrecy::SecretString::from(discord.config().token.clone()));
        s.discord.api_url = discord.base_url();
        tweak(&mut s);
        let adapters = anchorbot::adapters::configured(&s).unwrap();
        let ready_before = discord.ready_connections();
        let mut app = anchorbot::App::build(s).await.unwrap();
        for a in adapters {
            app = app.with_adapter(a);
        }
        let ops = app.bind_ops().await.unwrap();
        let app = RunningApp::start(app);
        let deadline = Instant::now() + Duration::from_secs(30);
        while discord.ready_connections() <= ready_before {
            assert!(Instant::now() < deadline, "never got READY");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // READY is mapped and the commands registered (by bulk overwrite, or one at a time
        // when that is refused) before the first message is sent.
        assert!(
            discord
                .wait_commands(None, 1, Duration::from_secs(20))
                .await,
            "no slash command was registered"
        );
        Self { ops, app }
    }

    /// Stops the app and waits (up to 30 s) for it to drain.
    pub async fn stop(self) {
        self.app.stop().await;
    }
}
