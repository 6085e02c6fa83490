// A third-party DDP client subscribes to the seed's BooksByAuthorEmail and reports the live
// changes a raw-SQL writer makes. usage: node live.js CLIENT URL EMAIL
// CLIENT: ddp, simpleddp, ddp.js, or ddp.js-sockjs-TRANSPORT (URL is the ws:// one).
// Prints {"subscribed": [titles]} once ready, then {"seen": [kind, id, fields]} for each
// change of a book (the test writes the next change with SQL after seeing the last one),
// then the report once a book was removed.
"use strict";
const [, , which, url, email] = process.argv;
const { out, done, fail } = require("./report")(which, 30000);
out.seen = [];

function ready(titles) {
  process.stdout.write(JSON.stringify({ subscribed: titles.sort() }) + "\n");
}
function record(kind, collection, id, fields) {
  if (collection !== "livedata_demo.book") return;
  out.seen.push([kind, id, fields || null]);
  process.stdout.write(JSON.stringify({ seen: [kind, id, fields || null] }) + "\n");
  if (kind === "removed") done({});
}

function viaDdp() {
  const DDPClient = require("ddp");
  const c = new DDPClient({ url, autoReconnect: false, maintainCollections: true });
  let subscribed = false;
  c.on("message", (text) => {
    const m = JSON.parse(text);
    if (subscribed && ["added", "changed", "removed"].includes(m.msg)) {
      record(m.msg, m.collection, m.id, m.fields);
    }
  });
  c.connect((err) => {
    if (err) return fail(err);
    c.subscribe("BooksByAuthorEmail", [email], () => {
      subscribed = true;
      ready(Object.values(c.collections["livedata_demo.book"] || {}).map((b) => b.title));
    });
  });
}

async function viaSimpleDdp() {
  const simpleDDP = require("simpleddp").default || require("simpleddp");
  const server = new simpleDDP({
    endpoint: url,
    SocketConstructor: require("ws"),
    reconnectInterval: 100000,
  });
  await server.connect();
  const sub = server.subscribe("BooksByAuthorEmail", email);
  await sub.ready();
  const books = server.collection("livedata_demo.book");
  books.onChange(({ added, changed, removed }) => {
    if (added) record("added", "livedata_demo.book", added.id, { title: added.title });
    else if (changed) record("changed", "livedata_demo.book", changed.next.id, { title: changed.next.title });
    else if (removed) record("removed", "livedata_demo.book", removed.id, null);
  });
  ready(books.fetch().map((b) => b.title));
}

function viaDdpJs(endpoint = url, SocketConstructor = require("ws")) {
  const DDP = require("ddp.js").default || require("ddp.js");
  const ddp = new DDP({ endpoint, SocketConstructor, autoReconnect: false });
  const titles = new Map();
  let subscribed = false;
  ddp.on("connected", () => ddp.sub("BooksByAuthorEmail", [email]));
  ddp.on("ready", () => {
    subscribed = true;
    ready([...titles.values()]);
  });
  for (const kind of ["added", "changed", "removed"]) {
    ddp.on(kind, (m) => {
      if (!subscribed) {
        if (kind === "added" && m.collection === "livedata_demo.book") titles.set(m.id, m.fields.title);
        return;
      }
      record(kind, m.collection, m.id, m.fields);
    });
  }
}

function viaDdpJsSockJS(transport) {
  viaDdpJs(...require("./report").sockjsTransport(url, transport, out));
}

const sockjs = /^ddp\.js-sockjs-(.+)$/.exec(which);
const run = sockjs
  ? () => viaDdpJsSockJS(sockjs[1])
  : { ddp: viaDdp, simpleddp: viaSimpleDdp, "ddp.js": () => viaDdpJs() }[which];
Promise.resolve().then(run).catch(fail);
