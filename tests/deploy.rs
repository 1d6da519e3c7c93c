//! The deployment files, read as the tools that run them would: both compose files parsed as
//! YAML (merge keys applied, as Compose does), the Dockerfile's instructions, the systemd unit,
//! `deploy/.env.example` and the README's `vllm serve` commands. These machines have no
//! container engine, so this is the check the files get: services, start order, ports, the
//! vLLM flags the issue names, health checks, the internal network, volumes, GPUs and the
//! non-root image.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_norway::Value;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path} must exist: {e}"))
}

fn compose(path: &str) -> Value {
    let mut v: Value = serde_norway::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{path}: bad merge key: {e}"));
    v
}

/// `over` merged into `base` as `docker compose -f base -f over` merges them (the Compose
/// specification's merge rules): maps by key, lists appended, except the shell commands
/// (`command`, `entrypoint`, `healthcheck.test`), which the override replaces, and a service's
/// `volumes` and `ports`, where an entry replaces the one with the same container path (or the
/// same text). `at` is the path of keys down to `base`.
fn merge(base: &mut Value, over: Value, at: &mut Vec<String>) {
    let in_service = at.len() >= 3 && at[0] == "services";
    let field = at.get(2).map(String::as_str);
    let replaced = in_service
        && match at.len() {
            3 => matches!(field, Some("command" | "entrypoint")),
            4 => field == Some("healthcheck") && at[3] == "test",
            _ => false,
        };
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                let name = text(&k).expect("a map key");
                match b.get_mut(&k) {
                    Some(existing) => {
                        at.push(name);
                        merge(existing, v, at);
                        at.pop();
                    }
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Sequence(b), Value::Sequence(o)) if !replaced => {
            let unique = in_service && at.len() == 3 && matches!(field, Some("volumes" | "ports"));
            for v in o {
                // The container path: `volume:/path[:mode]`, or `/path` alone.
                let key = |x: &Value| -> Option<String> {
                    let t = text(x)?;
                    if field == Some("volumes") {
                        t.split(':').nth(1).or(Some(t.as_str())).map(str::to_string)
                    } else {
                        Some(t)
                    }
                };
                let same = unique
                    .then(|| b.iter().position(|x| key(x).is_some() && key(x) == key(&v)))
                    .flatten();
                match same {
                    Some(i) => b[i] = v,
                    None => b.push(v),
                }
            }
        }
        (b, o) if (b.is_mapping() && o.is_sequence()) || (b.is_sequence() && o.is_mapping()) => {
            // Compose would convert one form into the other; these files keep to one form.
            panic!(
                "{}: written as a map in one file and a list in the other ({b:?} / {o:?})",
                at.join(".")
            )
        }
        (b, o) => *b = o,
    }
}

/// A scalar as text (Compose accepts numbers where it means strings).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn list(v: &Value, what: &str) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what} must be a list, got {v:?}"))
        .iter()
        .map(|x| text(x).unwrap_or_else(|| panic!("{what}: {x:?} is not a scalar")))
        .collect()
}

/// The map's keys, for a section that may be written as a map or as a list of names.
fn names(v: &Value, what: &str) -> BTreeSet<String> {
    match v {
        Value::Mapping(m) => m.keys().filter_map(text).collect(),
        Value::Sequence(_) => list(v, what).into_iter().collect(),
        other => panic!("{what} must be a map or a list, got {other:?}"),
    }
}

/// One compose file, with the names of what it must hold.
struct Stack {
    file: &'static str,
    doc: Value,
}

impl Stack {
    fn load(file: &'static str) -> Self {
        Self {
            file,
            doc: compose(file),
        }
    }

