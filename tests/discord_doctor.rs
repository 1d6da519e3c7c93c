//! `anchorbot doctor` against the local fake Discord (`anchorbot_fakes::discord`): the real
//! binary calls `GET /users/@me` and `GET /applications/@me` at `ANCHORBOT_DISCORD_API_URL`,
//! names the bot and its application, reads the Message Content intent from the application's
//! flags (and fails without it, with the portal fix), names the installation contexts the slash
//! commands are registered for (and fails without Guild Install, with the portal fix), gives
//! the invite URL, reports a refused token or an unreachable Discord, and never prints the
//! token.

mod common;

use std::time::{Duration, Instant};

use common::discord::{FakeDiscord, FakeDiscordConfig, INSTALL_GUILD, INSTALL_USER};
use common::*;

/// Runs `anchorbot doctor` with `env` added, against a model server that answers, so that the
/// exit status is down to the Discord checks; returns (exit ok, stdout, stderr).
async fn doctor(env: &[(&str, &str)]) -> (bool, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let llm = FakeLlm::start(echo).await;
    let mut cmd = anchorbot(&tmp.path().join("data"), &llm.url);
    cmd.arg("doctor");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd).await
}

/// The output line of the check whose name starts with `name`.
fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(7..).is_some_and(|rest| rest.starts_with(name)))
        .unwrap_or_else(|| panic!("no {name:?} line in:\n{out}"))
}

/// The output lines that are failed checks.
fn failures(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("[FAIL]")).collect()
}

