/* A tiny DDP client over the browser's WebSocket, for livedata's dashboard: connect,
   subscribe, call methods, keep the collections; reconnects (and resubscribes) after
   a drop. The connection logs in with the page's Django session cookie (same origin). */
(function () {
  "use strict";
  function LivedataDDP(url) {
    this.url = url;
    this.collections = {};
    this.subs = {};
    this.calls = {};
    this.nextId = 1;
    this.listeners = { change: [], status: [] };
    this.status = "connecting";
    this.open();
  }
  LivedataDDP.prototype.on = function (event, fn) { this.listeners[event].push(fn); };
  LivedataDDP.prototype.emit = function (event, arg) {
    this.listeners[event].forEach(function (fn) { fn(arg); });
  };
  LivedataDDP.prototype.setStatus = function (status) { this.status = status; this.emit("status", status); };
  LivedataDDP.prototype.open = function () {
    var self = this;
    var ws = this.ws = new WebSocket(this.url);
    ws.onopen = function () { ws.send(JSON.stringify({ msg: "connect", version: "1", support: ["1"] })); };
    ws.onmessage = function (event) { self.receive(JSON.parse(event.data)); };
    ws.onclose = function () {
      self.setStatus("disconnected");
      self.collections = {};
      self.emit("change", null);
      setTimeout(function () { self.open(); }, 2000);
    };
  };
  LivedataDDP.prototype.send = function (message) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  };
  LivedataDDP.prototype.receive = function (m) {
    var docs;
    if (m.msg === "connected") {
      this.setStatus("connected");
      for (var id in this.subs) this.send({ msg: "sub", id: id, name: this.subs[id].name, params: [] });
    } else if (m.msg === "ping") {
      this.send({ msg: "pong", id: m.id });
    } else if (m.msg === "added") {
      docs = this.collections[m.collection] = this.collections[m.collection] || {};
      docs[m.id] = m.fields || {};
      this.emit("change", m.collection);
    } else if (m.msg === "changed") {
      docs = this.collections[m.collection] || {};
      var doc = docs[m.id] = docs[m.id] || {};
      Object.keys(m.fields || {}).forEach(function (k) { doc[k] = m.fields[k]; });
      (m.cleared || []).forEach(function (k) { delete doc[k]; });
      this.emit("change", m.collection);
    } else if (m.msg === "removed") {
      if (this.collections[m.collection]) delete this.collections[m.collection][m.id];
      this.emit("change", m.collection);
    } else if (m.msg === "ready") {
      (m.subs || []).forEach(function (id) { if (this.subs[id]) this.subs[id].ready(); }, this);
    } else if (m.msg === "nosub") {
      if (this.subs[m.id]) this.subs[m.id].failed(m.error || {});
    } else if (m.msg === "result") {
      var call = this.calls[m.id];
      delete this.calls[m.id];
      if (call) call(m.error || null, m.result);
    }
  };
  LivedataDDP.prototype.subscribe = function (name, ready, failed) {
    var id = "s" + this.nextId++;
    this.subs[id] = { name: name, ready: ready, failed: failed };
    this.send({ msg: "sub", id: id, name: name, params: [] });
    return id;
  };
  LivedataDDP.prototype.call = function (method, params, done) {
    var id = "m" + this.nextId++;
    this.calls[id] = done;
    this.send({ msg: "method", id: id, method: method, params: params });
  };
  window.LivedataDDP = LivedataDDP;
})();