    /// Compose files merged in order, as `docker compose -f A -f B` reads them; `label` names
    /// the result in messages.
    fn merged(label: &'static str, files: &[&'static str]) -> Self {
        let mut doc = compose(files[0]);
        for file in &files[1..] {
            merge(&mut doc, compose(file), &mut Vec::new());
        }
        Self { file: label, doc }
    }

    fn service(&self, name: &str) -> &Value {
        self.doc
            .get("services")
            .and_then(|s| s.get(name))
            .unwrap_or_else(|| panic!("{}: no service {name}", self.file))
    }

    fn command(&self, name: &str) -> Vec<String> {
        let svc = self.service(name);
        list(
            svc.get("command")
                .unwrap_or_else(|| panic!("{}: {name} has no command", self.file)),
            &format!("{}: {name}.command", self.file),
        )
    }

    /// The value after `flag` in the service's command.
    fn flag(&self, name: &str, flag: &str) -> String {
        let cmd = self.command(name);
        let at = cmd.iter().position(|a| a == flag).unwrap_or_else(|| {
            panic!(
                "{}: {name} is started without {flag}: {}",
                self.file,
                cmd.join(" ")
            )
        });
        cmd.get(at + 1)
            .unwrap_or_else(|| panic!("{}: {name}: {flag} has no value", self.file))
            .clone()
    }

    fn has_flag(&self, name: &str, flag: &str) -> bool {
        self.command(name).iter().any(|a| a == flag)
    }

    /// The service's environment as name → value (`None`: passed through, unset when the host
    /// or `.env` does not set it).
    fn env(&self, name: &str) -> Vec<(String, Option<String>)> {
        match self.service(name).get("environment") {
            None => Vec::new(),
            Some(Value::Mapping(m)) => m
                .iter()
                .map(|(k, v)| (text(k).expect("env name"), text(v)))
                .collect(),
            Some(v) => list(v, "environment")
                .into_iter()
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (e, None),
                })
                .collect(),
        }
    }

    fn env_value(&self, name: &str, var: &str) -> String {
        self.env(name)
            .into_iter()
            .find(|(k, _)| k == var)
            .and_then(|(_, v)| v)
            .unwrap_or_else(|| panic!("{}: {name} does not set {var}", self.file))
    }

    fn depends_healthy(&self, name: &str) -> BTreeSet<String> {
        let Some(deps) = self.service(name).get("depends_on") else {
            return BTreeSet::new();
        };
        let map = deps.as_mapping().unwrap_or_else(|| {
            panic!(
                "{}: {name}.depends_on must name conditions (a map), got {deps:?}",
                self.file
            )
        });
        map.iter()
            .map(|(k, v)| {
                let dep = text(k).expect("service name");
                let cond = v.get("condition").and_then(text);
                assert_eq!(
                    cond.as_deref(),
                    Some("service_healthy"),
                    "{}: {name} must wait for {dep} to be healthy",
                    self.file
                );
                dep
            })
            .collect()
    }

    fn healthcheck(&self, name: &str) -> String {
        let test = self
            .service(name)
            .get("healthcheck")
            .and_then(|h| h.get("test"))
            .unwrap_or_else(|| panic!("{}: {name} has no healthcheck.test", self.file));
        match test {
            Value::String(s) => s.clone(),
            v => list(v, "healthcheck.test").join(" "),
        }
    }

    fn networks(&self, name: &str) -> BTreeSet<String> {
        names(
            self.service(name)
                .get("networks")
                .unwrap_or_else(|| panic!("{}: {name} names no networks", self.file)),
            "networks",
        )
    }

    fn network_is_internal(&self, net: &str) -> bool {
        self.doc
            .get("networks")
            .and_then(|n| n.get(net))
            .and_then(|n| n.get("internal"))
            .and_then(Value::as_bool)
            == Some(true)
    }

    /// The named volumes a service mounts, as (volume, container path).
    fn named_volumes(&self, name: &str) -> Vec<(String, String)> {
        let declared = self
            .doc
            .get("volumes")
            .map(|v| names(v, "volumes"))
            .unwrap_or_default();
        let Some(vols) = self.service(name).get("volumes") else {
            return Vec::new();
        };
        list(vols, "volumes")
            .into_iter()
            .filter_map(|v| {
                let mut parts = v.split(':');
                let (src, dst) = (parts.next()?, parts.next()?);
                declared
                    .contains(src)
                    .then(|| (src.to_string(), dst.to_string()))
            })
            .collect()
    }

    fn gpu_devices(&self, name: &str) -> Vec<String> {
        let devices = self
            .service(name)
            .get("deploy")
            .and_then(|d| d.get("resources"))
            .and_then(|r| r.get("reservations"))
            .and_then(|r| r.get("devices"))
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| {
                panic!(
                    "{}: {name} reserves no GPU (deploy.resources.reservations.devices)",
                    self.file
                )
            });
        assert_eq!(devices.len(), 1, "{}: {name}: one device entry", self.file);
        let d = &devices[0];
        assert_eq!(
            d.get("driver").and_then(text).as_deref(),
            Some("nvidia"),
            "{}: {name}: driver nvidia",
            self.file
        );
        assert!(
            d.get("capabilities")
                .is_some_and(|c| list(c, "capabilities").contains(&"gpu".to_string())),
            "{}: {name}: capabilities [gpu]",
            self.file
        );
        list(
            d.get("device_ids")
                .unwrap_or_else(|| panic!("{}: {name}: device_ids", self.file)),
            "device_ids",
        )
    }
}

