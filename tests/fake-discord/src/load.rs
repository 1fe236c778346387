//! The synthetic load: MESSAGE_CREATE events at a steady rate, each in a random guild (or DM),
//! from a random user, with random text of the configured size. Each event is created once in
//! the world and delivered to every session that routes its guild, in every layout.
//!
//! The generator runs on its own thread, on a 10 ms tick, and emits what the elapsed time owes.
//! When the machine cannot keep up it drops the debt beyond 100 ms instead of bursting, so
//! `generated` shows the rate actually achieved.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::control::LoadSettings;
use crate::payloads;
use crate::state::Fake;
use crate::state::events::NewMessage;
use crate::world::{self, Person};

/// Events of one tick go out together, so a connection that receives several writes them in one
/// batch (one syscall) instead of one by one.
const TICK: Duration = Duration::from_millis(10);
/// Most catch-up a tick may emit, in seconds of load.
const MAX_DEBT_SECS: f64 = 0.1;

/// How often an idle generator looks at its settings.
const IDLE_POLL: Duration = Duration::from_millis(20);

/// Starts the generator on its own thread: on the runtime it would queue behind thousands of
/// connection tasks under load, tick late, and fall short of its rate.
pub fn spawn(fake: Arc<Fake>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("fake-discord-load".into())
        .spawn(move || run(&fake))
}

/// Runs until shutdown, following the load settings as they change.
fn run(fake: &Fake) {
    let mut settings = fake.load.subscribe();
    let shutdown = fake.shutdown.subscribe();
    let mut rng = SmallRng::seed_from_u64(rand::random());
    let mut targets = Vec::new();
    let stopping = || *shutdown.borrow();
    while !stopping() {
        let current = *settings.borrow_and_update();
        if current.rate == 0 {
            std::thread::sleep(IDLE_POLL);
            continue;
        }
        tracing::info!(
            rate = current.rate,
            payload_bytes = current.payload_bytes,
            "load running"
        );
        let rate = f64::from(current.rate);
        let cap = (rate * MAX_DEBT_SECS).max(1.0) as u64;
        let mut start = Instant::now();
        let mut emitted = 0u64;
        while !stopping() && !settings.has_changed().unwrap_or(true) {
            std::thread::sleep(TICK);
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            let mut n = due.saturating_sub(emitted);
            if n > cap {
                // Behind: forgive the debt rather than burst.
                n = cap;
                start = Instant::now() - Duration::from_secs_f64(cap as f64 / rate);
                emitted = 0;
            }
            for _ in 0..n {
                emit(fake, &current, &mut rng, &mut targets);
            }
            emitted += n;
            fake.load_generated.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// One synthetic message.
fn emit(
    fake: &Fake,
    settings: &LoadSettings,
    rng: &mut SmallRng,
    targets: &mut Vec<Arc<crate::session::Session>>,
) {
    let user = rng.random_range(0..world::USERS);
    let dm = fake.config.guilds == 0 || rng.random_range(0..100u8) < settings.dm_percent;
    let (guild, channel) = if dm {
        (None, world::dm_channel_id(user))
    } else {
        let guild = world::guild_id(rng.random_range(0..fake.config.guilds));
        (Some(guild), world::text_channel_id(guild))
    };
    let content = payloads::random_text(rng, payloads::content_len_for(settings.payload_bytes));
    let new = NewMessage {
        guild,
        channel_id: channel,
        author: Person::User(user),
        content,
        reply_to: None,
        nonce: None,
    };
    fake.create_message(&new, true, targets);
}
