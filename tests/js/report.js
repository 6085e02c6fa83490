// What the client scripts share: one JSON report on stdout, written once, then exit.
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
