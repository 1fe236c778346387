//! The reconcile's sequence of API calls, without a cluster: the API server is a mock that
//! expects each request in turn (kube's `Client::new` over `tower_test::mock::pair`, the scenario
//! style of kube-rs's controller-rs), while Discord is the fake Discord in-process (REST over real
//! HTTP) and Redis a real redis-server, as in the operator's other tests.
//!
//! The pods come from the controller's pod store (`pod_cache`), which a scenario fills as the
//! watch would; a pass lists them only while the store does not show its own creates and deletes.
//!
//! Scenarios: a new ShardSet gets the finalizer and nothing else; its first pass reads the token
//! Secret, finds no pod in the store, creates them (with their Event), creates the pods'
//! PodDisruptionBudget and applies the status; the next pass, before the store shows the new pods,
//! lists them and applies the new counts; a steady state, with the pods in the store, lists
//! nothing, writes nothing (it reads the budget, as every pass does) and waits for the resync; a
//! ShardSet whose
//! `gateway.apiUrl` names a host the operator does not trust sends its token nowhere and gets no
//! pods, only the `UntrustedApiUrl` condition; a second ShardSet for a bot another one runs gets
//! `DuplicateBot` and no pods, and takes the bot over once the first is gone; a budget the
//! operator may not keep degrades the status and stops nothing; the worker NetworkPolicy is
//! created before the pods, and one the operator may not keep degrades and stops nothing.

use std::sync::Arc;
use std::time::Duration;

use fake_discord::{Config, FakeDiscord, RunningFake};
use http::{Method, Request, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use kube::{Client, Resource};
use redis_test_server::RedisServer;
use serde_json::{Value, json};
use shardset_contract::Keys;
use shardset_operator::api_trust::TrustedHosts;
use shardset_operator::context::{Context, Settings};
use shardset_operator::controller::reconcile;
use shardset_operator::crd::ShardSet;
use shardset_operator::error::Error;
use shardset_operator::metrics::Metrics;
use shardset_operator::names;
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle, SendResponse};

const NS: &str = "ns";
const TOKEN: &str = "right.token.value";
/// A pass must finish well within this; nothing in it waits on a timer.
const PASS_DEADLINE: Duration = Duration::from_secs(20);

type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// The mocked API server: each request must be the one the scenario expects next.
struct ApiServer(ApiHandle);

/// One request as the scenario sees it.
struct Call {
    query: String,
    body: Value,
    reply: SendResponse<Response<Body>>,
}

impl ApiServer {
    /// The next request, which must be `method` on `path`.
    async fn expect(&mut self, method: Method, path: &str) -> Call {
        let (request, reply) = tokio::time::timeout(PASS_DEADLINE, self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request; expected {method} {path}"))
            .expect("the client is gone");
        assert_eq!(
            (request.method(), request.uri().path()),
            (&method, path),
            "expected {method} {path}, got {} {}",
            request.method(),
            request.uri()
        );
        let query = request.uri().query().unwrap_or_default().to_owned();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        Call { query, body, reply }
    }

    /// Waits for `pass` to finish, failing on any request it makes meanwhile.
    async fn finish(&mut self, pass: JoinHandle<Result<Action, Error>>) -> Action {
        let mut pass = pass;
        tokio::select! {
            result = &mut pass => result.expect("reconcile panicked").expect("reconcile failed"),
            request = self.0.next_request() => {
                let (request, _) = request.expect("the client is gone");
                panic!("unexpected request: {} {}", request.method(), request.uri());
            }
            () = tokio::time::sleep(PASS_DEADLINE) => panic!("the pass did not finish"),
        }
    }
}

/// The PodDisruptionBudget of the ShardSet `bot`.
const PDB_PATH: &str = "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/bot";

/// Answers with an error `Status` of `code`.
fn reply_status(call: Call, code: u16, reason: &str) {
    let status = json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "reason": reason,
        "code": code,
    });
    let bytes = serde_json::to_vec(&status).expect("json");
    call.reply.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(bytes))
            .expect("response"),
    );
}

fn reply(call: Call, value: &Value) {
    let bytes = serde_json::to_vec(value).expect("json");
    call.reply.send_response(
        Response::builder()
            .body(Body::from(bytes))
            .expect("response"),
    );
}

/// The world of one test: the fake Discord, a redis-server, the mocked API server and the
/// operator's context over it.
struct World {
    discord: RunningFake,
    redis: RedisServer,
    api: ApiServer,
    ctx: Arc<Context>,
    /// What the controller's pod watch would write into the context's pod store.
    pod_watch: Writer<Pod>,
}

