/* livedata's operators' dashboard: renders the documents of the DDP publication
   livedata.dashboard (see livedata/dashboard/feed.py). Text only goes in through
   textContent: nothing a client wrote is ever parsed as HTML. */
(function () {
  "use strict";
  var root = document.getElementById("ld-dashboard");
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var ddp = new window.LivedataDDP(scheme + location.host + "/websocket");
  var statusEl = document.getElementById("status");
  var filter = document.getElementById("model-filter");
  var chart = null;
  var pending = false;

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function fill(tableId, rows, make) {
    var body = document.querySelector("#" + tableId + " tbody");
    body.replaceChildren.apply(body, rows.map(make));
  }
  function row(cells, attrs) {
    var tr = el("tr");
    cells.forEach(function (c) { tr.appendChild(c instanceof Node ? wrap(c) : el("td", c)); });
    Object.keys(attrs || {}).forEach(function (k) { tr.dataset[k] = attrs[k]; });
    return tr;
  }
  function wrap(node) { var td = el("td"); td.appendChild(node); return td; }
  function doc(id) { return (ddp.collections.livedata_dashboard || {})[id]; }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    return (n / 1048576).toFixed(1) + " MB";
  }
  function entries(obj) { return Object.keys(obj || {}).sort().map(function (k) { return [k, obj[k]]; }); }

  function renderNow(now) {
    if (!now) return;
    document.getElementById("process").textContent = "process " + now.process +
      (now.leader ? (now.leader.is_leader ? " (leader)" : " (follower of " + (now.leader.holder || "?") + ")") : "");
    var sessions = entries(now.sessions).map(function (e) { return e[0] + " " + e[1]; });
    document.getElementById("sessions").textContent = sessions.join(", ") || "0";
    document.getElementById("messages-rate").textContent = now.messages_per_s;
    document.getElementById("memory").textContent = bytes(now.memory_bytes);
    document.getElementById("listener").textContent = now.listener_connected ? "connected" : "down";
    document.getElementById("dashboards").textContent = now.dashboard_subscribers;
    fill("subscriptions", entries(now.subscriptions), function (e) {
      return row([e[0], e[1]], { publication: e[0], count: e[1] });
    });
    fill("observers", now.observers || [], function (o) {
      return row([o.publication, o.params, o.per_user ? (o.user || "anonymous") : "shared",
        o.subscribers, o.documents, o.refresh.join(", ")], { publication: o.publication });
    });
  }

  /* every live process's row (livedata/dashboard/cluster.py), this page's own marked */
  function renderProcesses(now) {
    var procs = ddp.collections.livedata_dashboard_processes || {};
    var mine = now ? now.process : null;
    fill("processes", Object.keys(procs).sort(), function (name) {
      var p = procs[name];
      var sessions = entries(p.sessions).map(function (e) { return e[0] + " " + e[1]; });
      var listener = p.listener_connected ? "connected" : "down";
      if (p.broker_connected !== null && p.broker_connected !== undefined) {
        listener += p.broker_connected ? ", broker" : ", broker down";
      }
      var leader = p.leader === null || p.leader === undefined ? "–" : (p.leader ? "yes" : "no");
      var tr = row([name + (name === mine ? " (this page)" : ""), sessions.join(", ") || "0", p.subscriptions,
        p.observers, p.messages_per_s, bytes(p.memory_bytes), listener, p.max_lag_seconds, leader],
        { process: name, self: name === mine ? "1" : "0" });
      if (name === mine) tr.className = "ld-self";
      tr.title = "reported at " + p.at;
      return tr;
    });
  }

  function renderFlow(flow) {
    if (!flow) return;
    fill("rates", entries(flow.changes_per_s), function (e) { return row([e[0], e[1]], { model: e[0] }); });
    fill("consumers", flow.consumers || [], function (c) {
      return row([c.name, c.lag_transactions, c.lag_rows, c.lag_seconds, c.catching_up ? "catching up" : ""],
        { consumer: c.name });
    });
  }

  function renderChart() {
    var samples = ddp.collections.livedata_dashboard_samples || {};
    var ids = Object.keys(samples).map(Number).sort(function (a, b) { return a - b; });
    var data = [[], [], [], []];
    ids.forEach(function (id) {
      var s = samples[id];
      data[0].push(s.t); data[1].push(s.changes_per_s); data[2].push(s.messages_per_s); data[3].push(s.max_lag_seconds);
    });
    if (!window.uPlot) return;
    var width = Math.max(300, document.getElementById("flow").clientWidth - 20);
    if (chart === null) {
      chart = new window.uPlot({
        width: width, height: 180, title: "last 10 minutes",
        series: [{}, { label: "changes/s", stroke: "#417690", width: 2 },
          { label: "messages/s out", stroke: "#c2410c", width: 2 },
          { label: "max lag (s)", stroke: "#7c3aed", width: 1, scale: "s" }],
        axes: [{}, {}, { side: 1, scale: "s", grid: { show: false } }],
      }, data, document.getElementById("chart"));
    } else {
      chart.setData(data);
    }
  }

  function renderChanges() {
    var rows = ddp.collections.livedata_dashboard_changes || {};
    var all = Object.keys(rows).map(function (k) { return rows[k]; });
    all.sort(function (a, b) { return b.id - a.id; });
    var models = {};
    all.forEach(function (r) { models[r.model] = true; });
    var chosen = filter.value;
    var known = Array.prototype.map.call(filter.options, function (o) { return o.value; });
    Object.keys(models).sort().forEach(function (m) {
      if (known.indexOf(m) === -1) filter.appendChild(el("option", m)).value = m;
    });
    var base = root.dataset.changesUrl;
    fill("changes", all.filter(function (r) { return !chosen || r.model === chosen; }), function (r) {
      var link = el("a", r.id);
      link.href = base + r.id + "/change/";
      var who = r.username || (r.user_id ? "user " + r.user_id : "");
      var request = el("a", r.request_id || "");
      if (r.request_id) request.href = base + "?context__request_id=" + encodeURIComponent(r.request_id);
      var tr = row([link, r.at.replace("T", " ").slice(0, 23), r.op, r.model, r.pk, who, request,
        (r.changed || []).join(", ")], { model: r.model, id: r.id, op: r.op });
      tr.title = JSON.stringify(r.context || {});
      return tr;
    });
  }

  function button(label, method, id) {
    var b = el("button", label, "button " + label.replace(" ", "-"));
    b.type = "button";
    b.addEventListener("click", function () {
      b.disabled = true;
      ddp.call(method, [id], function (error) {
        b.disabled = false;
        var note = document.getElementById("webhook-error");
        note.hidden = !error;
        note.textContent = error ? (error.reason || error.error) : "";
      });
    });
    return b;
  }

  function renderWebhooks(hooks, flow) {
    if (!hooks) return;
    var lags = {};
    ((flow && flow.consumers) || []).forEach(function (c) { lags[c.name] = c; });
    var canChange = root.dataset.canChange === "1";
    var deliveries = root.dataset.deliveriesUrl;
    fill("webhook-subscriptions", hooks.subscriptions || [], function (s) {
      var name = el("a", s.name + " (" + s.owner + ")");
      name.href = root.dataset.subscriptionsUrl + s.id + "/change/";
      var attempts = el("span");
      (s.recent || []).forEach(function (a) {
        var item = el("span", (a.status_code || a.outcome) + (a.latency_ms !== null ? " " + a.latency_ms.toFixed(0) + " ms" : ""),
          "ld-attempt ld-" + a.outcome);
        item.title = a.at + " attempt " + a.attempt + (a.error ? ": " + a.error : "");
        attempts.appendChild(item);
      });
      var more = el("a", "all");
      more.href = deliveries + "?subscription__id__exact=" + s.id;
      attempts.appendChild(more);
      var lag = lags["webhooks subscription " + s.id];
      var actions = el("span");
      if (canChange && s.state === "retrying") actions.appendChild(button("retry now", "livedata.dashboard.retryNow", s.id));
      if (canChange && s.state === "disabled") actions.appendChild(button("re-enable", "livedata.dashboard.reenable", s.id));
      var state = el("span", s.state, "ld-state ld-" + s.state);
      if (s.state === "disabled") state.title = s.disabled_reason;
      if (s.state === "retrying") state.title = s.attempts + " failed; next at " + s.next_attempt_at + ": " + s.last_error;
      return row([name, state, s.delivered, s.recent && s.recent.length ? (s.recent[0].status_code || s.recent[0].outcome) : "–",
        lag ? lag.lag_transactions + " tx / " + lag.lag_seconds + " s" : "–", attempts, actions],
        { id: s.id, state: s.state, delivered: s.delivered });
    });
  }

  function renderPull(pull) {
    if (!pull) return;
    fill("pull-clients", entries(pull.live_clients), function (e) { return row([e[0], e[1]], { model: e[0] }); });
    fill("mirrors", pull.mirrors || [], function (m) {
      return row([m.name, m.source, m.phase, m.offset, m.changes, m.updated_at], { name: m.name });
    });
  }

  function render() {
    pending = false;
    renderNow(doc("now"));
    renderProcesses(doc("now"));
    renderFlow(doc("flow"));
    renderWebhooks(doc("webhooks"), doc("flow"));
    renderPull(doc("pull"));
    renderChanges();
    renderChart();
  }
  ddp.on("change", function () {
    if (!pending) { pending = true; requestAnimationFrame(render); }
  });
  ddp.on("status", function (status) {
    statusEl.textContent = status;
    if (status !== "connected") statusEl.dataset.ready = "0";
  });
  filter.addEventListener("change", renderChanges);
  ddp.subscribe("livedata.dashboard", function () {
    statusEl.textContent = "live";
    statusEl.dataset.ready = "1";
    render();
  }, function (error) {
    statusEl.textContent = "refused: " + (error.reason || error.error);
    statusEl.dataset.ready = "refused";
  });
})();