fn seconds(duration: &str) -> u64 {
    let d = duration.trim();
    if let Some(m) = d.strip_suffix('m') {
        return m.parse::<u64>().expect("minutes") * 60;
    }
    d.trim_end_matches('s')
        .parse()
        .expect("a duration in s or m")
}

fn default_grace_secs() -> u64 {
    anchorbot::settings::Settings::default().shutdown_grace_secs
}

/// What both compose files share: three services in order, ports, health checks, networks,
/// volumes, the vision server's flags and anchorbot's wiring. Returns the stack for the
/// variant's own checks.
fn check_common(file: &'static str) -> Stack {
    let s = Stack::load(file);
    let (vision, reasoning, bot) = ("vllm-vision", "vllm-reasoning", "anchorbot");

    // Start order: vision first, reasoning once vision is healthy, anchorbot after both.
    assert!(
        s.depends_healthy(vision).is_empty(),
        "{file}: vision starts first"
    );
    assert_eq!(
        s.depends_healthy(reasoning),
        BTreeSet::from([vision.to_string()]),
        "{file}: reasoning waits for vision"
    );
    assert_eq!(
        s.depends_healthy(bot),
        BTreeSet::from([vision.to_string(), reasoning.to_string()]),
        "{file}: anchorbot waits for both model servers"
    );

    // The vLLM servers: a pinned image, `vllm serve MODEL`, their ports.
    for (svc, port) in [(vision, "8006"), (reasoning, "8005")] {
        let image = s
            .service(svc)
            .get("image")
            .and_then(text)
            .unwrap_or_default();
        let tag = image
            .strip_prefix("vllm/vllm-openai:")
            .unwrap_or_else(|| panic!("{file}: {svc} runs vllm/vllm-openai:TAG, not {image:?}"));
        assert!(
            !tag.is_empty() && tag != "latest",
            "{file}: {svc}: pin a vLLM tag"
        );
        assert_eq!(
            list(
                s.service(svc).get("entrypoint").expect("entrypoint"),
                "entrypoint"
            ),
            ["vllm", "serve"],
            "{file}: {svc} runs `vllm serve`"
        );
        assert!(
            !s.command(svc)[0].starts_with('-'),
            "{file}: {svc}: the model comes first"
        );
        assert_eq!(s.flag(svc, "--port"), port, "{file}: {svc} port");
        let health = s.healthcheck(svc);
        assert!(
            health.contains(&format!("http://localhost:{port}/health")),
            "{file}: {svc}'s health check asks vLLM's /health on {port}: {health}"
        );
    }
    assert_eq!(s.command(vision)[0], "Qwen/Qwen2.5-VL-3B-Instruct");
    assert_eq!(s.flag(vision, "--gpu-memory-utilization"), "0.3");
    assert_eq!(s.flag(vision, "--max-model-len"), "4096");
    let mm: serde_json::Value = serde_json::from_str(&s.flag(vision, "--limit-mm-per-prompt"))
        .expect("--limit-mm-per-prompt is JSON");
    assert_eq!(mm, serde_json::json!({"image": 12}));
    assert!(s.has_flag(reasoning, "--enable-prefix-caching"));

    // The internal network: the model servers are on it alone and publish nothing.
    let internal: Vec<String> = names(s.doc.get("networks").expect("networks"), "networks")
        .into_iter()
        .filter(|n| s.network_is_internal(n))
        .collect();
    assert_eq!(internal.len(), 1, "{file}: one network with internal: true");
    for svc in [vision, reasoning] {
        assert_eq!(
            s.networks(svc),
            BTreeSet::from([internal[0].clone()]),
            "{file}: {svc} is on the internal network only"
        );
        for key in ["ports", "network_mode"] {
            assert!(
                s.service(svc).get(key).is_none(),
                "{file}: {svc} must not have {key}"
            );
        }
    }
    let bot_nets = s.networks(bot);
    assert!(
        bot_nets.contains(&internal[0]),
        "{file}: anchorbot reaches the models"
    );
    assert!(
        bot_nets.iter().any(|n| !s.network_is_internal(n)),
        "{file}: anchorbot needs a network with egress for Slack and Discord"
    );

    // Volumes: one model cache shared by both servers, and the data dir.
    let cache = |svc| {
        s.named_volumes(svc)
            .into_iter()
            .find(|(_, dst)| dst == "/root/.cache/huggingface")
            .unwrap_or_else(|| panic!("{file}: {svc} mounts no named volume as the HF cache"))
            .0
    };
    assert_eq!(
        cache(vision),
        cache(reasoning),
        "{file}: one shared model cache"
    );
    let data_dir = s.env_value(bot, "ANCHORBOT_DATA_DIR");
    assert!(
        s.named_volumes(bot).iter().any(|(_, dst)| *dst == data_dir),
        "{file}: anchorbot's data dir {data_dir} is a named volume"
    );

    // The servers run offline on the internal network: something must fill the cache.
    for svc in [vision, reasoning] {
        assert_eq!(
            s.env_value(svc, "HF_HUB_OFFLINE"),
            "1",
            "{file}: {svc} cannot reach the hub"
        );
    }
    let fetch = s.service("fetch-models");
    assert!(
        fetch.get("profiles").is_some(),
        "{file}: fetch-models runs on demand only"
    );
    let fetch_text = serde_norway::to_string(fetch).expect("yaml");
    for svc in [vision, reasoning] {
        let model = &s.command(svc)[0];
        assert!(
            fetch_text.contains(model.as_str()),
            "{file}: fetch-models does not download {model}"
        );
    }
    assert!(
        s.named_volumes("fetch-models")
            .iter()
            .any(|(v, _)| *v == cache(reasoning)),
        "{file}: fetch-models writes the shared cache"
    );

    // anchorbot: wired to the servers by their service names.
    assert_eq!(
        s.env_value(bot, "ANCHORBOT_REASONING_URL"),
        "http://vllm-reasoning:8005/v1"
    );
    assert_eq!(
        s.env_value(bot, "ANCHORBOT_VISION_URL"),
        "http://vllm-vision:8006/v1"
    );
    assert_eq!(
        s.env_value(bot, "ANCHORBOT_REASONING_MODEL"),
        s.command(reasoning)[0]
    );
    assert_eq!(
        s.env_value(bot, "ANCHORBOT_VISION_MODEL"),
        s.command(vision)[0]
    );
    let budget: u64 = ["ANCHORBOT_MAX_INPUT_TOKENS", "ANCHORBOT_MAX_OUTPUT_TOKENS"]
        .iter()
        .map(|v| s.env_value(bot, v).parse::<u64>().expect("a number"))
        .sum();
    assert_eq!(
        budget.to_string(),
        s.flag(reasoning, "--max-model-len"),
        "{file}: input + output tokens = the reasoning server's --max-model-len"
    );
    // Tokens pass through from .env with no value of their own: an empty string would count
    // as a configured platform.
    let env = s.env(bot);
    for token in ["SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "DISCORD_TOKEN"] {
        assert!(
            env.iter().any(|(k, v)| k == token && v.is_none()),
            "{file}: anchorbot passes {token} through from .env (a name without a value)"
        );
    }
    let listen = s.env_value(bot, "ANCHORBOT_METRICS_LISTEN");
    let port = listen.rsplit(':').next().expect("host:port");
    let health = s.healthcheck(bot);
    assert!(
        health.contains(&format!("localhost:{port}/healthz")),
        "{file}: anchorbot's health check asks /healthz on {listen}: {health}"
    );
    let grace: u64 = s
        .env_value(bot, "ANCHORBOT_SHUTDOWN_GRACE_SECS")
        .parse()
        .expect("seconds");
    let stop = s
        .service(bot)
        .get("stop_grace_period")
        .and_then(text)
        .unwrap_or_else(|| {
            panic!("{file}: anchorbot needs a stop_grace_period (Docker's is 10 s)")
        });
    assert!(
        seconds(&stop) > grace.max(default_grace_secs()),
        "{file}: stop_grace_period {stop} must outlast shutdown_grace_secs {grace}"
    );
    s
}

