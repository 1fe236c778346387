// Conformance of the fake Discord with an unmodified @discordjs/ws (and @discordjs/rest), driven by
// tests/discordjs.rs. It prints one JSON line with what it saw and exits 0, or exits 1 on timeout.
//
// Env: FAKE_API (REST base, http://<addr>/api), FAKE_CONTROL (http://<addr>/control), TOKEN, SHARDS,
// MODE = "full" (READY + every GUILD_CREATE, resume after op 7, a reply through REST),
//        "too-fast" (an identify throttler that never waits), or "buckets" (discord.js's own
//        throttler with more shards than buckets).
import { REST } from '@discordjs/rest';
import { CompressionMethod, WebSocketManager, WebSocketShardEvents } from '@discordjs/ws';

const { FAKE_API, FAKE_CONTROL, TOKEN } = process.env;
const SHARDS = Number(process.env.SHARDS ?? '4');
const MODE = process.env.MODE ?? 'full';
const TIMEOUT_MS = Number(process.env.TIMEOUT_MS ?? '60000');

const GUILDS = 1 << 0;
const GUILD_MESSAGES = 1 << 9;
const MESSAGE_CONTENT = 1 << 15;

const rest = new REST({ api: FAKE_API, version: '10' }).setToken(TOKEN);
const options = {
  token: TOKEN,
  intents: GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT,
  rest,
  shardCount: SHARDS,
  compression: CompressionMethod.ZlibNative,
};
if (MODE === 'too-fast') {
  options.buildIdentifyThrottler = async () => ({ waitForIdentify: async () => {} });
}
const manager = new WebSocketManager(options);

const seen = {
  mode: MODE,
  shards: SHARDS,
  ready: {},
  guilds: {},
  resumed: [],
  message: null,
  replied: null,
  errors: [],
};
const waiters = [];
const check = () => {
  for (const waiter of [...waiters]) {
    if (waiter.done()) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  }
};
const until = (done) => new Promise((resolve) => {
  waiters.push({ done, resolve });
  check();
});

manager.on(WebSocketShardEvents.Dispatch, (payload, shardId) => {
  switch (payload.t) {
    case 'READY':
      seen.ready[shardId] = payload.d.guilds.map((g) => g.id);
      break;
    case 'GUILD_CREATE':
      (seen.guilds[shardId] ??= []).push(payload.d.id);
      break;
    case 'MESSAGE_CREATE':
      if (!payload.d.author.bot) seen.message = payload.d;
      break;
    default:
      break;
  }
  check();
});
manager.on(WebSocketShardEvents.Resumed, (shardId) => {
  seen.resumed.push(shardId);
  check();
});
manager.on(WebSocketShardEvents.Error, (error, shardId) => {
  seen.errors.push(`shard ${shardId}: ${error?.message ?? error}`);
});

const allReady = () => Object.keys(seen.ready).length === SHARDS;
const allGuilds = () => allReady() && Object.entries(seen.ready).every(
  ([shard, guilds]) => (seen.guilds[shard]?.length ?? 0) === guilds.length,
);

async function control(path, body) {
  const response = await fetch(`${FAKE_CONTROL}/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`control ${path}: ${response.status}`);
  return response.json();
}

async function scenario() {
  await manager.connect();
  if (MODE === 'too-fast') {
    // Whatever happens, give the fake time to see both Identifies.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    return;
  }
  await until(allGuilds);
  if (MODE !== 'full') return;

  await control('faults', { kind: 'reconnect' });
  await until(() => new Set(seen.resumed).size === SHARDS);

  // A user posts; the bot replies through @discordjs/rest, as a bot acting on a message would.
  const firstGuild = Object.values(seen.ready)[0][0];
  await control('messages', { guild_id: firstGuild, content: 'ping' });
  await until(() => seen.message !== null);
  const reply = await rest.post(`/channels/${seen.message.channel_id}/messages`, {
    body: { content: 'pong', message_reference: { message_id: seen.message.id } },
  });
  seen.replied = { id: reply.id, to: reply.message_reference?.message_id };
}

const timer = setTimeout(() => {
  console.log(JSON.stringify({ ...seen, timeout: true }));
  process.exit(1);
}, TIMEOUT_MS);

try {
  await scenario();
  clearTimeout(timer);
  console.log(JSON.stringify(seen));
  await manager.destroy({ code: 1000 });
  process.exit(0);
} catch (error) {
  clearTimeout(timer);
  seen.errors.push(String(error?.stack ?? error));
  console.log(JSON.stringify(seen));
  process.exit(1);
}
