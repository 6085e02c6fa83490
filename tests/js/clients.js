// Drive one third-party DDP client against a livedata server and print what it saw as JSON.
// usage: node clients.js CLIENT ws://127.0.0.1:PORT/websocket AUTHOR_EMAIL
// CLIENT: ddp, simpleddp, ddp.js, or ddp.js-sockjs-TRANSPORT (ddp.js over sockjs-client at
// http://127.0.0.1:PORT/sockjs, forced to one SockJS transport: xhr-streaming, xhr-polling...)
"use strict";
const [, , which, url, email] = process.argv;
const { out, done, fail } = require("./report")(which, 20000);

function viaDdp() {
  const DDPClient = require("ddp");
  const c = new DDPClient({ url, autoReconnect: false, maintainCollections: true });
  c.connect((err) => {
    if (err) return fail(err);
    out.events.push("connected");
    c.call("hello", ["ddp"], (e, r) => {
      out.hello = r;
      c.call("nope", [], (e2) => {
        out.notFound = e2;
        let updated = false;
        c.call(
          "test.addBook",
          ["From ddp", email],
          (e3, id) => {
            out.addBook = { error: e3, id, updatedBeforeResult: updated };
          },
          () => {
            updated = true;
            out.events.push("updated");
            c.subscribe("nope", [], (e4) => {
              out.nosub = e4;
              c.close();
              done({});
            });
          }
        );
      });
    });
  });
}

async function viaSimpleDdp() {
  const simpleDDP = require("simpleddp").default || require("simpleddp");
  const ws = require("ws");
  const server = new simpleDDP({ endpoint: url, SocketConstructor: ws, reconnectInterval: 100000 });
  await server.connect();
  out.events.push("connected");
  out.hello = await server.call("hello", "simpleddp");
  try {
    await server.call("nope");
  } catch (e) {
    out.notFound = e;
  }
  out.addBook = { id: await server.call("test.addBook", "From simpleddp", email) };
  const sub = server.subscribe("nope");
  try {
    await sub.ready();
  } catch (e) {
    out.nosub = e;
  }
  out.nosub = out.nosub || "ready-not-rejected";
  await server.disconnect();
  done({});
}

function viaDdpJs(endpoint = url, SocketConstructor = require("ws")) {
  const DDP = require("ddp.js").default || require("ddp.js");
  const ddp = new DDP({ endpoint, SocketConstructor, autoReconnect: false });
  const results = {};
  const order = [];
  ddp.on("connected", () => {
    out.events.push("connected");
    results.hello = ddp.method("hello", [which]);
    results.nope = ddp.method("nope", []);
    results.add = ddp.method("test.addBook", [`From ${which}`, email]);
    results.sub = ddp.sub("nope", []);
  });
  ddp.on("result", (m) => {
    order.push(["result", m.id]);
    if (m.id === results.hello) out.hello = m.result;
    if (m.id === results.nope) out.notFound = m.error;
    if (m.id === results.add) out.addBook = { id: m.result };
  });
  ddp.on("updated", (m) => order.push(["updated", m.methods[0]]));
  ddp.on("nosub", (m) => {
    out.nosub = m.error;
    setTimeout(() => {
      out.order = order;
      done({});
    }, 300);
  });
}

function viaDdpJsSockJS(transport) {
  viaDdpJs(...require("./report").sockjsTransport(url, transport, out));
}

const sockjs = /^ddp\.js-sockjs-(.+)$/.exec(which);
const run = sockjs
  ? () => viaDdpJsSockJS(sockjs[1])
  : { ddp: viaDdp, simpleddp: viaSimpleDdp, "ddp.js": () => viaDdpJs() }[which];
Promise.resolve()
  .then(run)
  .catch(fail);