#[test]
fn one_gpu_compose_file_is_the_reference_deployment() {
    let s = check_common("deploy/docker-compose.yml");
    let r = "vllm-reasoning";
    assert_eq!(s.command(r)[0], "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B");
    assert_eq!(s.flag(r, "--gpu-memory-utilization"), "0.54");
    assert_eq!(s.flag(r, "--max-model-len"), "16384");
    assert_eq!(s.flag(r, "--reasoning-parser"), "deepseek_r1");
    assert!(!s.has_flag(r, "--tensor-parallel-size"));
    assert_eq!(s.gpu_devices(r), ["0"]);
    assert_eq!(s.gpu_devices("vllm-vision"), ["0"]);
}

#[test]
fn two_gpu_compose_file_splits_the_reasoning_model() {
    let s = check_common("deploy/docker-compose.2gpu.yml");
    let r = "vllm-reasoning";
    let model = s.command(r)[0].clone();
    let parser = match model.as_str() {
        "Qwen/QwQ-32B-AWQ" => "deepseek_r1",
        "Qwen/Qwen3-32B-AWQ" => "qwen3",
        other => panic!("2-GPU reasoning model: QwQ-32B-AWQ or Qwen3-32B-AWQ, not {other}"),
    };
    assert_eq!(s.flag(r, "--reasoning-parser"), parser);
    assert_eq!(s.flag(r, "--tensor-parallel-size"), "2");
    assert_eq!(s.flag(r, "--max-model-len"), "32768");
    assert_eq!(
        s.gpu_devices(r).len(),
        2,
        "tensor parallel 2 needs two GPUs"
    );
    let vision_gpu = s.gpu_devices("vllm-vision");
    assert_eq!(vision_gpu.len(), 1);
    assert!(s.gpu_devices(r).contains(&vision_gpu[0]));
}

