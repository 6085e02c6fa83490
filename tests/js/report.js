// What the client scripts share: one JSON report on stdout, written once, then exit;
// ddp.js over one SockJS transport.
"use strict";
module.exports = function report(which, timeoutMs) {
  const out = { client: which, events: [] };
  const done = (extra) => {
    Object.assign(out, extra);
    process.stdout.write(JSON.stringify(out) + "\n");
    process.exit(0);
  };
  const fail = (err) => {
    out.failure = String(err && err.stack ? err.stack : JSON.stringify(err));
    done({});
  };
  setTimeout(() => fail("timeout"), timeoutMs);
  // simpleddp rejects a subscription's internal promise on nosub even when ready() is awaited
  process.on("unhandledRejection", (reason) => out.events.push(["unhandledRejection", reason]));
  return { out, done, fail };
};

// ddp.js over sockjs-client forced to one SockJS transport: [the /sockjs URL, a socket
// constructor]. ddp.js calls `new SocketConstructor(endpoint)` with one argument: wrap
// SockJS to force the transport (an object returned from a constructor is what `new`
// gives back). The transport actually used is recorded in out.events.
module.exports.sockjsTransport = function sockjsTransport(wsUrl, transport, out) {
  const SockJS = require("sockjs-client");
  function OneTransport(endpoint) {
    const socket = new SockJS(endpoint, null, { transports: [transport] });
    socket.addEventListener("open", () => out.events.push(["transport", socket.transport]));
    return socket;
  }
  return [wsUrl.replace(/^ws/, "http").replace(/\/websocket$/, "/sockjs"), OneTransport];
};
