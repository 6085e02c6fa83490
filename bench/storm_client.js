// The load generator of bench/storm.py: one Node process holding some of the N DDP clients,
// each reconnecting as Meteor's client does.
//
//   NODE_PATH=tests/js/node_modules node bench/storm_client.js \
//     '{"urls": [...], "clients": 500, "offset": 0, "sub": ["AllBooks", []], "emails": 0}'
//
// Uses ws (pinned in tests/js/package.json), as bench/fanout_client.js. None of the npm DDP
// clients in tests/js reconnects as Meteor does (ddp: a fixed 500 ms; ddp.js and simpleddp:
// a fixed interval), so the back-off here is Meteor's own: packages/retry/retry.js
// (baseTimeout 1000 ms, exponent 2.2, maxTimeout 5 min, minTimeout 10 ms for the first
// minCount 2 retries, fuzz 0.5) driven as socket-stream-client drives it: the retry count
// goes up on each lost attempt and back to 0 when a socket opens, and an attempt whose
// socket is not open within 10 s (CONNECT_TIMEOUT) is lost. On every (re)connect the client
// sends `connect`, then re-subscribes `sub` (Meteor re-sends its subscriptions), and
// answers pings. With "emails": N, client i subscribes BooksByAuthorEmail of the seed's
// author i % N instead (an observer, and an initial query, per client).
//
// Client i starts on urls[i % urls.length] and moves to the next URL on each retry (one
// URL behind a load balancer; several: a round-robin DNS stand-in). Commands, one JSON
// object a line on stdin; answers one a line on stdout:
//
//   {"cmd":"wait","deadline":ms}  answer {"event":"ready", ...} once every client is
//       subscribed (ready) or at the deadline: ready (count), last (wall-clock ms of the
//       last client's ready), outages (ms from losing a ready subscription to ready again,
//       since the last "lag" command), attempts, busy (DDP "Server busy" errors), nosub
//   {"cmd":"lag"}  from now: measure this process's event-loop delay, and count outages,
//       attempts and errors afresh
//
// It exits when stdin closes.
"use strict";

const WebSocket = require("ws");
const readline = require("readline");
const { monitorEventLoopDelay, performance } = require("perf_hooks");

const config = JSON.parse(process.argv[2]);
const LAG_RESOLUTION_MS = 10;
const CONNECT_TIMEOUT_MS = 10000; // Meteor's socket-stream-client
const RETRY = { baseTimeout: 1000, exponent: 2.2, maxTimeout: 5 * 60 * 1000, minTimeout: 10, minCount: 2, fuzz: 0.5 };
const now = () => performance.timeOrigin + performance.now();
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");

/** Meteor's Retry._timeout(count): how long to wait before retry number `count`. */
function retryTimeout(count) {
  if (count < RETRY.minCount) return RETRY.minTimeout;
  const timeout = Math.min(RETRY.maxTimeout, RETRY.baseTimeout * Math.pow(RETRY.exponent, count));
  return timeout * (Math.random() * RETRY.fuzz + (1 - RETRY.fuzz / 2));
}

let stats = { outages: [], attempts: 0, busy: 0, nosub: 0 };
let lag = null;
let exiting = false;
let subCounter = 0;

class Client {
  constructor(index) {
    this.url = index % config.urls.length;
    // config.emails: BooksByAuthorEmail, client i on the seed's author i % emails
    this.params = config.emails ? [`author-${index % config.emails}@bench.example`] : config.sub[1];
    this.retryCount = 0;
    this.ready = false;
    this.readyAt = null;
    this.lostAt = null;
    this.ws = null;
    this.launch();
  }

  launch() {
    stats.attempts += 1;
    const ws = new WebSocket(config.urls[this.url], { perMessageDeflate: false });
    this.ws = ws;
    const timer = setTimeout(() => this.lost(ws), CONNECT_TIMEOUT_MS);
    ws.on("open", () => {
      clearTimeout(timer);
      this.retryCount = 0; // socket-stream-client's _connected()
      ws.send(JSON.stringify({ msg: "connect", version: "1", support: ["1", "pre2", "pre1"] }));
    });
    ws.on("message", (data) => this.receive(ws, JSON.parse(data.toString())));
    ws.on("error", () => {}); // "close" follows
    ws.on("close", () => {
      clearTimeout(timer);
      this.lost(ws);
    });
  }

  receive(ws, m) {
    if (m.msg === "connected") {
      subCounter += 1;
      ws.send(JSON.stringify({ msg: "sub", id: `s${subCounter}`, name: config.sub[0], params: this.params }));
    } else if (m.msg === "ready") {
      this.ready = true;
      this.readyAt = now();
      if (this.lostAt !== null) stats.outages.push(this.readyAt - this.lostAt);
      this.lostAt = null;
    } else if (m.msg === "nosub") {
      stats.nosub += 1;
    } else if (m.msg === "error") {
      if (String(m.reason).startsWith("Server busy")) stats.busy += 1;
    } else if (m.msg === "ping") {
      ws.send(JSON.stringify(m.id ? { msg: "pong", id: m.id } : { msg: "pong" }));
    }
  }

  lost(ws) {
    if (ws !== this.ws || exiting) return; // an attempt already given up
    this.ws = null;
    ws.removeAllListeners();
    ws.on("error", () => {});
    ws.terminate();
    if (this.ready) {
      this.ready = false;
      this.lostAt = now();
    }
    const timeout = retryTimeout(this.retryCount);
    this.retryCount += 1;
    this.url = (this.url + 1) % config.urls.length;
    setTimeout(() => this.launch(), timeout);
  }
}

const clients = [];
for (let i = 0; i < config.clients; i++) clients.push(new Client(config.offset + i));

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function wait({ deadline }) {
  for (;;) {
    const ready = clients.filter((c) => c.ready).length;
    if (ready === clients.length || now() >= deadline) {
      const lagMs = (ns) => (lag ? Math.max(0, ns / 1e6 - LAG_RESOLUTION_MS) : null);
      say({
        event: "ready",
        ready,
        last: Math.max(...clients.map((c) => c.readyAt || 0)),
        ...stats,
        lagP99Ms: lag && lagMs(lag.percentile(99)),
        lagMaxMs: lag && lagMs(lag.max),
      });
      return;
    }
    await sleep(20);
  }
}

const commands = readline.createInterface({ input: process.stdin });
commands.on("line", (line) => {
  const command = JSON.parse(line);
  if (command.cmd === "wait") wait(command);
  else if (command.cmd === "lag") {
    stats = { outages: [], attempts: 0, busy: 0, nosub: 0 };
    lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    lag.enable();
  }
});
commands.on("close", () => {
  exiting = true;
  clients.forEach((c) => c.ws && c.ws.terminate());
  process.exit(0);
});
