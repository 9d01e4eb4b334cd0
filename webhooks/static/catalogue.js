// faaspub catalogue: citation tabs and the invoke form. The pages work without this file.
"use strict";

const TOKEN_KEY = "faaspub-token";

function setupTabs() {
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  if (!tabs.length) return;
  const select = (tab, focus) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    }
    if (focus) tab.focus();
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (step) select(tabs[(i + step + tabs.length) % tabs.length], true);
      else if (event.key === "Home") select(tabs[0], true);
      else if (event.key === "End") select(tabs[tabs.length - 1], true);
      else return;
      event.preventDefault();
    });
  });
  select(tabs[0], false);
}

function formatDuration(ms) {
  if (ms < 10) return ms.toFixed(1) + " ms";
  return ms < 10000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(1) + " s";
}

function cell(tag, text, scope) {
  const node = document.createElement(tag);
  if (scope) node.scope = scope;
  node.textContent = text;
  return node;
}

function addActivationRow(activation) {
  const body = document.getElementById("activations-body");
  if (!body) return;
  const row = document.createElement("tr");
  const head = cell("th", "", "row");
  const link = document.createElement("a");
  link.href = "/activations/" + encodeURIComponent(activation.id);
  const code = cell("code", activation.id.slice(0, 12));
  link.appendChild(code);
  head.appendChild(link);
  row.appendChild(head);
  const status = cell("td", "");
  const badge = cell("span", activation.status.replace(/_/g, " "));
  badge.className = "status status-" + (activation.status === "success" ? "ok" : "failed");
  status.appendChild(badge);
  row.appendChild(status);
  row.appendChild(cell("td", activation.version));
  row.appendChild(cell("td", activation.start.replace("T", " ").slice(0, 19) + " UTC"));
  row.appendChild(cell("td", formatDuration(activation.duration_ms)));
  row.appendChild(cell("td", activation.cause || ""));
  body.insertBefore(row, body.firstChild);
  const none = document.getElementById("no-activations");
  if (none) none.remove();
}

function setupInvoke() {
  const form = document.getElementById("invoke-form");
  if (!form) return;
  const out = document.getElementById("invoke-result");
  const token = form.elements.token;
  token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  const show = (text, isError) => {
    out.replaceChildren();
    const p = cell("p", text);
    if (isError) p.className = "error";
    out.appendChild(p);
    return p;
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let params;
    try {
      params = JSON.parse(form.elements.params.value || "{}");
    } catch (error) {
      show("The parameters are not valid JSON: " + error.message, true);
      form.elements.params.focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token.value);
    const url = new URL(form.dataset.url, window.location.href);
    if (form.elements.version.value) url.searchParams.set("version", form.elements.version.value);
    show("Running…", false);
    let response, body;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + token.value },
        body: JSON.stringify(params),
      });
      body = await response.json();
    } catch (error) {
      show("The request failed: " + error.message, true);
      return;
    }
    if (!response.ok) {
      show(body.error + (body.hint ? " (" + body.hint + ")" : ""), true);
      return;
    }
    const p = show("Activation ", false);
    const link = document.createElement("a");
    link.href = "/activations/" + encodeURIComponent(body.id);
    link.id = "invoke-activation";
    link.textContent = body.id;
    p.appendChild(link);
    p.appendChild(document.createTextNode(": " + body.status.replace(/_/g, " ") + " in " + formatDuration(body.duration_ms)));
    out.appendChild(cell("pre", JSON.stringify(body.result, null, 2)));
    addActivationRow(body);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupTabs();
  setupInvoke();
});
