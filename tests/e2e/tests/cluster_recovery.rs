//! Recovery and tear-down of the harness itself (`make cluster`, `make cluster-down`). These tear
//! things down, so they are `#[ignore]`d in the ordinary run and run alone, after every other
//! cluster test, by phase 2 of `make e2e` (`cargo test -p shardset-e2e -- --ignored`).
//! - A `make cluster` killed mid-way (stale node containers, a half-built image build container,
//!   a half-built Go cache entry) is followed by one that comes up; `make cluster-down` then leaves
//!   no cluster, container, kubeconfig or process of it. This one uses its own one-node cluster.
//! - A dead Docker (our dockerd killed with SIGKILL) is restarted by `make cluster`, and the
//!   shared cluster comes back (repaired, or made anew).
//! - `make cluster-down` of the shared cluster leaves no container, kubeconfig or process of it,
//!   and stops the dockerd the harness started; `make cluster` then brings it back.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shardset_e2e::{cluster_configured, docker};

fn cluster_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster")
}

/// Runs a harness script with `env`; returns its stdout (panics with its stderr on failure).
fn script(name: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(cluster_dir().join(name))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run harness script");
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Node containers of the kind cluster `name`, or of every kind cluster on this Docker.
fn containers(name: Option<&str>) -> Vec<String> {
    let filter = match name {
        Some(name) => format!("label=io.x-k8s.kind.cluster={name}"),
        None => "label=io.x-k8s.kind.cluster".to_owned(),
    };
    docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"])
        .expect("docker ps")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// SIGKILLs `root` and every process descended from it, each by its own (positive) PID: the tree
/// is read from /proc first, stopped with SIGSTOP so nothing new is forked, then killed.
fn kill_tree(root: u32) {
    assert!(
        root > 1 && root != std::process::id(),
        "refusing to kill pid {root}"
    );
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
    {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
            continue;
        };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree.retain(|&p| p > 1 && p != std::process::id());
    let pids: Vec<String> = tree.iter().map(u32::to_string).collect();
    for signal in ["STOP", "KILL"] {
        let _ = Command::new("kill")
            .args(["-s", signal, "--"])
            .args(&pids)
            .status();
    }
}

/// Processes whose command line mentions `word` (other than this test process).
fn processes_mentioning(word: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| e.file_name().to_string_lossy() != me)
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(word)
                .then(|| format!("{}: {cmd}", e.file_name().to_string_lossy()))
        })
        .collect()
}

#[test]
#[ignore = "tears clusters down: run by phase 2 of `make e2e`"]
fn killed_cluster_run_recovers_and_cluster_down_leaves_nothing() {
    if !cluster_configured("killed_cluster_run_recovers_and_cluster_down_leaves_nothing") {
        return;
    }
    let name = "shardset-recovery";
    let env = [
        ("SHARDSET_CLUSTER_NAME", name),
        ("SHARDSET_CLUSTER_WORKERS", "0"),
    ];

    // 0. Start clean: a leftover of an earlier run of this test would make the kill below moot.
    script("down.sh", &env);

    // 1. Kill `make cluster` as soon as kind has started the node's container.
    let mut events = Command::new("docker")
        .args([
            "events",
            "--filter",
            "type=container",
            "--filter",
            "event=start",
            "--filter",
            &format!("label=io.x-k8s.kind.cluster={name}"),
            "--format",
            "{{.Actor.Attributes.name}}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker events");
    let mut up = Command::new(cluster_dir().join("up.sh"))
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start up.sh");
    // Read the first start event on a thread, so that a run that fails before starting a node
    // ends the wait instead of hanging the test.
    let stdout = events.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let _ = tx.send(first);
    });
    let mut first = None;
    for _ in 0..900 {
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            first = Some(line);
            break;
        }
        if let Ok(Some(status)) = up.try_wait() {
            panic!("make cluster ended ({status}) before kind started a node");
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    let first = first.expect("kind started no node within 15 min");
    // The whole tree: up.sh, kind and whatever they run, each by its own PID.
    kill_tree(up.id());
    let _ = up.wait();
    assert!(
        !containers(Some(name)).is_empty(),
        "the killed run left its node container ({first:?})"
    );

    // 2. Leftovers of other half-done builds: a node-image build container and a Go cache
    //    entry that never finished (both are what a kill in those steps leaves).
    let base = "localhost/shardset/kind-base:bookworm";
    let _ = docker(&["rm", "-f", "shardset-node-build"]);
    if docker(&["image", "inspect", base]).is_ok() {
        docker(&[
            "create",
            "--name",
            "shardset-node-build",
            base,
            "sleep",
            "1",
        ])
        .expect("create");
    }
    let cache = std::env::var("SHARDSET_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/shardset")
        });
    let half = cache.join("go/kind-v0.0.0-killed.tmp.test");
    std::fs::create_dir_all(&half).expect("half-built cache dir");

    // 3. `make cluster` comes up anyway, then again warm (idempotent).
    let t = Instant::now();
    let out = script("up.sh", &env);
    eprintln!("make cluster after a killed run: {:?}", t.elapsed());
    assert!(!half.exists(), "the half-built cache entry was cleared");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() >= 2
            && lines[lines.len() - 2].starts_with("export KUBECONFIG=")
            && lines[lines.len() - 1].starts_with("export PATH="),
        "the last stdout lines are the exports: {out:?}"
    );
    let kubeconfig = lines[lines.len() - 2]
        .trim_start_matches("export KUBECONFIG=")
        .to_string();
    let t = Instant::now();
    let again = script("up.sh", &env);
    eprintln!("make cluster, warm: {:?}", t.elapsed());
    assert_eq!(again, out, "a second run changes nothing");
    let nodes =
        shardset_e2e::kubectl(&["--kubeconfig", &kubeconfig, "get", "nodes", "--no-headers"])
            .expect("kubectl get nodes");
    assert!(
        nodes.lines().count() == 1 && nodes.contains(" Ready "),
        "one Ready node: {nodes}"
    );

    // 4. `make cluster-down` leaves nothing of this cluster.
    script("down.sh", &env);
    let clusters = Command::new(shardset_e2e::tool("kind"))
        .args(["get", "clusters"])
        .output()
        .expect("kind get clusters");
    assert!(
        !String::from_utf8_lossy(&clusters.stdout)
            .lines()
            .any(|l| l == name),
        "kind still lists {name}"
    );
    assert_eq!(
        containers(Some(name)),
        Vec::<String>::new(),
        "node containers left"
    );
    assert!(
        docker(&["container", "inspect", "shardset-node-build"]).is_err(),
        "the build container was left"
    );
    assert!(
        !Path::new(&kubeconfig).exists(),
        "kubeconfig {kubeconfig} left"
    );
    assert_eq!(
        processes_mentioning(name),
        Vec::<String>::new(),
        "processes left"
    );
}