/// The replicas option: an override of the reference deployment.
const REPLICAS: &str = "deploy/docker-compose.replicas.yml";

/// What `docker compose -f deploy/docker-compose.yml -f deploy/docker-compose.replicas.yml`
/// runs.
fn replicas_stack() -> Stack {
    Stack::merged(
        "docker-compose.yml + docker-compose.replicas.yml",
        &["deploy/docker-compose.yml", REPLICAS],
    )
}

#[test]
fn the_replicas_option_leaves_the_single_bot_path_alone() {
    // Without the override: one bot, on sled, no database service.
    let single = Stack::load("deploy/docker-compose.yml");
    let services = names(single.doc.get("services").expect("services"), "services");
    for svc in &services {
        assert!(
            !single
                .env(svc)
                .iter()
                .any(|(k, _)| k == "ANCHORBOT_DATABASE_URL"),
            "docker-compose.yml: {svc} must stay on sled (no ANCHORBOT_DATABASE_URL)"
        );
    }
    assert_eq!(
        services
            .iter()
            .filter(|svc| single.command(svc) == ["run"])
            .count(),
        1,
        "docker-compose.yml runs one bot"
    );
    assert!(!services.contains("postgres"));

    // The override keeps the project (so its volumes: the weights and the sled store replica 1
    // copies from) and the model servers as they are.
    let over = compose(REPLICAS);
    assert!(
        over.get("name").is_none(),
        "{REPLICAS} must not rename the project: its volumes would be new, empty ones"
    );
    let over_services = names(over.get("services").expect("services"), "services");
    for svc in ["vllm-vision", "vllm-reasoning", "fetch-models"] {
        assert!(
            !over_services.contains(svc),
            "{REPLICAS} leaves {svc} to docker-compose.yml"
        );
    }
    assert_eq!(
        replicas_stack().doc.get("name").and_then(text).as_deref(),
        Some("anchorbot")
    );
}

