// responder playground: send a typed message to /-/playground/api/try and show the reply the way
// DingTalk does. Everything that comes from the server (reply text, titles, URLs, rule names,
// errors) is untrusted: it only ever reaches the page through textContent or checked attributes,
// never through innerHTML, so a template or a message cannot inject markup or script.
"use strict";

(function () {
  const API_TRY = "api/try";
  const API_STATUS = "api/status";
  const ROBOT_NAME = "responder";
  const DATA_IMAGE = /^data:image\/(?:png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]+$/i;
  // A link target: no spaces, parentheses only balanced one level deep (as in Wikipedia URLs).
  const URL_PART = "((?:[^()\\s]|\\([^()\\s]*\\))*)";
  // DingTalk's markdown subset, inline part: images, links, **bold**, *italic*, @mentions.
  const INLINE = new RegExp(
    [
      "!\\[([^\\]\\n]*)\\]\\(" + URL_PART + "\\)",
      "\\[([^\\]\\n]+)\\]\\(" + URL_PART + "\\)",
      "\\*\\*(.+?)\\*\\*",
      "\\*([^*\\s](?:[^*\\n]*?[^*\\s])?)\\*",
      "(?<!\\S)@([^\\s@]+)",
    ].join("|"),
    "g",
  );

  let sequence = 0;

  // ---- DOM construction: the only way anything reaches the page -------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function httpUrl(value) {
    if (typeof value !== "string" || value === "") return null;
    let url;
    try {
      url = new URL(value);
    } catch (_) {
      return null;
    }
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  }

  function imageUrl(value) {
    if (typeof value === "string" && DATA_IMAGE.test(value)) return value;
    return httpUrl(value);
  }

  function link(href, className) {
    const a = el("a", className);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  function image(src, alt, className) {
    const img = el("img", className);
    img.alt = alt || "";
    img.referrerPolicy = "no-referrer";
    img.loading = "lazy";
    img.src = src;
    return img;
  }

  // ---- markdown (DingTalk subset) ---------------------------------------------------------------

  function inline(text, ctx, allowLinks) {
    const out = document.createDocumentFragment();
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      out.append(text.slice(last, m.index));
      out.append(inlineToken(m, ctx, allowLinks));
      last = m.index + m[0].length;
    }
    out.append(text.slice(last));
    return out;
  }

  function inlineToken(m, ctx, allowLinks) {
    const [whole, alt, imgSrc, label, href, bold, italic, mention] = m;
    if (imgSrc !== undefined) {
      const src = imageUrl(imgSrc);
      return src ? image(src, alt, "md-img") : document.createTextNode(whole);
    }
    if (label !== undefined) {
      const safe = allowLinks ? httpUrl(href) : null;
      if (!safe) return document.createTextNode(whole);
      const a = link(safe, "md-link");
      a.append(inline(label, ctx, false));
      return a;
    }
    if (bold !== undefined) return wrap("strong", inline(bold, ctx, allowLinks));
    if (italic !== undefined) return wrap("em", inline(italic, ctx, allowLinks));
    return mentionNode(mention, ctx);
  }

  function wrap(tag, child) {
    const node = el(tag);
    node.append(child);
    return node;
  }

  // DingTalk highlights only people listed in at.atUserIds, and shows them by name.
  function mentionNode(id, ctx) {
    if (ctx.isAtAll && (id === "all" || id === "所有人")) return el("span", "mention", "@" + id);
    if (!ctx.atUserIds.includes(id)) return document.createTextNode("@" + id);
    const shown = id === ctx.staffId && ctx.nick ? ctx.nick : id;
    const span = el("span", "mention", "@" + shown);
    span.title = "@" + id + " (at.atUserIds)";
    return span;
  }

  const BLOCKS = [
    ["heading", /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/],
    ["quote", /^\s{0,3}>\s?(.*)$/],
    ["ul", /^\s*[-*+]\s+(.*)$/],
    ["ol", /^\s*(\d{1,9})[.)]\s+(.*)$/],
    ["blank", /^\s*$/],
  ];

  function classify(line) {
    for (const [kind, pattern] of BLOCKS) {
      const m = line.match(pattern);
      if (m) return { kind, m };
    }
    return { kind: "para", m: [line, line] };
  }

  function markdown(text, ctx) {
    const root = el("div", "md");
    let open = null; // the block that following lines of the same kind continue
    for (const line of String(text).replace(/\r\n?/g, "\n").split("\n")) {
      const { kind, m } = classify(line);
      open = addLine(root, open, kind, m, ctx);
    }
    return root;
  }

  function addLine(root, open, kind, m, ctx) {
    if (kind === "blank") return null;
    if (kind === "heading") {
      root.append(wrap("h" + m[1].length, inline(m[2], ctx, true)));
      return null;
    }
    if (kind === "ul" || kind === "ol") return addListItem(root, open, kind, m, ctx);
    const tag = kind === "quote" ? "blockquote" : "p";
    const content = kind === "quote" ? m[1] : m[0];
    if (open && open.tagName === tag.toUpperCase()) {
      // A picture is a block of its own: a line break after it would add an empty line.
      if (!(open.lastChild instanceof HTMLImageElement)) open.append(el("br"));
      open.append(inline(content, ctx, true));
      return open;
    }
    const block = wrap(tag, inline(content, ctx, true));
    root.append(block);
    return block;
  }

  function addListItem(root, open, kind, m, ctx) {
    let list = open;
    if (!list || list.tagName !== kind.toUpperCase()) {
      list = el(kind);
      if (kind === "ol" && m[1] !== "1") list.start = Number(m[1]);
      root.append(list);
    }
    list.append(wrap("li", inline(kind === "ol" ? m[2] : m[1], ctx, true)));
    return list;
  }

  // ---- DingTalk message types -------------------------------------------------------------------

  function plainText(text, ctx) {
    const node = el("div", "text-body");
    node.append(mentionsOnly(String(text), ctx));
    return node;
  }

  function mentionsOnly(text, ctx) {
    const out = document.createDocumentFragment();
    let last = 0;
    for (const m of text.matchAll(/(?<!\S)@([^\s@]+)/g)) {
      out.append(text.slice(last, m.index), mentionNode(m[1], ctx));
      last = m.index + m[0].length;
    }
    out.append(text.slice(last));
    return out;
  }

  function buttonNode(title, url) {
    const safe = httpUrl(url);
    const node = safe ? link(safe, "btn") : el("span", "btn disabled");
    node.append(el("span", "btn-title", title));
    if (!safe) node.title = "not an http(s) URL: " + String(url);
    return node;
  }

  function actionCard(card, ctx) {
    const box = el("div", "card action-card");
    box.append(markdown(card.text || "", ctx));
    const row = el("div", "buttons");
    if (card.singleTitle !== undefined) {
      row.classList.add("single");
      const b = buttonNode(card.singleTitle, card.singleURL);
      b.append(el("span", "chevron", "›"));
      row.append(b);
    } else {
      row.classList.add(card.btnOrientation === "1" ? "horizontal" : "vertical");
      for (const b of card.btns || []) row.append(buttonNode(b.title, b.actionURL));
    }
    box.append(row);
    return box;
  }

  function linkCard(card) {
    const safe = httpUrl(card.messageUrl);
    const box = safe ? link(safe, "card link-card") : el("div", "card link-card");
    box.append(el("div", "link-title", card.title));
    const body = el("div", "link-body");
    body.append(el("div", "link-text", card.text));
    const pic = imageUrl(card.picUrl);
    if (pic) body.append(image(pic, "", "link-pic"));
    box.append(body);
    return box;
  }

  function feedCard(card) {
    const box = el("div", "card feed-card");
    (card.links || []).forEach(function (entry, index) {
      const safe = httpUrl(entry.messageURL);
      const row = safe ? link(safe, "feed-entry") : el("div", "feed-entry");
      row.classList.add(index === 0 ? "feed-hero" : "feed-row");
      const pic = imageUrl(entry.picURL);
      if (pic) row.append(image(pic, "", "feed-pic"));
      row.append(el("span", "feed-title", entry.title));
      box.append(row);
    });
    return box;
  }

  function replyNode(reply, ctx) {
    const type = reply.msgtype;
    const body = reply[type] || {};
    if (type === "text") return plainText(body.content || "", ctx);
    if (type === "markdown") return markdown(body.text || "", ctx);
    if (type === "actionCard") return actionCard(body, ctx);
    if (type === "link") return linkCard(body);
    if (type === "feedCard") return feedCard(body);
    return el("div", "text-body", "(unknown msgtype " + String(type) + ")");
  }

  function bubbleKind(type) {
    return type === "text" || type === "markdown" ? "bubble" : "bubble card-bubble";
  }

  // ---- transcript ---------------------------------------------------------------------------------

  function avatar(name, className) {
    return el("span", "avatar " + className, initials(String(name || "").trim()));
  }

  // DingTalk's default avatar: the last two characters of a Chinese name, else initials.
  function initials(name) {
    if (!name) return "?";
    if (/[\u3400-\u9fff]/.test(name)) return Array.from(name).slice(-2).join("");
    const words = name.split(/\s+/).slice(0, 2);
    return words.map((word) => Array.from(word)[0]).join("").toUpperCase();
  }

  function entry(who, seq) {
    const li = el("li", "msg " + who);
    li.dataset.seq = String(seq);
    return li;
  }

  function addOwnMessage(request, seq) {
    const li = entry("me", seq);
    const head = el("div", "msg-head");
    head.append(el("span", "nick", request.nick || "(no nick)"));
    if (request.admin) head.append(el("span", "badge", "admin"));
    if (request.offline) head.append(el("span", "badge", "offline"));
    const col = el("div", "msg-col");
    const bubble = el("div", "bubble own");
    if (request.chat === "group") bubble.append(el("span", "mention at-robot-token", "@" + ROBOT_NAME + " "));
    bubble.append(document.createTextNode(request.text));
    col.append(head, bubble);
    li.append(col, avatar(request.nick, "user"));
    transcript().append(li);
  }

  function addReply(result, request, seq) {
    const reply = result.reply;
    const li = entry("bot answer", seq);
    li.dataset.msgtype = reply.msgtype;
    const head = el("div", "msg-head");
    head.append(el("span", "nick", ROBOT_NAME), el("span", "robot-tag", "robot"));
    const title = (reply[reply.msgtype] || {}).title;
    if (title) head.append(el("span", "preview", "preview: " + title));
    const at = reply.at || {};
    const ctx = {
      atUserIds: Array.isArray(at.atUserIds) ? at.atUserIds.map(String) : [],
      isAtAll: at.isAtAll === true,
      staffId: request.staff_id,
      nick: request.nick,
    };
    const bubble = el("div", bubbleKind(reply.msgtype));
    bubble.append(replyNode(reply, ctx));
    const col = el("div", "msg-col");
    col.append(head, bubble);
    li.append(avatar(ROBOT_NAME, "robot"), col);
    transcript().append(li);
  }

  function addNote(text, className, seq) {
    const li = el("li", "note answer " + className, text);
    li.dataset.seq = String(seq);
    transcript().append(li);
  }

  function transcript() {
    return document.getElementById("transcript");
  }

  function scrollToEnd() {
    const list = transcript();
    list.scrollTop = list.scrollHeight;
  }

  // ---- inspector ----------------------------------------------------------------------------------

  function showVerdict(result) {
    const box = document.getElementById("verdict");
    box.replaceChildren();
    box.className = "verdict";
    if (result.rule) {
      box.append(el("code", "rule-name", result.rule), " ", el("span", "reason", result.reason));
    } else {
      box.append(el("span", "muted", "no rule: " + result.reason + " (no reply is sent)"));
    }
    if (result.render_error) box.append(el("div", "error", "render error: " + result.render_error));
  }

  function showExplain(verdicts) {
    const body = document.querySelector("#explain tbody");
    body.replaceChildren();
    for (const v of verdicts) {
      const tr = el("tr", v.matched ? "won" : "");
      tr.append(el("td", "rule-name", v.rule), el("td", "mark", v.matched ? "✓" : "·"));
      tr.append(el("td", "reason", v.reason));
      body.append(tr);
    }
  }

  function showStatus(status) {
    const reload = status.reload || {};
    const list = document.getElementById("rules-status");
    list.replaceChildren();
    const rows = [
      ["generation", String(status.generation)],
      ["sha256", String(reload.sha256 || "").slice(0, 12)],
      ["loaded", formatTime(reload.loaded_at)],
      ["last reload", reload.ok ? "ok (" + formatTime(reload.last_attempt_at) + ")" : "FAILED"],
    ];
    for (const [name, value] of rows) list.append(el("dt", "", name), el("dd", "", value));
    if (!reload.ok) list.append(el("dt", "", "error"), el("dd", "error", reload.error || "?"));
    const summary = document.getElementById("rules-summary");
    summary.textContent = "rules generation " + status.generation + (reload.ok ? "" : " · last reload failed");
    summary.classList.toggle("failing", !reload.ok);
  }

  function formatTime(seconds) {
    if (typeof seconds !== "number") return "?";
    return new Date(seconds * 1000).toLocaleString();
  }

  // ---- talking to the server ----------------------------------------------------------------------

  function readForm() {
    const form = document.getElementById("composer");
    return {
      text: document.getElementById("text").value,
      nick: document.getElementById("nick").value,
      staff_id: document.getElementById("staff-id").value,
      chat: form.elements.chat.value === "private" ? "private" : "group",
      admin: document.getElementById("admin").checked,
      offline: document.getElementById("offline").checked,
    };
  }

  async function post(request) {
    const response = await fetch(API_TRY, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
      credentials: "same-origin",
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = { error: "bad_response", reason: "HTTP " + response.status };
    }
    return { ok: response.ok, body };
  }

  async function send(event) {
    event.preventDefault();
    const request = readForm();
    if (!request.text.trim()) return;
    const seq = ++sequence;
    addOwnMessage(request, seq);
    document.getElementById("text").value = "";
    try {
      const { ok, body } = await post(request);
      if (ok) showResult(body, request, seq);
      else addNote("refused: " + body.reason, "error", seq);
    } catch (err) {
      addNote("request failed: " + String(err), "error", seq);
    }
    scrollToEnd();
  }

  function showResult(result, request, seq) {
    if (result.reply) addReply(result, request, seq);
    else addNote("no reply — " + result.reason, "silent", seq);
    showVerdict(result);
    showExplain(result.explain || []);
    document.getElementById("raw").textContent = JSON.stringify(result.reply, null, 2);
    showStatus(result);
  }

  function updateChatKind() {
    const chat = readForm().chat;
    document.getElementById("chat-kind").textContent = chat === "group" ? "group chat" : "private chat";
    document.getElementById("at-robot").hidden = chat !== "group";
  }

  async function loadStatus() {
    try {
      const response = await fetch(API_STATUS, { credentials: "same-origin" });
      if (response.ok) showStatus(await response.json());
    } catch (_) {
      document.getElementById("rules-summary").textContent = "rules: status unavailable";
    }
  }

  function start() {
    document.getElementById("composer").addEventListener("submit", send);
    for (const radio of document.querySelectorAll('input[name="chat"]')) {
      radio.addEventListener("change", updateChatKind);
    }
    updateChatKind();
    loadStatus();
  }

  start();
})();