#[test]
#[ignore = "kills Docker: run by phase 2 of `make e2e`"]
fn dead_docker_is_restarted_and_the_cluster_comes_back() {
    if !cluster_configured("dead_docker_is_restarted_and_the_cluster_comes_back") {
        return;
    }
    let pidfile = Path::new("/run/shardset-cluster/dockerd.pid");
    // Only a dockerd the harness started (its pid file names a live dockerd) is ever killed.
    let pid = std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&p| p > 1)
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "dockerd")
        })
        .map(|p| p.to_string());
    let Some(pid) = pid else {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED dead_docker_is_restarted_and_the_cluster_comes_back: Docker was not started \
             by the harness here, and the harness never kills a Docker it did not start"
        );
        return;
    };
    // A Docker left dead: SIGKILL, no clean-up (pid file, socket, containerd left behind).
    let killed = Command::new("kill")
        .args(["-s", "KILL", "--", &pid])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill dockerd {pid}");
    assert!(
        docker(&["info"]).is_err(),
        "Docker still answers after SIGKILL"
    );

    let t = Instant::now();
    let out = script("up.sh", &[]);
    eprintln!("make cluster after Docker died: {:?}", t.elapsed());
    assert!(out.contains("export KUBECONFIG="), "{out}");
    let new_pid = std::fs::read_to_string(pidfile)
        .expect("pid file")
        .trim()
        .to_string();
    assert_ne!(new_pid, pid, "a new dockerd runs");
    let nodes = shardset_e2e::kubectl(&["get", "nodes", "--no-headers"]).expect("get nodes");
    assert_eq!(
        nodes.lines().filter(|l| l.contains(" Ready ")).count(),
        nodes.lines().count(),
        "every node Ready: {nodes}"
    );
}

#[test]
#[ignore = "takes the shared cluster and Docker down: run by phase 2 of `make e2e`"]
fn cluster_down_leaves_nothing_then_cluster_comes_back() {
    if !cluster_configured("cluster_down_leaves_nothing_then_cluster_comes_back") {
        return;
    }
    let owned = Command::new(cluster_dir().join("docker.sh"))
        .arg("owned")
        .status()
        .is_ok_and(|s| s.success());
    let dockerd = std::fs::read_to_string("/run/shardset-cluster/dockerd.pid").unwrap_or_default();
    let name = std::env::var("SHARDSET_CLUSTER_NAME").unwrap_or_else(|_| "shardset".into());
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
    // down.sh keeps Docker up while another kind cluster lives on it (someone else's, on a shared
    // machine), so Docker must go only when ours was the last one.
    let others: Vec<String> = containers(None)
        .into_iter()
        .filter(|c| !c.starts_with(&format!("{name}-")))
        .collect();

    let t = Instant::now();
    script("down.sh", &[]);
    eprintln!("make cluster-down: {:?}", t.elapsed());
    assert!(
        !Path::new(&kubeconfig).exists(),
        "kubeconfig {kubeconfig} left"
    );
    assert_eq!(
        processes_mentioning(&format!("{name}-control-plane")),
        Vec::<String>::new(),
        "processes of the cluster left"
    );
    if owned && !others.is_empty() {
        assert_eq!(
            containers(Some(&name)),
            Vec::<String>::new(),
            "node containers left"
        );
        assert!(
            docker(&["info"]).is_ok(),
            "Docker stopped under the other clusters {others:?}"
        );
    } else if owned {
        // No other cluster was left on it, so Docker itself is gone.
        assert!(docker(&["info"]).is_err(), "our dockerd still answers");
        let pid = dockerd.trim();
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "dockerd {pid} still runs"
        );
        for left in [
            "containerd-shim",
            "docker-proxy",
            "/var/run/docker/containerd",
        ] {
            assert_eq!(
                processes_mentioning(left),
                Vec::<String>::new(),
                "{left} left behind"
            );
        }
    } else {
        assert_eq!(
            containers(Some(&name)),
            Vec::<String>::new(),
            "node containers left"
        );
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "NOTE cluster_down_leaves_nothing: Docker was not started by the harness, so it stays"
        );
    }

    // Bring it back for whatever runs next.
    let t = Instant::now();
    let out = script("up.sh", &[]);
    eprintln!("make cluster after make cluster-down: {:?}", t.elapsed());
    assert!(out.contains("export KUBECONFIG="), "{out}");
}