#[test]
fn the_replicas_option_runs_two_bots_on_one_database() {
    let s = replicas_stack();
    let file = s.file;
    let db = "postgres";

    // The database: an official image, pinned; its password from .env with no default.
    let image = s
        .service(db)
        .get("image")
        .and_then(text)
        .unwrap_or_default();
    let tag = image
        .strip_prefix("postgres:")
        .unwrap_or_else(|| panic!("{file}: {db} runs postgres:TAG, not {image:?}"));
    assert!(
        !tag.is_empty() && tag != "latest",
        "{file}: pin a PostgreSQL tag"
    );
    let password = s.env_value(db, "POSTGRES_PASSWORD");
    assert!(
        password.starts_with("${POSTGRES_PASSWORD:?")
            || password.starts_with("${POSTGRES_PASSWORD?"),
        "{file}: the password comes from deploy/.env and is required, no default: {password}"
    );
    assert!(
        password.ends_with('}'),
        "{file}: one interpolation: {password}"
    );
    let (user, dbname) = (
        s.env_value(db, "POSTGRES_USER"),
        s.env_value(db, "POSTGRES_DB"),
    );
    let health = s.healthcheck(db);
    assert!(
        health.contains("pg_isready") && health.contains(&user) && health.contains(&dbname),
        "{file}: {db}'s health check is pg_isready for its user and database: {health}"
    );
    assert!(
        s.named_volumes(db)
            .iter()
            .any(|(_, dst)| dst == "/var/lib/postgresql/data"),
        "{file}: {db} keeps its data in a named volume"
    );
    assert!(
        s.service(db).get("ports").is_none(),
        "{file}: {db} publishes no port"
    );
    let db_nets = s.networks(db);
    assert!(
        db_nets.iter().all(|n| s.network_is_internal(n)),
        "{file}: {db} is on internal networks only: {db_nets:?}"
    );

    // The replicas: every service with a database URL.
    let services = names(s.doc.get("services").expect("services"), "services");
    let replicas: Vec<String> = services
        .iter()
        .filter(|svc| {
            s.env(svc)
                .iter()
                .any(|(k, _)| k == "ANCHORBOT_DATABASE_URL")
        })
        .cloned()
        .collect();
    assert_eq!(
        replicas,
        ["anchorbot", "anchorbot-2"],
        "{file}: two replicas"
    );
    let bots: Vec<String> = services
        .iter()
        .filter(|svc| s.service(svc).get("command").is_some() && s.command(svc) == ["run"])
        .cloned()
        .collect();
    assert_eq!(bots, replicas, "{file}: every bot is on the database");

    let url = s.env_value("anchorbot", "ANCHORBOT_DATABASE_URL");
    let rest = url
        .strip_prefix("postgres://")
        .unwrap_or_else(|| panic!("{file}: a postgres:// URL, not {url}"));
    let (userinfo, hostpart) = rest.rsplit_once('@').expect("user:password@host");
    let (url_user, url_password) = userinfo.split_once(':').expect("user:password");
    assert_eq!(url_user, user, "{file}: the URL's user is {db}'s");
    assert_eq!(
        url_password.split(['?', ':', '}']).next(),
        password.split(['?', ':', '}']).next(),
        "{file}: the URL's password is {db}'s variable"
    );
    assert_eq!(
        hostpart,
        format!("{db}:5432/{dbname}"),
        "{file}: the URL names the {db} service and its database"
    );

    let mut data_volumes = BTreeSet::new();
    let mut listens = BTreeSet::new();
    let mut published = BTreeSet::new();
    let env_but_listen = |svc: &str| -> Vec<(String, Option<String>)> {
        let mut env: Vec<_> = s
            .env(svc)
            .into_iter()
            .filter(|(k, _)| k != "ANCHORBOT_METRICS_LISTEN")
            .collect();
        env.sort();
        env
    };
    for r in &replicas {
        let r = r.as_str();
        assert_eq!(
            s.env_value(r, "ANCHORBOT_DATABASE_URL"),
            url,
            "{file}: {r} shares the database"
        );
        assert_eq!(
            s.depends_healthy(r),
            BTreeSet::from([
                "vllm-vision".to_string(),
                "vllm-reasoning".to_string(),
                db.to_string()
            ]),
            "{file}: {r} waits for the models and the database"
        );
        assert!(
            !s.networks(r).is_disjoint(&db_nets),
            "{file}: {r} reaches {db}"
        );
        assert!(
            s.networks(r).is_superset(&s.networks("vllm-reasoning")),
            "{file}: {r} reaches the models"
        );
        assert!(
            s.networks(r).iter().any(|n| !s.network_is_internal(n)),
            "{file}: {r} needs a network with egress"
        );
        assert_eq!(
            s.service(r).get("image").and_then(text),
            s.service("anchorbot").get("image").and_then(text),
            "{file}: one image for both replicas"
        );
        assert_eq!(
            env_but_listen(r),
            env_but_listen("anchorbot"),
            "{file}: {r} has anchorbot's settings and secrets (all but the metrics address)"
        );

        let data_dir = s.env_value(r, "ANCHORBOT_DATA_DIR");
        let volume = s
            .named_volumes(r)
            .into_iter()
            .find(|(_, dst)| *dst == data_dir)
            .unwrap_or_else(|| panic!("{file}: {r}'s data dir {data_dir} is a named volume"))
            .0;
        data_volumes.insert(volume);

        let listen = s.env_value(r, "ANCHORBOT_METRICS_LISTEN");
        let port = listen.rsplit(':').next().expect("host:port").to_string();
        let health = s.healthcheck(r);
        assert!(
            health.contains(&format!("localhost:{port}/readyz")) && !health.contains("/healthz"),
            "{file}: {r}'s health check asks /readyz on {listen} (and only that): {health}"
        );
        let ports = list(
            s.service(r)
                .get("ports")
                .unwrap_or_else(|| panic!("{file}: {r} publishes its metrics")),
            "ports",
        );
        assert_eq!(ports.len(), 1, "{file}: {r} publishes one port: {ports:?}");
        let (host, target) = ports[0].rsplit_once(':').expect("host:container");
        assert_eq!(target, port, "{file}: {r} publishes its metrics port");
        assert!(
            host.starts_with("127.0.0.1:"),
            "{file}: {r}'s metrics are for this host only: {host}"
        );
        published.insert(host.to_string());
        listens.insert(port);

        let grace: u64 = s
            .env_value(r, "ANCHORBOT_SHUTDOWN_GRACE_SECS")
            .parse()
            .expect("seconds");
        let stop = s
            .service(r)
            .get("stop_grace_period")
            .and_then(text)
            .unwrap_or_else(|| panic!("{file}: {r} needs a stop_grace_period"));
        assert!(
            seconds(&stop) > grace.max(default_grace_secs()),
            "{file}: {r}: stop_grace_period {stop} must outlast shutdown_grace_secs {grace}"
        );
    }
    assert_eq!(
        data_volumes.len(),
        2,
        "{file}: a data volume each: {data_volumes:?}"
    );
    assert_eq!(listens.len(), 2, "{file}: a metrics port each: {listens:?}");
    assert_eq!(
        published.len(),
        2,
        "{file}: a host port each: {published:?}"
    );
    // Replica 1 keeps the reference deployment's data volume and metrics port.
    let single = Stack::load("deploy/docker-compose.yml");
    assert_eq!(
        s.named_volumes("anchorbot"),
        single.named_volumes("anchorbot"),
        "{file}: anchorbot keeps its volume (the sled store to copy)"
    );
    assert_eq!(
        s.env_value("anchorbot", "ANCHORBOT_METRICS_LISTEN"),
        single.env_value("anchorbot", "ANCHORBOT_METRICS_LISTEN")
    );
}

