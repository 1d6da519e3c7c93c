//! The fake Discord's application commands: bulk overwrite (`PUT`) and one-at-a-time create
//! (`POST`), globally or in a guild, checked as Discord checks them.
//!
//! Besides the spec's schema (checked before these run), Discord's "Application Commands"
//! docs require a command name of 1 to 32 lower-case characters, a slash command description
//! of 1 to 100, and, on a global command, `integration_types` the application supports: the
//! installation contexts enabled in the portal, which `GET /applications/@me` lists in
//! `integration_types_config`. A bulk overwrite is all or nothing: one refused command
//! refuses the whole `PUT`, and the commands registered before stay as they were.

use std::time::Instant;

use serde_json::{json, Value};

use super::{err, form_err, next_snowflake, refuse, CommandsPut, Shared};

/// Why one command is refused: the rule, and the error field and code Discord names.
struct Refusal {
    rule: String,
    field: String,
    code: &'static str,
    message: &'static str,
}

/// Checks command `i` of a request; on a global command (`guild` is `None`) also its
/// installation contexts.
fn check(shared: &Shared, i: usize, c: &Value, guild: Option<&str>) -> Result<(), Refusal> {
    let name = c["name"].as_str().unwrap_or("");
    let valid_name = (1..=32).contains(&name.chars().count())
        && name
            .chars()
            .all(|ch| ch == '-' || ch == '_' || ch.is_lowercase() || ch.is_numeric());
    if !valid_name {
        return Err(Refusal {
            rule: format!("discord: a command name is 1 to 32 lower-case characters ({name:?})"),
            field: format!("{i}.name"),
            code: "APPLICATION_COMMAND_INVALID_NAME",
            message: "Command name is invalid",
        });
    }
    let kind = c["type"].as_u64().unwrap_or(1);
    let desc = c["description"].as_str().unwrap_or("");
    if kind == 1 && !(1..=100).contains(&desc.chars().count()) {
        return Err(Refusal {
            rule: format!(
                "discord: a slash command's description is 1 to 100 characters (/{name} has {})",
                desc.chars().count()
            ),
            field: format!("{i}.description"),
            code: "BASE_TYPE_BAD_LENGTH",
            message: "Must be between 1 and 100 in length.",
        });
    }
    if guild.is_none() {
        let supported = &shared.cfg.integration_types;
        let unsupported: Vec<u64> = c["integration_types"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .filter(|t| !supported.contains(t))
            .collect();
        if !unsupported.is_empty() {
            return Err(Refusal {
                rule: format!(
                    "discord: a command's integration_types are installation contexts the \
                     application supports (/{name} asks for {unsupported:?}; the application \
                     has {supported:?} in integration_types_config)"
                ),
                field: format!("{i}.integration_types"),
                code: "APPLICATION_COMMAND_INTEGRATION_TYPE_NOT_SUPPORTED",
                message: "Application does not support this integration type",
            });
        }
    }
    Ok(())
}

/// The command as Discord stores and returns it.
fn stored(shared: &Shared, id: String, c: &Value, guild: Option<&str>) -> Value {
    let cfg = &shared.cfg;
    let mut cmd = json!({
        "id": id,
        "application_id": cfg.application_id,
        "version": id,
        "default_member_permissions": c.get("default_member_permissions").cloned().unwrap_or(Value::Null),
        "type": c["type"].as_u64().unwrap_or(1),
        "name": c["name"],
        "name_localizations": null,
        "description": c["description"].as_str().unwrap_or(""),
        "description_localizations": null,
        "options": c.get("options").cloned().unwrap_or(json!([])),
        "nsfw": c.get("nsfw").cloned().unwrap_or(json!(false)),
        // Omitted: the application's installation contexts.
        "integration_types": c.get("integration_types").cloned().unwrap_or(json!(cfg.integration_types)),
        "contexts": c.get("contexts").cloned().unwrap_or(Value::Null),
    });
    if let Some(g) = guild {
        cmd["guild_id"] = json!(g);
    }
    cmd
}

/// `PUT .../commands`: replaces the registered commands with `body`, or refuses it whole.
pub(super) fn put_commands(
    shared: &Shared,
    request: &str,
    app: &str,
    guild: Option<String>,
    body: &Value,
) -> (u16, Value) {
    if app != shared.cfg.application_id {
        return err(403, 50001, "Missing Access");
    }
    let Some(cmds) = body.as_array() else {
        return form_err(
            "_errors",
            "MODEL_TYPE_CONVERT",
            "Only iterables may be used in a ListType",
        );
    };
    for (i, c) in cmds.iter().enumerate() {
        if let Err(r) = check(shared, i, c, guild.as_deref()) {
            let rule = format!(
                "{} — a bulk overwrite with one refused command is refused whole",
                r.rule
            );
            return refuse(shared, request, rule, form_err(&r.field, r.code, r.message));
        }
    }
    let mut st = shared.st();
    let mut out = Vec::new();
    for c in cmds {
        let id = next_snowflake(&mut st).to_string();
        out.push(stored(shared, id, c, guild.as_deref()));
    }
    st.registered.insert(guild.clone(), out.clone());
    st.commands.push(CommandsPut {
        guild_id: guild,
        commands: cmds.clone(),
        at: Instant::now(),
    });
    (200, json!(out))
}

/// `POST .../commands`: creates one command, or replaces the one of the same name and type.
pub(super) fn create_command(
    shared: &Shared,
    request: &str,
    app: &str,
    guild: Option<String>,
    body: &Value,
) -> (u16, Value) {
    if app != shared.cfg.application_id {
        return err(403, 50001, "Missing Access");
    }
    if let Err(r) = check(shared, 0, body, guild.as_deref()) {
        let field = r.field.trim_start_matches("0.").to_string();
        return refuse(shared, request, r.rule, form_err(&field, r.code, r.message));
    }
    let mut st = shared.st();
    let kind = body["type"].as_u64().unwrap_or(1);
    let existing = st.registered.get(&guild).and_then(|list| {
        list.iter()
            .position(|c| c["name"] == body["name"] && c["type"].as_u64() == Some(kind))
            .map(|pos| (pos, list[pos]["id"].as_str().unwrap_or("").to_string()))
    });
    let (status, id) = match &existing {
        Some((_, id)) => (200, id.clone()),
        None => (201, next_snowflake(&mut st).to_string()),
    };
    let cmd = stored(shared, id, body, guild.as_deref());
    let list = st.registered.entry(guild.clone()).or_default();
    match existing {
        Some((pos, _)) => list[pos] = cmd.clone(),
        None => list.push(cmd.clone()),
    }
    st.created.push(CommandsPut {
        guild_id: guild,
        commands: vec![body.clone()],
        at: Instant::now(),
    });
    (status, cmd)
}
