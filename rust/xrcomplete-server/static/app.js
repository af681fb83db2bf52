// The demo page of `xrcomplete serve`: suggestions on every keystroke, keyboard selection,
// and searches recorded for this page's session so the next suggestions follow from them;
// beside them, the products of the highlighted suggestion (or of the typed text), when the
// server serves a product retriever.
"use strict";

const input = document.getElementById("q");
const list = document.getElementById("suggestions");
const prevOut = document.getElementById("prev");
const tookOut = document.getElementById("took");
const modelOut = document.getElementById("model");
const history = document.getElementById("history");
const errorOut = document.getElementById("error");
const productsPane = document.getElementById("products");
const productsFor = document.getElementById("products-for");
const productList = document.getElementById("product-list");

function newSessionId() {
  if (window.crypto && crypto.randomUUID) {
    return crypto.randomUUID();
  }
  return "s-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

const session = newSessionId();
let suggestions = [];
let selected = -1;
let latest = 0; // the newest request: older answers arriving late are dropped
let productsOff = false; // the server serves no product retriever
let productsLatest = 0; // the newest products request, as `latest`
const productsSeen = new Map(); // query -> products, the last few (arrows go back and forth)

function showError(message) {
  errorOut.textContent = message;
  errorOut.hidden = !message;
}

function close() {
  list.hidden = true;
  list.replaceChildren();
  input.setAttribute("aria-expanded", "false");
  suggestions = [];
  selected = -1;
  hideProducts();
}

function hideProducts() {
  productsLatest++; // an answer on its way is no longer wanted
  productsPane.hidden = true;
  productList.replaceChildren();
  delete productsPane.dataset.query;
}

function renderProducts(query, products) {
  productsFor.textContent = query;
  productList.replaceChildren();
  for (const p of products) {
    const item = document.createElement("li");
    item.dataset.id = String(p.id);
    const title = document.createElement("span");
    title.textContent = p.title || String(p.id);
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = String(p.id);
    item.append(title, id);
    productList.append(item);
  }
  productsPane.dataset.query = query;
  productsPane.hidden = false;
}

// The products of the highlighted suggestion, or of the typed text when none is; nothing for
// an empty box.
async function showProducts() {
  const query = (selected >= 0 ? suggestions[selected].text : input.value).trim();
  if (productsOff || !query) {
    hideProducts();
    return;
  }
  const id = ++productsLatest;
  const known = productsSeen.get(query);
  if (known) {
    renderProducts(query, known);
    return;
  }
  try {
    const response = await fetch("v1/products?" + new URLSearchParams({ q: query, k: "5" }));
    const body = await response.json();
    if (response.status === 404 && body.error && body.error.code === "no_products") {
      productsOff = true;
      hideProducts();
      return;
    }
    if (id !== productsLatest) {
      return;
    }
    if (!response.ok) {
      showError(body.error ? body.error.message : response.statusText);
      hideProducts();
      return;
    }
    if (productsSeen.size >= 100) {
      productsSeen.delete(productsSeen.keys().next().value);
    }
    productsSeen.set(query, body.products);
    renderProducts(query, body.products);
  } catch (err) {
    if (id === productsLatest) {
      showError("no answer from the server: " + err);
    }
  }
}

function render() {
  list.replaceChildren();
  suggestions.forEach((s, i) => {
    const item = document.createElement("li");
    item.setAttribute("role", "option");
    item.setAttribute("aria-selected", String(i === selected));
    item.dataset.text = s.text;
    // highlight counts code points; Array.from splits a string into code points.
    const chars = Array.from(s.text);
    const typed = document.createElement("span");
    typed.className = "typed";
    typed.textContent = chars.slice(s.highlight[0], s.highlight[1]).join("");
    const rest = document.createElement("span");
    rest.className = "rest";
    rest.textContent = chars.slice(s.highlight[1]).join("");
    const text = document.createElement("span");
    text.append(typed, rest);
    const source = document.createElement("span");
    source.className = "source";
    source.textContent = s.source;
    item.append(text, source);
    item.addEventListener("mousedown", (event) => {
      event.preventDefault(); // keep the focus in the box
      search(s.text);
    });
    list.append(item);
  });
  list.hidden = suggestions.length === 0;
  input.setAttribute("aria-expanded", String(!list.hidden));
  showProducts();
}

async function suggest() {
  const prefix = input.value;
  const id = ++latest;
  if (!prefix.trim()) {
    close();
    return;
  }
  const url = "v1/complete?" + new URLSearchParams({ prefix, session, k: "10" });
  try {
    const response = await fetch(url);
    const body = await response.json();
    if (id !== latest) {
      return;
    }
    if (!response.ok) {
      showError(body.error ? body.error.message : response.statusText);
      close();
      return;
    }
    showError("");
    suggestions = body.suggestions;
    selected = -1;
    tookOut.textContent = body.took_us + " µs";
    modelOut.textContent = body.model;
    render();
  } catch (err) {
    if (id === latest) {
      showError("no answer from the server: " + err);
    }
  }
}

async function search(text) {
  const query = text.trim();
  if (!query) {
    return;
  }
  close();
  input.value = "";
  try {
    const response = await fetch("v1/searches", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query, session }),
    });
    const body = await response.json();
    if (!response.ok) {
      showError(body.error ? body.error.message : response.statusText);
      return;
    }
    showError("");
    prevOut.textContent = body.prev;
    const item = document.createElement("li");
    item.textContent = body.prev;
    history.append(item);
  } catch (err) {
    showError("no answer from the server: " + err);
  }
  input.focus();
}

input.addEventListener("input", suggest);
input.addEventListener("keydown", (event) => {
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    if (suggestions.length === 0) {
      return;
    }
    event.preventDefault();
    const step = event.key === "ArrowDown" ? 1 : -1;
    selected = (selected + step + suggestions.length + 1) % (suggestions.length + 1);
    if (selected === suggestions.length) {
      selected = -1; // back to what was typed
    }
    render();
  } else if (event.key === "Enter") {
    event.preventDefault();
    search(selected >= 0 ? suggestions[selected].text : input.value);
  } else if (event.key === "Escape") {
    close();
  }
});
input.addEventListener("blur", () => setTimeout(close, 100));
