// Bee Travels' page: destinations, then one destination's hotels and cars with prices in the chosen currency,
// bookings, and a currency converter; everything from the ui's JSON API (same origin). No framework, no build
// step; text goes into the page with textContent only.

const $ = (id) => document.getElementById(id);
const state = { city: undefined, booking: undefined };

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

async function api(path, options) {
  const res = await fetch(path, options);
  let body;
  try {
    body = await res.json();
  } catch {
    body = { error: `${res.status} ${res.statusText}` };
  }
  if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
  return body;
}

const money = (amount, code) => {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: code }).format(amount);
  } catch {
    return `${amount.toFixed(2)} ${code}`;
  }
};

async function loadDestinations() {
  const list = $("destinations");
  try {
    const { destinations, servedBy, cluster } = await api("/api/destinations");
    $("served-by").textContent = `Page served by ${servedBy}${cluster ? ` in cluster ${cluster}` : ""}.`;
    list.replaceChildren(
      ...destinations.map((d) => {
        const li = el("li");
        const b = el("button", d.name);
        b.type = "button";
        b.dataset.city = d.id;
        b.append(el("small", d.country));
        b.addEventListener("click", () => selectCity(d.id));
        li.append(b);
        return li;
      }),
    );
  } catch (e) {
    list.replaceChildren(el("li", `Destinations unavailable: ${e.message}`, "error"));
  }
}

async function loadCurrencies() {
  try {
    const { currencies } = await api("/api/currencies");
    for (const id of ["currency", "convert-from", "convert-to"]) {
      const select = $(id);
      for (const c of currencies) {
        const o = el("option", `${c.code} — ${c.name}`);
        o.value = c.code;
        select.append(o);
      }
    }
    $("convert-from").value = "USD";
    $("convert-to").value = "EUR";
  } catch (e) {
    $("convert-result").textContent = `Currencies unavailable: ${e.message}`;
  }
}

async function selectCity(id) {
  state.city = id;
  for (const b of document.querySelectorAll("#destinations button"))
    b.classList.toggle("selected", b.dataset.city === id);
  $("hint").textContent = "Loading…";
  $("hint").hidden = false;
  const currency = $("currency").value;
  try {
    const r = await api(
      `/api/search?city=${encodeURIComponent(id)}${currency ? `&currency=${currency}` : ""}`,
    );
    if (state.city !== id) return;
    showSearch(r);
  } catch (e) {
    $("hint").textContent = `Search failed: ${e.message}`;
  }
}

function showSearch(r) {
  $("hint").hidden = true;
  $("city").hidden = false;
  $("city-name").textContent = r.city.name;
  $("city-country").textContent = `${r.city.country} · local currency ${r.city.currency}`;
  $("city-description").textContent = r.city.description;
  $("city-highlights").replaceChildren(...r.city.highlights.map((h) => el("li", h)));
  $("warnings").replaceChildren(...r.warnings.map((w) => el("li", w)));
  const code = r.currency.code;

  showPart("hotels", r.hotels, (h) => [
    el("td", h.name),
    el("td", "★".repeat(h.stars), "stars"),
    el("td", h.rating.toFixed(1)),
    el("td", h.amenities.join(", "), "muted"),
    el("td", money(h.price, code), "num"),
    bookCell(() => ({ kind: "hotel", id: h.id, label: `${h.name} — ${money(h.price, code)} per night` })),
  ]);
  showPart("cars", r.cars, (c) => [
    el("td", c.model),
    el("td", c.company),
    el("td", c.category),
    el("td", String(c.seats)),
    el("td", c.transmission),
    el("td", money(c.price, code), "num"),
    bookCell(() => ({
      kind: "car",
      id: c.id,
      label: `${c.model} (${c.company}) — ${money(c.price, code)} per day`,
    })),
  ]);
}

function showPart(name, part, cells) {
  $(name).hidden = false;
  const rows = $(`${name}-rows`);
  if (part.error) {
    $(`${name}-version`).textContent = "unavailable";
    const td = el("td", part.error, "error");
    td.colSpan = 7;
    const tr = el("tr");
    tr.append(td);
    rows.replaceChildren(tr);
    return;
  }
  $(`${name}-version`).textContent = `data ${part.version} · ${part.store}`;
  rows.replaceChildren(
    ...part.items.map((item) => {
      const tr = el("tr");
      tr.append(...cells(item));
      return tr;
    }),
  );
}

function bookCell(item) {
  const td = el("td");
  const b = el("button", "Book");
  b.type = "button";
  b.addEventListener("click", () => openBooking(item()));
  td.append(b);
  return td;
}

function openBooking(item) {
  state.booking = item;
  const hotel = item.kind === "hotel";
  $("book-title").textContent = hotel ? "Book a hotel" : "Rent a car";
  $("book-item").textContent = item.label;
  $("book-date-label").textContent = hotel ? "Check-in" : "Pick-up";
  $("book-count-label").textContent = hotel ? "Nights" : "Days";
  $("book-error").textContent = "";
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
  if (!$("book-date").value) $("book-date").value = tomorrow;
  $("book").showModal();
}

async function submitBooking(event) {
  event.preventDefault();
  const item = state.booking;
  if (!item) return;
  const name = $("book-name").value.trim();
  const date = $("book-date").value;
  const count = Number($("book-count").value);
  const body =
    item.kind === "hotel"
      ? { kind: "hotel", hotelId: item.id, guest: name, checkIn: date, nights: count }
      : { kind: "car", carId: item.id, driver: name, pickUp: date, days: count };
  $("book-submit").disabled = true;
  try {
    const r = await api("/api/bookings", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const b = r.booking;
    const what =
      item.kind === "hotel"
        ? `${b.hotelName}, ${b.nights} nights from ${b.checkIn}`
        : `${b.carModel}, ${b.days} days from ${b.pickUp}`;
    const li = el("li", `${what}: ${money(b.totalUsd, "USD")}`);
    li.append(el("small", `booking ${b.id.slice(0, 8)} · stored by data ${r.version} (${r.store})`, "meta"));
    $("bookings").prepend(li);
    $("book").close();
  } catch (e) {
    $("book-error").textContent = e.message;
  } finally {
    $("book-submit").disabled = false;
  }
}

async function convert(event) {
  event.preventDefault();
  const amount = $("convert-amount").value;
  const from = $("convert-from").value;
  const to = $("convert-to").value;
  try {
    const r = await api(`/api/convert?from=${from}&to=${to}&amount=${encodeURIComponent(amount)}`);
    $("convert-result").textContent =
      `${money(r.amount, r.from)} = ${money(r.result, r.to)} (rate ${r.rate})`;
  } catch (e) {
    $("convert-result").textContent = `Conversion failed: ${e.message}`;
  }
}

$("currency").addEventListener("change", () => {
  if (state.city) selectCity(state.city);
});
$("convert").addEventListener("submit", convert);
$("book-form").addEventListener("submit", submitBooking);
$("book-cancel").addEventListener("click", () => $("book").close());
loadDestinations();
loadCurrencies();
