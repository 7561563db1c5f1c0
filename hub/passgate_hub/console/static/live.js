"use strict";
// Keeps the live page current: counts from /console/live/stream (server-sent events), the chart
// fetched again (SVG drawn by the hub) when they change. Without this script the page still shows
// everything as of its loading.
(function () {
  const totals = document.getElementById("totals");
  if (!totals) return;
  const venue = totals.dataset.venue;
  const query = "?venue=" + encodeURIComponent(venue);
  const stream = document.getElementById("stream");
  let chartDue = null;

  function setText(id, value) {
    const element = document.getElementById(id);
    if (element) element.textContent = String(value);
  }

  function refreshChart() {
    chartDue = null;
    fetch("/console/live/chart" + query, { cache: "no-store", credentials: "same-origin" })
      .then((response) => (response.ok ? response.text() : null))
      .then((svg) => { if (svg) document.getElementById("chart").innerHTML = svg; })
      .catch(() => {});
  }

  function onCounts(counts) {
    setText("inside", counts.total.inside);
    setText("entries", counts.total.entries);
    setText("exits", counts.total.exits);
    for (const zone of counts.zones) {
      const row = document.querySelector('#zones tr[data-zone="' + CSS.escape(zone.zone) + '"]');
      if (!row) continue;
      row.querySelector(".inside").textContent = String(zone.inside);
      row.querySelector(".entries").textContent = String(zone.entries);
      row.querySelector(".exits").textContent = String(zone.exits);
    }
    setText("as-of", new Date().toLocaleTimeString("en-GB", { timeZone: totals.dataset.timezone, timeZoneName: "short" }));
    if (chartDue === null) chartDue = setTimeout(refreshChart, 1000);  // at most one fetch a second
  }

  function connect() {
    const source = new EventSource("/console/live/stream" + query);
    source.onopen = () => { stream.dataset.state = "live"; stream.textContent = "live"; };
    source.onmessage = (message) => {
      try { onCounts(JSON.parse(message.data)); } catch (e) { /* a bad frame: wait for the next */ }
    };
    source.onerror = () => {
      stream.dataset.state = "lost";
      stream.textContent = "connection lost: reconnecting…";
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
    };
  }
  connect();
}());
