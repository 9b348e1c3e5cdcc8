// runnel console: reads /api/... and renders it. Every piece of data is put in the page as
// text (textContent / text nodes), never as markup, so a topic name, group id, key or value
// cannot inject anything.

const main = document.getElementById("main");
let followTimer = null;

// el("td", {class: "num"}, "text", childNode, ...): an element; strings become text nodes.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replaces the page's content; absent (null) parts are left out.
function show(...nodes) {
  main.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined));
}

async function api(path) {
  const response = await fetch("/api" + path, { headers: { accept: "application/json" } });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

const enc = encodeURIComponent;

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function num(value) {
  return value === null || value === undefined ? "–" : String(value);
}

function card(label, value, id) {
  return el("div", { class: "card", "data-card": id }, el("div", { class: "label" }, label),
    el("div", { class: "value" }, value));
}

function table(headings, rows, attrs = {}) {
  return el("table", attrs,
    el("thead", {}, el("tr", {}, headings.map(([text, cls]) => el("th", { class: cls }, text)))),
    el("tbody", {}, rows));
}

function truncatedNote(data, what) {
  return data.truncated ? el("p", { class: "warning" },
    `Showing the first ${data.limit} of ${data.total} ${what}.`) : null;
}

// --- pages -----------------------------------------------------------------------------------

async function clusterPage() {
  const c = await api("/cluster");
  show(
    el("h1", {}, "Cluster"),
    el("div", { class: "cards" },
      card("Cluster id", c.cluster_id, "cluster-id"),
      card("Controller", c.controller_id, "controller"),
      card("Brokers", c.brokers.length, "brokers"),
      card("Topics", c.topic_count, "topics"),
      card("Partitions", c.partition_count, "partitions"),
      card("Consumer groups", c.group_count, "groups"),
      card("Version", c.version, "version")),
    el("h2", {}, "Brokers"),
    table([["Node"], ["Host"], ["Port", "num"], ["Rack"], ["Role"]],
      c.brokers.map((b) => el("tr", { "data-broker": b.node_id },
        el("td", {}, b.node_id), el("td", {}, b.host), el("td", { class: "num" }, b.port),
        el("td", {}, b.rack ?? "–"),
        el("td", {}, b.node_id === c.controller_id ? "controller, broker" : "broker"))),
      { id: "brokers" }),
  );
}

async function topicsPage() {
  const t = await api("/topics");
  show(
    el("h1", {}, "Topics"),
    truncatedNote(t, "topics"),
    table([["Topic"], ["Partitions", "num"], ["Records", "num"], ["Size", "num"], [""]],
      t.topics.map((topic) => el("tr", { "data-topic": topic.name },
        el("td", {}, el("a", { href: `#/topics/${enc(topic.name)}` }, topic.name),
          topic.internal ? el("span", { class: "muted" }, " (internal)") : null),
        el("td", { class: "num", "data-field": "partitions" }, topic.partitions),
        el("td", { class: "num", "data-field": "records" }, num(topic.records)),
        el("td", { class: "num", "data-field": "size", title: topic.size_bytes === null ? undefined : `${topic.size_bytes} bytes` },
          bytes(topic.size_bytes)),
        el("td", {}, el("a", { href: `#/browse/${enc(topic.name)}/0?from=end` }, "messages")))),
      { id: "topics" }),
  );
}

async function topicPage(name) {
  const t = await api(`/topics/${enc(name)}`);
  const overridden = t.configs.filter((c) => c.source !== "default");
  show(
    el("h1", {}, "Topic ", el("code", {}, t.name)),
    el("div", { class: "cards" },
      card("Partitions", t.partition_count, "partitions"),
      card("Topic id", t.topic_id, "topic-id")),
    el("h2", {}, "Partitions"),
    t.partitions_truncated ? el("p", { class: "warning" },
      `Showing the first ${t.partitions.length} partitions.`) : null,
    table([["Partition", "num"], ["Leader", "num"], ["Replicas"], ["ISR"], ["Log start", "num"],
      ["High watermark", "num"], ["Size", "num"], ["Segments", "num"], [""]],
      t.partitions.map((p) => el("tr", { "data-partition": p.partition },
        el("td", { class: "num" }, p.partition),
        el("td", { class: "num" }, num(p.leader)),
        el("td", {}, (p.replicas || []).join(", ")),
        el("td", {}, (p.isr || []).join(", ")),
        el("td", { class: "num", "data-field": "log-start" }, num(p.log_start_offset)),
        el("td", { class: "num", "data-field": "high-watermark" }, num(p.high_watermark)),
        el("td", { class: "num", "data-field": "size", title: `${p.size_bytes} bytes` },
          bytes(p.size_bytes)),
        el("td", { class: "num" }, num(p.segments)),
        el("td", {}, el("a", { href: `#/browse/${enc(t.name)}/${p.partition}?from=end` },
          "messages")))),
      { id: "partitions" }),
    el("h2", {}, `Configs (${overridden.length} not at Kafka's default; all ${t.configs.length} below)`),
    table([["Name"], ["Value"], ["Source"]],
      t.configs.map((c) => el("tr", { "data-config": c.name, class: c.source === "default" ? "muted" : "" },
        el("td", {}, el("code", {}, c.name)), el("td", {}, el("span", { class: "data" }, c.value)),
        el("td", {}, c.source))),
      { id: "configs" }),
  );
}

function lagCell(lag, attrs = {}) {
  return el("td", { class: `num ${lag > 0 ? "lag-positive" : "lag-zero"}`, ...attrs }, lag);
}

async function groupsPage() {
  const g = await api("/groups");
  show(
    el("h1", {}, "Consumer groups"),
    truncatedNote(g, "groups"),
    g.groups.length === 0 ? el("p", { class: "muted" }, "No groups.") : null,
    table([["Group"], ["Type"], ["State"], ["Members", "num"], ["Partitions", "num"], ["Lag", "num"]],
      g.groups.map((group) => el("tr", { "data-group": group.group_id },
        el("td", {}, el("a", { href: `#/groups/${enc(group.group_id)}` }, group.group_id)),
        el("td", {}, group.type), el("td", { "data-field": "state" }, group.state),
        el("td", { class: "num", "data-field": "members" }, group.members),
        el("td", { class: "num" }, group.partitions),
        lagCell(group.lag, { "data-field": "lag" }))),
      { id: "groups" }),
  );
}

async function groupPage(id) {
  const g = await api(`/groups/${enc(id)}`);
  show(
    el("h1", {}, "Group ", el("code", {}, g.group_id)),
    el("div", { class: "cards" },
      card("State", g.state, "state"), card("Type", g.type, "type"),
      card("Protocol", g.protocol || "–", "protocol"), card("Members", g.member_count, "members"),
      card("Total lag", g.lag, "lag")),
    el("h2", {}, "Members"),
    g.members_truncated ? el("p", { class: "warning" },
      `Showing ${g.members.length} of ${g.member_count} members.`) : null,
    g.members.length === 0 ? el("p", { class: "muted" }, "No active members.") :
      table([["Member id"], ["Instance id"], ["Client id"], ["Host"]],
        g.members.map((m) => el("tr", { "data-member": m.member_id },
          el("td", {}, el("code", {}, m.member_id)), el("td", {}, m.instance_id ?? "–"),
          el("td", {}, m.client_id), el("td", {}, m.client_host))),
        { id: "members" }),
    el("h2", {}, "Committed offsets and lag"),
    g.offsets.length === 0 ? el("p", { class: "muted" }, "No committed offsets.") : null,
    g.offsets_skipped > 0 ? el("p", { class: "warning" },
      `${g.offsets_skipped} committed offsets not shown.`) : null,
    g.offsets.length === 0 ? null : table([["Topic"], ["Partition", "num"], ["Committed", "num"], ["High watermark", "num"],
      ["Lag", "num"], ["Lag (s)", "num"]],
      g.offsets.map((o) => el("tr", { "data-offset": `${o.topic}-${o.partition}` },
        el("td", {}, el("a", { href: `#/topics/${enc(o.topic)}` }, o.topic)),
        el("td", { class: "num" }, o.partition),
        el("td", { class: "num", "data-field": "committed" }, o.committed_offset),
        el("td", { class: "num", "data-field": "high-watermark" }, o.high_watermark),
        lagCell(o.lag, { "data-field": "lag" }),
        el("td", { class: "num" }, o.lag_seconds.toFixed(1)))),
      { id: "offsets" }),
  );
}

// A key, value or header value: text as is, anything else as hex with a marker.
function field(f) {
  if (f.encoding === "null") return el("span", { class: "marker null" }, "null");
  const parts = [];
  if (f.encoding === "hex") parts.push(el("span", { class: "marker", title: "not UTF-8: shown as hex" }, "hex"));
  parts.push(el("span", { class: "data" }, f.data));
  if (f.truncated) parts.push(el("span", { class: "marker cut" }, `cut: ${f.size} bytes in all`));
  return el("span", { "data-encoding": f.encoding }, parts);
}

async function browsePage(rest, params) {
  clearInterval(followTimer);
  const [topicRaw, partitionRaw] = rest;
  const topics = (await api("/topics")).topics;
  const topic = topicRaw !== undefined ? topicRaw : (topics.find((t) => !t.internal) || topics[0])?.name;
  const partition = partitionRaw !== undefined ? partitionRaw : "0";
  const limit = params.get("limit") || "50";
  const from = params.get("from");
  const offset = params.get("offset");
  const go = (query) => { location.hash = `#/browse/${enc(topicSelect.value)}/${enc(partitionInput.value)}?${query}`; };

  const topicSelect = el("select", { name: "topic" },
    topics.map((t) => el("option", t.name === topic ? { value: t.name, selected: "" } : { value: t.name }, t.name)));
  const partitionInput = el("input", { name: "partition", type: "number", min: "0", value: partition, size: "4" });
  const offsetInput = el("input", { name: "offset", type: "number", min: "0", value: offset ?? "", size: "10" });
  const limitInput = el("input", { name: "limit", type: "number", min: "1", max: "500", value: limit, size: "4" });
  const following = from === "end" && params.get("follow") === "1";
  const follow = el("input", following ? { type: "checkbox", name: "follow", checked: "" } : { type: "checkbox", name: "follow" });
  const form = el("form", { class: "browse" },
    el("label", {}, "Topic", topicSelect), el("label", {}, "Partition", partitionInput),
    el("label", {}, "Offset", offsetInput), el("label", {}, "Limit", limitInput),
    el("button", { type: "submit", name: "seek" }, "Seek"),
    el("button", { type: "button", name: "tail" }, "Tail"),
    el("label", {}, "Follow tail", follow));
  form.addEventListener("submit", (e) => { e.preventDefault(); go(`offset=${enc(offsetInput.value || "0")}&limit=${enc(limitInput.value)}`); });
  form.querySelector("button[name=tail]").addEventListener("click", () => go(`from=end&limit=${enc(limitInput.value)}`));

  if (topic === undefined) {
    show(el("h1", {}, "Messages"), el("p", { class: "muted" }, "No topics."));
    return;
  }
  const query = from === "end" ? `from=end&limit=${enc(limit)}` : `offset=${enc(offset ?? "0")}&limit=${enc(limit)}`;
  const path = `/topics/${enc(topic)}/partitions/${enc(partition)}/records?${query}`;
  const output = el("div", {});
  const render = async () => {
    const r = await api(path);
    const next = `#/browse/${enc(topic)}/${enc(partition)}?offset=${r.next_offset}&limit=${enc(limit)}`;
    output.replaceChildren(...[
      el("p", { class: "muted", id: "range" },
        `Offsets ${r.log_start_offset} to ${r.high_watermark - 1} in the log; showing ${r.records.length} from ${r.from}. `,
        r.next_offset < r.high_watermark ? el("a", { href: next, id: "next" }, "Next page") : null),
      r.problem ? el("p", { class: "warning" }, r.problem) : null,
      table([["Offset", "num"], ["Timestamp"], ["Key"], ["Value"], ["Headers"]],
        r.records.map((rec) => el("tr", { "data-record-offset": rec.offset },
          el("td", { class: "num" }, rec.offset),
          el("td", { "data-field": "timestamp", title: rec.timestamp_type },
            rec.timestamp >= 0 ? new Date(rec.timestamp).toISOString() : "none", el("br"),
            el("span", { class: "muted" }, `${rec.timestamp} (${rec.timestamp_type})`)),
          el("td", { "data-field": "key" }, field(rec.key)),
          el("td", { "data-field": "value" }, field(rec.value)),
          el("td", { "data-field": "headers" },
            rec.headers.length === 0 ? el("span", { class: "muted" }, "–") :
              el("ul", { class: "headers" }, rec.headers.map((h) =>
                el("li", {}, el("code", {}, h.key), " = ", field(h.value)))),
            rec.headers_total > rec.headers.length ? el("span", { class: "marker cut" },
              `${rec.headers_total - rec.headers.length} more`) : null))),
        { id: "records" }),
    ].filter((n) => n !== null));
  };
  show(el("h1", {}, "Messages ", el("code", {}, `${topic}-${partition}`)), form, output);
  await render();
  // Following re-reads the tail every 2 s; the choice is kept in the link.
  follow.addEventListener("change", () => {
    go(`from=end&limit=${enc(limitInput.value)}${follow.checked ? "&follow=1" : ""}`);
  });
  if (following) followTimer = setInterval(() => render().catch(() => {}), 2000);
}

// --- routing ---------------------------------------------------------------------------------

async function route() {
  clearInterval(followTimer);
  const hash = location.hash.replace(/^#\/?/, "");
  const [pathPart, queryPart] = hash.split("?", 2);
  let segments;
  try {
    segments = pathPart.split("/").filter((s) => s !== "").map(decodeURIComponent);
  } catch {
    segments = ["bad-link"];
  }
  const params = new URLSearchParams(queryPart || "");
  const page = segments[0] || "cluster";
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.nav === page);
  }
  main.dataset.page = page;
  main.dataset.ready = "false";
  try {
    if (page === "cluster") await clusterPage();
    else if (page === "topics" && segments[1] !== undefined) await topicPage(segments[1]);
    else if (page === "topics") await topicsPage();
    else if (page === "groups" && segments[1] !== undefined) await groupPage(segments[1]);
    else if (page === "groups") await groupsPage();
    else if (page === "browse") await browsePage(segments.slice(1), params);
    else show(el("p", { class: "error" }, "No such page."));
  } catch (e) {
    show(el("p", { class: "error" }, `Could not load: ${e.message}`));
  }
  document.title = `runnel console: ${page}`;
  main.dataset.ready = "true";
}

window.addEventListener("hashchange", route);
route();