impl World {
    /// The world, with an operator that trusts the fake Discord's host. It makes no worker
    /// NetworkPolicy (`--worker-network-policy=false`): only the scenario about it does
    /// ([`World::with_network_policy`]).
    async fn new() -> Self {
        Self::with(Settings {
            trusted_api_hosts: TrustedHosts::parse(&["127.0.0.1"]).expect("hosts"),
            worker_network_policy: false,
            ..Settings::default()
        })
        .await
    }

    /// [`World::new`] with the operator's default: a worker NetworkPolicy per ShardSet.
    async fn with_network_policy() -> Self {
        Self::with(Settings {
            trusted_api_hosts: TrustedHosts::parse(&["127.0.0.1"]).expect("hosts"),
            ..Settings::default()
        })
        .await
    }

    async fn with(settings: Settings) -> Self {
        let config = Config {
            token: Some(TOKEN.into()),
            ..Config::default()
        };
        let discord = FakeDiscord::spawn(config, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("fake discord");
        let redis = RedisServer::start();
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, NS);
        let ctx = Context::new(client, Arc::new(Metrics::new()), "test".into(), settings);
        let pod_watch = ctx.pod_cache.renew();
        let mut world = Self {
            discord,
            redis,
            api: ApiServer(handle),
            ctx: Arc::new(ctx),
            pod_watch,
        };
        world.watch_shows(&[]);
        world
    }

    /// The pod watch (re)lists: the store holds exactly `pods`.
    fn watch_shows(&mut self, pods: &[Pod]) {
        self.pod_watch.apply_watcher_event(&watcher::Event::Init);
        for pod in pods {
            self.pod_watch
                .apply_watcher_event(&watcher::Event::InitApply(pod.clone()));
        }
        self.pod_watch
            .apply_watcher_event(&watcher::Event::InitDone);
    }

    /// A ShardSet of 4 shards at 2 per pod, talking to this world's Discord and Redis.
    fn shardset(&self, finalized: bool) -> ShardSet {
        let mut ss: ShardSet = serde_json::from_value(json!({
            "apiVersion": "shardset.io/v1alpha1",
            "kind": "ShardSet",
            "metadata": {"name": "bot", "namespace": NS, "uid": "uid-1", "generation": 1},
            "spec": {
                "shards": 4,
                "shardsPerPod": 2,
                "image": "worker:dev",
                "tokenSecretRef": {"name": "bot-token", "key": "token"},
                "redis": {"url": self.redis.url()},
                "gateway": {"apiUrl": self.discord.api_url()},
            },
        }))
        .expect("shardset");
        if finalized {
            ss.meta_mut().finalizers = Some(vec![names::FINALIZER.into()]);
        }
        ss
    }

    fn start(&self, ss: &ShardSet) -> JoinHandle<Result<Action, Error>> {
        tokio::spawn(reconcile(Arc::new(ss.clone()), self.ctx.clone()))
    }

    /// The token Secret is read (and found).
    async fn expect_token_read(&mut self) {
        let call = self
            .api
            .expect(Method::GET, "/api/v1/namespaces/ns/secrets/bot-token")
            .await;
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bot-token", "namespace": NS},
            "data": {"token": ByteString(TOKEN.as_bytes().to_vec())},
        });
        reply(call, &secret);
    }

    /// The ShardSet's pods are listed (answered with `pods`).
    async fn expect_pod_list(&mut self, pods: &[Pod]) {
        let call = self
            .api
            .expect(Method::GET, "/api/v1/namespaces/ns/pods")
            .await;
        assert!(
            call.query
                .contains("labelSelector=shardset.io%2Fshardset%3Dbot"),
            "{}",
            call.query
        );
        let list = json!({
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": {"resourceVersion": "1"},
            "items": pods,
        });
        reply(call, &list);
    }

    /// A status apply: checks what it holds with `check`, answers with the ShardSet carrying it,
    /// and returns that ShardSet.
    async fn expect_status(&mut self, ss: &ShardSet, check: impl FnOnce(&Value)) -> ShardSet {
        let call = self
            .api
            .expect(
                Method::PATCH,
                "/apis/shardset.io/v1alpha1/namespaces/ns/shardsets/bot/status",
            )
            .await;
        assert!(
            call.query.contains("fieldManager=shardset-operator")
                && call.query.contains("force=true"),
            "server-side apply with our field manager: {}",
            call.query
        );
        check(&call.body["status"]);
        let mut updated = serde_json::to_value(ss).expect("json");
        updated["status"] = call.body["status"].clone();
        reply(call, &updated);
        serde_json::from_value(updated).expect("shardset")
    }
}

