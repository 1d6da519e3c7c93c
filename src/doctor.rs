//! `anchorbot doctor`: checks the configuration, the data directory and every endpoint, and
//! says what each endpoint serves.

use std::fmt::Write as _;
use std::path::Path;

use crate::llm::OpenAiEndpoint;
use crate::settings::Settings;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Details.
    pub detail: String,
}

/// Runs every check.
pub async fn run(settings: &Settings) -> Vec<Check> {
    let mut checks = vec![data_dir(&settings.data_dir)];
    for (role, ep) in [
        ("reasoning", &settings.reasoning),
        ("vision", &settings.vision),
    ] {
        let client = OpenAiEndpoint::new(ep.clone());
        let name = format!("{role} endpoint {}", ep.url);
        checks.push(match client.models().await {
            Ok(models) => {
                let mut detail = String::from("serves:");
                for m in &models {
                    let _ = write!(detail, " {}", m.id);
                    if let Some(len) = m.max_model_len {
                        let _ = write!(detail, " (max_model_len {len})");
                    }
                }
                let has = models.iter().any(|m| m.id == ep.model);
                if !has {
                    let _ = write!(
                        detail,
                        "; configured model {:?} is not among them",
                        ep.model
                    );
                }
                Check {
                    name,
                    ok: has || models.len() == 1,
                    detail,
                }
            }
            Err(e) => Check {
                name,
                ok: false,
                detail: e.to_string(),
            },
        });
    }
    checks
}

/// Checks that the data directory exists (or can be created) and is writable.
fn data_dir(dir: &Path) -> Check {
    let name = format!("data dir {}", dir.display());
    let probe = dir.join(".anchorbot-doctor-probe");
    let result = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b"ok"))
        .and_then(|_| std::fs::remove_file(&probe));
    match result {
        Ok(()) => {
            let version = if dir.join("db").exists() {
                "store present"
            } else {
                "no store yet"
            };
            Check {
                name,
                ok: true,
                detail: format!("writable; {version}"),
            }
        }
        Err(e) => Check {
            name,
            ok: false,
            detail: format!("not writable: {e}"),
        },
    }
}
