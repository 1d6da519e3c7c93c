//! Slack's user object, as `users.info` returns it (docs.slack.dev, "User object"), for the
//! fake Slack: the fields a client reads for a name (`profile.display_name`, then
//! `profile.real_name` / `real_name`, then `name`) and the rest of the shape around them, so a
//! client that parses the whole object meets what Slack sends.

use serde_json::{json, Value};

use crate::slack::BASE_TS_SECS;

/// Who a user object describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person<'a> {
    /// The workspace.
    pub team: &'a str,
    /// The user id (`U…` or `W…`).
    pub id: &'a str,
    /// The legacy username (`name`).
    pub name: &'a str,
    /// What the person chose to be called; Slack sends `""` when they chose nothing.
    pub display_name: &'a str,
    /// Their full name.
    pub real_name: &'a str,
    /// For an app's bot user: its bot id and app id.
    pub bot: Option<(&'a str, &'a str)>,
}

/// The avatar URLs Slack sends in every profile, by size.
const IMAGE_SIZES: [u32; 6] = [24, 32, 48, 72, 192, 512];

/// The user object for `p`.
pub fn user_object(p: &Person<'_>) -> Value {
    let (first, last) = p.real_name.split_once(' ').unwrap_or((p.real_name, ""));
    let mut profile = json!({
        "title": "",
        "phone": "",
        "skype": "",
        "real_name": p.real_name,
        "real_name_normalized": p.real_name,
        "display_name": p.display_name,
        "display_name_normalized": p.display_name,
        "fields": null,
        "status_text": "",
        "status_emoji": "",
        "status_emoji_display_info": [],
        "status_expiration": 0,
        "avatar_hash": "ge3b51ca72de",
        "first_name": first,
        "last_name": last,
        "team": p.team
    });
    for size in IMAGE_SIZES {
        profile[format!("image_{size}")] = json!(format!(
            "https://a.slack-edge.com/80588/img/avatars/user_shapes/ava_0001-{size}.png"
        ));
    }
    let mut user = json!({
        "id": p.id,
        "team_id": p.team,
        "name": p.name,
        "deleted": false,
        "color": "9f69e7",
        "real_name": p.real_name,
        "tz": "Europe/Berlin",
        "tz_label": "Central European Summer Time",
        "tz_offset": 7200,
        "profile": profile,
        "is_admin": false,
        "is_owner": false,
        "is_primary_owner": false,
        "is_restricted": false,
        "is_ultra_restricted": false,
        "is_bot": p.bot.is_some(),
        "is_app_user": false,
        "updated": BASE_TS_SECS,
        "is_email_confirmed": p.bot.is_none(),
        "who_can_share_contact_card": "EVERYONE"
    });
    if let Some((bot_id, app_id)) = p.bot {
        user["profile"]["bot_id"] = json!(bot_id);
        user["profile"]["api_app_id"] = json!(app_id);
        user["profile"]["always_active"] = json!(true);
    }
    user
}