impl World {
    /// `count` pods created, then their `PodsCreated` Event.
    async fn expect_pods_created(&mut self, count: usize) {
        for _ in 0..count {
            let call = self
                .api
                .expect(Method::POST, "/api/v1/namespaces/ns/pods")
                .await;
            let pod = call.body.clone();
            reply(call, &pod);
        }
        let call = self
            .api
            .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events")
            .await;
        assert_eq!(call.body["reason"], "PodsCreated");
        let event = call.body.clone();
        reply(call, &event);
    }

    /// The pods' budget read, found missing and created (every pass keeps it, pods or not);
    /// returns it.
    async fn expect_budget_created(&mut self) -> Value {
        let call = self.api.expect(Method::GET, PDB_PATH).await;
        reply_status(call, 404, "NotFound");
        let call = self
            .api
            .expect(
                Method::POST,
                "/apis/policy/v1/namespaces/ns/poddisruptionbudgets",
            )
            .await;
        let pdb = call.body.clone();
        reply(call, &pdb);
        pdb
    }

    /// A status with `Degraded=True` for `reason`, its message holding `says`, then a Warning
    /// Event with that reason.
    async fn expect_degraded(&mut self, ss: &ShardSet, reason: &str, says: &str) {
        self.expect_status(ss, |status| {
            let degraded = status["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Degraded"))
                .expect("Degraded");
            assert_eq!(
                (&degraded["status"], &degraded["reason"]),
                (&json!("True"), &json!(reason))
            );
            assert!(
                degraded["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(says)),
                "{degraded}"
            );
        })
        .await;
        let call = self
            .api
            .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events")
            .await;
        assert_eq!(
            (&call.body["type"], &call.body["reason"]),
            (&json!("Warning"), &json!(reason))
        );
        let event = call.body.clone();
        reply(call, &event);
    }

    /// A pass that refuses the ShardSet: no pods, the budget kept, a status with
    /// `Degraded=True` for `reason`, then a Warning Event with that reason. Returns the
    /// condition's message.
    async fn expect_refused(&mut self, ss: &ShardSet, reason: &str) -> String {
        self.expect_budget_created().await;
        let mut message = String::new();
        self.expect_status(ss, |status| {
            let degraded = degraded(status);
            assert_eq!(
                (&degraded["status"], &degraded["reason"]),
                (&json!("True"), &json!(reason))
            );
            message = degraded["message"].as_str().unwrap_or_default().to_owned();
            assert_eq!(status["pods"], 0);
        })
        .await;
        let call = self
            .api
            .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events")
            .await;
        assert_eq!(
            (&call.body["type"], &call.body["reason"]),
            (&json!("Warning"), &json!(reason))
        );
        let event = call.body.clone();
        reply(call, &event);
        message
    }
}

/// The pod as the API server would list it: the object created, Ready.
fn running(mut pod: Value) -> Pod {
    pod["status"] = json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
    });
    serde_json::from_value(pod).expect("pod")
}

#[tokio::test]
async fn a_new_shardset_gets_the_finalizer_and_nothing_else() {
    let mut world = World::new().await;
    let ss = world.shardset(false);
    let pass = world.start(&ss);
    let call = world
        .api
        .expect(
            Method::PATCH,
            "/apis/shardset.io/v1alpha1/namespaces/ns/shardsets/bot",
        )
        .await;
    assert_eq!(
        call.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [names::FINALIZER]},
        ])
    );
    let finalized = serde_json::to_value(world.shardset(true)).expect("json");
    reply(call, &finalized);
    let action = world.api.finish(pass).await;
    assert_eq!(
        action,
        Action::await_change(),
        "the patch brings the next pass"
    );
}