#[test]
fn env_example_names_every_variable_the_compose_files_read() {
    let example = read("deploy/.env.example");
    let listed: BTreeSet<String> = example
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    for file in [
        "deploy/docker-compose.yml",
        "deploy/docker-compose.2gpu.yml",
        REPLICAS,
    ] {
        let s = Stack::load(file);
        let mut wanted = BTreeSet::new();
        // ${VAR}, ${VAR:-default}, ${VAR?err} interpolations.
        let raw = read(file);
        for part in raw.split("${").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            wanted.insert(name);
        }
        // Names passed through without a value.
        for svc in names(s.doc.get("services").expect("services"), "services") {
            for (k, v) in s.env(&svc) {
                if v.is_none() {
                    wanted.insert(k);
                }
            }
        }
        assert!(!wanted.is_empty(), "{file} reads no variables at all?");
        let missing: Vec<_> = wanted.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "{file} reads {missing:?}, which deploy/.env.example does not list"
        );
    }
}

/// The Dockerfile's instructions, continuation lines joined and comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        current.push_str(t.trim_end_matches('\\'));
        current.push(' ');
        if !t.ends_with('\\') {
            let (op, rest) = current
                .trim()
                .split_once(' ')
                .unwrap_or((current.trim(), ""));
            out.push((op.to_uppercase(), rest.trim().to_string()));
            current.clear();
        }
    }
    out
}

