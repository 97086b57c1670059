// The Guestbook page: posts an entry to /api/entries and shows the latest ones with their tone score.
// Plain DOM, no build step; text is only ever set with textContent.
const MAX_CHARS = 1000;

const form = document.getElementById("entry-form");
const textArea = document.getElementById("text");
const counter = document.getElementById("counter");
const submit = document.getElementById("submit");
const status = document.getElementById("status");
const list = document.getElementById("entries");
const empty = document.getElementById("empty");
const refresh = document.getElementById("refresh");
const footer = document.getElementById("footer");
const titleEl = document.getElementById("title");

/** Entries this page posted, shown until a read (which may come from a lagging replica) includes them. */
const recent = new Map();

function setStatus(message, kind = "") {
  status.textContent = message;
  status.className = kind;
}

function charCount(s) {
  return [...s].length;
}

function updateCounter() {
  const n = charCount(textArea.value.trim());
  counter.textContent = `${n} / ${MAX_CHARS}`;
}

function formatScore(entry) {
  if (entry.score === null || entry.score === undefined) return "not scored (the analyzer was unavailable)";
  const sign = entry.score > 0 ? "+" : "";
  return `${entry.tone} (score ${sign}${entry.score})`;
}

function renderEntry(entry) {
  const li = document.createElement("li");
  li.className = `entry ${entry.tone ?? "unscored"}`;
  li.dataset.id = String(entry.id);
  const text = document.createElement("p");
  text.textContent = entry.text;
  const meta = document.createElement("div");
  meta.className = "meta";
  const tone = document.createElement("span");
  tone.className = `tone ${entry.tone ?? ""}`;
  tone.textContent = formatScore(entry);
  meta.append(tone);
  const when = new Date(entry.createdAt);
  const details = [Number.isNaN(when.getTime()) ? "" : when.toLocaleString()];
  const by = entry.analyzedBy;
  if (by?.pod) {
    const version = entry.analyzer ?? by.version;
    details.push(
      `analyzer ${version ? `${version} ` : ""}(${by.pod}${by.cluster ? ` in ${by.cluster}` : ""})`,
    );
  } else if (entry.analyzer) details.push(`analyzer ${entry.analyzer}`);
  meta.append(` · ${details.filter(Boolean).join(" · ")}`);
  li.append(text, meta);
  return li;
}

function render(entries) {
  const ids = new Set(entries.map((e) => e.id));
  for (const id of ids) recent.delete(id);
  const all = [...recent.values(), ...entries].sort((a, b) => b.id - a.id).slice(0, 100);
  list.replaceChildren(...all.map(renderEntry));
  empty.hidden = all.length > 0;
}

async function load() {
  try {
    const res = await fetch("/api/entries", { headers: { accept: "application/json" } });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
    if (body.title) {
      titleEl.textContent = body.title;
      document.title = body.title;
    }
    const where = body.cluster ? ` in cluster ${body.cluster}` : "";
    footer.textContent = `Served by ${body.servedBy}${where}; entries read from the Redis ${body.source}.`;
    render(body.entries ?? []);
  } catch (e) {
    setStatus(`Could not load the entries: ${e.message}`, "error");
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = textArea.value.trim();
  if (text === "") {
    setStatus("Write something first.", "error");
    return;
  }
  if (charCount(text) > MAX_CHARS) {
    setStatus(`At most ${MAX_CHARS} characters, please.`, "error");
    return;
  }
  submit.disabled = true;
  setStatus("Saving…");
  try {
    const res = await fetch("/api/entries", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify({ text }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
    recent.set(body.entry.id, body.entry);
    textArea.value = "";
    updateCounter();
    if (body.warning) setStatus(`Saved, but ${body.warning}.`, "warning");
    else setStatus(`Saved: ${formatScore(body.entry)}.`);
    await load();
  } catch (e) {
    setStatus(`Not saved: ${e.message}`, "error");
  } finally {
    submit.disabled = false;
  }
});

textArea.addEventListener("input", updateCounter);
refresh.addEventListener("click", () => {
  setStatus("");
  void load();
});

updateCounter();
void load();