#[tokio::test]
async fn passes_create_the_pods_then_record_them_then_write_nothing() {
    let mut world = World::new().await;
    let ss = world.shardset(true);

    // First pass: no pods yet. Both are created, one Event says so, the status follows.
    let pass = world.start(&ss);
    world.expect_token_read().await;
    let mut created = Vec::new();
    for n in 0..2 {
        let call = world
            .api
            .expect(Method::POST, "/api/v1/namespaces/ns/pods")
            .await;
        assert!(
            call.query.contains("fieldManager=shardset-operator"),
            "{}",
            call.query
        );
        let mut pod = call.body.clone();
        pod["metadata"]["uid"] = json!(format!("pod-uid-{n}"));
        reply(call, &pod);
        created.push(pod);
    }
    let mut names: Vec<&str> = created
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["bot-4-0-1", "bot-4-2-3"]);
    for pod in &created {
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert!(
            !pod.to_string().contains(TOKEN),
            "the token reaches pods only by secretKeyRef"
        );
    }
    let call = world
        .api
        .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events")
        .await;
    assert_eq!(call.body["reason"], "PodsCreated");
    assert_eq!(call.body["regarding"]["name"], "bot");
    let event = call.body.clone();
    reply(call, &event);
    // The pods' budget: none yet, so it is created, owned by the ShardSet, for 2 pods.
    let call = world.api.expect(Method::GET, PDB_PATH).await;
    reply_status(call, 404, "NotFound");
    let call = world
        .api
        .expect(
            Method::POST,
            "/apis/policy/v1/namespaces/ns/poddisruptionbudgets",
        )
        .await;
    assert_eq!(call.body["spec"]["minAvailable"], 1);
    assert_eq!(call.body["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    let pdb = call.body.clone();
    reply(call, &pdb);
    let ss = world
        .expect_status(&ss, |status| {
            assert_eq!(status["shards"], 4);
            assert_eq!(status["pods"], 0, "listed before they were created");
            assert!(
                status["recommendedShards"].is_u64(),
                "Discord's figures: {status}"
            );
            assert_eq!(
                status["applicationId"],
                Config::default().application_id.to_string()
            );
        })
        .await;
    let action = world.api.finish(pass).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(10)), "busy");

    // Second pass: the store does not show the new pods yet (their watch events are late), so
    // the pass lists them: Ready. Nothing to create; the status counts them.
    let pods: Vec<Pod> = created.into_iter().map(running).collect();
    let pass = world.start(&ss);
    world.expect_token_read().await;
    world.expect_pod_list(&pods).await;
    let call = world.api.expect(Method::GET, PDB_PATH).await;
    reply(call, &pdb);
    let ss = world
        .expect_status(&ss, |status| {
            assert_eq!(
                (&status["pods"], &status["readyPods"]),
                (&json!(2), &json!(2))
            );
            assert_eq!(status["readyShards"], 4);
        })
        .await;
    world.api.finish(pass).await;

    // Third pass: the same world, now in the store. No LIST, no write, and the resync period.
    world.watch_shows(&pods);
    let pass = world.start(&ss);
    world.expect_token_read().await;
    let call = world.api.expect(Method::GET, PDB_PATH).await;
    reply(call, &pdb);
    let action = world.api.finish(pass).await;
    assert_eq!(action, Action::requeue(Settings::default().resync));
    world.discord.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_api_url_gets_no_token_and_no_pods() {
    // An operator installed without trusted hosts: only Discord's own API is allowed.
    let mut world = World::with(Settings {
        worker_network_policy: false,
        ..Settings::default()
    })
    .await;
    // Whatever listens at the ShardSet's apiUrl counts the connections it gets.
    let spy = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let spy_url = format!("http://{}/api", spy.local_addr().expect("addr"));
    let connections = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while spy.accept().await.is_ok() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut ss = world.shardset(true);
    ss.spec.gateway = Some(serde_json::from_value(json!({"apiUrl": spy_url})).expect("gateway"));

    let pass = world.start(&ss);
    world.expect_token_read().await;
    let message = world.expect_refused(&ss, "UntrustedApiUrl").await;
    assert!(message.contains("trustedApiHosts"), "{message}");
    assert!(!message.contains(TOKEN));
    // No pod was created (the mock fails any other request) and nothing reached the spy.
    world.api.finish(pass).await;
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the token was sent to an untrusted host"
    );
}

/// The `Degraded` condition of a status.
fn degraded(status: &Value) -> &Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Degraded"))
        .expect("a Degraded condition")
}

/// Starts a pass of a ShardSet whose bot `ns/first` owns; returns the pass and the request for
/// that ShardSet (made after the token was read), to be answered.
async fn pass_with_owner(world: &mut World) -> (ShardSet, JoinHandle<Result<Action, Error>>, Call) {
    owned_by(world, "ns/first");
    let ss = world.shardset(true);
    let pass = world.start(&ss);
    world.expect_token_read().await;
    let call = world
        .api
        .expect(
            Method::GET,
            "/apis/shardset.io/v1alpha1/namespaces/ns/shardsets/first",
        )
        .await;
    (ss, pass, call)
}

/// Marks the bot of this world's Discord as run by the ShardSet `owner`.
fn owned_by(world: &World, owner: &str) {
    let mut conn = redis::Client::open(world.redis.url())
        .and_then(|c| c.get_connection())
        .expect("redis");
    let key = Keys::new(Config::default().application_id).owner();
    let _: () = redis::Commands::set(&mut conn, key, owner).expect("set");
}

