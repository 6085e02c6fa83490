// Log in with an npm accounts client against a livedata server and print what it saw as JSON.
// usage: node login.js CLIENT ws://127.0.0.1:PORT/websocket EMAIL USERNAME PASSWORD
// CLIENT: ddp-login (on the ddp client) or simpleddp-plugin-login (on simpleddp).
// Scenario: subscribe MyBooks anonymously; log in by email (digest), see MyBooks fill on the
// same connection; log in by username; resume with the token on a new connection; a wrong
// password; then 6 attempts on a fresh connection (the 6th is rate limited).
"use strict";
const crypto = require("crypto");
const [, , which, url, email, username, password] = process.argv;
const { out, done, fail } = require("./report")(which, 30000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const digest = (pw) => ({
  digest: crypto.createHash("sha256").update(pw, "utf8").digest("hex"),
  algorithm: "sha-256",
});

async function until(predicate, ms = 5000) {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await sleep(20);
  }
}

async function viaDdpLogin() {
  const DDPClient = require("ddp");
  const login = require("ddp-login");
  const open = () =>
    new Promise((resolve, reject) => {
      const c = new DDPClient({ url, autoReconnect: false, maintainCollections: true });
      c.connect((err) => (err ? reject(err) : resolve(c)));
    });
  // ddp-login's callbacks: (err, res), err being the wire error object
  const call = (fn, ...args) =>
    new Promise((resolve) => fn(...args, (err, res) => resolve({ err, res })));
  const books = (c) => Object.keys((c.collections && c.collections["livedata_demo.book"]) || {});

  const a = await open();
  await new Promise((resolve) => a.subscribe("MyBooks", [], resolve));
  out.booksBefore = books(a).length;
  const byEmail = await call(login.loginWithEmail, a, email, password, {});
  out.byEmail = byEmail.res || byEmail.err;
  await until(() => books(a).length > 0);
  out.booksAfter = books(a).length;
  out.usersDoc = a.collections.users;
  const byUsername = await call(login.loginWithUsername, a, username, password, {});
  out.byUsername = byUsername.res || byUsername.err;

  // the whole login() helper too: method "token" with the env variable it reads
  process.env.LIVEDATA_TEST_TOKEN = out.byEmail.token;
  const d = await open();
  const viaEnv = await call(login, d, { env: "LIVEDATA_TEST_TOKEN", method: "token", retry: 1 });
  out.viaEnv = viaEnv.res || viaEnv.err;

  const b = await open();
  const resumed = await call(login.loginWithToken, b, out.byEmail.token);
  out.resumed = resumed.res || resumed.err;
  const wrong = await call(login.loginWithEmail, b, email, "wrong-password", {});
  out.wrong = wrong.err || wrong.res;

  const c = await open();
  out.attempts = [];
  for (let i = 0; i < 6; i++) {
    const r = await call(login.loginWithUsername, c, username, "wrong-password", {});
    out.attempts.push(r.err);
  }
  for (const x of [a, b, c, d]) x.close();
  done({});
}

async function viaSimpleDdpLogin() {
  const simpleDDP = require("simpleddp").default || require("simpleddp");
  const { simpleDDPLogin } = require("simpleddp-plugin-login");
  const ws = require("ws");
  const open = async () => {
    const s = new simpleDDP(
      { endpoint: url, SocketConstructor: ws, reconnectInterval: 100000 },
      [simpleDDPLogin]
    );
    await s.connect();
    return s;
  };
  const attempt = (s, obj) => s.login(obj).then((m) => m, (e) => ({ rejected: e }));

  const a = await open();
  const sub = a.subscribe("MyBooks");
  await sub.ready();
  const books = a.collection("livedata_demo.book");
  out.booksBefore = books.fetch().length;
  a.on("login", (m) => out.events.push(["login", m.type]));
  out.byEmail = await attempt(a, { user: { email }, password: digest(password) });
  await until(() => books.fetch().length > 0);
  out.booksAfter = books.fetch().length;
  out.usersDoc = a.collection("users").fetch();
  out.byUsername = await attempt(a, { user: { username }, password: digest(password) });

  const b = await open();
  b.on("loginResume", (m) => out.events.push(["loginResume", m.type]));
  out.resumed = await attempt(b, { resume: out.byEmail.token });
  out.wrong = await attempt(b, { user: { email }, password: digest("wrong-password") });

  const c = await open();
  out.attempts = [];
  for (let i = 0; i < 6; i++) {
    const r = await attempt(c, { user: { username }, password: digest("wrong-password") });
    out.attempts.push(r.rejected);
  }
  await a.logout();
  await until(() => books.fetch().length === 0);
  out.booksAfterLogout = books.fetch().length;
  for (const x of [a, b, c]) await x.disconnect();
  done({});
}

const run = { "ddp-login": viaDdpLogin, "simpleddp-plugin-login": viaSimpleDdpLogin }[which];
if (!run) fail(`unknown client ${which}`);
else run().catch(fail);