#[test]
fn dockerfile_is_multi_stage_small_and_non_root() {
    let ins = dockerfile();
    let froms: Vec<usize> = ins
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(
        froms.len() >= 2,
        "multi-stage: at least two FROM, got {}",
        froms.len()
    );
    let all = |op: &str| -> Vec<&String> {
        ins.iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a)
            .collect()
    };
    let runs = all("RUN");
    assert!(
        runs.iter().any(|r| r.contains(".ci/setup-models.sh")),
        "the embedding model is built by .ci/setup-models.sh"
    );
    assert!(
        runs.iter().any(|r| r.contains("cargo build")
            && r.contains("--release")
            && r.contains("--locked")),
        "cargo build --release --locked"
    );

    // The runtime stage: everything after the last FROM.
    let last = &ins[*froms.last().expect("a FROM")..];
    let (from, image) = (&last[0].0, &last[0].1);
    assert_eq!(from, "FROM");
    assert!(
        image.contains("slim"),
        "the runtime image is a slim one: {image}"
    );
    let get = |op: &str| -> Vec<&String> {
        last.iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a)
            .collect()
    };
    let install = get("RUN")
        .into_iter()
        .find(|r| r.contains("apt-get install"))
        .expect("the runtime stage installs packages");
    for pkg in [
        "poppler-utils",
        "tesseract-ocr",
        "tesseract-ocr-eng",
        "ca-certificates",
        "curl",
    ] {
        assert!(
            install.split_whitespace().any(|w| w == pkg),
            "the runtime stage installs {pkg}"
        );
    }
    let user = get("USER");
    let user = user.last().expect("a USER in the runtime stage");
    assert!(
        !["root", "0"].contains(&user.split(':').next().unwrap_or("")),
        "runs as a non-root user, not {user}"
    );
    let env = get("ENV")
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let copies = get("COPY");
    for var in [
        "ANCHORBOT_DOCUMENTS_MODEL_DIR",
        "ANCHORBOT_DOCUMENTS_ONNXRUNTIME",
    ] {
        let value = env
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{var}=")))
            .unwrap_or_else(|| panic!("the image sets {var}"));
        assert!(value.starts_with('/'), "{var} is absolute: {value}");
        assert!(
            copies.iter().any(|c| {
                let dst = c.split_whitespace().last().unwrap_or("");
                c.starts_with("--from=") && value.starts_with(dst)
            }),
            "{var}={value} is not under a directory copied from a build stage"
        );
    }
    assert!(
        copies
            .iter()
            .any(|c| c.contains("--from=") && c.contains("anchorbot")),
        "the binary is copied from the builder"
    );
    let health = get("HEALTHCHECK");
    assert!(
        health.iter().any(|h| h.contains("/healthz")),
        "HEALTHCHECK asks /healthz"
    );
    assert!(get("VOLUME")
        .iter()
        .any(|v| v.contains("/var/lib/anchorbot")));
    assert!(get("EXPOSE")
        .iter()
        .any(|v| v.split_whitespace().any(|p| p == "9464")));
    assert_eq!(get("ENTRYPOINT"), [&r#"["anchorbot"]"#.to_string()]);
    assert_eq!(get("CMD"), [&r#"["run"]"#.to_string()]);

    let ignore = read(".dockerignore");
    for path in ["target", ".models", "anchorbot-data", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim() == path),
            ".dockerignore keeps {path} out of the build context"
        );
    }
}

#[test]
fn systemd_unit_stops_gracefully_and_is_hardened() {
    let unit = read("deploy/anchorbot.service");
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .collect()
    };
    let one = |key: &str| -> String {
        let v = value(key);
        assert_eq!(
            v.len(),
            1,
            "deploy/anchorbot.service: one {key}=, got {v:?}"
        );
        v[0].clone()
    };
    assert_eq!(one("User"), "anchorbot");
    assert!(one("ExecStart").ends_with("anchorbot run"));
    assert!(!one("EnvironmentFile").is_empty());
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert!(
        seconds(&one("TimeoutStopSec")) > default_grace_secs(),
        "TimeoutStopSec must outlast shutdown_grace_secs ({} s)",
        default_grace_secs()
    );
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    let data_dir = value("Environment")
        .into_iter()
        .find_map(|e| e.strip_prefix("ANCHORBOT_DATA_DIR=").map(str::to_string))
        .expect("the unit sets ANCHORBOT_DATA_DIR");
    assert!(
        one("ReadWritePaths")
            .split_whitespace()
            .any(|p| p == data_dir),
        "the data dir {data_dir} is writable under ProtectSystem=strict"
    );
}

/// The README's `vllm serve` commands, as argument lists.
fn readme_vllm_commands() -> Vec<Vec<String>> {
    let readme = read("README.md");
    let joined = readme.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| l.trim().strip_prefix("vllm serve "))
        .map(|rest| {
            rest.split_whitespace()
                .map(|w| w.trim_matches('\'').to_string())
                .collect()
        })
        .collect()
}

#[test]
fn readme_vllm_commands_match_the_compose_files() {
    let cmds = readme_vllm_commands();
    assert!(
        cmds.len() >= 2,
        "README.md shows the two `vllm serve` commands"
    );
    let s = Stack::load("deploy/docker-compose.yml");
    for svc in ["vllm-vision", "vllm-reasoning"] {
        let compose: Vec<String> = s.command(svc);
        let readme = cmds
            .iter()
            .find(|c| c[0] == compose[0])
            .unwrap_or_else(|| panic!("README.md has no `vllm serve {}`", compose[0]));
        // --host is the container's business; every other argument is the same.
        let strip = |c: &[String]| -> Vec<String> {
            let mut out = Vec::new();
            let mut it = c.iter();
            while let Some(a) = it.next() {
                if a == "--host" {
                    it.next();
                } else {
                    out.push(a.clone());
                }
            }
            out
        };
        assert_eq!(
            strip(readme),
            strip(&compose),
            "README.md's `vllm serve {}` and {svc} in deploy/docker-compose.yml differ",
            compose[0]
        );
    }
}
