// The load generator of bench/fanout.py: one Node process holding some of the N DDP clients.
//
//   NODE_PATH=tests/js/node_modules node bench/fanout_client.js '{"url": "...", "clients": 250}'
//
// Uses ws (pinned in tests/js/package.json). It opens `clients` WebSockets, sends DDP
// `connect` on each and prints {"event":"connected"} when all are connected. Then it
// obeys commands, one JSON object a line on stdin, and answers one a line on stdout:
//
//   {"cmd":"sub","subs":[[name, params], ...]}  client i subscribes subs[i] (null: none);
//       answer {"event":"ready", start, end, docsMin, docsMax, nosub}: wall-clock ms of
//       the first sub sent and the last ready received, initial `added` per client
//   {"cmd":"lag"}  start measuring this process's event-loop delay (from now)
//   {"cmd":"report","commits":{id: commitMs},"expected":k,"until":ms,"deadline":ms}
//       wait until k live `added` of those book ids arrived (or the deadline passed);
//       answer {"event":"report", delivered, inWindow, hist, lagP99Ms, lagMaxMs, ...}:
//       hist counts latency (arrival - COMMIT return, 0.1 ms bins), inWindow the arrivals
//       up to `until` (the last commit)
//
// It exits when stdin closes. A live `added` is one of collection livedata_demo.book arriving
// after the client's ready; its arrival time is recorded against the book id, and
// latencies are computed at the end from the writer's commit times.
"use strict";

const WebSocket = require("ws");
const readline = require("readline");
const { monitorEventLoopDelay, performance } = require("perf_hooks");

const config = JSON.parse(process.argv[2]);
const LAG_RESOLUTION_MS = 10;
const now = () => performance.timeOrigin + performance.now();
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const fail = (why) => {
  say({ event: "error", error: String(why) });
  process.exit(1);
};

const arrivalIds = [];
const arrivalTimes = [];
const clients = [];
let lag = null;
let exiting = false;

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const client = { ws, ready: false, docs: 0, nosub: false, onReady: null };
    ws.on("error", reject);
    ws.on("open", () =>
      ws.send(JSON.stringify({ msg: "connect", version: "1", support: ["1"] })),
    );
    ws.on("close", () => {
      if (!exiting) fail("a server closed a connection");
    });
    ws.on("message", (data) => {
      const m = JSON.parse(data.toString());
      if (m.msg === "added") {
        if (client.ready) {
          if (m.collection === "livedata_demo.book") {
            arrivalIds.push(Number(m.id));
            arrivalTimes.push(now());
          }
        } else {
          client.docs += 1;
        }
      } else if (m.msg === "connected") {
        resolve(client);
      } else if (m.msg === "ready" || m.msg === "nosub") {
        client.ready = true;
        client.nosub = m.msg === "nosub";
        client.readyAt = now();
        if (client.onReady) client.onReady();
      } else if (m.msg === "ping") {
        ws.send(JSON.stringify(m.id ? { msg: "pong", id: m.id } : { msg: "pong" }));
      }
    });
  });
}

async function connectAll() {
  for (let i = 0; i < config.clients; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(config.clients, i + 50); j++) batch.push(open(config.url));
    clients.push(...(await Promise.all(batch)));
  }
  say({ event: "connected", count: clients.length });
}

async function subscribe(subs) {
  const start = now();
  const waits = [];
  clients.forEach((client, i) => {
    if (!subs[i]) return;
    waits.push(new Promise((resolve) => (client.onReady = resolve)));
    client.ws.send(JSON.stringify({ msg: "sub", id: `s${i}`, name: subs[i][0], params: subs[i][1] }));
  });
  await Promise.all(waits);
  const subscribed = clients.filter((_, i) => subs[i]);
  const docs = subscribed.map((c) => c.docs);
  say({
    event: "ready",
    start,
    end: Math.max(start, ...subscribed.map((c) => c.readyAt)),
    docsMin: Math.min(...docs),
    docsMax: Math.max(...docs),
    nosub: subscribed.filter((c) => c.nosub).length,
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function report({ commits, expected, until, deadline }) {
  let seen = 0;
  let counted = 0;
  for (;;) {
    for (; seen < arrivalIds.length; seen++) if (arrivalIds[seen] in commits) counted++;
    if (counted >= expected || now() >= deadline) break;
    await sleep(50);
  }
  const hist = {};
  let delivered = 0;
  let inWindow = 0;
  arrivalIds.forEach((id, i) => {
    const committed = commits[id];
    if (committed === undefined) return;
    // negative when the writer was scheduled late after its COMMIT returned: kept, not hidden
    const bin = Math.floor((arrivalTimes[i] - committed) * 10);
    hist[bin] = (hist[bin] || 0) + 1;
    delivered += 1;
    if (arrivalTimes[i] <= until) inWindow += 1;
  });
  const lagMs = (ns) => (lag ? Math.max(0, ns / 1e6 - LAG_RESOLUTION_MS) : null);
  say({
    event: "report",
    delivered,
    inWindow,
    hist,
    lagP99Ms: lag && lagMs(lag.percentile(99)),
    lagMaxMs: lag && lagMs(lag.max),
  });
}

const commands = readline.createInterface({ input: process.stdin });
commands.on("line", (line) => {
  const command = JSON.parse(line);
  if (command.cmd === "sub") subscribe(command.subs).catch(fail);
  else if (command.cmd === "report") report(command).catch(fail);
  else if (command.cmd === "lag") {
    lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    lag.enable();
  }
});
commands.on("close", () => {
  exiting = true;
  clients.forEach((c) => c.ws.terminate());
  process.exit(0);
});
connectAll().catch(fail);
