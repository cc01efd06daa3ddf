//! `Dockerfile` and `deploy/` (Docker Compose, Kubernetes): parsed, checked
//! for what the binary needs (workers and the coordinator agree on
//! addresses, ports, secrets and roles; one GPU per worker; gRPC readiness
//! probes on the worker port), and their commands run for real on the CPU
//! with the devices, addresses and secret paths swapped for local ones.
//! `kubectl kustomize` renders the Kubernetes folder when kubectl is
//! installed.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use serde_yaml::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("a list: {value:?}"))
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => panic!("not a string: {other:?}"),
        })
        .collect()
}

/// The value of `--flag` in an argument list.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).map(|i| {
        args.get(i + 1)
            .unwrap_or_else(|| panic!("{name} has no value"))
            .as_str()
    })
}

fn port(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// A process from a manifest's command, run locally; killed when dropped.
struct Running {
    child: Child,
    first_line: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `dsi ARGS` with the manifest's GPUs, listen addresses, secret
/// paths and worker addresses replaced by local ones, and waits for its
/// `listening on` line.
fn run_locally(
    args: &[String],
    secrets: &HashMap<String, PathBuf>,
    workers: &HashMap<String, String>,
) -> Running {
    let local: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with("cuda:") {
                return "cpu".into();
            }
            if a.starts_with("0.0.0.0:") {
                return "127.0.0.1:0".into();
            }
            if let Some(path) = secrets.get(a) {
                return path.display().to_string();
            }
            a.split(',')
                .map(|part| {
                    workers
                        .get(part)
                        .cloned()
                        .unwrap_or_else(|| part.to_owned())
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsi"))
        .args(&local)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    assert!(
        first_line.starts_with("listening on "),
        "{local:?} did not start: {first_line:?}"
    );
    Running { child, first_line }
}

/// The local `grpc://ADDR` a started worker listens on.
fn grpc_url(worker: &Running) -> String {
    let addr = worker.first_line["listening on ".len()..]
        .split_whitespace()
        .next()
        .unwrap();
    format!("grpc://{addr}")
}

/// A file holding a secret; each call its own (the tests run in parallel
/// and remove their files at the end).
fn secret_file(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("dsi-deploy-{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, format!("{name}-value\n")).unwrap();
    path
}

#[test]
fn compose_runs_a_coordinator_over_its_workers() {
    let text = std::fs::read_to_string(root().join("deploy/compose.yaml")).unwrap();
    let mut compose: Value = serde_yaml::from_str(&text).unwrap();
    compose.apply_merge().unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let declared: Vec<&str> = compose["secrets"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    let mut secrets = HashMap::new();
    let mut workers = Vec::new();
    let mut gpus = Vec::new();
    let mut coordinator = None;
    for (name, service) in services {
        let name = name.as_str().unwrap().to_owned();
        let command = strings(&service["command"]);
        for secret in strings(&service["secrets"]) {
            assert!(
                declared.contains(&secret.as_str()),
                "{name}: secret {secret} is declared"
            );
            secrets.insert(format!("/run/secrets/{secret}"), secret_file(&secret));
        }
        match command[0].as_str() {
            "worker" => {
                let listen = flag(&command, "--listen").unwrap();
                assert!(
                    listen.starts_with("0.0.0.0:"),
                    "{name} listens beyond loopback"
                );
                let token = flag(&command, "--auth-token-file").expect("workers require a secret");
                assert!(
                    secrets.contains_key(token),
                    "{name}: {token} is one of its secrets"
                );
                let devices = &service["deploy"]["resources"]["reservations"]["devices"];
                let ids = strings(&devices[0]["device_ids"]);
                assert_eq!(ids.len(), 1, "{name}: one GPU");
                assert_eq!(strings(&devices[0]["capabilities"]), ["gpu"]);
                gpus.push(ids[0].clone());
                let role = flag(&command, "--role").unwrap_or("target").to_owned();
                workers.push((name, port(listen), role, command));
            }
            "serve" => coordinator = Some((name, command)),
            other => panic!("{name} runs {other}"),
        }
    }
    gpus.sort();
    gpus.dedup();
    assert_eq!(gpus.len(), workers.len(), "each worker its own GPU");
    let (_, coordinator) = coordinator.expect("a coordinator");
    let targets: Vec<&str> = flag(&coordinator, "--target-devices")
        .unwrap()
        .split(',')
        .collect();
    let expected: Vec<String> = workers
        .iter()
        .filter(|w| w.2 == "target")
        .map(|(name, port, _, _)| format!("grpc://{name}:{port}"))
        .collect();
    assert_eq!(
        targets, expected,
        "the coordinator names every target worker"
    );
    let drafter = workers
        .iter()
        .find(|w| w.2 == "drafter")
        .expect("a drafter worker");
    assert_eq!(
        flag(&coordinator, "--drafter-device"),
        Some(format!("grpc://{}:{}", drafter.0, drafter.1).as_str())
    );
    let token = flag(&coordinator, "--worker-token-file").unwrap();
    assert_eq!(
        Some(token),
        flag(&drafter.3, "--auth-token-file"),
        "one shared secret"
    );

    // Run them.
    let running: Vec<(String, Running)> = workers
        .iter()
        .map(|(name, port, _, command)| {
            (
                format!("grpc://{name}:{port}"),
                run_locally(command, &secrets, &HashMap::new()),
            )
        })
        .collect();
    let addresses = running
        .iter()
        .map(|(url, r)| (url.clone(), grpc_url(r)))
        .collect();
    let served = run_locally(&coordinator, &secrets, &addresses);
    served_over(&served, &secrets);
}

/// The coordinator started and serves HTTP on loopback; the secret files
/// go.
fn served_over(served: &Running, secrets: &HashMap<String, PathBuf>) {
    assert!(
        served.first_line.contains("http://127.0.0.1:"),
        "{}",
        served.first_line
    );
    for path in secrets.values() {
        std::fs::remove_file(path).ok();
    }
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// A worker StatefulSet and its headless Service: (pod DNS names, port,
/// args, mount of its secret).
fn stateful_workers(docs: &[Value], set: &str) -> (Vec<String>, u16, Vec<String>) {
    let set_doc = find(docs, "StatefulSet", set);
    let service_name = set_doc["spec"]["serviceName"].as_str().unwrap();
    let service = find(docs, "Service", service_name);
    assert_eq!(
        service["spec"]["clusterIP"], "None",
        "{service_name} is headless"
    );
    let labels = &set_doc["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        &service["spec"]["selector"], labels,
        "{service_name} selects {set}'s pods"
    );
    assert_eq!(&set_doc["spec"]["selector"]["matchLabels"], labels);
    let container = &set_doc["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&container["args"]);
    assert_eq!(args[0], "worker");
    let listen = port(flag(&args, "--listen").unwrap());
    assert_eq!(
        container["ports"][0]["containerPort"].as_u64(),
        Some(u64::from(listen))
    );
    assert_eq!(
        container["readinessProbe"]["grpc"]["port"].as_u64(),
        Some(u64::from(listen)),
        "{set}: a gRPC readiness probe on the worker's port"
    );
    assert_eq!(
        container["resources"]["limits"]["nvidia.com/gpu"].as_u64(),
        Some(1)
    );
    let replicas = set_doc["spec"]["replicas"].as_u64().unwrap();
    let names = (0..replicas)
        .map(|i| format!("grpc://{set}-{i}.{service_name}:{listen}"))
        .collect();
    (names, listen, args)
}

/// The secret files a pod's container sees: mount path + key → key.
fn mounted_secrets(pod: &Value, docs: &[Value]) -> HashMap<String, String> {
    let spec = &pod["spec"];
    let mut files = HashMap::new();
    for mount in spec["containers"][0]["volumeMounts"].as_sequence().unwrap() {
        let volume = spec["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let secret = find(
            docs,
            "Secret",
            volume["secret"]["secretName"].as_str().unwrap(),
        );
        let keys: Vec<String> = secret["stringData"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        let dir = mount["mountPath"].as_str().unwrap();
        match volume["secret"]["items"].as_sequence() {
            Some(items) => {
                for item in items {
                    let key = item["key"].as_str().unwrap().to_owned();
                    assert!(keys.contains(&key), "the secret has {key}");
                    files.insert(format!("{dir}/{}", item["path"].as_str().unwrap()), key);
                }
            }
            None => {
                for key in keys {
                    files.insert(format!("{dir}/{key}"), key);
                }
            }
        }
    }
    files
}

#[test]
fn kubernetes_runs_a_coordinator_over_its_workers() {
    let dir = root().join("deploy/k8s");
    let kustomization: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let docs: Vec<Value> = strings(&kustomization["resources"])
        .iter()
        .flat_map(|file| documents(&dir.join(file)))
        .collect();
    let (targets, _, worker_args) = stateful_workers(&docs, "dsi-worker");
    assert!(
        targets.len() >= 2,
        "speculation parallelism needs two targets or more"
    );
    let (drafters, _, drafter_args) = stateful_workers(&docs, "dsi-drafter");
    assert_eq!(flag(&drafter_args, "--role"), Some("drafter"));
    assert_eq!(flag(&worker_args, "--role").unwrap_or("target"), "target");
    let coordinator = find(&docs, "Deployment", "dsi-coordinator");
    let pod = &coordinator["spec"]["template"];
    let args = strings(&pod["spec"]["containers"][0]["args"]);
    assert_eq!(args[0], "serve");
    assert_eq!(flag(&args, "--target-devices").unwrap(), targets.join(","));
    assert_eq!(flag(&args, "--drafter-device").unwrap(), drafters[0]);
    let probe = &pod["spec"]["containers"][0]["readinessProbe"]["httpGet"];
    assert_eq!(probe["path"], "/healthz");
    assert_eq!(
        probe["port"].as_u64(),
        Some(u64::from(port(flag(&args, "--addr").unwrap())))
    );
    let service = find(&docs, "Service", "dsi");
    assert_eq!(&service["spec"]["selector"], &pod["metadata"]["labels"]);

    // Secrets: every file a command reads is mounted from a key that exists,
    // and workers and coordinator read the same key.
    let coordinator_files = mounted_secrets(pod, &docs);
    let worker_pod = &find(&docs, "StatefulSet", "dsi-worker")["spec"]["template"];
    let worker_files = mounted_secrets(worker_pod, &docs);
    let token = flag(&args, "--worker-token-file").unwrap();
    let worker_token = flag(&worker_args, "--auth-token-file").unwrap();
    assert_eq!(coordinator_files.get(token), worker_files.get(worker_token));
    assert!(coordinator_files.contains_key(flag(&args, "--api-key-file").unwrap()));

    // Run them.
    let mut secrets = HashMap::new();
    for (path, key) in coordinator_files.iter().chain(&worker_files) {
        secrets.insert(path.clone(), secret_file(key));
    }
    let drafter_pod = &find(&docs, "StatefulSet", "dsi-drafter")["spec"]["template"];
    for (path, key) in mounted_secrets(drafter_pod, &docs) {
        secrets.insert(path, secret_file(&key));
    }
    let mut addresses = HashMap::new();
    let mut running = Vec::new();
    for (names, command) in [(&targets, &worker_args), (&drafters, &drafter_args)] {
        for name in names {
            let worker = run_locally(command, &secrets, &HashMap::new());
            addresses.insert(name.clone(), grpc_url(&worker));
            running.push(worker);
        }
    }
    let served = run_locally(&args, &secrets, &addresses);
    served_over(&served, &secrets);

    // kubectl renders the folder, when it is installed.
    if let Ok(out) = Command::new("kubectl").arg("kustomize").arg(&dir).output() {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            rendered.matches("\nkind: ").count() + usize::from(rendered.starts_with("kind: ")),
            docs.len()
        );
    }
}

#[test]
fn the_dockerfile_builds_cpu_and_cuda_images_of_the_binary() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .filter_map(|l| l.split(" AS ").nth(1))
        .collect();
    for stage in ["build-cpu", "build-cuda", "cpu", "cuda"] {
        assert!(stages.contains(&stage), "stage {stage} in {stages:?}");
    }
    assert!(
        text.contains("--features cuda"),
        "the CUDA stage builds the cuda feature"
    );
    assert!(text.contains("--locked -p dsi-cli"));
    assert_eq!(text.matches("ENTRYPOINT [\"dsi\"]").count(), 2);
    assert_eq!(
        text.matches("COPY models/pystd /opt/dsi/models/pystd")
            .count(),
        2
    );
    assert_eq!(text.matches("DSI_BUNDLED=/opt/dsi/models/pystd").count(), 2);
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(
        ignored.lines().any(|l| l == "target"),
        "the build context leaves target/ out"
    );
}
