// The live board: refetch the rows when the daemon says an incident changed (server-sent events), tick the
// elapsed times, and for a new alarm play a tone and flash the tab title until the page is looked at.
"use strict";
(function () {
  const rows = document.getElementById("rows");
  const link = document.getElementById("link");
  if (!rows) { return; }
  const seen = new Set(alarmIds());
  const title = document.title;
  let flashing = null;

  function alarmIds() {
    return Array.from(rows.querySelectorAll("tr.incident[data-alarm='1']"), (tr) => tr.dataset.id);
  }

  function tick() {
    const now = Date.now() / 1000;
    for (const cell of rows.querySelectorAll("td.elapsed")) {
      const s = Math.max(0, Math.floor(now - Number(cell.dataset.opened)));
      const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
      cell.textContent = (h ? h + "时" : "") + (h || m ? m + "分" : "") + sec + "秒";
    }
  }

  function tone() {
    try {
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      for (let i = 0; i < 3; i++) {
        const osc = ctx.createOscillator(), gain = ctx.createGain();
        osc.frequency.value = 880;
        osc.connect(gain); gain.connect(ctx.destination);
        gain.gain.setValueAtTime(0.3, ctx.currentTime + i * 0.4);
        osc.start(ctx.currentTime + i * 0.4); osc.stop(ctx.currentTime + i * 0.4 + 0.25);
      }
    } catch (e) { /* no audio (autoplay rules): the title still flashes */ }
  }

  function flash() {
    if (flashing) { return; }
    let on = false;
    flashing = setInterval(() => { on = !on; document.title = on ? "【新警情】" + title : title; }, 700);
  }

  function stopFlash() {
    if (document.visibilityState === "visible" && document.hasFocus()) {
      clearInterval(flashing); flashing = null; document.title = title;
    }
  }

  // One fetch at a time: changes that arrive meanwhile are folded into one more fetch after it (a burst of
  // alarms is a few fetches of the whole board, not one per alarm).
  let fetching = false, again = false;

  async function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    try {
      do { again = false; await fetchRows(); } while (again);
    } finally { fetching = false; }
  }

  async function fetchRows() {
    const response = await fetch("/board/rows", { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) { window.location = "/login"; return; }
    if (!response.ok) { return; }
    rows.innerHTML = await response.text();
    const fresh = alarmIds().filter((id) => !seen.has(id));
    fresh.forEach((id) => seen.add(id));
    if (fresh.length) {
      document.body.dataset.newAlarms = String(Number(document.body.dataset.newAlarms || 0) + fresh.length);
      tone(); flash();
    }
    tick();
  }

  const events = new EventSource("/events");  // reconnects by itself, e.g. after the daemon restarts
  events.addEventListener("hello", () => { link.className = "link up"; refresh(); });
  events.addEventListener("changed", refresh);
  events.onerror = () => { link.className = "link down"; };
  setInterval(tick, 1000);
  setInterval(refresh, 30000);  // delivery reports and the like change rows without a commit to an incident
  window.addEventListener("focus", stopFlash);
  document.addEventListener("visibilitychange", stopFlash);
  tick();
})();