#[tokio::test]
async fn a_second_shardset_for_one_bot_gets_duplicate_bot_and_no_pods() {
    let mut world = World::new().await;
    let (ss, pass, call) = pass_with_owner(&mut world).await;
    // The owner still exists.
    let mut first = serde_json::to_value(world.shardset(true)).expect("json");
    first["metadata"]["name"] = json!("first");
    reply(call, &first);
    let message = world.expect_refused(&ss, "DuplicateBot").await;
    assert!(message.contains("ShardSet ns/first"), "{message}");
    // No pod was created: the mock fails any other request.
    world.api.finish(pass).await;
    world.discord.shutdown().await;
}

#[tokio::test]
async fn a_bot_whose_owner_is_gone_is_taken_over() {
    let mut world = World::new().await;
    let (ss, pass, call) = pass_with_owner(&mut world).await;
    call.reply.send_response(
        Response::builder()
            .status(404)
            .body(Body::from(
                serde_json::to_vec(&json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "not found",
                }))
                .expect("json"),
            ))
            .expect("response"),
    );
    // Pods are created as for any new ShardSet.
    world.expect_pods_created(2).await;
    world.expect_budget_created().await;
    world.expect_status(&ss, |_| {}).await;
    world.api.finish(pass).await;
    world.discord.shutdown().await;
}

#[tokio::test]
async fn a_budget_the_operator_may_not_keep_degrades_and_stops_nothing() {
    // An operator newer than the chart's RBAC (no `poddisruptionbudgets` rule): the pods run,
    // the status says why drains are not paced.
    let mut world = World::new().await;
    let ss = world.shardset(true);
    let pass = world.start(&ss);
    world.expect_token_read().await;
    world.expect_pods_created(2).await;
    let call = world.api.expect(Method::GET, PDB_PATH).await;
    reply_status(call, 403, "Forbidden");
    world
        .expect_degraded(
            &ss,
            "DisruptionBudgetFailed",
            "cannot read the PodDisruptionBudget bot",
        )
        .await;
    world.api.finish(pass).await;
    world.discord.shutdown().await;
}

/// The worker NetworkPolicy of the ShardSet `bot`.
const NETPOL_PATH: &str = "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/bot";

#[tokio::test]
async fn the_worker_network_policy_is_made_before_the_pods() {
    let mut world = World::with_network_policy().await;
    let ss = world.shardset(true);
    let pass = world.start(&ss);
    world.expect_token_read().await;
    // Before any pod: none yet, so it is created, owned by the ShardSet, for its pods' egress.
    let call = world.api.expect(Method::GET, NETPOL_PATH).await;
    reply_status(call, 404, "NotFound");
    let call = world
        .api
        .expect(
            Method::POST,
            "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies",
        )
        .await;
    let policy = call.body.clone();
    assert_eq!(policy["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Egress"]));
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"]["shardset.io/shardset"],
        "bot"
    );
    let port_of = |url: &str| {
        url.rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse::<u64>().ok())
            .expect("port")
    };
    let redis_port = port_of(&world.redis.url());
    let fake_port = port_of(&world.discord.api_url());
    let tcp: Vec<u64> = policy["spec"]["egress"][1]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    let mut want = vec![443, redis_port, fake_port];
    want.sort_unstable();
    assert_eq!(tcp, want, "Discord, this Redis and the trusted fake only");
    reply(call, &policy);
    world.expect_pods_created(2).await;
    world.expect_budget_created().await;
    world.expect_status(&ss, |_| {}).await;
    world.api.finish(pass).await;
    world.discord.shutdown().await;
}

#[tokio::test]
async fn a_network_policy_the_operator_may_not_keep_degrades_and_stops_nothing() {
    // An operator newer than the chart's RBAC (no `networkpolicies` rule): the pods run, the
    // status says their egress is not limited.
    let mut world = World::with_network_policy().await;
    let ss = world.shardset(true);
    let pass = world.start(&ss);
    world.expect_token_read().await;
    let call = world.api.expect(Method::GET, NETPOL_PATH).await;
    reply_status(call, 403, "Forbidden");
    world.expect_pods_created(2).await;
    world.expect_budget_created().await;
    world
        .expect_degraded(
            &ss,
            "NetworkPolicyFailed",
            "cannot read the NetworkPolicy bot",
        )
        .await;
    world.api.finish(pass).await;
    world.discord.shutdown().await;
}