/// Asserts that `secret` appears in neither output.
fn no_secret(out: &str, err: &str, secret: &str) {
    assert!(
        !out.contains(secret) && !err.contains(secret),
        "{secret:?} was printed:\n{out}{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_the_bot_and_finds_message_content_enabled() {
    let fake = FakeDiscord::start_default().await;
    let cfg = fake.config().clone();
    let api = fake.base_url();
    let (ok, out, err) = doctor(&[
        ("DISCORD_TOKEN", &cfg.token),
        ("ANCHORBOT_DISCORD_API_URL", &api),
    ])
    .await;

    assert!(ok, "doctor failed: {:?}\n{out}{err}", failures(&out));
    let token = line(&out, "Discord bot token");
    assert!(
        token.starts_with("[ ok ]")
            && token.contains(&api)
            && token.contains(&format!(
                "bot user @{} ({})",
                cfg.bot_username, cfg.bot_user_id
            ))
            && token.contains(&format!("({})", cfg.application_id)),
        "{token}"
    );
    let intent = line(&out, "Discord Message Content intent");
    assert!(
        intent.starts_with("[ ok ]") && intent.contains("enabled"),
        "{intent}"
    );
    let invite = line(&out, "Discord invite URL");
    assert!(
        invite.contains(&format!(
            "https://discord.com/oauth2/authorize?client_id={}&scope=bot+applications.commands&permissions=309237713920",
            cfg.application_id
        )),
        "{invite}"
    );
    no_secret(&out, &err, &cfg.token);

    // Discord saw one call to each, with the token as `Bot <token>`.
    for route in ["GET /users/@me", "GET /applications/@me"] {
        let calls = fake.calls_to(route);
        assert_eq!(calls.len(), 1, "{route}: {calls:?}");
        assert_eq!(
            calls[0].authorization.as_deref(),
            Some(format!("Bot {}", cfg.token).as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_fails_without_message_content_and_gives_the_portal_fix() {
    let fake = FakeDiscord::start(FakeDiscordConfig {
        message_content_enabled: false,
        ..Default::default()
    })
    .await;
    let cfg = fake.config().clone();
    let api = fake.base_url();
    let (ok, out, err) = doctor(&[
        ("DISCORD_TOKEN", &cfg.token),
        ("ANCHORBOT_DISCORD_API_URL", &api),
    ])
    .await;

    assert!(!ok, "doctor passed without the intent:\n{out}");
    assert!(
        line(&out, "Discord bot token").starts_with("[ ok ]"),
        "{out}"
    );
    let intent = line(&out, "Discord Message Content intent");
    assert!(
        intent.starts_with("[FAIL]")
            && intent.contains("NOT enabled")
            && intent.contains(
                "Developer Portal → your app → Bot → Privileged Gateway Intents → Message Content Intent"
            ),
        "{intent}"
    );
    assert_eq!(failures(&out), [intent], "the intent is the only failure");
    no_secret(&out, &err, &cfg.token);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_says_a_wrong_token_was_refused_without_printing_it() {
    let fake = FakeDiscord::start_default().await;
    let api = fake.base_url();
    let wrong = "MTk5OTk5OTk5OTk5OTk5OTk5OQ.GwRoNg.not-the-bot-token-at-all-999999999";
    let (ok, out, err) = doctor(&[
        ("DISCORD_TOKEN", wrong),
        ("ANCHORBOT_DISCORD_API_URL", &api),
    ])
    .await;

    assert!(!ok, "doctor passed with a wrong token:\n{out}");
    let token = line(&out, "Discord bot token");
    assert!(
        token.starts_with("[FAIL]")
            && token.contains("refused the token")
            && token.contains("Bot → Reset Token")
            && token.contains("DISCORD_TOKEN"),
        "{token}"
    );
    assert!(
        !out.contains("Message Content"),
        "no intent verdict without a valid token:\n{out}"
    );
    no_secret(&out, &err, wrong);
    // The part after the last dot is the token's secret; not even that is echoed.
    no_secret(&out, &err, "not-the-bot-token-at-all");
    assert_eq!(fake.calls_to("GET /users/@me").len(), 1);
    assert!(fake.calls_to("GET /applications/@me").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_an_unreachable_discord_at_once() {
    // A port nothing listens on.
    let api = closed_port_url().trim_end_matches("/v1").to_string();
    let token = FakeDiscordConfig::default().token;
    let started = Instant::now();
    let (ok, out, err) = doctor(&[
        ("DISCORD_TOKEN", &token),
        ("ANCHORBOT_DISCORD_API_URL", &api),
    ])
    .await;

    assert!(
        started.elapsed() < Duration::from_secs(30),
        "doctor took {:?}",
        started.elapsed()
    );
    assert!(!ok, "doctor passed without Discord:\n{out}");
    let line = line(&out, "Discord bot token");
    assert!(
        line.starts_with("[FAIL]")
            && line.contains(&format!("cannot reach Discord at {api}"))
            && line.contains("ANCHORBOT_DISCORD_API_URL"),
        "{line}"
    );
    no_secret(&out, &err, &token);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_says_what_to_set_without_discord() {
    let (_, out, _) = doctor(&[]).await;
    let discord = line(&out, "Discord");
    assert!(
        discord.starts_with("[ ok ]")
            && discord.contains("not configured")
            && discord.contains("DISCORD_TOKEN"),
        "{discord}"
    );
    assert_eq!(
        out.lines().filter(|l| l.contains("Discord")).count(),
        1,
        "one line when Discord is not configured:\n{out}"
    );
}

/// Runs doctor against a fake Discord whose application has `types` enabled; returns (exit
/// ok, stdout) and the installation-contexts line.
async fn doctor_with_install_types(types: Vec<u64>) -> (bool, String) {
    let fake = FakeDiscord::start(FakeDiscordConfig {
        integration_types: types,
        ..Default::default()
    })
    .await;
    let cfg = fake.config().clone();
    let api = fake.base_url();
    let (ok, out, err) = doctor(&[
        ("DISCORD_TOKEN", &cfg.token),
        ("ANCHORBOT_DISCORD_API_URL", &api),
    ])
    .await;
    no_secret(&out, &err, &cfg.token);
    // Read from the one application call the check already makes.
    assert_eq!(fake.calls_to("GET /applications/@me").len(), 1);
    (ok, out)
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_the_installation_contexts_the_commands_are_registered_for() {
    let (ok, out) = doctor_with_install_types(vec![INSTALL_GUILD, INSTALL_USER]).await;
    assert!(ok, "{out}");
    let both = line(&out, "Discord installation contexts");
    assert!(
        both.starts_with("[ ok ]")
            && both.contains("Guild Install and User Install enabled")
            && both.contains("registered for both"),
        "{both}"
    );

    let (ok, out) = doctor_with_install_types(vec![INSTALL_GUILD]).await;
    assert!(ok, "{out}");
    let guild = line(&out, "Discord installation contexts");
    assert!(
        guild.starts_with("[ ok ]")
            && guild.contains("User Install off")
            && guild.contains("registered for Guild Install only")
            && guild.contains("Installation → Installation Contexts"),
        "{guild}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_fails_without_guild_install_and_says_where_to_enable_it() {
    let (ok, out) = doctor_with_install_types(vec![]).await;
    assert!(!ok, "doctor passed with no installation context:\n{out}");
    let none = line(&out, "Discord installation contexts");
    assert!(
        none.starts_with("[FAIL]")
            && none.contains("no installation context is enabled")
            && none.contains(
                "tick Guild Install in the Developer Portal → your app → Installation → \
                 Installation Contexts"
            ),
        "{none}"
    );
    assert_eq!(failures(&out), [none], "the only failure");

    let (ok, out) = doctor_with_install_types(vec![INSTALL_USER]).await;
    assert!(!ok, "{out}");
    let user = line(&out, "Discord installation contexts");
    assert!(
        user.starts_with("[FAIL]")
            && user.contains("only User Install")
            && user.contains("tick Guild Install"),
        "{user}"
    );
}
